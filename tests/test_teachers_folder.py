"""The resumable model folder shared by the pool, the experts and the committee (dsdistill.teachers.folder), on a toy
kind whose "models" are small tensors: identity checks, resuming, atomic writes, manifest errors."""
import dataclasses
import itertools

import pytest
import torch

from dsdistill._seed import derive_seed, seeded_init
from dsdistill.errors import CheckpointError, ConfigError
from dsdistill.teachers import committee, experts, pool
from dsdistill.teachers.folder import (KINDS, FolderBuild, FolderKind, build_finished, finished_entries, fits,
                                       folder_bytes, identity_differences, load_unit, new_model, open_folder,
                                       parse_model_options, read_manifest, resolved_options)


def _differences(have, want):
    return [f"{k} {have.get(k)}, not {v}" for k, v in want.items() if have.get(k) != v]


def _loads(path, entry):
    """A unit is kept while its file still loads (a CheckpointError counts as no)."""
    try:
        return torch.load(path, weights_only=True)["index"] == entry["index"]
    except Exception:
        raise CheckpointError(f"{path} does not load") from None


TOY = FolderKind(noun="toy", article="a toy folder", unit="toy model", holds="toys with", manifest="toys.json",
                 format="dsdistill-toys", version=1, entries="toys", required=("seed",), differences=_differences)
IDENTITY = {"seed": 0, "shape": (2, 3)}


def build(folder, units, identity=IDENTITY, on_unit=None, kind=TOY):
    """Train (make) every missing unit of `units`; returns the keys made in this run."""
    run = FolderBuild(kind, folder, identity, command="toy --out DIR", keep=_loads, on_unit=on_unit)
    made = run.missing(units)
    for i in made:
        run.save(f"toy-{i}.pt", {"index": i, "weights": torch.full((2, 3), float(i))})
        run.finish({"file": f"toy-{i}.pt", "index": i})
    return made


def test_manifest_lists_finished_units_with_identity_and_provenance(tmp_path):
    seen = []
    assert build(tmp_path, [1, 0], on_unit=seen.append) == [1, 0]
    manifest = read_manifest(TOY, tmp_path)
    assert manifest["format"] == "dsdistill-toys" and manifest["version"] == 1 and manifest["command"] == "toy --out DIR"
    assert manifest["seed"] == 0 and manifest["shape"] == [2, 3]  # the identity, as JSON reads it back
    assert [e["index"] for e in manifest["toys"]] == [0, 1]  # ordered kinds list units by key
    assert [e["index"] for e in seen] == [1, 0]
    assert folder_bytes(TOY, tmp_path) == sum(f.stat().st_size for f in tmp_path.iterdir())


def test_rerun_skips_finished_units_and_keeps_their_files(tmp_path):
    build(tmp_path, [0, 1])
    stamps = {f.name: f.stat().st_mtime_ns for f in tmp_path.glob("toy-*.pt")}
    created = read_manifest(TOY, tmp_path)["created_utc"]
    assert build(tmp_path, [0, 1]) == []
    assert build(tmp_path, [0, 1, 2]) == [2]
    assert {f.name: f.stat().st_mtime_ns for f in tmp_path.glob("toy-*.pt") if f.name != "toy-2.pt"} == stamps
    manifest = read_manifest(TOY, tmp_path)
    assert [e["index"] for e in manifest["toys"]] == [0, 1, 2] and manifest["created_utc"] == created


def test_a_listed_unit_whose_file_no_longer_loads_is_made_again(tmp_path):
    build(tmp_path, [0, 1])
    (tmp_path / "toy-0.pt").write_bytes(b"truncated")
    (tmp_path / "toy-1.pt").unlink()
    assert build(tmp_path, [0, 1]) == [0, 1]
    assert torch.load(tmp_path / "toy-0.pt", weights_only=True)["index"] == 0


