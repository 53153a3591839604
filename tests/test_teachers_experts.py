"""Expert trajectories: what a folder holds, resuming, recipes, and the errors for files that do not fit."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import TINY_EXPERTS, make_tiny_real
from dsdistill.errors import CheckpointError, ConfigError
from dsdistill.teachers.experts import (MANIFEST, RECIPES, ExpertConfig, build_experts, decay_epoch, expert_recipe,
                                        gradient_penalty, load_experts, new_model, recipe, train_expert)
from dsdistill.models import create_model
from dsdistill.teachers.folder import resolved_options

FAST = ExpertConfig(batch_size=16)
WIDTH8 = {"width": 8}


def test_folder_holds_every_epoch_from_the_start(tiny_experts):
    real = make_tiny_real()
    experts = load_experts(tiny_experts, real, "convnet", WIDTH8)
    manifest = json.loads((Path(tiny_experts) / MANIFEST).read_text())
    net = create_model("convnet", 1, 4, 28, width=8)
    params = sum(p.numel() for p in net.parameters())
    assert len(experts) == TINY_EXPERTS["experts"] and experts.epochs == TINY_EXPERTS["epochs"]
    assert manifest["param_count"] == params and manifest["train_config"]["lr"] == 0.01
    assert manifest["normalization"] == {"mean": [0.5], "std": [0.25]} and manifest["zca"] is False
    for traj in experts.trajectories:
        assert traj.shape == (TINY_EXPERTS["epochs"] + 1, params) and traj.dtype == torch.float32
        steps = (traj[1:] - traj[:-1]).norm(dim=1)
        assert (steps > 0).all()  # every epoch moved the parameters
    assert not torch.equal(experts.trajectories[0][0], experts.trajectories[1][0])  # distinct random starts
    assert all(0.0 <= e["test_accuracy"] <= 1.0 for e in manifest["experts"])


def test_row_zero_is_the_init_and_the_last_row_the_trained_model():
    real = make_tiny_real()
    options = resolved_options("convnet", WIDTH8)
    model = new_model("convnet", real, options)
    init = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    traj = train_expert(model, real, FAST, seed=0, epochs=2)
    assert torch.equal(traj[0], init)
    assert torch.equal(traj[-1], torch.cat([p.detach().reshape(-1) for p in model.parameters()]))


def test_resume_keeps_finished_experts_and_trains_the_rest(tmp_path):
    real = make_tiny_real()
    kw = dict(epochs=2, model_options=WIDTH8, config=FAST)
    build_experts(real, tmp_path, experts=1, **kw)
    first = (tmp_path / "expert-000.pt").stat().st_mtime_ns
    seen = []
    build_experts(real, tmp_path, experts=2, on_expert=seen.append, **kw)
    assert [e["index"] for e in seen] == [1]  # only the missing one was trained
    assert (tmp_path / "expert-000.pt").stat().st_mtime_ns == first
    # an expert does not depend on how many were asked for
    other = tmp_path / "again"
    build_experts(real, other, experts=2, **kw)
    assert torch.equal(torch.load(other / "expert-001.pt")["trajectory"],
                       torch.load(tmp_path / "expert-001.pt")["trajectory"])
    with pytest.raises(ConfigError, match="epochs 2, not 3"):
        build_experts(real, tmp_path, experts=2, epochs=3, model_options=WIDTH8, config=FAST)


@pytest.fixture
def copy_of(tiny_experts, tmp_path):
    folder = tmp_path / "experts"
    shutil.copytree(tiny_experts, folder)
    return folder


def test_missing_truncated_and_absent_files(copy_of, tmp_path):
    real = make_tiny_real()
    with pytest.raises(CheckpointError, match="no expert folder"):
        load_experts(tmp_path / "nowhere", real, "convnet", WIDTH8)
    data = (copy_of / "expert-001.pt").read_bytes()
    (copy_of / "expert-001.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="expert-001.pt is unreadable"):
        load_experts(copy_of, real, "convnet", WIDTH8)
    (copy_of / "expert-001.pt").unlink()
    with pytest.raises(CheckpointError, match="expert-001.pt is missing"):
        load_experts(copy_of, real, "convnet", WIDTH8)
    (copy_of / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="has no experts.json"):
        load_experts(copy_of, real, "convnet", WIDTH8)


def test_mismatches_name_what_differs(tiny_experts):
    with pytest.raises(CheckpointError, match="dataset fashion-mnist, not mnist"):
        load_experts(tiny_experts, make_tiny_real(name="mnist"), "convnet", WIDTH8)
    with pytest.raises(CheckpointError, match="model option width=8, not 16"):
        load_experts(tiny_experts, make_tiny_real(), "convnet", {"width": 16})
    with pytest.raises(CheckpointError, match="are convnet networks, not convnet-bn"):
        load_experts(tiny_experts, make_tiny_real(), "convnet-bn", WIDTH8)
    other_norm = make_tiny_real()
    other_norm.mean = (0.2860,)
    with pytest.raises(CheckpointError, match=r"normalization mean=\[0.5\], not \[0.286\]"):
        load_experts(tiny_experts, other_norm, "convnet", WIDTH8)
    with pytest.raises(CheckpointError, match="model option norm=instance, not batch"):
        load_experts(tiny_experts, make_tiny_real(), "convnet", {"width": 8, "norm": "batch"})


def test_window_beyond_the_stored_epochs_gives_the_valid_range(tiny_experts):
    experts = load_experts(tiny_experts, make_tiny_real(), "convnet", WIDTH8)
    experts.check_window(max_start_epoch=3, expert_epochs=2)  # starts 0..2, targets up to epoch 4
    with pytest.raises(ConfigError, match="max_start_epoch in 1..3"):
        experts.check_window(max_start_epoch=4, expert_epochs=2)
    with pytest.raises(ConfigError, match="expert_epochs in 1..4"):
        experts.check_window(max_start_epoch=1, expert_epochs=5)


def test_recipes_are_the_documented_settings():
    mtt, ast = RECIPES["mtt"], RECIPES["ast"]
    assert (mtt.lr, mtt.momentum, mtt.weight_decay, mtt.batch_size, mtt.decay_factor, mtt.gp_weight, mtt.dsa) == \
        (0.01, 0.0, 0.0, 256, 1.0, 0.0, True)
    assert (ast.lr, ast.momentum, ast.weight_decay, ast.decay_factor, ast.gp_weight) == (0.003, 0.9, 1e-3, 0.6, 2.0)
    assert ast.loss_scales == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    assert decay_epoch(50) == 26
    # the decay starts a fresh optimiser (AST's buffer.py re-creates its SGD there): momentum restarts at epoch 27
    schedule = expert_recipe(ast, 50).schedule
    assert schedule.resets(27) and not schedule.resets(26) and schedule.lr(1.0, 27, 50) == 0.6
    assert recipe("ast", lr=0.01).lr == 0.01
    with pytest.raises(ConfigError, match="valid: mtt, ast"):
        recipe("ftd")


def test_gradient_penalty_is_the_per_pixel_formula():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    x = torch.randn(3, 2, 4, 4)
    xr = x.clone().requires_grad_(True)
    u = torch.autograd.grad(model(xr).sum(), xr)[0]
    expected = ((u.pow(2).sum(1).sqrt() - 1) ** 2).mean()
    assert torch.allclose(gradient_penalty(model, x), expected)


def test_ast_recipe_trains_and_differs_from_mtt():
    real = make_tiny_real()
    options = resolved_options("convnet", WIDTH8)
    trajs = []
    for name in ("mtt", "ast"):
        model = new_model("convnet", real, options)
        torch.manual_seed(0)
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.1)
        trajs.append(train_expert(model, real, recipe(name, batch_size=16), seed=0, epochs=2))
    assert torch.equal(trajs[0][0], trajs[1][0]) and not torch.allclose(trajs[0][-1], trajs[1][-1])
    assert torch.isfinite(trajs[1]).all()


def test_experts_command_trains_resumes_and_feeds_mtt(fake_fmnist_root, tmp_path, capsys):
    from dsdistill.cli import main
    out = tmp_path / "experts"
    argv = ["experts", "--experts", "1", "--epochs", "3", "--out", str(out), "--set", "width=8",
            "--train", "batch_size=32", "--data-root", fake_fmnist_root, "--device", "cpu"]
    assert main(argv) == 0
    stdout, _ = capsys.readouterr()
    assert "wrote" in stdout and "MiB on disk" in stdout and "expert 0: test accuracy" in stdout
    assert main(argv) == 0  # everything finished: nothing trained again
    _, stderr = capsys.readouterr()
    assert "trained" not in stderr
    synset = tmp_path / "mtt.h5"
    assert main(["distill", "--method", "mtt", "--ipc", "1", "--iterations", "2", "--out", str(synset),
                 "--set", f"experts={out}", "--set", "syn_steps=2", "--set", "max_start_epoch=1",
                 "--data-root", fake_fmnist_root, "--device", "cpu"]) == 0
    assert _set_lr(synset) > 0
    assert main(["distill", "--method", "mtt", "--ipc", "1", "--iterations", "2", "--out", str(synset),
                 "--set", f"experts={out}", "--set", "max_start_epoch=3",
                 "--data-root", fake_fmnist_root, "--device", "cpu"]) == 2
    _, err = capsys.readouterr()
    assert "max_start_epoch in 1..2" in err and err.count("\n") == 1


def _set_lr(path):
    from dsdistill.synset import SyntheticSet
    return SyntheticSet.load(path).lr


@pytest.mark.parametrize("extra,message", [
    (["--train", "lr=-1"], "lr > 0"),
    (["--train", "bogus=1"], "unknown option 'bogus'"),
    (["--experts", "0"], "--experts >= 1"),
])
def test_experts_command_mistakes_are_one_line_and_exit_2(extra, message, fake_fmnist_root, tmp_path, capsys):
    from dsdistill.cli import main
    code = main(["experts", "--out", str(tmp_path / "e"), "--data-root", fake_fmnist_root, "--device", "cpu", *extra])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and err.startswith("dsdistill: error:") and message in err
