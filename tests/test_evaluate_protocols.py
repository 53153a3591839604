"""Sized evaluation (issue 22): Protocol.derive, --epochs/--models on evaluate and compare, the comparability mark
in every table and JSON, compare --arch/--path, the protocols listing, the accuracy unit, evaluate_tensors."""
from __future__ import annotations

import json

import pytest
import torch

import dsdistill
from dsdistill.cli import main
from dsdistill.errors import ConfigError
from dsdistill.evaluate import PROTOCOLS, evaluate, evaluate_tensors, get_protocol
from dsdistill.evaluate.protocols import protocols_table, sized_protocol
from dsdistill.evaluate.report import compare_table
from dsdistill.synset import SyntheticSet
from dsdistill.synthesizers import create_synthesizer

DC = get_protocol("dc")
SMOKE = get_protocol("smoke")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_derive_names_the_change_and_has_its_own_hash():
    sized = DC.derive(epochs=300, models=3)
    assert sized.name == "dc[epochs=300,models=3]" and sized.hash != DC.hash
    assert sized.derived_from == ("dc", DC.hash) and sized.seeds == (0, 1, 2) and sized.epochs == 300
    assert sized.decay_epoch() == 150 and sized.lr_decay_at == DC.lr_decay_at  # the decay keeps its fraction
    assert "not comparable with dc" in sized.description
    assert DC.derive(models=3).hash != sized.hash != DC.derive(epochs=300).hash
    assert DC.derive(epochs=300, models=3).hash == sized.hash  # deterministic
    # every other field is the parent's
    same = {k: v for k, v in sized.identity().items() if k not in ("name", "epochs", "seeds")}
    assert same == {k: v for k, v in DC.identity().items() if k not in ("name", "epochs", "seeds")}


def test_derive_extends_the_seeds_and_resizes_from_the_root():
    assert DC.derive(models=7).seeds == (0, 1, 2, 3, 4, 5, 6)    # the parent's first, then the next integers
    assert SMOKE.derive(models=3).seeds == (0, 1, 2)
    twice = DC.derive(epochs=300).derive(models=2)
    assert twice.name == "dc[epochs=300,models=2]" and twice.derived_from == ("dc", DC.hash)
    assert twice.hash == DC.derive(epochs=300, models=2).hash
    assert DC.derive(epochs=1000, models=5) is DC     # no change is the parent itself


@pytest.mark.parametrize("changes,message", [
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"models": -1}, "models must be an integer >= 1"),
    ({"epochs": 2.5}, "epochs must be an integer >= 1"),
    ({"models": True}, "models must be an integer >= 1"),
    ({"lr": 0.1}, "cannot derive lr; derivable: epochs, models"),
])
def test_derive_refuses_bad_changes(changes, message):
    with pytest.raises(ConfigError, match=message):
        DC.derive(**changes)


def test_registered_protocol_hashes_are_unchanged():
    """derived_from is not identity: every stored record keeps its protocol hash."""
    assert DC.hash == "7c23d97b142723d8" and SMOKE.hash == "ac0441b8ed07f54c"


def test_sized_protocol_is_the_parent_without_sizes():
    assert sized_protocol("dc") is DC and sized_protocol("dc", epochs=3).name == "dc[epochs=3]"


def test_derived_report_is_marked_in_table_and_json(tiny_real, tmp_path):
    synset = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    proto = SMOKE.derive(epochs=1, models=2)
    report = evaluate(synset, proto, data=tiny_real, device="cpu")
    assert report.protocol == "smoke[epochs=1,models=2]" and report.protocol_hash == proto.hash
    assert report.derived_from == {"name": "smoke", "hash": SMOKE.hash}
    lines = report.table().splitlines()
    assert lines[1] == f"smoke[epochs=1,models=2] is derived from smoke #{SMOKE.hash}: not comparable with smoke"
    report.save_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["derived_from"] == {"name": "smoke", "hash": SMOKE.hash} and data["accuracy_unit"] == "fraction"
    assert all(0 <= a <= 1 for a in data["results"][0]["accuracies"]) and len(data["results"][0]["accuracies"]) == 2
    table = compare_table(proto, ["a.h5"], [report]).splitlines()
    assert "not comparable with smoke" in table[1]
    plain = evaluate(synset, SMOKE, data=tiny_real, device="cpu")
    assert plain.derived_from is None and "not comparable" not in plain.table()
    assert "not comparable" not in compare_table(SMOKE, ["a.h5"], [plain])


