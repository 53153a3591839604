"""The command line: every command end to end on fake Fashion-MNIST files, and bad input -> one line, exit 2."""
import argparse
import json
import subprocess
import sys

import h5py
import pytest

from dsdistill.cli import COMMANDS, build_parser, main
from dsdistill.data import load_dataset
from dsdistill.synthesizers import Budget, create_synthesizer


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def random_set(fake_fmnist_root, tmp_path, capsys):
    path = tmp_path / "r.h5"
    code, out, _ = run(capsys, "select", "--method", "random", "--ipc", "2", "--seed", "0", "--out", str(path),
                       "--data-root", fake_fmnist_root, "--device", "cpu")
    assert code == 0 and "wrote" in out
    return path


def test_select_info_show_evaluate(random_set, fake_fmnist_root, tmp_path, capsys):
    code, out, _ = run(capsys, "info", str(random_set))
    assert code == 0 and "fashion-mnist" in out and "payload sha256" in out and "dsdistill select" in out
    png = tmp_path / "grid.png"
    assert run(capsys, "show", str(random_set), "--out", str(png))[0] == 0 and png.stat().st_size > 0
    report = tmp_path / "r.json"
    code, out, _ = run(capsys, "evaluate", str(random_set), "--protocol", "smoke", "--json", str(report),
                       "--data-root", fake_fmnist_root, "--device", "cpu")
    assert code == 0 and "protocol smoke" in out
    data = json.loads(report.read_text())
    assert data["protocol"] == "smoke" and len(data["results"][0]["accuracies"]) == 1
    assert data["command"].startswith(f"dsdistill evaluate {random_set} --protocol smoke")


def test_distill_and_resume(fake_fmnist_root, tmp_path, capsys):
    out = tmp_path / "dm.h5"
    base = ["distill", "--method", "dm", "--ipc", "2", "--out", str(out), "--data-root", fake_fmnist_root,
            "--device", "cpu", "--set", "width=8", "--set", "batch_real=4"]
    code, stdout, _ = run(capsys, *base, "--iterations", "2", "--flip")
    # a finished run removes its checkpoint once the set is written (issue 22)
    assert code == 0 and "2 iterations" in stdout and out.exists() and not (tmp_path / "dm.h5.ckpt").exists()
    # an unfinished run (its checkpoint kept, as after Ctrl-C) resumes from the command line
    create_synthesizer("dm", width=8, batch_real=4, flip=True).fit(
        load_dataset("fashion-mnist", fake_fmnist_root), 2, seed=0, budget=Budget(iterations=2),
        checkpoint=tmp_path / "dm.h5.ckpt")
    code, stdout, _ = run(capsys, *base, "--iterations", "3", "--flip", "--resume")
    assert code == 0 and "3 iterations" in stdout and not (tmp_path / "dm.h5.ckpt").exists()
    with h5py.File(out) as f:
        assert json.loads(f.attrs["method_config"])["flip"] is True


def test_distill_writes_snapshots_at_the_minutes_asked(fake_fmnist_root, tmp_path, capsys):
    """--snapshot-minutes: the set as it stood at each time, in its own file with its own seconds and iterations;
    a time the run never reaches writes nothing."""
    from dsdistill.synset import SyntheticSet
    out = tmp_path / "dm.h5"
    code, _, err = run(capsys, "distill", "--method", "dm", "--ipc", "1", "--out", str(out), "--data-root",
                       fake_fmnist_root, "--device", "cpu", "--set", "width=8", "--set", "batch_real=4",
                       "--iterations", "3", "--snapshot-minutes", "0.000001,600")
    assert code == 0 and out.exists() and "snapshot" in err
    snap = SyntheticSet.load(tmp_path / "dm-snap1e-06min.h5")
    assert snap.extra["snapshot_minutes"] == 1e-6 and snap.distill_iterations == 1
    assert snap.extra["command"].startswith("dsdistill distill --method dm") and snap.distill_seconds > 0
    assert not (tmp_path / "dm-snap600min.h5").exists()
    code, _, err = run(capsys, "distill", "--method", "dm", "--ipc", "1", "--out", str(out), "--iterations", "1",
                       "--snapshot-minutes", "20,5")
    assert code == 2 and "increasing" in err


