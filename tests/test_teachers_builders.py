"""Building teacher folders through the library (dsdistill.teachers.builders): one request dataclass per kind,
registered in TEACHER_BUILDERS, that the CLI maps its arguments onto; the experts' width policy lives there."""
import pytest
import torch

import dsdistill.teachers.builders as builders_module
from dsdistill.cli import main
from dsdistill.errors import ConfigError, UnknownNameError
from dsdistill.teachers import (TEACHER_BUILDERS, CommitteeRequest, ExpertsRequest, PoolRequest, build_teacher,
                                make_request)
from dsdistill.teachers.builders import build_named
from dsdistill.teachers.folder import folder_bytes, read_manifest
from dsdistill.teachers.pool import build_pool, load_pool


def test_the_registry_holds_one_request_per_kind():
    assert TEACHER_BUILDERS.list() == ["committee", "experts", "pool"]
    assert [TEACHER_BUILDERS.get(n).kind.manifest for n in TEACHER_BUILDERS] == ["committee.json", "experts.json",
                                                                                 "pool.json"]
    with pytest.raises(UnknownNameError, match="unknown teacher builder 'nope'; valid: committee, experts, pool"):
        TEACHER_BUILDERS.get("nope")


def test_the_experts_width_default_is_the_requests_not_the_clis():
    assert ExpertsRequest(out="x").model_options() == {"width": 32}
    assert ExpertsRequest(out="x", set=("width=128",)).model_options() == {"width": 128}
    assert ExpertsRequest(out="x", arch="mlp").model_options() == {}
    assert PoolRequest(out="x").model_options() == {}  # the pool keeps NCFM's width 128


@pytest.mark.parametrize("make,message", [
    (lambda: PoolRequest(out="x", set=("bogus=1",)), "unknown option 'bogus'"),
    (lambda: ExpertsRequest(out="x", recipe="nope"), "unknown expert recipe 'nope'"),
    (lambda: ExpertsRequest(out="x", train=("lr=fast",)), "expected float"),
    (lambda: CommitteeRequest(out="x", members="convnet-bn,convnet-bn"), "listed twice"),
    (lambda: make_request(PoolRequest, {"out": "x", "members": "a"}), "unknown option(s) members for PoolRequest"),
])
def test_a_request_checks_its_options_when_made(make, message):
    with pytest.raises(ConfigError) as err:
        make()
    assert message in str(err.value)


def test_build_teacher_builds_what_build_pool_builds(tiny_real, tmp_path):
    request = PoolRequest(out=str(tmp_path / "a"), models=1, set=("width=8",), seed=2)
    out = build_teacher(request, real=tiny_real, command="dsdistill pool ...")
    direct = build_pool(tiny_real, tmp_path / "b", models=1, epochs=1, model_options={"width": 8}, seed=2)
    a, b = load_pool(out, tiny_real, "convnet", {"width": 8}), load_pool(direct, tiny_real, "convnet", {"width": 8})
    assert a.command == "dsdistill pool ..." and all(torch.equal(a.trained[0][k], v) for k, v in b.trained[0].items())


@pytest.mark.parametrize("argv,expected", [
    (["experts", "--set", "depth=2", "--train", "lr=0.02", "--seed", "4"],
     ExpertsRequest(out="OUT", set=("depth=2",), train=("lr=0.02",), seed=4)),
    (["pool", "--models", "2", "--zca", "--arch", "mlp"], PoolRequest(out="OUT", models=2, zca=True, arch="mlp")),
    (["committee", "--members", "convnet-bn", "--holdout", "3"],
     CommitteeRequest(out="OUT", members="convnet-bn", holdout=3)),
])
def test_the_commands_map_their_arguments_onto_the_request(argv, expected, monkeypatch, tmp_path):
    """The CLI decides nothing: its arguments become the request, which build_teacher receives as is."""
    seen = {}

    def fake(request, **kwargs):
        seen.update(request=request, **kwargs)
        raise ConfigError("stop here")

    monkeypatch.setattr(builders_module, "build_teacher", fake)  # what build_named, the commands' one call, calls
    assert main([*argv, "--out", "OUT", "--data-root", str(tmp_path), "--device", "cpu"]) == 2
    assert seen["request"] == expected and seen["data_root"] == str(tmp_path)
    assert seen["command"] == " ".join(["dsdistill", *argv, "--out", "OUT", "--data-root", str(tmp_path), "--device",
                                        "cpu"])


def test_build_named_maps_the_parsed_arguments_and_summarises_the_folder(fake_fmnist_root, tmp_path):
    """A folder command's one call: the options its request takes are picked from the parsed arguments (the rest,
    such as --device, ignored), the folder is built, and what the command prints comes back."""
    values = {"out": str(tmp_path / "p"), "models": 1, "epochs": 1, "set": ["width=8"], "device": "cpu",
              "quiet": True, "command": "pool"}
    built = build_named("pool", values, data_root=fake_fmnist_root, command="dsdistill pool ...")
    manifest = read_manifest(built.kind, built.folder)
    assert built.folder == tmp_path / "p" and built.kind.entries == "models"
    assert manifest["command"] == "dsdistill pool ..."
    assert built.entries == manifest["models"] and [e["index"] for e in built.entries] == [0]
    assert built.bytes == folder_bytes(built.kind, built.folder) > 0 and built.described.startswith("convnet, 1 epoch,")
    with pytest.raises(UnknownNameError):
        build_named("nope", values)