@pytest.fixture
def random_set(fake_fmnist_root, tmp_path, capsys):
    path = tmp_path / "r.h5"
    assert run(capsys, "select", "--method", "random", "--ipc", "1", "--out", str(path), "--data-root",
               fake_fmnist_root, "--device", "cpu")[0] == 0
    return path


def test_evaluate_epochs_models_from_the_command_line(random_set, fake_fmnist_root, tmp_path, capsys):
    out = tmp_path / "r.json"
    code, stdout, _ = run(capsys, "evaluate", str(random_set), "--protocol", "smoke", "--epochs", "1", "--models",
                          "2", "--json", str(out), "--data-root", fake_fmnist_root, "--device", "cpu")
    assert code == 0 and "protocol smoke[epochs=1,models=2]" in stdout and "not comparable with smoke" in stdout
    data = json.loads(out.read_text())
    assert data["protocol_hash"] == SMOKE.derive(epochs=1, models=2).hash and data["derived_from"]["name"] == "smoke"
    code, _, err = run(capsys, "evaluate", str(random_set), "--protocol", "smoke", "--epochs", "0")
    assert code == 2 and "epochs must be an integer >= 1" in err


def test_compare_takes_sizes_arch_and_path(random_set, fake_fmnist_root, tmp_path, capsys):
    out = tmp_path / "c.json"
    code, stdout, _ = run(capsys, "compare", str(random_set), str(random_set), "--protocol", "smoke", "--models", "2",
                          "--arch", "mlp", "--path", "loop", "--json", str(out), "--data-root", fake_fmnist_root,
                          "--device", "cpu")
    assert code == 0 and "smoke[models=2]" in stdout and "not comparable with smoke" in stdout
    reports = json.loads(out.read_text())
    assert [r["results"][0]["arch"] for r in reports] == ["mlp", "mlp"]
    assert all(r["results"][0]["path"] == "loop" and len(r["results"][0]["accuracies"]) == 2 for r in reports)
    assert all(r["accuracy_unit"] == "fraction" and r["derived_from"]["hash"] == SMOKE.hash for r in reports)
    code, stdout, _ = run(capsys, "compare", str(random_set), "--protocol", "smoke", "--arch", "convnet,mlp",
                          "--data-root", fake_fmnist_root, "--device", "cpu")
    rows = stdout.splitlines()[2:]
    assert code == 0 and len(rows) == 2 and rows[0].split()[4] == "convnet" and rows[1].split()[4] == "mlp"
    code, _, err = run(capsys, "compare", str(random_set), "--protocol", "smoke", "--path", "vmap", "--arch",
                       "resnet18-bn", "--data-root", fake_fmnist_root, "--device", "cpu")
    assert code == 2 and "batch norm" in err   # --path reaches the evaluator


def test_protocols_lists_a_readable_table(capsys):
    code, out, _ = run(capsys, "protocols")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["protocol", "v", "hash", "epochs", "models", "labels", "arch"]
    assert out == protocols_table() + "\n" and max(len(line) for line in lines[:-1]) <= 104
    for name, proto in PROTOCOLS.items():
        row = next(line for line in lines if line.startswith(name + " "))
        assert row.split()[2] == proto.hash and row.split()[3] == str(proto.epochs)
        assert proto.description.split()[0] in out


def test_evaluate_tensors_equals_the_same_set_from_a_file(tiny_real, tmp_path):
    synset = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    path = tmp_path / "s.h5"
    synset.save(path)
    from_file = evaluate(SyntheticSet.load(path), SMOKE, data=tiny_real, device="cpu")
    direct = evaluate_tensors(synset.images.clone(), synset.labels.clone(), "smoke", dataset="fashion-mnist",
                              data=tiny_real, device="cpu")
    assert direct.results[0].accuracies == from_file.results[0].accuracies
    assert direct.set_sha256 == from_file.set_sha256 and direct.method == "imported"
    # class-major labels by default, numpy arrays accepted
    default = evaluate_tensors(synset.images.numpy(), None, "smoke", dataset="fashion-mnist", data=tiny_real,
                               device="cpu")
    assert default.set_sha256 == from_file.set_sha256
    assert dsdistill.evaluate_tensors is evaluate_tensors and "evaluate_tensors" in dsdistill.__all__
    assert dsdistill.get_protocol("dc").derive(models=3).name == "dc[models=3]"
