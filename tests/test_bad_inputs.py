"""Every bad input is one clear line and exit 2: no traceback, no hang, no file left behind, and refused before work.

Each case is a command line with placeholders filled from one prepared folder ({root}: fake Fashion-MNIST in its
native format; {set}: a valid set file; {file}: a plain text file; {dir}: an empty folder; {out}: the folder that
must stay empty; {bad}: damaged inputs made by `_damaged`). The command runs in-process through `cli.main`, under
an alarm that turns a hang into a failure.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dsdistill.cli import main
from dsdistill.data import write_fake

SECONDS = 5.0     # a refusal before work comes back in this time (the whole case, data load included)
HANG = 30         # past this the case is a hang

DATA = "--data-root {root} --quiet"
DM = "--method dm --set batch_real=2 --set width=8"
CASES: dict[str, tuple[str, str]] = {  # command, what the one line must name
    # ---- budgets and numbers
    "distill-minutes-nan": ("distill {dm} --ipc 1 --minutes nan --out {out}/a.h5 " + DATA,
        '--minutes'),
    "distill-minutes-inf": ("distill {dm} --ipc 1 --minutes inf --out {out}/a.h5 " + DATA,
        '--minutes'),
    "distill-minutes-negative": ("distill {dm} --ipc 1 --minutes -1 --out {out}/a.h5 " + DATA,
        'budget'),
    "distill-iterations-zero": ("distill {dm} --ipc 1 --iterations 0 --out {out}/a.h5 " + DATA,
        'budget'),
    "distill-iterations-text": ("distill {dm} --ipc 1 --iterations ten --out {out}/a.h5 " + DATA,
        '--iterations'),
    "distill-ipc-zero": ("distill {dm} --ipc 0 --iterations 1 --out {out}/a.h5 " + DATA,
        '--ipc'),
    "distill-ipc-too-large": ("distill {dm} --ipc 999 --iterations 1 --out {out}/a.h5 " + DATA,
        '--ipc'),
    "distill-seed-negative": ("distill {dm} --ipc 1 --iterations 1 --seed -1 --out {out}/a.h5 " + DATA,
        'seed'),
    "select-seed-negative": ("select --method random --ipc 1 --seed -1 --out {out}/a.h5 " + DATA,
        'seed'),
    "select-ipc-negative": ("select --method random --ipc -3 --out {out}/a.h5 " + DATA,
        '--ipc'),
    "distill-checkpoint-every-negative": ("distill {dm} --ipc 1 --iterations 1 --set checkpoint_every=-1 "
                                         "--out {out}/a.h5 " + DATA,
        'checkpoint_every'),
    "select-herding-feature-epochs-negative": ("select --method herding --ipc 1 --set feature_epochs=-1 "
                                              "--out {out}/a.h5 " + DATA,
        'feature_epochs'),
    "committee-holdout-negative": ("committee --holdout -1 --epochs 1 --out {out}/c " + DATA,
        '--holdout'),
    "pool-models-zero": ("pool --models 0 --out {out}/p " + DATA,
        '--models'),
    "experts-epochs-zero": ("experts --epochs 0 --out {out}/e " + DATA,
        '--epochs'),
    # ---- names and options
    "distill-unknown-method": ("distill --method dn --ipc 1 --out {out}/a.h5 " + DATA,
        'dn'),
    "distill-selection-method": ("distill --method random --ipc 1 --out {out}/a.h5 " + DATA,
        'select'),
    "select-synthesis-method": ("select --method dm --ipc 1 --out {out}/a.h5 " + DATA,
        'distill'),
    "distill-unknown-preset": ("distill --method dm.nope --ipc 1 --out {out}/a.h5 " + DATA,
        'dm.nope'),
    "distill-unknown-option": ("distill {dm} --ipc 1 --set nokey=1 --out {out}/a.h5 " + DATA,
        'nokey'),
    "distill-option-bad-value": ("distill {dm} --ipc 1 --set lr_img=abc --out {out}/a.h5 " + DATA,
        'lr_img'),
    "distill-option-no-equals": ("distill {dm} --ipc 1 --set lr_img --out {out}/a.h5 " + DATA,
        'lr_img'),
    "select-unknown-option": ("select --method random --ipc 1 --set nokey=1 --out {out}/a.h5 " + DATA,
        'nokey'),
    "select-unknown-dataset": ("select --method random --ipc 1 --dataset nope --out {out}/a.h5 " + DATA,
        'nope'),
    "select-missing-data-root": ("select --method random --ipc 1 --out {out}/a.h5 --data-root {out}/none --quiet",
        '--data-root'),
    "pool-unknown-arch": ("pool --arch nope --out {out}/p " + DATA,
        'nope'),
    "pool-bad-model-option": ("pool --set width=abc --out {out}/p " + DATA,
        'width'),
    "experts-unknown-train-key": ("experts --train nokey=1 --out {out}/e " + DATA,
        'nokey'),
    "committee-bad-members": ("committee --members nope --out {out}/c " + DATA,
        'nope'),
    "committee-unknown-preset": ("committee --preset nope --out {out}/c " + DATA,
        'nope'),
    "committee-unknown-train-key": ("committee --train nokey=1 --out {out}/c " + DATA,
        'nokey'),
    "committee-bad-schedule": ("committee --preset paper --train schedule=linear --out {out}/c " + DATA,
        'schedule'),
    "evaluate-unknown-protocol": ("evaluate {set} --protocol nope " + DATA,
        'nope'),
    "evaluate-unknown-arch": ("evaluate {set} --protocol dc-quick --arch nope " + DATA,
        'nope'),
    "unknown-command": ("nope",
        'nope'),
    "no-command": ("",
        'command'),
    "unknown-flag": ("select --method random --ipc 1 --out {out}/a.h5 --nope " + DATA,
        '--nope'),
    # ---- output places that cannot be written: found before any work
    "distill-out-under-proc": ("distill {dm} --ipc 1 --iterations 1 --out /proc/dsdistill.h5 " + DATA,
        '/proc'),
    "distill-out-under-a-file": ("distill {dm} --ipc 1 --iterations 1 --out {file}/a.h5 " + DATA,
        'notes.txt'),
    "distill-out-is-a-directory": ("distill {dm} --ipc 1 --iterations 1 --out {dir} " + DATA,
        'adir'),
    "distill-checkpoint-is-a-directory": ("distill {dm} --ipc 1 --iterations 1 --checkpoint {dir} "
                                         "--out {out}/a.h5 " + DATA,
        'adir'),
    "select-out-under-proc": ("select --method random --ipc 1 --out /proc/dsdistill.h5 " + DATA,
        '/proc'),
    "evaluate-json-is-a-directory": ("evaluate {set} --protocol dc-quick --json {dir} " + DATA,
        'adir'),
    "evaluate-json-under-proc": ("evaluate {set} --protocol dc-quick --json /proc/dsdistill.json " + DATA,
        '/proc'),
    "compare-json-is-a-directory": ("compare {set} {set} --protocol dc-quick --json {dir} " + DATA,
        'adir'),
    "compare-json-under-proc": ("compare {set} {set} --protocol dc-quick --json /proc/dsdistill.json " + DATA,
        '/proc'),
    "show-out-is-a-directory": ("show {set} --out {dir}",
        'adir'),
    "show-out-under-proc": ("show {set} --out /proc/dsdistill.png",
        '/proc'),
    "report-out-under-proc": ("report --store {bad}/store-empty --out /proc/LEADERBOARD.md --no-plots",
        '/proc'),
    "pool-out-under-proc": ("pool --out /proc/dsdistill-pool " + DATA,
        '/proc'),
    "pool-out-is-a-file": ("pool --out {file} " + DATA,
        'notes.txt'),
    "experts-out-under-proc": ("experts --out /proc/dsdistill-experts " + DATA,
        '/proc'),
    "committee-out-under-proc": ("committee --holdout 1 --out /proc/dsdistill-committee " + DATA,
        '/proc'),
    "relabel-out-under-proc": ("relabel {set} --teacher {bad}/no-teacher --out /proc/x.h5 " + DATA,
        '/proc'),
    "import-out-under-proc": ("import {bad}/images.pt --dataset fashion-mnist --out /proc/x.h5",
        '/proc'),
    "export-out-under-proc": ("export {set} --format npz --out /proc/x.npz", '/proc'),
    "export-imagefolder-over-a-file": ("export {set} --format imagefolder --out {file}", 'notes.txt'),
    "export-unknown-format": ("export {set} --format tiff --out {out}/x", 'tiff'),
    # ---- input files
    "export-missing-set": ("export {out}/missing.h5 --format npz --out {out}/x.npz", 'missing.h5'),
    "evaluate-missing-set": ("evaluate {out}/missing.h5 --protocol dc-quick " + DATA,
        'missing.h5'),
    "evaluate-text-file": ("evaluate {file} --protocol dc-quick " + DATA,
        'notes.txt'),
    "evaluate-truncated-set": ("evaluate {bad}/truncated.h5 --protocol dc-quick " + DATA,
        'truncated.h5'),
    "info-missing-set": ("info {out}/missing.h5",
        'missing.h5'),
    "info-text-file": ("info {file}",
        'notes.txt'),
    "show-missing-set": ("show {out}/missing.h5 --out {out}/a.png",
        'missing.h5'),
    "import-missing-file": ("import {out}/missing.pt --out {out}/a.h5",
        'missing.pt'),
    "import-not-a-tensor": ("import {file} --dataset fashion-mnist --out {out}/a.h5",
        'notes.txt'),
    "relabel-missing-teacher": ("relabel {set} --teacher {bad}/no-teacher --out {out}/a.h5 " + DATA,
        'no-teacher'),
    "distill-resume-without-checkpoint": ("distill {dm} --ipc 1 --iterations 1 --resume --out {out}/a.h5 "
                                         + DATA,
        '--resume'),
    "distill-resume-checkpoint-is-a-directory": ("distill {dm} --ipc 1 --iterations 1 --resume "
                                                "--checkpoint {dir} --out {out}/a.h5 " + DATA,
        'adir'),
    "distill-resume-tuple-checkpoint": ("distill {dm} --ipc 1 --iterations 1 --resume "
                                       "--checkpoint {bad}/tuple.ckpt --out {out}/a.h5 " + DATA,
        'tuple.ckpt'),
    "distill-resume-other-shape": ("distill {dm} --ipc 1 --iterations 1 --resume "
                                  "--checkpoint {bad}/shape.ckpt --out {out}/a.h5 " + DATA,
        'shape.ckpt'),
    "distill-resume-no-optimizer": ("distill {dm} --ipc 1 --iterations 1 --resume "
                                   "--checkpoint {bad}/nooptim.ckpt --out {out}/a.h5 " + DATA,
        'nooptim.ckpt'),
    "distill-resume-text-iteration": ("distill {dm} --ipc 1 --iterations 1 --resume "
                                     "--checkpoint {bad}/textit.ckpt --out {out}/a.h5 " + DATA,
        'textit.ckpt'),
    "distill-resume-garbage": ("distill {dm} --ipc 1 --iterations 1 --resume "
                              "--checkpoint {file} --out {out}/a.h5 " + DATA,
        'notes.txt'),
    # ---- result stores, imports and manifests
    "report-missing-store": ("report --store {out}/none --out {out}/L.md --no-plots",
        'none'),
    "report-non-json-record": ("report --store {bad}/store-text --out {out}/L.md --no-plots",
        '0123456789abcdef.json'),
    "report-record-without-keys": ("report --store {bad}/store-nokeys --out {out}/L.md --no-plots",
        '0123456789abcdef.json'),
    "bench-import-garbage": ("bench --store {out}/store --import {bad}/import-garbage",
        'cell.json'),
    "manifest-check-missing": ("manifest {bad}/store-empty --check",
        'manifest'),
    "manifest-check-garbage": ("manifest {bad}/store-garbage-manifest --check",
        'manifest.json'),
    # ---- suites
    "bench-missing-suite": ("bench {out}/none.toml --store {out}/store --dry-run",
        'none.toml'),
    "bench-suite-not-utf8": ("bench {bad}/latin1.toml --store {out}/store --dry-run",
        'latin1.toml'),
    "bench-suite-not-toml": ("bench {file} --store {out}/store --dry-run",
        'notes.txt'),
    "bench-suite-methods-string": ("bench {bad}/methods-string.toml --store {out}/store --dry-run",
        'methods'),
    "bench-suite-iterations-text": ("bench {bad}/iterations-text.toml --store {out}/store --dry-run",
        'iterations'),
    "bench-suite-option-bad-value": ("bench {bad}/option-bad-value.toml --store {out}/store --dry-run",
        'lr_img'),
    "bench-suite-negative-seed": ("bench {bad}/negative-seed.toml --store {out}/store --dry-run",
        'seed'),
    "bench-suite-unknown-prerequisite": ("bench {bad}/unknown-prerequisite.toml --store {out}/store --dry-run",
        'prerequisites'),
    "bench-suite-prerequisites-not-tables": ("bench {bad}/prerequisites-strings.toml --store {out}/store --dry-run",
        '[[prerequisites]]'),
    "bench-suite-requires-unknown": ("bench {bad}/requires-unknown.toml --store {out}/store --dry-run",
        "'x'"),
    "bench-suite-unknown-method": ("bench {bad}/unknown-method.toml --store {out}/store --dry-run",
        'dn'),
    "bench-suite-ipc-zero": ("bench {bad}/ipc-zero.toml --store {out}/store --dry-run",
        'ipc'),
}

SUITE = 'name = "bad"\ndatasets = ["fashion-mnist"]\nipcs = [1]\nseeds = [0]\nprotocols = ["dc-quick"]\n'
SUITES = {
    "latin1.toml": None,  # written as bytes below
    "methods-string.toml": SUITE + 'methods = "dm"\n',
    "iterations-text.toml": SUITE + '[[methods]]\nmethod = "dm"\niterations = "10"\n',
    "option-bad-value.toml": SUITE + '[[methods]]\nmethod = "dm"\niterations = 1\nset = { lr_img = "abc" }\n',
    "negative-seed.toml": SUITE.replace("seeds = [0]", "seeds = [-1]") + '[[methods]]\nmethod = "dm"\n'
                                                                       'iterations = 1\n',
    "unknown-prerequisite.toml": SUITE + '[[methods]]\nmethod = "dm"\niterations = 1\nprerequisites = ["x"]\n',
    "prerequisites-strings.toml": SUITE + 'prerequisites = ["x"]\n[[methods]]\nmethod = "dm"\niterations = 1\n',
    "requires-unknown.toml": SUITE + '[[methods]]\nmethod = "dm"\niterations = 1\nrequires = ["x"]\n',
    "unknown-method.toml": SUITE + '[[methods]]\nmethod = "dn"\niterations = 1\n',
    "ipc-zero.toml": SUITE.replace("ipcs = [1]", "ipcs = [0]") + 'references = ["random"]\n',
}


def _damaged(bad: Path, good_set: Path) -> None:
    """Damaged and foreign inputs, each standing for one way a file goes wrong."""
    bad.mkdir()
    truncated = good_set.read_bytes()
    (bad / "truncated.h5").write_bytes(truncated[: len(truncated) // 2])
    torch.save((1, 2), bad / "tuple.ckpt")
    base = {"images": torch.zeros(10, 1, 28, 28), "optimizer": {}, "iteration": 1}
    torch.save({**base, "images": torch.zeros(3, 3, 7, 7)}, bad / "shape.ckpt")
    torch.save({k: v for k, v in base.items() if k != "optimizer"}, bad / "nooptim.ckpt")
    torch.save({**base, "iteration": "one"}, bad / "textit.ckpt")
    torch.save({"not": "images"}, bad / "images.pt")
    for name in ("store-empty", "store-text/distill", "store-nokeys/distill", "import-garbage",
                 "store-garbage-manifest"):
        (bad / name).mkdir(parents=True)
    (bad / "store-text/distill/0123456789abcdef.json").write_text("{not json")
    (bad / "store-nokeys/distill/0123456789abcdef.json").write_text(json.dumps({"kind": "distill"}))
    (bad / "import-garbage/cell.json").write_text("[1, 2")
    (bad / "store-garbage-manifest/manifest.json").write_text("\x00garbage")
    (bad / "latin1.toml").write_bytes(SUITE.encode() + b'description = "caf\xe9"\n')
    for name, text in SUITES.items():
        if text is not None:
            (bad / name).write_text(text)


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    top = tmp_path_factory.mktemp("bad-inputs")
    root = write_fake("fashion-mnist", top / "data", train_per_class=3, test_per_class=1)
    good = top / "set.h5"
    assert main(["select", "--method", "random", "--ipc", "1", "--out", str(good), "--data-root", str(root),
                 "--quiet"]) == 0
    (top / "notes.txt").write_text("not a set\n")
    (top / "adir").mkdir()
    _damaged(top / "bad", good)
    return {"root": str(root), "set": str(good), "file": str(top / "notes.txt"), "dir": str(top / "adir"),
            "bad": str(top / "bad")}


class _Hang(Exception):
    pass


def _run(argv: list[str]) -> tuple[int, str]:
    """cli.main in-process: (exit code, stderr). A traceback escapes as the exception it is."""
    err = io.StringIO()

    def alarm(signum, frame):
        raise _Hang(f"no answer in {HANG} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as stop:  # argparse
                code = stop.code if isinstance(stop.code, int) else 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return code, err.getvalue()


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(case, places, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    command, names = CASES[case]
    argv = command.format(out=out, dm=DM, **places).split()
    before = {p for p in Path(places["bad"]).rglob("*")} | set(Path(places["dir"]).rglob("*"))
    start = time.monotonic()
    code, err = _run(argv)
    seconds = time.monotonic() - start
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"exit {code}; stderr: {err!r}"
    assert len(lines) == 1, f"stderr is not one line: {err!r}"
    assert "Traceback" not in err
    assert list(out.iterdir()) == [], f"left behind: {sorted(p.name for p in out.iterdir())}"
    after = {p for p in Path(places["bad"]).rglob("*")} | set(Path(places["dir"]).rglob("*"))
    assert after == before, f"wrote into an input folder: {sorted(map(str, after - before))}"
    assert names.lower() in lines[0].lower(), f"the line does not name {names!r}: {lines[0]!r}"
    assert seconds < SECONDS, f"refused only after {seconds:.1f} s: check before the work starts"


def test_the_table_covers_every_command_and_enough_cases():
    from dsdistill.cli import COMMANDS
    used = {CASES[c][0].split()[0] for c in CASES if CASES[c][0]}
    assert set(COMMANDS) - used - {"datasets", "protocols"} == set()  # these two take no input to get wrong
    assert len(CASES) >= 60


def test_ctrl_c_during_start_up_is_one_line(tmp_path):
    """SIGINT while the package imports: exit 130 and one line, never a KeyboardInterrupt traceback."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for delay in (0.05, 0.3, 0.8):
        proc = subprocess.Popen([sys.executable, "-m", "dsdistill", "protocols"], stderr=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, env=env, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        if proc.returncode == 0:  # finished before the signal came
            continue
        if "init_import_site" in err:  # came while the interpreter was still reading site-packages' .pth files,
            continue                   # before any line of ours ran (nothing of ours can catch it there)
        assert "Traceback" not in err, err
        assert proc.returncode == 130 and len(err.strip().splitlines()) == 1, (proc.returncode, err)


def test_two_distills_into_one_out_the_second_to_finish_does_not_silently_win(places, tmp_path, monkeypatch):
    """Another run writes --out while this one distills: this one refuses to replace it and says how to get its set."""
    from dsdistill.synthesizers.base import Synthesizer
    out = tmp_path / "a.h5"
    fit = Synthesizer.fit

    def fit_while_another_run_writes(self, *a, **kw):
        result = fit(self, *a, **kw)
        out.write_text("the other run's set")
        return result

    monkeypatch.setattr(Synthesizer, "fit", fit_while_another_run_writes)
    argv = f"distill {DM} --ipc 1 --iterations 1 --out {out} --data-root {places['root']} --quiet".split()
    code, err = _run(argv)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "changed while this run worked" in err and "--resume --checkpoint" in err
    assert out.read_text() == "the other run's set"