def test_a_stopped_build_keeps_every_finished_unit(tmp_path):
    def stop_after_first(entry):  # Ctrl-C once the first unit is recorded
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, [0, 1, 2], on_unit=stop_after_first)
    assert [e["index"] for e in read_manifest(TOY, tmp_path)["toys"]] == [0]
    assert build(tmp_path, [0, 1, 2]) == [1, 2]


def test_the_manifest_says_whether_the_planned_build_is_complete(tmp_path):
    """A prerequisite's `creates` (the manifest) exists from the first finished unit; `complete` tells a stopped
    build from a whole one (dsdistill bench resumes the former)."""
    def stop_after_first(entry):
        raise KeyboardInterrupt

    manifest = tmp_path / "toys.json"
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, [0, 1], on_unit=stop_after_first)
    assert read_manifest(TOY, tmp_path)["complete"] is False and not build_finished(manifest)
    build(tmp_path, [0, 1])
    assert read_manifest(TOY, tmp_path)["complete"] is True and build_finished(manifest)
    with pytest.raises(KeyboardInterrupt):          # a rerun that adds a unit is incomplete again until it ends
        build(tmp_path, [0, 1, 2, 3], on_unit=stop_after_first)
    assert not build_finished(manifest)
    legacy = tmp_path / "old.json"                   # written before manifests said so, or not ours: existence
    legacy.write_text('{"format": "dsdistill-toys", "toys": []}')
    (tmp_path / "set.h5").write_bytes(b"x")
    assert build_finished(legacy) and build_finished(tmp_path / "set.h5") and not build_finished(tmp_path / "no.json")


def test_a_failed_write_leaves_no_partial_file_and_the_manifest_untouched(tmp_path):
    build(tmp_path, [0])
    before = {f.name: f.read_bytes() for f in tmp_path.iterdir()}
    run = FolderBuild(TOY, tmp_path, IDENTITY, keep=_loads)
    with pytest.raises(Exception):
        run.save("toy-1.pt", {"index": 1, "weights": lambda: None})  # torch.save cannot pickle a lambda
    assert {f.name: f.read_bytes() for f in tmp_path.iterdir()} == before  # no toy-1.pt, no temporary file
    assert run.missing([0, 1]) == [1]


def test_another_identity_is_refused_naming_what_differs(tmp_path):
    build(tmp_path, [0])
    with pytest.raises(ConfigError) as err:
        build(tmp_path, [0], identity={"seed": 1, "shape": (2, 3)})
    text = str(err.value)
    assert text == f"{tmp_path} already holds toys with seed 0, not 1; use another --out (or delete that folder)"


def test_out_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file; give a folder for toys.json and the toy model files"):
        build(tmp_path / "file", [0])


def test_unordered_kinds_list_units_in_the_order_they_finished(tmp_path):
    by_name = dataclasses.replace(TOY, key=lambda e: e["name"], ordered=False)
    run = FolderBuild(by_name, tmp_path, IDENTITY, keep=lambda path, entry: True)
    for name in ("b", "a"):
        run.save(f"{name}.pt", {})
        run.finish({"file": f"{name}.pt", "name": name})
    manifest = read_manifest(by_name, tmp_path)
    assert [e["name"] for e in finished_entries(by_name, tmp_path, manifest, "rerun")] == ["b", "a"]


def _write(folder, text):
    folder.mkdir(exist_ok=True)
    (folder / "toys.json").write_text(text)
    return folder


