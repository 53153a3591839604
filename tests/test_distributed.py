"""Scaling out with torchrun: the sharding rule, per-class loading, the refusals, and, with two gloo
processes on fake Fashion-MNIST, sharded sets and reports equal to one process's, and a dead rank
that ends the job and resumes to the same bytes."""
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from dsdistill.cli import COMMANDS, main
from dsdistill.data import load_dataset, write_fake
from dsdistill import _progress
from dsdistill._distributed import (SHARDED_COMMANDS, World, check_command, init_world, load_shard, quiet_unless_main,
                                   single_process, threads_per_rank)
from dsdistill.errors import CheckpointError, ConfigError, DistributedError
from dsdistill.evaluate import evaluate
from dsdistill.synthesizers import Budget, create_synthesizer
from dsdistill.synthesizers.dm import DM

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SMALL = {"width": 8, "batch_real": 4}


HANG_GUARD = 600  # seconds; see torchrun()


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """init_world under a torchrun environment sets this process's torch threads for its rank, also when the
    group then fails to start: no test may leave that to the tests after it (test_same_bytes keys its pins by
    the thread count, and skipped every float case after this module)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def torchrun(*argv: str) -> subprocess.CompletedProcess:
    """Two gloo processes, one torch thread each, importing this checkout's dsdistill.

    How long the job takes is not bounded: it is 10 s on an idle machine and grows with whatever else runs
    on its 2 cores (84 s measured beside 7 copies of itself). A hang is bounded by what detects one: a rank
    waiting on a dead or hung peer fails with DistributedError after $DSDISTILL_DIST_TIMEOUT (1 minute here,
    longer than any rank's work between two exchanges), so the job exits by itself; HANG_GUARD only catches a
    launcher that never returns. `--standalone` rendezvous binds an OS-given port (port 0) and the ranks use
    that bound store, so concurrent launches cannot collide on a port."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DSDISTILL_DIST_TIMEOUT": "1", "DSDISTILL_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *argv], capture_output=True, text=True, timeout=HANG_GUARD, env=env, cwd=ROOT)


def test_blocks_partition_the_items_in_order():
    for n in range(13):
        for size in range(1, 6):
            blocks = [World(rank, size).block(n) for rank in range(size)]
            assert [i for b in blocks for i in b] == list(range(n))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    assert World(1, 3).share("abcdefg") == ["d", "e"]


def test_one_process_takes_no_distributed_path(monkeypatch, tmp_path):
    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    with init_world("cpu") as world:
        assert world == World() and not world.sharded and world.is_main
        rows = torch.arange(6.0).view(3, 2)
        assert world.gather_rows(rows) is rows and world.all_gather({"a": 1}) == [{"a": 1}]
    assert not torch.distributed.is_initialized()
    assert World().checkpoint_path(tmp_path / "x.h5.ckpt") == tmp_path / "x.h5.ckpt"
    assert World(1, 2).checkpoint_path(tmp_path / "x.h5.ckpt") == tmp_path / "x.h5.rank1-of-2.ckpt"


def test_a_rank_loads_only_its_classes(fake_fmnist_root, tmp_path, monkeypatch):
    real = load_shard(World(1, 3), "fashion-mnist", fake_fmnist_root)
    assert real.class_ids == (4, 5, 6) and set(real.train.labels.tolist()) == {4, 5, 6}
    assert real.num_classes == 10 and len(real.class_names) == 10
    # ZCA is fit on the whole train split, as one process fits it, before the rank keeps its classes
    whitened = load_shard(World(1, 3), "fashion-mnist", fake_fmnist_root, zca=True)
    whole = load_dataset("fashion-mnist", fake_fmnist_root, zca=True)
    assert whitened.class_ids == (4, 5, 6) and torch.equal(whitened.zca.matrix, whole.zca.matrix)
    # folder datasets decode only the served class folders
    from dsdistill.data import images
    folder = write_fake("imagefolder", tmp_path / "folders", train_per_class=2, test_per_class=1)
    decoded = []
    original = images.decode_images
    monkeypatch.setattr(images, "decode_images", lambda paths, *a: decoded.extend(paths) or original(paths, *a))
    cats = load_shard(World(1, 2), f"imagefolder:{folder}")
    assert cats.class_ids == (2,) and decoded and {p.parent.name for p in decoded} == {"cats"}


def test_one_process_needs_every_class(tiny_real):
    with pytest.raises(ConfigError, match="holds only classes"):
        create_synthesizer("dm", **SMALL).fit(tiny_real.subset([0, 1]), 2, budget=Budget(iterations=1))


def test_couplings_refuse_before_any_collective(tiny_real):
    half = tiny_real.subset([0, 1])
    world = World(0, 2)  # no process group: a refusal must come before the first collective
    with pytest.raises(ConfigError, match="batch norm"):
        create_synthesizer("dm", **SMALL, norm="batch").fit(half, 2, budget=Budget(iterations=1), world=world)
    assert create_synthesizer("dm", **SMALL, norm="batch", class_batching="per-class").shard_problem(half) is None
    learned = create_synthesizer("ncfm", **SMALL, extractor="random", sampler="learned", num_freqs=16)
    with pytest.raises(ConfigError, match="learned sampler"):
        learned.fit(half, 2, budget=Budget(iterations=1), world=world)
    with pytest.raises(ConfigError, match="serves classes"):
        create_synthesizer("dm", **SMALL).fit(tiny_real.subset([1, 2]), 2, budget=Budget(iterations=1), world=world)


def test_a_non_separable_method_refuses_under_torchrun(fake_fmnist_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(DM, "class_separable", False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = main(["distill", "--method", "dm", "--ipc", "1", "--out", str(tmp_path / "x.h5"),
                 "--data-root", fake_fmnist_root, "--iterations", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "dm is not class-separable" in err and "without torchrun" in err
    code = main(["pool", "--out", str(tmp_path / "pool"), "--data-root", fake_fmnist_root])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "`dsdistill pool` does not split its work" in err


def test_the_sharding_policy_lets_only_the_splitting_commands_run_under_torchrun(monkeypatch):
    assert SHARDED_COMMANDS == {"distill", "evaluate", "compare", "bench"} and SHARDED_COMMANDS <= set(COMMANDS)
    for name in COMMANDS:
        check_command(name)  # one process: everything runs
    single_process("anything")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in SHARDED_COMMANDS:
        check_command(name)
    for name in set(COMMANDS) - SHARDED_COMMANDS:
        with pytest.raises(ConfigError, match=rf"^`dsdistill {name}` does not split its work across processes "
                                              r"\(torchrun does that for bench, compare, distill, evaluate\): run it"):
            check_command(name)
    with pytest.raises(ConfigError, match="^a merge does not split its work across processes: run it in one process"):
        single_process("a merge")


def test_only_rank_0_draws_progress_bars_and_quiet_silences_every_rank(monkeypatch):
    monkeypatch.setattr(_progress, "_QUIET", False)
    quiet_unless_main(False)
    assert _progress._QUIET is False
    quiet_unless_main(True)
    assert _progress._QUIET is True
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, quiet in (("0", False), ("1", True)):
        monkeypatch.setenv("RANK", rank)
        quiet_unless_main(False)
        assert _progress._QUIET is quiet


def test_a_process_group_that_cannot_start_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("MASTER_PORT", "29500")
    with pytest.raises(DistributedError, match=r"rank 1 of 2 \(gloo\): could not start .* MASTER_ADDR expected"):
        with init_world("cpu"):
            pass
    code = main(["evaluate", str(tmp_path / "set.h5"), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("dsdistill: error: rank 1 of 2 (gloo): could not start") and "torchrun" in err
    # rank 0 unreachable (nothing listens there): the same error once the collective timeout has passed
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.setenv("DSDISTILL_DIST_TIMEOUT", "0.02")
    with pytest.raises(DistributedError, match=f"127.0.0.1:{port}"):
        with init_world("cpu"):
            pass
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_a_bad_thread_count_names_the_variable(monkeypatch, capsys, tmp_path, value):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("DSDISTILL_THREADS", value)
    code = main(["evaluate", str(tmp_path / "set.h5"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "$DSDISTILL_THREADS must be a whole number" in err and repr(value) in err
    monkeypatch.setenv("DSDISTILL_THREADS", "3")
    assert threads_per_rank(2) == 3


@dataclass(frozen=True)
class MirrorWorld(World):
    """Rank 0 of 2 whose partner mirrors every exchange, except that it reports `partner` as its
    checkpoints: the collective logic without processes."""
    partner: object = None

    def all_gather(self, obj, what=""):
        return [obj, self.partner if self.partner is not None and "checkpoints" in what else obj]

    def gather_rows(self, rows, what=""):
        return rows


def test_sharded_resume_takes_the_newest_iteration_every_rank_has(tiny_real, tmp_path):
    half = tiny_real.subset([0, 1])
    ckpt = tmp_path / "run.ckpt"

    def fit(iterations, world, resume=False):
        return create_synthesizer("dm", **SMALL, checkpoint_every=2).fit(
            half, 2, seed=0, budget=Budget(iterations=iterations), checkpoint=ckpt, resume=resume, world=world)

    full = fit(4, MirrorWorld(0, 2))
    mine = tmp_path / "run.rank0-of-2.ckpt"
    assert torch.load(mine, weights_only=True)["iteration"] == 4
    assert torch.load(tmp_path / "run.rank0-of-2.ckpt.prev", weights_only=True)["iteration"] == 2
    fit(2, MirrorWorld(0, 2))  # leaves iteration 2 (and its previous)
    fit(4, MirrorWorld(0, 2))  # back to 4 and 2
    # the other rank died while saving iteration 4: it has only 2, so this rank goes back to 2 as well
    resumed = fit(4, MirrorWorld(0, 2, partner=([2], "")), resume=True)
    assert resumed.payload_sha256() == full.payload_sha256() and resumed.distill_iterations == 4
    with pytest.raises(CheckpointError, match="no checkpoint at a common iteration"):
        fit(4, MirrorWorld(0, 2, partner=([6], "")), resume=True)


@pytest.fixture
def one_thread():
    """The one-process reference runs with the ranks' thread count: CPU kernels reduce in an order that
    depends on the number of threads, so only equal thread counts promise equal bytes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sharded(fake_fmnist_root, fmnist_committee, tmp_path_factory):
    """dist_worker.py under 2 gloo processes, once for the module: what rank 0 got."""
    out = tmp_path_factory.mktemp("sharded") / "sharded.json"
    proc = torchrun(str(TESTS / "dist_worker.py"), fake_fmnist_root, str(out), fmnist_committee)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sys.path.insert(0, str(TESTS))
    return json.loads(out.read_text())


def test_two_gloo_processes_give_the_one_process_set_and_report(sharded, fake_fmnist_root, one_thread):
    got = sharded
    assert got["classes"] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]] == got["train_labels"]
    from dist_worker import METHODS
    real = load_dataset("fashion-mnist", fake_fmnist_root)
    for key, options in METHODS.items():
        method = create_synthesizer(key.split("+")[0], **SMALL, **options)
        one = method.fit(real, 2, seed=3, budget=Budget(iterations=3))
        assert got[key]["sha"] == one.payload_sha256(), key
        assert got[key]["loss"] == one.extra["loss_curve"]["loss"], key
    synset = create_synthesizer("random").fit(real, 2, seed=0)
    report = evaluate(synset, "smoke", archs=["convnet", "mlp", "lenet"], data=real, device="cpu")
    assert got["report"] == [[r.arch, r.seeds, r.accuracies, r.path] for r in report.results]


def test_cvdd_splits_its_classes_and_keeps_the_batch_norm_term(sharded, fake_fmnist_root, fmnist_committee, one_thread):
    """Each rank recovers its classes' images; the BN term's statistics over all classes travel between the
    ranks as per-class moments. Per-class batching gives one process's bytes (medium init, --flip, stored
    soft labels made on rank 0), the default joint batching the same function."""
    from dist_worker import CVDD
    real = load_dataset("fashion-mnist", fake_fmnist_root)
    for key, options in CVDD.items():
        one = create_synthesizer("cvdd", committee=fmnist_committee, **options).fit(real, 2, seed=3,
                                                                           budget=Budget(iterations=4))
        assert one.distill_iterations == 4 and len(one.extra["loss_curve"]["loss"]) == 4
        if "joint" not in key:
            assert one.soft_labels is not None
            assert sharded[key]["sha"] == one.payload_sha256(), key
            assert sharded[key]["loss"] == one.extra["loss_curve"]["loss"], key
        else:
            images = torch.tensor(sharded[key]["images"]).view_as(one.images)
            assert torch.allclose(images, one.images, atol=1e-4), (images - one.images).abs().max()
            assert sharded[key]["loss"] == pytest.approx(one.extra["loss_curve"]["loss"], rel=1e-5)
    # without the exchanged BN term a rank would optimise another objective: the term matters here
    no_bn = create_synthesizer("cvdd", committee=fmnist_committee, r_bn=0.0, **CVDD["cvdd"]).fit(
        real, 2, seed=3, budget=Budget(iterations=4))
    assert no_bn.payload_sha256() != sharded["cvdd"]["sha"]


KILLER = textwrap.dedent("""
    import os, signal, sys
    from dsdistill.cli import main
    from dsdistill.synthesizers.dm import DM
    original = DM.step
    def step(self, state, real, it, seed):
        if it == 3 and os.environ["RANK"] == "1":
            os.kill(os.getpid(), signal.SIGKILL)  # a hard death: no handler, no save
        return original(self, state, real, it, seed)
    DM.step = step
    sys.exit(main(sys.argv[1:]))
""")


def test_a_dead_rank_ends_the_job_and_every_rank_resumes_to_the_same_set(fake_fmnist_root, tmp_path, one_thread):
    def argv(out):
        return ["distill", "--method", "dm", "--ipc", "2", "--iterations", "5", "--seed", "1", "--out", str(out),
                "--data-root", fake_fmnist_root, "--device", "cpu", "--set", "width=8", "--set", "batch_real=4",
                "--set", "checkpoint_every=2"]

    out = tmp_path / "dm.h5"
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    proc = torchrun(str(script), *argv(out))
    assert proc.returncode != 0 and not out.exists()
    assert "rank 0 of 2 (gloo)" in proc.stderr and "another rank died or hung" in proc.stderr, proc.stderr[-3000:]
    for rank in (0, 1):  # the last checkpoint both ranks finished
        assert torch.load(tmp_path / f"dm.h5.rank{rank}-of-2.ckpt", weights_only=True)["iteration"] == 2
    resumed = torchrun("-m", "dsdistill", *argv(out), "--resume")
    assert resumed.returncode == 0 and "5 iterations" in resumed.stdout, resumed.stderr[-3000:]
    single = tmp_path / "single.h5"
    assert main(argv(single)) == 0
    from dsdistill.synset import SyntheticSet
    assert SyntheticSet.load(out).payload_sha256() == SyntheticSet.load(single).payload_sha256()


BENCH = textwrap.dedent("""
    import dataclasses, sys
    from dsdistill.cli import main
    from dsdistill.evaluate.protocols import PROTOCOLS, SMOKE
    PROTOCOLS.register("smoke-2")(dataclasses.replace(SMOKE, name="smoke-2", seeds=(0, 1), model_options=(("width", 8),)))
    sys.exit(main(sys.argv[1:]))
""")
SUITE = """
name = "tiny-dist"
ipcs = [1]
seeds = [0]
protocols = ["smoke-2"]
references = ["random", "whole"]

[[methods]]
method = "dm"
iterations = 2
set = { width = 8, batch_real = 4 }
"""


def test_bench_under_two_processes_writes_the_one_process_records(fake_fmnist_root, tmp_path, monkeypatch, one_thread):
    """A 2-model protocol (one model per rank), a class-sharded DM cell, a selection made on rank 0 and the whole
    training set: the records of one process, written once, by rank 0."""
    import dataclasses
    from dsdistill.bench import Store, load_suite, run_suite
    from dsdistill.evaluate.protocols import PROTOCOLS, SMOKE
    monkeypatch.setitem(PROTOCOLS._items, "smoke-2",
                        dataclasses.replace(SMOKE, name="smoke-2", seeds=(0, 1), model_options=(("width", 8),)))
    (tmp_path / "suite.toml").write_text(SUITE)
    (tmp_path / "bench.py").write_text(BENCH)
    proc = torchrun(str(tmp_path / "bench.py"), "bench", str(tmp_path / "suite.toml"), "--store", str(tmp_path / "two"),
                    "--data-root", fake_fmnist_root, "--device", "cpu", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("suite tiny-dist: 3 sets made, 3 evaluations run") == 1, proc.stdout
    run_suite(load_suite(tmp_path / "suite.toml"), Store(tmp_path / "one"), device="cpu", data_root=fake_fmnist_root,
              command="test", log=lambda line: None)
    one, two = Store(tmp_path / "one"), Store(tmp_path / "two")
    for kind in ("distill", "eval"):
        assert [r["key"] for r in two.records(kind)] == [r["key"] for r in one.records(kind)] and one.records(kind)
    for a, b in zip(one.records("distill"), two.records("distill")):
        assert (a["label"], a["set_sha256"]) == (b["label"], b["set_sha256"])
        assert b["device"] == "cpu x2 processes (gloo)"
    for a, b in zip(one.records("eval"), two.records("eval")):
        assert len(b["report"]["results"][0]["accuracies"]) == 2
        assert a["report"]["results"][0]["accuracies"] == b["report"]["results"][0]["accuracies"], a["label"]
    files = sorted(p.name for p in (tmp_path / "two").rglob("*") if p.is_file() and "sets" in p.parts)
    assert len(files) == 2 and not any("ckpt" in name for name in files)  # dm and random; whole is never copied


def test_bench_refuses_what_it_cannot_split_before_anything_runs(fake_fmnist_root, tmp_path):
    from dsdistill.bench import Store, parse_suite
    from dsdistill.bench.runner import Runner
    kd = f'protocols = ["smoke", "kd"]\nteacher = "{tmp_path / "committee"}"'  # labels the kd scores (never built)
    suite = parse_suite(SUITE.replace('protocols = ["smoke-2"]', kd) + textwrap.dedent("""
        [[prerequisites]]
        name = "experts"
        command = "dsdistill experts --out {experts}"
        creates = "{experts}/experts.json"

        [[methods]]
        method = "mtt"
        iterations = 2
        set = {{ experts = "{experts}" }}
        requires = ["experts"]

        [[methods]]
        method = "dm"
        label = "dm-bn"
        iterations = 2
        set = {{ width = 8, batch_real = 4, norm = "batch" }}
        """).format(experts=tmp_path / "experts"), "s.toml")
    runner = Runner(suite, Store(tmp_path / "store"), data_root=fake_fmnist_root, world=World(0, 2))
    with pytest.raises(ConfigError) as err:
        runner.run(list(suite.cells))  # World(0, 2) has no process group: a collective would fail otherwise
    text = str(err.value)
    assert "\n" not in text and "--skip" in text and "mtt (IPC 1): mtt is not class-separable" in text
    assert "dm-bn (IPC 1): dm with batch norm" in text and "under kd: soft-label protocols" in text
    assert "prerequisite 'experts' has not run" in text and f"dsdistill experts --out {tmp_path / 'experts'}" in text
    assert not (tmp_path / "store").exists()
