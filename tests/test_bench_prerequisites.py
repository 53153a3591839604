"""A suite's prerequisites built through the library (dsdistill.bench.prerequisites): every committed `command`
string parses into a builder's request, mistakes are found when the suite loads, and the runner builds a
prerequisite without the command line."""
from pathlib import Path

import pytest

import dsdistill.cli
from dsdistill.bench import Runner, Store, load_suite, parse_suite
from dsdistill.data import load_dataset
from dsdistill.bench.prerequisites import BUILDERS, SelectRequest, parse_command
from dsdistill.errors import ConfigError
from dsdistill.synset import SyntheticSet
from dsdistill.teachers import CommitteeRequest, ExpertsRequest, PoolRequest
from dsdistill.teachers.committee import load_committee, read_manifest

REPO = Path(__file__).resolve().parent.parent


def test_the_builders_are_the_teacher_registry_and_select():
    assert sorted(BUILDERS) == ["committee", "experts", "pool", "select"]


@pytest.mark.parametrize("suite", sorted((REPO / "benchmarks/suites").glob("*.toml")), ids=lambda p: p.stem)
def test_every_committed_prerequisite_parses_into_a_request(suite):
    for p in load_suite(suite).prerequisites.values():
        assert isinstance(p.build.request, (PoolRequest, ExpertsRequest, CommitteeRequest, SelectRequest))
        assert str(Path(p.creates).parent) == p.build.request.out


def test_a_command_becomes_its_request_and_where_to_build():
    b = parse_command("dsdistill experts --dataset mnist --experts 100 --epochs 50 --set width=128 --set depth=2 "
                      "--zca --out runs/e --data-root /data --device cpu --quiet")
    assert b.request == ExpertsRequest(out="runs/e", dataset="mnist", experts=100, epochs=50,
                                       set=("width=128", "depth=2"), zca=True)
    assert (b.data_root, b.device) == ("/data", "cpu")
    assert parse_command("dsdistill pool --out=runs/p").request == PoolRequest(out="runs/p")
    assert parse_command("dsdistill select --method random --ipc 1 --out x.h5").request == SelectRequest(
        method="random", ipc=1, out="x.h5")
    # an option that defaults to None (the committee preset's) takes its type when given
    paper = parse_command("dsdistill committee --preset paper --epochs 3 --train lr=0.01 --out runs/c").request
    assert paper == CommitteeRequest(out="runs/c", preset="paper", epochs=3, train=("lr=0.01",))
    assert parse_command("dsdistill committee --out runs/c").request.epochs is None


@pytest.mark.parametrize("command,message", [
    ("rm -rf /", "must be a dsdistill command"),
    ("dsdistill distill --method dm --out x", "`dsdistill distill` cannot be a prerequisite; valid: committee, "
                                              "experts, pool, select"),
    ("dsdistill pool --out x --bogus 1", "`dsdistill pool` has no option '--bogus' here; valid: --out --dataset"),
    ("dsdistill pool --out x --models", "option --models needs a value"),
    ("dsdistill pool --out x --models many", "option --models expects int, got 'many'"),
    ("dsdistill pool --dataset mnist", "`dsdistill pool` needs --out"),
    ("dsdistill pool --out x --set bogus=1", "unknown option 'bogus'"),
    ("dsdistill committee --out x --epochs many", "option --epochs expects int, got 'many'"),
])
def test_a_mistaken_command_is_refused_when_the_suite_loads(command, message):
    with pytest.raises(ConfigError) as err:
        parse_suite(f"ipcs = [1]\n[[prerequisites]]\nname = 'p'\ncommand = '{command}'\ncreates = 'x'", "s.toml")
    assert message in str(err.value) and str(err.value).startswith("s.toml: prerequisites[0]: ")
    assert "\n" not in str(err.value)


def test_the_runner_builds_a_prerequisite_without_the_command_line(tmp_path, fake_fmnist_root, monkeypatch):
    """The committee a suite requires is built by the registry's request, in-process: cli.main is never called,
    and the manifest records the suite's command as the command line would have."""
    def no_cli(*args, **kwargs):
        raise AssertionError("the runner called the command line")

    monkeypatch.setattr(dsdistill.cli, "main", no_cli)
    out = tmp_path / "committee"
    command = (f"dsdistill committee --members convnet-bn:width=8 --epochs 1 --holdout 1 --out {out} "
               f"--data-root {fake_fmnist_root} --device cpu --quiet")
    suite = parse_suite(f"ipcs = [1]\n[[prerequisites]]\nname = 'c'\ncommand = \"{command}\"\n"
                        f"creates = \"{out}/committee.json\"", "s.toml")
    logs = []
    Runner(suite, Store(tmp_path / "store"), device="cpu", log=logs.append).ensure(suite.prerequisites["c"])
    assert logs == [f"prerequisite c: {command}"]
    manifest = read_manifest(out)
    assert manifest["command"] == command and manifest["complete"] is True and manifest["holdout"] == 1
    assert load_committee(out, load_dataset("fashion-mnist", fake_fmnist_root)).names == ["convnet-bn:width=8"]


def test_a_select_prerequisite_writes_the_set_the_command_would(tmp_path, fake_fmnist_root, monkeypatch):
    monkeypatch.setattr(dsdistill.cli, "main", lambda *a, **k: pytest.fail("cli called"))
    command = f"dsdistill select --method random --ipc 1 --seed 3 --out {tmp_path / 'a.h5'} --data-root {fake_fmnist_root}"
    suite = parse_suite(f"ipcs = [1]\n[[prerequisites]]\nname = 's'\ncommand = \"{command}\"\n"
                        f"creates = \"{tmp_path / 'a.h5'}\"", "s.toml")
    Runner(suite, Store(tmp_path / "store"), device="cpu", log=lambda s: None).ensure(suite.prerequisites["s"])
    monkeypatch.undo()
    assert dsdistill.cli.main(["select", "--method", "random", "--ipc", "1", "--seed", "3", "--out",
                               str(tmp_path / "b.h5"), "--data-root", fake_fmnist_root, "--device", "cpu"]) == 0
    a, b = SyntheticSet.load(tmp_path / "a.h5"), SyntheticSet.load(tmp_path / "b.h5")
    assert a.payload_sha256() == b.payload_sha256() and a.extra["command"].startswith("dsdistill select --method random")