@pytest.mark.parametrize("make,message", [
    (lambda d: d / "nowhere", "no toy folder at"),
    (lambda d: d, "has no toys.json (not a toy folder, or its first toy model never finished)"),
    (lambda d: _write(d, "{"), "toys.json is damaged (JSONDecodeError)"),
    (lambda d: _write(d, '{"format": "other"}'), "is not a dsdistill toy manifest"),
    (lambda d: _write(d, '{"format": "dsdistill-toys", "version": 2}'), "is toy format version 2 and this dsdistill "
                                                                         "reads version 1"),
    (lambda d: _write(d, '{"format": "dsdistill-toys", "version": 1, "toys": []}'), "is damaged (missing seed)"),
    (lambda d: _write(d, '{"format": "dsdistill-toys", "version": 1, "seed": 0, "toys": {}}'),
     "is damaged (missing toys list)"),
])
def test_manifest_errors_are_one_line_and_name_the_build_command(tmp_path, make, message):
    folder = make(tmp_path)
    with pytest.raises(CheckpointError) as err:
        read_manifest(TOY, folder, hint="toy --out DIR")
    text = str(err.value)
    assert message in text and "`toy --out DIR`" in text and "\n" not in text


def test_a_folder_without_finished_units_names_the_rerun(tmp_path):
    with pytest.raises(CheckpointError, match="lists no finished toy model; rerun `toy --out DIR`"):
        finished_entries(TOY, tmp_path, {"toys": []}, "toy --out DIR")


# ---------------------------------------------------------------- the skeleton every kind shares
def test_a_difference_names_each_differing_key_with_both_values():
    have = {"dataset": "mnist", "zca": False, "seed": 0, "arch": "convnet", "model_options": {"width": 8, "depth": 3},
            "train_config": {"lr": 0.01, "batch_size": 128}}
    want = {"dataset": "mnist", "zca": True, "seed": 1, "arch": "convnet", "model_options": {"width": 16, "depth": 3},
            "train_config": {"lr": 0.1, "batch_size": 128}}
    assert identity_differences(have, want) == ["without ZCA, not with ZCA", "seed 0, not 1",
                                                "model option width=8, not 16", "train_config lr=0.01, not 0.1"]
    assert identity_differences(have, {**have, "arch": "mlp", "model_options": {}}) == ["arch convnet, not mlp"]
    assert identity_differences(have, dict(have)) == []


def test_every_kind_reads_the_manifest_difference_in_its_refusal(tmp_path):
    """The default differences of a kind are identity_differences: a rerun with another identity names the key."""
    plain = dataclasses.replace(TOY, differences=identity_differences)
    FolderBuild(plain, tmp_path, {"seed": 0, "train_config": {"lr": 0.01}}, keep=_loads).finish(
        {"file": "toy-0.pt", "index": 0})
    with pytest.raises(ConfigError) as err:
        FolderBuild(plain, tmp_path, {"seed": 0, "train_config": {"lr": 0.1}}, keep=_loads)
    assert "already holds toys with train_config lr=0.01, not 0.1; use another --out" in str(err.value)
    assert all(k.differences is identity_differences for k in KINDS.values())


def test_open_folder_refuses_another_identity_naming_the_key_and_the_matching_build(tmp_path):
    build(tmp_path, [0, 1])
    with pytest.raises(CheckpointError) as err:
        open_folder(TOY, tmp_path, {"seed": 3}, hint="toy --out DIR", other="toy --seed 3 --out DIR")
    assert str(err.value) == (f"the toy folder at {tmp_path} does not fit this run: seed 0, not 3; build a matching "
                              "one with `toy --seed 3 --out DIR`")
    manifest, entries, rerun = open_folder(TOY, tmp_path, {"seed": 0}, hint="hint", other="other")
    assert [e["index"] for e in entries] == [0, 1] and rerun == "toy --out DIR"  # the recorded command resumes


@pytest.mark.parametrize("kind,other", itertools.permutations([pool.KIND, experts.KIND, committee.KIND], 2),
                         ids=lambda k: k.noun)
def test_a_folder_of_another_kind_is_one_clear_error(tmp_path, kind, other):
    (tmp_path / other.manifest).write_text("{}")
    with pytest.raises(CheckpointError) as err:
        read_manifest(kind, tmp_path, hint="dsdistill x --out DIR")
    assert str(err.value) == (f"{tmp_path} holds {other.article} ({other.manifest}), not {kind.article}; build one "
                              "with `dsdistill x --out DIR`")