def test_whole_dataset_score_is_cached(fake_fmnist_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DSDISTILL_CACHE", str(tmp_path / "cache"))
    argv = ["evaluate", "--whole", "--dataset", "fashion-mnist", "--protocol", "smoke",
            "--data-root", fake_fmnist_root, "--device", "cpu"]
    code, first, _ = run(capsys, *argv)
    assert code == 0 and "whole" in first
    code, second, _ = run(capsys, *argv, "--json", str(tmp_path / "whole.json"))
    assert code == 0 and "(cached:" in second and f"wrote {tmp_path / 'whole.json'}" in second
    saved = json.loads((tmp_path / "whole.json").read_text())  # a cached score is written too, with its command
    assert saved["method"] == "whole" and saved["command"].startswith("dsdistill evaluate --whole")
    assert list((tmp_path / "cache" / "partial").glob("*")) == []  # the resume log goes with a complete report


@pytest.mark.parametrize("argv,message", [
    (["select", "--method", "nope", "--ipc", "1", "--out", "x.h5"], "unknown method 'nope'"),
    (["select", "--method", "random", "--ipc", "99", "--out", "x.h5"], "larger than class"),
    (["select", "--method", "herding", "--ipc", "1", "--out", "x.h5", "--set", "bogus=1"], "unknown option 'bogus'"),
    (["distill", "--method", "dm", "--ipc", "1", "--out", "x.h5", "--set", "lr_imgg=1"], "valid: arch, batch_real"),
    (["distill", "--method", "random", "--ipc", "1", "--out", "x.h5"], "is a selection method"),
    (["select", "--method", "random", "--ipc", "1", "--out", "x.h5", "--dataset", "bogus"], "unknown dataset"),
    (["evaluate", "missing.h5"], "missing.h5"),
    (["evaluate", "--protocol", "nope", "missing.h5"], "unknown protocol 'nope'"),
    (["info", "missing.h5"], "missing.h5"),
    (["show", "missing.h5", "--out", "g.png"], "missing.h5"),
])
def test_user_mistakes_are_one_line_and_exit_2(argv, message, fake_fmnist_root, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = ["--data-root", fake_fmnist_root] if argv[0] in ("select", "distill") else []
    code, _, err = run(capsys, *argv, *extra)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("dsdistill: error:") and message in err


def test_damaged_set_file_is_refused_by_every_command(random_set, tmp_path, capsys):
    with h5py.File(random_set, "r+") as f:
        f["images"][0, 0, 0, 0] = 123.0
    for argv in (["info", str(random_set)], ["show", str(random_set), "--out", str(tmp_path / "g.png")],
                 ["evaluate", str(random_set), "--protocol", "smoke"]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "sha256" in err and err.count("\n") == 1


def subparsers() -> dict:
    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_with_a_description(name, capsys):
    """In-process (argparse's --help exits 0 after printing): every registered command, cheaply."""
    description = subparsers()[name].description
    assert description, f"`dsdistill {name}` has no description"
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0 and out.startswith(f"usage: dsdistill {name}")
    assert " ".join(description.split())[:60] in " ".join(out.split())


def test_the_help_loop_covers_every_command():
    assert set(subparsers()) == set(COMMANDS) and len(COMMANDS) >= 16


def test_the_module_runs():
    proc = subprocess.run([sys.executable, "-m", "dsdistill", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "usage: dsdistill" in proc.stdout and "evaluate" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "dsdistill", "info", "/nonexistent.h5"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_compare_prints_one_table(random_set, fake_fmnist_root, tmp_path, capsys):
    other = tmp_path / "h.h5"
    assert run(capsys, "select", "--method", "k-center", "--ipc", "2", "--out", str(other), "--set", "features=random",
               "--data-root", fake_fmnist_root, "--device", "cpu")[0] == 0
    code, out, _ = run(capsys, "compare", str(random_set), str(other), "--protocol", "smoke",
                       "--data-root", fake_fmnist_root, "--device", "cpu", "--json", str(tmp_path / "c.json"))
    assert code == 0 and "protocol smoke" in out and "random" in out and "k-center" in out
    assert len(json.loads((tmp_path / "c.json").read_text())) == 2


# ---------------------------------------------------------------- issue 22's small things
def test_help_texts_say_what_they_mean(capsys):
    with pytest.raises(SystemExit):
        main(["committee", "--help"])
    out = capsys.readouterr().out
    assert "%%" not in out and "accuracy (%)" in out
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "randomly initialised" not in out and "expert trajectories for MTT" in out
    assert "checkpoint is removed once the set is written" in out and "kept on a failure or Ctrl-C" in out


def test_distill_offers_only_synthesizers_and_the_close_name(capsys):
    from dsdistill.synthesizers import SYNTHESIZERS
    code, _, err = run(capsys, "distill", "--method", "dmm", "--ipc", "1", "--out", "x.h5")
    synthesizers = [n for n, c in SYNTHESIZERS.items() if c.kind == "synthesis"]
    assert code == 2 and f"unknown method 'dmm'; did you mean 'dm'? valid: {', '.join(synthesizers)}" in err
    assert "random" not in err and "herding" not in err
    code, _, err = run(capsys, "select", "--method", "herdin", "--ipc", "1", "--out", "x.h5")
    assert code == 2 and "did you mean 'herding'?" in err and "dm" not in err.split("valid:")[1]
    code, _, err = run(capsys, "distill", "--method", "datadam.oficial", "--ipc", "1", "--out", "x.h5")
    assert code == 2 and "did you mean 'datadam.official'?" in err


def test_distill_keeps_the_checkpoint_when_the_set_is_not_written(fake_fmnist_root, tmp_path, capsys, monkeypatch):
    from dsdistill.synset import SyntheticSet

    def fail(self, path, *unchanged_since):
        raise OSError("disk full")

    monkeypatch.setattr(SyntheticSet, "save", fail)
    out = tmp_path / "dm.h5"
    with pytest.raises(OSError):
        main(["distill", "--method", "dm", "--ipc", "1", "--iterations", "2", "--out", str(out), "--data-root",
              fake_fmnist_root, "--device", "cpu", "--set", "width=8", "--set", "batch_real=4"])
    assert (tmp_path / "dm.h5.ckpt").exists() and not out.exists()  # --resume can still finish it
