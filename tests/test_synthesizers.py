"""Registry-wide synthesizer tests (every iterative method gets them for free) plus DM/DataDAM specifics."""
import dataclasses
import inspect
import os
import pkgutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dsdistill.errors import CheckpointError, ConfigError, DivergedError, UnknownNameError
import dsdistill.synthesizers as package
from dsdistill.synthesizers import (SYNTHESIZERS, Budget, DEFAULT_BUDGET, Interrupted, Synthesizer, create_synthesizer,
                                    resolve_method)
from dsdistill.synthesizers.dm import DM, Features
from dsdistill.synthesizers.losses import attention_loss, mean_embedding_loss

from conftest import tiny_method

SYNTH = [n for n, cls in SYNTHESIZERS.items() if cls.kind == "synthesis"]
METHODS = SYNTHESIZERS.list()
small = tiny_method   # every method's own TINY options (and its kind's tiny folder): no per-method table here


@pytest.mark.parametrize("name", SYNTH)
@pytest.mark.parametrize("flip", [False, True])
def test_fit_returns_a_valid_set_that_records_the_run(tiny_real, name, flip):
    synth = small(name, flip=flip)
    assert synth.supports_view
    synset = synth.fit(tiny_real, 2, seed=0, budget=Budget(iterations=3))
    synset.validate()
    assert synset.images.shape == (8, 1, 28, 28)  # the mirrors are never stored
    assert synset.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert synset.distill_iterations == 3 and synset.method == name
    assert synset.method_config["flip"] is flip and synset.method_config == dataclasses.asdict(synth.config)
    assert len(synset.extra["loss_curve"]["loss"]) == 3
    assert not torch.equal(synset.images, create_synthesizer("random").fit(tiny_real, 2).images)
    # soft_labels: the set carries its own (stored, or the teacher it names) exactly when the class says so
    assert (synset.soft_labels is not None or bool(synset.extra.get("teacher"))) is synth.soft_labels


@pytest.mark.parametrize("name", SYNTH)
def test_same_seed_same_bytes_and_images_move(tiny_real, name):
    a = small(name).fit(tiny_real, 2, seed=0, budget=Budget(iterations=3))
    b = small(name).fit(tiny_real, 2, seed=0, budget=Budget(iterations=3))
    c = small(name).fit(tiny_real, 2, seed=1, budget=Budget(iterations=3))
    assert a.payload_sha256() == b.payload_sha256() != c.payload_sha256()
    init = small(name).fit(tiny_real, 2, seed=0, budget=Budget(iterations=1))
    assert not torch.equal(a.images, init.images)


@pytest.mark.parametrize("name", SYNTH)
def test_stop_and_resume_gives_the_uninterrupted_bytes(tiny_real, name, tmp_path, monkeypatch):
    full = small(name).fit(tiny_real, 2, seed=0, budget=Budget(iterations=6))
    ckpt = tmp_path / "run.ckpt"
    synth = small(name)
    original = type(synth).step

    def step_then_sigint(self, state, real, it, seed):
        figures = original(self, state, real, it, seed)
        if it == 2:
            os.kill(os.getpid(), signal.SIGINT)  # handled: checkpoint after this iteration, then stop
        return figures

    monkeypatch.setattr(type(synth), "step", step_then_sigint)
    with pytest.raises(Interrupted, match="iteration 3"):
        synth.fit(tiny_real, 2, seed=0, budget=Budget(iterations=6), checkpoint=ckpt)
    monkeypatch.setattr(type(synth), "step", original)
    resumed = small(name).fit(tiny_real, 2, seed=0, budget=Budget(iterations=6), checkpoint=ckpt, resume=True)
    assert resumed.payload_sha256() == full.payload_sha256()
    assert resumed.distill_iterations == 6


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from conftest import make_tiny_real
    from dsdistill.synthesizers import Budget, create_synthesizer
    synth = create_synthesizer({name!r}, width=8, batch_real=6, checkpoint_every=3)
    original = type(synth).step
    def step(self, state, real, it, seed):
        if it == 5:
            os.kill(os.getpid(), signal.SIGKILL)  # a hard kill: no handler, no final save
        return original(self, state, real, it, seed)
    type(synth).step = step
    synth.fit(make_tiny_real(), 2, seed=0, budget=Budget(iterations=8), checkpoint={ckpt!r})