def test_a_loader_given_another_kind_of_folder_names_both(tmp_path, tiny_real):
    (tmp_path / pool.MANIFEST).write_text("{}")
    for load in (lambda: experts.load_experts(tmp_path, tiny_real), lambda: committee.load_committee(tmp_path, tiny_real)):
        with pytest.raises(CheckpointError, match=r"holds a pool \(pool.json\), not (an expert folder|a committee)"):
            load()


def test_a_unit_file_missing_or_unreadable_says_so_and_how_to_resume(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_unit(TOY, tmp_path / "toy-0.pt", "toy --out DIR")
    assert str(err.value) == f"toy model file {tmp_path / 'toy-0.pt'} is missing; rerun `toy --out DIR` to retrain it " \
                             "(building resumes)"
    (tmp_path / "toy-0.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"toy-0.pt is unreadable \(\w+\); delete it and rerun `toy --out DIR`"):
        load_unit(TOY, tmp_path / "toy-0.pt", "toy --out DIR")
    torch.save({"index": 0}, tmp_path / "toy-0.pt")
    assert load_unit(TOY, tmp_path / "toy-0.pt", "") == {"index": 0}


def test_a_new_model_fits_its_own_state_and_leaves_the_global_rng_alone(tiny_real):
    rng = torch.get_rng_state()
    model = new_model("convnet", tiny_real, resolved_options("convnet", {"width": 8}))
    assert torch.equal(rng, torch.get_rng_state())
    assert fits(model.state_dict(), model)
    assert not fits(new_model("convnet", tiny_real, {"width": 16}).state_dict(), model)


def test_model_options_are_resolved_and_typed_in_one_place():
    assert resolved_options("convnet", {"width": 8, "depth": None})["depth"] == 3
    assert parse_model_options("convnet", ["width=8", "norm=batch"]) == {"width": 8, "norm": "batch"}
    with pytest.raises(ConfigError, match=r"unknown option\(s\) bogus for model 'convnet'; valid: depth, width"):
        resolved_options("convnet", {"bogus": 1})
    assert pool.resolved_options is resolved_options  # the old import still works


def test_train_units_seeds_times_and_records_each_missing_unit(tmp_path, tiny_real):
    """The loop a pool and experts share: unit i starts from derive_seed(seed, purpose, i) whatever the count, is
    trained by the kind's train(), saved, and listed with its test accuracy and seconds; finished units are kept."""
    calls = []

    def train(model, unit_seed, desc):
        calls.append((unit_seed, desc))
        return {"index": len(calls) - 1, "weights": torch.cat([p.detach().reshape(-1) for p in model.parameters()])}

    options = resolved_options("mlp", {})

    def run(folder, count):
        build = FolderBuild(TOY, folder, IDENTITY, keep=lambda path, entry: True)
        return build.train_units(count, tiny_real, "mlp", options, seed=3, purpose="toy", train=train,
                                 file=lambda i: f"toy-{i}.pt")

    folder = run(tmp_path / "a", 2)
    assert calls == [(derive_seed(3, "toy", 0), "toy model 1/2"), (derive_seed(3, "toy", 1), "toy model 2/2")]
    entries = read_manifest(TOY, folder)["toys"]
    assert [sorted(e) for e in entries] == [["file", "index", "seconds", "test_accuracy"]] * 2
    assert all(0.0 <= e["test_accuracy"] <= 1.0 and e["seconds"] >= 0 for e in entries)
    assert run(folder, 3) == folder and calls[2:] == [(derive_seed(3, "toy", 2), "toy model 3/3")]  # only the new one
    first = torch.load(folder / "toy-0.pt", weights_only=True)["weights"]
    alone = seeded_init(new_model("mlp", tiny_real, options), derive_seed(3, "toy", 0), "init")
    assert torch.equal(first, torch.cat([p.detach().reshape(-1) for p in alone.parameters()]))
