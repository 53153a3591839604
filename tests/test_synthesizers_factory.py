"""The one factory: spec + overrides -> (method, budget), and the one budget rule the CLI, the suites, the
benchmarks and fit() share."""
from pathlib import Path

import pytest

from dsdistill.cli import main
from dsdistill.errors import ConfigError, UnknownNameError
from dsdistill.synset import SyntheticSet
from dsdistill.synthesizers import DEFAULT_BUDGET, Budget, build, choose_budget, resolve_method
from dsdistill.synthesizers import budget as budget_module
from dsdistill.synthesizers.cvdd import CVDD
from dsdistill.synthesizers.dm import DM
from dsdistill.synthesizers.factory import build_for, checkpoint_for, method_specs


def test_the_budget_rule_explicit_then_preset_then_own_schedule_then_default():
    assert build("dm.fmnist-cpu", iterations=5).budget == Budget(iterations=5)
    assert build("dm.fmnist-cpu", minutes=2.0).budget == Budget(minutes=2.0)
    preset = build("dm.fmnist-cpu")
    assert (preset.budget, preset.source, preset.method.preset_iterations) == (Budget(iterations=400), "preset", 400)
    assert build("cvdd").budget is None and build("cvdd").source == "the method's own schedule"
    assert build("dm").budget == DEFAULT_BUDGET and build("dm").source == "the default"
    assert build("random").budget is None
    assert choose_budget(DM, None, None) == (DEFAULT_BUDGET, "the default")
    assert choose_budget(CVDD, None, None) == (None, "the method's own schedule")
    assert [b.describe() for b in (build("dm.fmnist-cpu"), build("dm", iterations=3, minutes=1.5), build("cvdd"))] == \
        ["budget: 400 iterations (preset)", "budget: 3 iterations or 1.5 minutes (given)",
         "budget: the method's own schedule"]


def test_overrides_come_after_the_preset_and_are_checked_against_the_config():
    method = build("datadam.official", ["lr_img=0.5"], flip=True).method
    assert (method.config.power, method.config.lr_img, method.config.flip) == (1.0, 0.5, True)
    assert build("dm", {"batch_real": 7}).method.config.batch_real == 7
    with pytest.raises(ConfigError, match="unknown option 'lr_imgg'.*valid: .*lr_img"):
        build("dm", ["lr_imgg=1"])
    with pytest.raises(ConfigError, match=r"unknown option\(s\) lr_imgg .*valid: .*lr_img"):
        build("dm", {"lr_imgg": 1})
    with pytest.raises(UnknownNameError, match="datadam.paper"):
        build("datadam.bogus")


def test_a_selection_without_options_says_so_and_takes_no_budget():
    with pytest.raises(ConfigError, match="^random has no options; drop features$"):
        build("random", ["features=random"])
    with pytest.raises(ConfigError, match="^whole has no options"):
        build("whole", {"seed": 1})
    with pytest.raises(ConfigError, match="takes no budget"):
        build("herding", iterations=3)
    with pytest.raises(ConfigError, match="flip applies to synthesizers only"):
        build("herding", flip=True)
    with pytest.raises(ConfigError, match="flip applies to synthesizers only"):
        build("k-center", ["flip=true"])


def test_the_cli_takes_the_apis_default_budget_and_says_so(fake_fmnist_root, tmp_path, capsys, monkeypatch):
    """The CLI's default is DEFAULT_BUDGET itself (shrunk here to 2 iterations to keep the test short)."""
    assert DEFAULT_BUDGET == Budget(iterations=100)
    monkeypatch.setattr(budget_module, "DEFAULT_BUDGET", Budget(iterations=2))
    out = tmp_path / "dm.h5"
    argv = ["distill", "--method", "dm", "--ipc", "1", "--out", str(out), "--data-root", fake_fmnist_root,
            "--device", "cpu", "--quiet", "--set", "width=8", "--set", "batch_real=2"]
    assert main(argv) == 0
    assert "budget: 2 iterations (the default)" in capsys.readouterr().err
    assert SyntheticSet.load(out).distill_iterations == 2
    assert main([*argv, "--iterations", "1"]) == 0
    assert "budget:" not in capsys.readouterr().err      # a budget given is not repeated
    assert SyntheticSet.load(out).distill_iterations == 1


@pytest.mark.parametrize("argv,message", [
    (["select", "--method", "whole"], "'whole' is the whole training set; use `dsdistill evaluate --whole`"),
    (["select", "--method", "dm.fmnist-cpu"], "'dm.fmnist-cpu' is a synthesizer; use `dsdistill distill"),
    (["select", "--method", "random", "--set", "features=random"], "random has no options; drop features"),
])
def test_the_cli_sends_each_kind_of_method_to_its_command(argv, message, tmp_path, capsys):
    assert main([*argv, "--ipc", "1", "--out", str(tmp_path / "x.h5")]) == 2
    assert message in capsys.readouterr().err


def test_build_for_names_the_command_of_another_kind_and_refuses_coupled_classes_under_torchrun(monkeypatch):
    """The decisions cli.py used to make before the factory: which command makes a method's set, and (before any
    rank reads data) that a method whose objective couples its classes cannot split under torchrun."""
    assert build_for("selection", "herding").method.name == "herding"
    with pytest.raises(ConfigError, match=r"'dm' is a synthesizer; use `dsdistill distill --method dm`"):
        build_for("selection", "dm")
    with pytest.raises(ConfigError, match=r"'random' is a selection method; use `dsdistill select --method random`"):
        build_for("synthesis", "random")
    with pytest.raises(ConfigError, match="the whole training set; use `dsdistill evaluate --whole`"):
        build_for("synthesis", "whole")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert build_for("synthesis", "dm", iterations=1).method.class_separable
    monkeypatch.setattr(DM, "class_separable", False)
    with pytest.raises(ConfigError, match="dm is not class-separable"):
        build_for("synthesis", "dm", iterations=1)
    monkeypatch.setenv("WORLD_SIZE", "1")   # one process: nothing to split
    assert build_for("synthesis", "dm", iterations=1).budget == Budget(iterations=1)


def test_method_specs_and_the_checkpoint_beside_the_set():
    synthesis, selection = method_specs("synthesis"), method_specs("selection")
    assert {"random", "herding", "k-center"} <= set(selection) and not any("." in s for s in selection)
    assert "dm" in synthesis and "datadam.official" in synthesis and "random" not in synthesis
    assert all(resolve_method(s)[0].kind == "synthesis" for s in synthesis)
    assert checkpoint_for("out/a.h5") == Path("out/a.h5.ckpt")
    assert checkpoint_for("out/a.h5", "elsewhere.ckpt") == Path("elsewhere.ckpt")