""")


@pytest.mark.parametrize("name", ["dm"])
def test_hard_kill_between_checkpoints_resumes_to_the_same_bytes(tiny_real, name, tmp_path):
    ckpt = str(tmp_path / "run.ckpt")
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), name=name, ckpt=ckpt)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert torch.load(ckpt, weights_only=True)["iteration"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    resumed = small(name).fit(tiny_real, 2, seed=0, budget=Budget(iterations=8), checkpoint=ckpt, resume=True)
    full = small(name).fit(tiny_real, 2, seed=0, budget=Budget(iterations=8))
    assert resumed.payload_sha256() == full.payload_sha256()


def test_resume_refuses_another_runs_checkpoint(tiny_real, tmp_path):
    ckpt = tmp_path / "run.ckpt"
    small("dm").fit(tiny_real, 2, seed=0, budget=Budget(iterations=2), checkpoint=ckpt)
    with pytest.raises(CheckpointError, match="differs in seed"):
        small("dm").fit(tiny_real, 2, seed=1, budget=Budget(iterations=4), checkpoint=ckpt, resume=True)
    with pytest.raises(CheckpointError, match="differs in config"):
        small("dm", lr_img=0.5).fit(tiny_real, 2, seed=0, budget=Budget(iterations=4), checkpoint=ckpt, resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        small("dm").fit(tiny_real, 2, budget=Budget(iterations=4), checkpoint=tmp_path / "none", resume=True)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        small("dm").fit(tiny_real, 2, budget=Budget(iterations=4), checkpoint=tmp_path / "junk.ckpt", resume=True)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_real, tmp_path, monkeypatch):
    ckpt = tmp_path / "run.ckpt"
    synth = small("dm", checkpoint_every=2)
    original = DM.step

    def step(self, state, real, it, seed):
        figures = original(self, state, real, it, seed)
        return {"loss": float("nan")} if it == 3 else figures

    monkeypatch.setattr(DM, "step", step)
    with pytest.raises(DivergedError, match=f"iteration 3.*last good checkpoint is {ckpt}"):
        synth.fit(tiny_real, 2, seed=0, budget=Budget(iterations=6), checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["iteration"] == 2


def test_joint_and_per_class_batching_give_the_same_gradient(tiny_real, monkeypatch):
    """Instance norm has no cross-sample coupling: one forward for all classes == a per-class loop. The forward
    passes are counted, so the joint path is known to have run (one pass of 4 classes, real and synthetic, per
    iteration) and the per-class path too (4 passes of one class each)."""
    original, passes = DM._features, []

    def counted(self, net, batches):
        passes.append(len(batches))
        return original(self, net, batches)

    monkeypatch.setattr(DM, "_features", counted)
    results, seen = [], {}
    for mode in ("joint", "per-class"):
        passes.clear()
        synset = small("datadam", class_batching=mode).fit(tiny_real, 2, seed=0, budget=Budget(iterations=2))
        results.append(synset.images)
        seen[mode] = list(passes)
    assert seen == {"joint": [4, 4] * 2, "per-class": [1] * 16}
    assert torch.allclose(results[0], results[1], atol=1e-5)


def test_dm_and_datadam_losses_are_the_documented_formulas():
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(2, 3, 4, 8, 8, generator=g), torch.randn(2, 3, 4, 4, 4, generator=g)]
    smaps = [torch.randn(2, 1, 4, 8, 8, generator=g), torch.randn(2, 1, 4, 4, 4, generator=g)]
    real = Features(maps, torch.randn(2, 3, 5, generator=g))
    syn = Features(smaps, torch.randn(2, 1, 5, generator=g))
    dm_loss, _ = small("dm").match(real, syn)
    assert torch.allclose(dm_loss, mean_embedding_loss(real.embedding, syn.embedding))
    dam = small("datadam", power=4.0, task_balance=0.01, loss_scale=100.0)
    loss, parts = dam.match(real, syn)
    expected = 100 * (attention_loss(maps[:-1], smaps[:-1], 4.0) + 0.01 * dm_loss)  # the last block is skipped
    assert torch.allclose(loss, expected)
    assert set(parts) == {"sam", "mmd"}


def test_datadam_defaults_are_the_paper_and_the_official_preset_is_the_code():
    cfg = create_synthesizer("datadam").config
    assert (cfg.power, cfg.norm, cfg.loss_scale, cfg.batch_real, cfg.task_balance) == (4.0, "instance", 1.0, 256, 0.01)
    official = create_synthesizer("datadam.official").config
    assert (official.power, official.norm, official.loss_scale, official.batch_real) == (1.0, "batch", 100.0, 64)
    assert resolve_method("datadam.paper")[1]["iterations"] == 8000
    assert resolve_method("datadam.official")[1]["iterations"] == 20000
    with pytest.raises(UnknownNameError, match="datadam.paper"):
        resolve_method("datadam.bogus")
    dm = create_synthesizer("dm").config
    assert (dm.lr_img, dm.momentum, dm.batch_real, dm.init, dm.norm) == (1.0, 0.5, 256, "real", "instance")


def test_batch_norm_network_runs_jointly(tiny_real):
    synset = small("datadam", norm="batch").fit(tiny_real, 2, seed=0, budget=Budget(iterations=2))
    synset.validate()


def test_init_options(tiny_real, tmp_path):
    noise = small("dm", init="noise").fit(tiny_real, 2, seed=0, budget=Budget(iterations=1))
    assert noise.images.shape == (8, 1, 28, 28)
    herding = create_synthesizer("herding", features="random").fit(tiny_real, 2)
    path = tmp_path / "herding.h5"
    herding.save(path)
    from_file = small("dm", init=f"file:{path}", lr_img=1e-12).fit(tiny_real, 2, budget=Budget(iterations=1))
    assert torch.allclose(from_file.images, herding.images, atol=1e-6)
    with pytest.raises(ConfigError, match="3 images per class"):
        small("dm", init=f"file:{path}").fit(tiny_real, 3, budget=Budget(iterations=1))
    from conftest import make_tiny_real
    rgb = make_tiny_real(channels=3, size=32)
    with pytest.raises(ConfigError, match="1-channel 28px"):
        small("dm", init=f"file:{path}").fit(rgb, 2, budget=Budget(iterations=1))
    with pytest.raises(ConfigError, match="unknown init"):
        small("dm", init="zeros").fit(tiny_real, 2, budget=Budget(iterations=1))


def test_flip_on_digits_warns(tiny_real):
    tiny_real.digits = True
    with pytest.warns(UserWarning, match="digits"):
        small("dm", flip=True, dsa_sampler="dsa").fit(tiny_real, 2, budget=Budget(iterations=1))
    # under --flip DM takes FYI's sampler, which always flips: on digits that is refused with the way out
    with pytest.warns(UserWarning, match="digits"), pytest.raises(ConfigError, match="dsa_sampler=dsa"):
        small("dm", flip=True).fit(tiny_real, 2, budget=Budget(iterations=1))


@pytest.mark.parametrize("name", ["dm", "datadam", "ncfm", "mtt", "cvdd"])
def test_flip_takes_fyis_sampler_where_fyis_code_does(name):
    """FYI's code (DM, MTT) runs its flip with its own DSA sampler; elsewhere the flip view is our extension and
    keeps DSA's. Resolved when the method is made, so the set file and the run's key name dsa or fyi."""
    fyi_code = name in ("dm", "mtt")
    assert create_synthesizer(name, flip=True).config.dsa_sampler == ("fyi" if fyi_code else "dsa")
    assert create_synthesizer(name).config.dsa_sampler == "dsa"
    assert create_synthesizer(name, flip=True, dsa_sampler="dsa").config.dsa_sampler == "dsa"
    assert create_synthesizer(name, dsa_sampler="fyi").config.dsa_sampler == "fyi"


def test_budget_validation():
    with pytest.raises(ConfigError, match="budget"):
        Budget()
    with pytest.raises(ConfigError, match="positive"):
        Budget(iterations=0)
    assert Budget(minutes=1).done(0, 61) and not Budget(iterations=3).done(2, 1e9)


def test_class_flags_are_declared():
    for name, cls in SYNTHESIZERS.items():
        assert cls.kind in ("selection", "synthesis", "whole")
        assert isinstance(cls.class_separable, bool) and isinstance(cls.needs_teacher, bool)
        assert isinstance(cls.soft_labels, bool) and isinstance(cls.supports_view, bool)
        assert cls.teacher_folder in ("", "experts", "committee")
        assert set(cls.TINY) <= {f.name for f in dataclasses.fields(cls.Config)}, name


@pytest.mark.parametrize("name", METHODS)
def test_supports_view_is_what_the_factory_accepts(name):
    cls = SYNTHESIZERS.get(name)
    if cls.supports_view:
        assert create_synthesizer(name, flip=True).config.flip is True
    else:
        with pytest.raises(ConfigError, match="flip applies to synthesizers only"):
            create_synthesizer(name, flip=True)


@pytest.mark.parametrize("name", METHODS)
def test_needs_teacher_is_a_folder_the_method_refuses_to_run_without(tiny_real, name):
    """A method that needs a teacher names the Config field of its folder and says how to build one; every other
    method runs on its TINY options alone (the registry-wide tests above)."""
    cls = SYNTHESIZERS.get(name)
    assert cls.needs_teacher is bool(cls.teacher_folder)
    if cls.needs_teacher:
        with pytest.raises(ConfigError, match=f"dsdistill {cls.teacher_folder}"):
            small(name, **{cls.teacher_folder: ""}).fit(tiny_real, 1, budget=Budget(iterations=1))


@pytest.mark.parametrize("name", SYNTH)
def test_class_separable_is_whether_the_method_can_be_split_by_class(tiny_real, name):
    """A method whose objective couples its classes always refuses a split; a separable one refuses only where an
    option couples them (NCFM's per-class image steps, its default), and then names the option that splits."""
    problem = small(name).shard_problem(tiny_real)
    if not SYNTHESIZERS.get(name).class_separable:
        assert problem is not None
    elif problem is not None:
        assert "only with" in problem


@pytest.mark.parametrize("name", METHODS)
def test_fit_refuses_unknown_arguments(tiny_real, name):
    """fit() used to swallow any keyword (`**_`): a typo such as `budgett=` ran a default-length run silently."""
    with pytest.raises(TypeError, match="budgett"):
        small(name).fit(tiny_real, 1, budgett=Budget(iterations=1))


@pytest.mark.parametrize("name", [n for n in METHODS if SYNTHESIZERS.get(n).kind != "synthesis"])
def test_a_selection_refuses_a_budget_and_a_checkpoint(tiny_real, name, tmp_path):
    with pytest.raises(ConfigError, match="takes no budget"):
        small(name).fit(tiny_real, 1, budget=Budget(iterations=1))
    with pytest.raises(ConfigError, match="takes no checkpoint"):
        small(name).fit(tiny_real, 1, checkpoint=tmp_path / "x.ckpt")


@pytest.mark.parametrize("name", METHODS)
def test_fit_leaves_no_run_state_on_the_method(tiny_real, name):
    """Everything a run computes lives in State (checkpointed, or rebuilt at start), never on the method: a method
    object that ran is the object it was, so running it again, or resuming in a fresh one, gives the same bytes."""
    method = small(name)
    before = dict(vars(method))
    kwargs = {"budget": Budget(iterations=2)} if method.kind == "synthesis" else {}
    first = method.fit(tiny_real, 1, seed=0, **kwargs)
    assert vars(method) == before
    assert method.fit(tiny_real, 1, seed=0, **kwargs).payload_sha256() == first.payload_sha256()


def test_fit_without_a_budget_runs_the_preset_else_the_default(tiny_real):
    """The API's default is the CLI's (DEFAULT_BUDGET), and a method built from a preset runs its iterations."""
    method = small("dm")
    assert method.preset_iterations is None
    method.preset_iterations = 2                  # what the factory sets from a preset's `iterations`
    assert method.fit(tiny_real, 1).distill_iterations == 2
    assert create_synthesizer("dm.fmnist-cpu").preset_iterations == 400
    assert DEFAULT_BUDGET == Budget(iterations=100)


@pytest.mark.parametrize("spec", sorted(f"{name}.{preset}" for name, cls in SYNTHESIZERS.items()
                                        for preset in getattr(cls, "PRESETS", {})))
def test_every_preset_names_only_real_config_fields(spec):
    """A typo in a preset would otherwise surface only when a long run starts."""
    cls, values = resolve_method(spec)
    values.pop("iterations", None)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    assert set(values) <= fields, sorted(set(values) - fields)
    cls.Config(**values)


def test_mtt_cpu_presets_fit_the_cpu_experts():
    """benchmarks/results/fmnist-mtt-cpu uses 11-epoch experts: every CPU preset's window must fit in them."""
    for preset in ("mtt.fmnist-cpu", "mtt.fmnist-cpu-ipc1"):
        _, values = resolve_method(preset)
        assert values["max_start_epoch"] - 1 + values["expert_epochs"] <= 11, preset


@pytest.mark.parametrize("name", SYNTH)
def test_the_base_owns_fit_and_every_export_has_its_signature(name):
    """CV-DD overrode fit and MTT's export took other arguments; a method now adds behaviour through hooks."""
    cls = SYNTHESIZERS.get(name)
    assert cls.fit is Synthesizer.fit
    assert inspect.signature(cls.export) == inspect.signature(Synthesizer.export)


def test_every_module_of_the_package_is_imported_so_a_method_is_one_file():
    names = [m.name for m in pkgutil.iter_modules(package.__path__)]
    assert {"cvdd", "dm", "mtt", "ncfm", "select", "factory"} <= set(names)
    assert all(f"dsdistill.synthesizers.{n}" in sys.modules for n in names)
    assert {cls.__module__ for _, cls in SYNTHESIZERS.items()} <= {f"dsdistill.synthesizers.{n}" for n in names}


def test_fyi_dsa_sampler_is_selectable_and_off_by_default(tiny_real):
    """dsa_sampler=fyi: FYI's draw (a flip always, then one other group) for the DSA methods; `dsa` keeps DSA's."""
    plain = create_synthesizer("dm", width=8, batch_real=6)
    fyi = create_synthesizer("dm", width=8, batch_real=6, dsa_sampler="fyi")
    assert not plain.dsa(tiny_real).config.always_flip and fyi.dsa(tiny_real).config.always_flip
    assert create_synthesizer("datadam", dsa_sampler="fyi").dsa(tiny_real).config.always_flip
    ncfm = create_synthesizer("ncfm", augment="flip_color_crop_cutout", dsa_sampler="fyi").dsa(tiny_real)
    assert ncfm.config.always_flip and ncfm.config.all_groups
    a = plain.fit(tiny_real, 1, seed=0, budget=Budget(iterations=2))
    b = fyi.fit(tiny_real, 1, seed=0, budget=Budget(iterations=2))
    assert a.payload_sha256() != b.payload_sha256()
    with pytest.raises(ConfigError, match="digit datasets are never flipped"):
        fyi.dsa(dataclasses.replace(tiny_real, digits=True))
    with pytest.raises(ConfigError, match="dsa_sampler must be one of"):
        create_synthesizer("dm", dsa_sampler="sometimes").dsa(tiny_real)


def test_compiled_feature_pass_is_the_same_function(tiny_real):
    """--set compile=true compiles DM's feature passes (DataDAM and NCFM share them): the same images to float
    rounding, and the option stays out of the run's key when off (the records before it keep theirs)."""
    eager = small("dm").fit(tiny_real, 2, seed=0, budget=Budget(iterations=2))
    fast = small("dm", compile=True).fit(tiny_real, 2, seed=0, budget=Budget(iterations=2))
    assert torch.allclose(eager.images, fast.images, atol=1e-4)
    from dsdistill.synthesizers.base import keyed_config
    assert "compile" not in keyed_config(dataclasses.asdict(small("dm").config))
    assert keyed_config(dataclasses.asdict(small("dm", compile=True).config))["compile"] is True


def test_snapshots_go_to_the_callback_and_a_resume_skips_the_times_passed(tiny_real, tmp_path):
    taken = []
    budget = Budget(iterations=2, snapshot_minutes=(1e-9, 1e-8))
    small("dm").fit(tiny_real, 1, budget=budget, snapshot=taken.append, checkpoint=tmp_path / "a.ckpt")
    assert [s.extra["snapshot_minutes"] for s in taken] == [1e-9, 1e-8] and taken[0].distill_iterations == 1
    with pytest.raises(ConfigError, match="snapshot callback"):
        small("dm").fit(tiny_real, 1, budget=budget)
    from dsdistill._distributed import World
    assert small("dm")._snapshot_plan(budget, taken.append, World(), elapsed=1.0) == []   # both times passed
    with pytest.raises(ConfigError, match="increasing"):
        Budget(iterations=1, snapshot_minutes=(5, 5))
    with pytest.raises(ConfigError, match="takes no snapshot"):
        small("random").fit(tiny_real, 1, snapshot=taken.append)


def test_a_set_made_before_an_option_remakes_with_the_old_behaviour():
    """An option added later is absent from older set files; remaking one must take the value that behaved as
    before, not today's default (here: NCFM's per-class step and --flip's FYI sampler are today's defaults)."""
    from dsdistill.synthesizers.base import stored_config
    old_ncfm = stored_config(SYNTHESIZERS.get("ncfm"), {"flip": False})
    assert create_synthesizer("ncfm", **old_ncfm).config.image_step == "per-iteration"
    old_dm = create_synthesizer("dm", **stored_config(SYNTHESIZERS.get("dm"), {"flip": True}))
    assert old_dm.config.dsa_sampler == "dsa" and create_synthesizer("dm", flip=True).config.dsa_sampler == "fyi"
    assert "image_step" not in stored_config(SYNTHESIZERS.get("dm"), {})   # only the method's own fields
    assert stored_config(SYNTHESIZERS.get("ncfm"), {"image_step": "per-class"})["image_step"] == "per-class"
