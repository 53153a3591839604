"""The real-data trainer (dsdistill.train.real) and the NCFM model pool (dsdistill.teachers.pool): build, resume, load,
interpolate, every load error, and the `dsdistill pool` command. Tiny models (width 8), one epoch."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch

import dsdistill.teachers.pool as pool_module
from dsdistill._seed import seeded_init
from dsdistill.cli import main
from dsdistill.data import ZCA, Split, load_dataset
from dsdistill.errors import CheckpointError, ConfigError, DsdistillError
from dsdistill.models import create_model
from dsdistill.teachers.pool import MANIFEST, Pool, build_pool, load_pool, read_manifest
from dsdistill.train.real import RealTrainConfig, milestone_epochs, test_accuracy, train_on_real

from conftest import make_tiny_real

TINY = {"width": 8}


def build(real, out, models=2, **kw):
    return build_pool(real, out, models=models, epochs=1, model_options=TINY, **kw)


@pytest.fixture
def built(tiny_real, tmp_path):
    return build(tiny_real, tmp_path / "pool")


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- trainer
def test_defaults_follow_ncfm_pretrain_script():
    c = RealTrainConfig()
    assert (c.lr, c.momentum, c.weight_decay, c.batch_size, c.gamma, c.cutmix_prob) == (0.01, 0.9, 5e-4, 128, 0.2, 0.5)
    assert c.dsa and c.dsa_strategy == "color_crop"
    assert milestone_epochs(c, 60) == [40, 50] and milestone_epochs(c, 6) == [4, 5]
    assert milestone_epochs(c, 2) == [1, 1] and milestone_epochs(c, 1) == []  # no decay before the first step


def test_training_changes_weights_is_deterministic_and_never_draws_from_the_global_rng(tiny_real):
    def trained(seed):
        model = seeded_init(create_model("convnet", 1, 4, 28, **TINY), seed, "init")
        before = {k: v.clone() for k, v in model.state_dict().items()}
        epochs = []
        rng = torch.get_rng_state()
        losses = train_on_real(model, tiny_real.train, RealTrainConfig(batch_size=16), seed, 2,
                               on_epoch=lambda e, m: epochs.append(e))
        assert torch.equal(rng, torch.get_rng_state())  # every draw came from seeded generators
        assert epochs == [0, 1] and len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
        assert not same_state(before, model.state_dict())
        return model.state_dict()

    assert same_state(trained(0), trained(0))
    assert not same_state(trained(0), trained(1))


def test_test_accuracy_counts_eval_mode_predictions_and_restores_the_mode(tiny_real):
    """Labels set to the model's own eval-mode predictions score 1, shifted by one class 0, in uneven batches; a
    BatchNorm model predicts otherwise in train mode, so forgetting eval() would not give 1."""
    model = seeded_init(create_model("convnet-bn", 1, 4, 28, width=8), 0, "init")
    images = tiny_real.test.images
    model.eval()
    with torch.no_grad():
        predicted = model(images).argmax(-1)
    model.train()
    for labels, expected in ((predicted, 1.0), ((predicted + 1) % 4, 0.0), (torch.where(
            torch.arange(len(images)) % 2 == 0, predicted, (predicted + 1) % 4), 0.5)):
        split = Split.from_tensors(images, labels, 4)
        assert test_accuracy(model, split, batch=7) == expected and model.training


# ---------------------------------------------------------------- build / load / interpolate
def test_build_then_load_round_trip(built, tiny_real):
    manifest = json.loads((built / MANIFEST).read_text())
    assert manifest["format"] == "dsdistill-pool" and manifest["version"] == 1
    assert manifest["dataset"] == "fashion-mnist" and manifest["zca"] is False and manifest["arch"] == "convnet"
    assert manifest["model_options"]["width"] == 8 and manifest["model_options"]["norm"] == "instance"
    assert manifest["train_config"]["lr"] == 0.01 and manifest["epochs"] == 1 and manifest["seed"] == 0
    assert [m["file"] for m in manifest["models"]] == ["model-000.pt", "model-001.pt"]
    pool = load_pool(built, tiny_real, "convnet", {"width": 8})
    assert isinstance(pool, Pool) and len(pool) == 2
    assert pool.accuracies == [m["test_accuracy"] for m in manifest["models"]]
    model = create_model("convnet", 1, 4, 28, **TINY)
    model.load_state_dict(pool.trained_state(1))
    assert test_accuracy(model, tiny_real.test) == pytest.approx(pool.accuracies[1])
    assert not same_state(pool.inits[0], pool.trained[0])   # training moved the weights
    assert not same_state(pool.inits[0], pool.inits[1])     # every member has its own init
    assert all(v.device.type == "cpu" for v in pool.trained[0].values())


def test_interpolation_endpoints_and_midpoint(built, tiny_real):
    pool = load_pool(built, tiny_real, "convnet", TINY)
    assert same_state(pool.interpolated(0, 1.0), pool.inits[0])
    assert same_state(pool.interpolated(0, 0.0), pool.trained[0])
    mid = pool.interpolated(0, 0.5)
    for k, v in mid.items():
        assert torch.allclose(v, (pool.inits[0][k] + pool.trained[0][k]) / 2)
    with pytest.raises(ConfigError, match="has 2 models"):
        pool.interpolated(2, 0.5)


def test_interpolation_keeps_integer_buffers_from_the_trained_model():
    init = {"w": torch.zeros(3), "steps": torch.tensor(0)}
    trained = {"w": torch.ones(3), "steps": torch.tensor(7)}
    pool = Pool(path=Path("."), dataset="d", zca=False, arch="convnet-bn", model_options={}, epochs=1, seed=0,
                train_config={}, created_utc="", dsdistill_version="", command="", models=[{}], inits=[init],
                trained=[trained])
    out = pool.interpolated(0, 0.25)
    assert torch.allclose(out["w"], torch.full((3,), 0.75)) and int(out["steps"]) == 7


def test_same_seed_same_pool(tiny_real, tmp_path):
    a, b = build(tiny_real, tmp_path / "a", models=1), build(tiny_real, tmp_path / "b", models=1)
    pa, pb = load_pool(a, tiny_real, "convnet", TINY), load_pool(b, tiny_real, "convnet", TINY)
    assert same_state(pa.trained[0], pb.trained[0]) and same_state(pa.inits[0], pb.inits[0])


def test_resume_trains_only_the_missing_models(built, tiny_real, monkeypatch):
    files = [built / "model-000.pt", built / "model-001.pt"]
    stamps = [(f.stat().st_mtime_ns, f.read_bytes()) for f in files]
    calls = []
    real_train = pool_module.train_on_real
    monkeypatch.setattr(pool_module, "train_on_real", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    build(tiny_real, built, models=3)
    assert len(calls) == 1
    assert [(f.stat().st_mtime_ns, f.read_bytes()) for f in files] == stamps
    assert [m["index"] for m in read_manifest(built)["models"]] == [0, 1, 2]
    build(tiny_real, built, models=3)
    assert len(calls) == 1


def test_resume_matches_an_uninterrupted_build(built, tiny_real, tmp_path):
    build(tiny_real, built, models=3)
    whole = build(tiny_real, tmp_path / "whole", models=3)
    a, b = load_pool(built, tiny_real, "convnet", TINY), load_pool(whole, tiny_real, "convnet", TINY)
    assert all(same_state(x, y) for x, y in zip(a.trained, b.trained))


@pytest.mark.parametrize("change", [{"epochs": 2}, {"seed": 1}, {"model_options": {"width": 16}},
                                    {"config": RealTrainConfig(lr=0.1)}])
def test_another_identity_in_the_same_folder_is_refused(built, tiny_real, change):
    kw = {"models": 2, "epochs": 1, "model_options": TINY, **change}
    with pytest.raises(ConfigError, match="another --out") as err:
        build_pool(tiny_real, built, **kw)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- load errors
def _break_missing_dir(folder):
    return folder.parent / "nowhere"


def _break_missing_manifest(folder):
    (folder / MANIFEST).unlink()
    return folder


def _break_corrupt_manifest(folder):
    (folder / MANIFEST).write_text('{"format": "dsdistill-pool", "vers')
    return folder


def _break_foreign_manifest(folder):
    (folder / MANIFEST).write_text('{"format": "something-else"}')
    return folder


def _break_missing_model(folder):
    (folder / "model-001.pt").unlink()
    return folder


def _break_unreadable_model(folder):
    (folder / "model-001.pt").write_bytes(b"not a torch file")
    return folder


@pytest.mark.parametrize("damage,message", [
    (_break_missing_dir, "no pool folder"),
    (_break_missing_manifest, "has no pool.json"),
    (_break_corrupt_manifest, "is damaged"),
    (_break_foreign_manifest, "not a dsdistill pool"),
    (_break_missing_model, "model-001.pt is missing"),
    (_break_unreadable_model, "model-001.pt is unreadable"),
])
def test_damaged_pools_are_refused_with_the_build_command(built, tiny_real, damage, message):
    with pytest.raises(CheckpointError) as err:
        load_pool(damage(built), tiny_real, "convnet", TINY)
    text = str(err.value)
    assert message in text and "dsdistill pool" in text and "\n" not in text


@pytest.mark.parametrize("real_kw,arch,options,message", [
    ({"name": "mnist"}, "convnet", TINY, "dataset fashion-mnist, not mnist"),
    ({}, "mlp", {}, "arch convnet, not mlp; build"),     # the options of another arch are not listed
    ({}, "convnet", {"width": 16}, "model option width=8, not 16"),
    ({}, "convnet", {"width": 8, "depth": 2}, "model option depth=3, not 2"),
    ({"zca": True}, "convnet", TINY, "without ZCA, not with ZCA"),
])
def test_a_pool_for_something_else_is_refused(built, real_kw, arch, options, message):
    zca = real_kw.pop("zca", False)
    real = make_tiny_real(**real_kw)
    if zca:
        real = dataclasses.replace(real, zca=ZCA())
    with pytest.raises(CheckpointError) as err:
        load_pool(built, real, arch, options)
    text = str(err.value)
    assert message in text and "dsdistill pool" in text and "\n" not in text
    assert f"--dataset {real.name}" in text


def test_a_pool_that_does_not_fit_the_image_shape_is_refused(built):
    with pytest.raises(CheckpointError, match="does not fit .*dsdistill pool"):
        load_pool(built, make_tiny_real(num_classes=5), "convnet", TINY)


# ---------------------------------------------------------------- command line
def test_pool_command_builds_a_loadable_pool(fake_fmnist_root, tmp_path, capsys):
    out = tmp_path / "pool"
    argv = ["pool", "--dataset", "fashion-mnist", "--models", "2", "--epochs", "1", "--out", str(out),
            "--set", "width=8", "--data-root", fake_fmnist_root, "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    stdout, stderr = capsys.readouterr()
    assert "model 1: test accuracy" in stdout and "MiB on disk" in stdout and "trained model-001.pt" in stderr
    real = load_dataset("fashion-mnist", fake_fmnist_root)
    pool = load_pool(out, real, "convnet", {"width": 8})
    assert len(pool) == 2 and pool.command.startswith("dsdistill pool --dataset fashion-mnist")
    assert main(argv) == 0  # rerun: everything finished, nothing trained
    stdout, stderr = capsys.readouterr()
    assert "model 1: test accuracy" in stdout and "trained" not in stderr


@pytest.mark.parametrize("extra,message", [
    (["--set", "bogus=1"], "unknown option 'bogus'"),
    (["--set", "width=wide"], "expected int"),
    (["--models", "0"], "--models >= 1"),
    (["--arch", "nope"], "unknown model 'nope'"),
])
def test_pool_command_mistakes_are_one_line_and_exit_2(extra, message, fake_fmnist_root, tmp_path, capsys):
    code = main(["pool", "--out", str(tmp_path / "p"), "--data-root", fake_fmnist_root, "--device", "cpu", *extra])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and err.startswith("dsdistill: error:") and message in err


def test_an_existing_pool_of_another_identity_exits_2(fake_fmnist_root, tmp_path, capsys):
    base = ["pool", "--models", "1", "--epochs", "1", "--out", str(tmp_path / "p"), "--set", "width=8",
            "--data-root", fake_fmnist_root, "--device", "cpu"]
    assert main(base) == 0
    capsys.readouterr()
    assert main([*base, "--seed", "3"]) == 2
    _, err = capsys.readouterr()
    assert "already holds a pool with seed 0, not 3" in err and "another --out" in err and err.count("\n") == 1


def test_errors_are_dsdistill_errors():
    assert issubclass(CheckpointError, DsdistillError) and issubclass(ConfigError, DsdistillError)
