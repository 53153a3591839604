"""The compiled (fast) path, protocol precision, and how `--path auto` chooses."""
import dataclasses
import json

import pytest
import torch

from dsdistill.errors import ConfigError
from dsdistill.evaluate import evaluate, get_protocol
from dsdistill.evaluate import paths as paths_module
from dsdistill.evaluate.engine import Engine, native_bf16
from dsdistill.evaluate.trainer import ORDER, TrainSpec, cross_entropy_with, eval_recipe, make_models, trains_with
from dsdistill.models import create_model
from dsdistill.synthesizers import create_synthesizer
from dsdistill.train.loop import Data

TINY = dataclasses.replace(get_protocol("dc"), name="tiny", epochs=3, seeds=(0, 1), batch_size=16,
                           model_options=(("width", 8),))
SPEC = TrainSpec(epochs=3, lr=0.01, momentum=0.9, weight_decay=5e-4, batch_size=16, decay_epoch=2, decay_factor=0.1)


def _trained(real, engine: Engine) -> list[torch.Tensor]:
    """One model trained by the loop's machinery with `engine`; its parameters."""
    factory = lambda: create_model("convnet", 1, real.num_classes, real.image_size, width=8)  # noqa: E731
    model = make_models(factory, [0], torch.device("cpu"))[0]
    train_one = trains_with(Data(real.train.images, real.train.labels, ORDER), eval_recipe(SPEC), SPEC.epochs,
                            cross_entropy_with(engine))
    for _ in train_one(model, 0, 0, None):
        pass
    return [p.detach().clone() for p in model.parameters()]


def test_fast_path_is_the_loop_compiled(tiny_real):
    """The same models and draws with a compiled forward: the weights agree to float rounding (a fused kernel may
    reorder sums), and evaluate(path="fast") scores and reports its path."""
    loop, fast = _trained(tiny_real, Engine()), _trained(tiny_real, Engine(compiled=True))
    assert all(torch.allclose(a, b, atol=1e-4, rtol=1e-4) for a, b in zip(loop, fast))
    synset = create_synthesizer("random").fit(tiny_real, 3, seed=0)
    reports = {path: evaluate(synset, TINY, data=tiny_real, device="cpu", path=path) for path in ("loop", "fast")}
    assert reports["fast"].results[0].path == "fast"
    diff = [abs(a - b) for a, b in zip(reports["loop"].results[0].accuracies, reports["fast"].results[0].accuracies)]
    assert max(diff) <= 1 / len(tiny_real.test.labels) + 1e-9   # at most one test image changes its argmax


def test_precision_is_a_protocol_field_in_its_hash():
    dc, bf16 = get_protocol("dc"), get_protocol("dc-bf16")
    assert dc.hash == "7c23d97b142723d8"   # fp32 leaves the hash of every stored dc record as it was
    assert "precision" not in dc.identity() and bf16.identity()["precision"] == "bf16"
    assert bf16.hash != dc.hash and dataclasses.replace(bf16, name="dc", precision="fp32").hash == dc.hash
    with pytest.raises(ConfigError, match="unknown precision"):
        Engine("fp16")


def test_bf16_autocasts_the_convolutions_and_keeps_fp32_weights(tiny_real):
    engine = Engine("bf16")
    model = create_model("convnet", 1, tiny_real.num_classes, tiny_real.image_size, width=8)
    with engine.autocast(torch.device("cpu")):
        logits = model(tiny_real.train.images[:2])
    assert logits.dtype == torch.bfloat16 and all(p.dtype == torch.float32 for p in model.parameters())
    fp32, bf = _trained(tiny_real, Engine()), _trained(tiny_real, engine)
    assert not all(torch.equal(a, b) for a, b in zip(fp32, bf))   # other numerics: declared, not hidden
    assert max((a - b).abs().max() for a, b in zip(fp32, bf)) < 0.05   # ... but the same training
    assert isinstance(native_bf16(torch.device("cpu")), bool)


def test_soft_label_protocols_refuse_the_fast_path_and_bf16(fmnist_committee):
    from conftest import make_tiny_real
    tiny_real = make_tiny_real(num_classes=10)   # the committee's classes
    synset = create_synthesizer("random").fit(tiny_real, 1, seed=0)
    kd = dataclasses.replace(get_protocol("kd"), epochs=1, seeds=(0,))
    with pytest.raises(ConfigError, match="loop path"):
        evaluate(synset, kd, data=tiny_real, device="cpu", path="fast", teacher=fmnist_committee)
    with pytest.raises(ConfigError, match="fp32 only"):
        evaluate(synset, dataclasses.replace(kd, precision="bf16"), data=tiny_real, device="cpu",
                 teacher=fmnist_committee)


def test_auto_takes_the_loop_for_a_short_run_and_measures_a_long_one(tiny_real, tmp_path, monkeypatch):
    monkeypatch.setenv("DSDISTILL_CACHE", str(tmp_path))
    factory = lambda: create_model("convnet", 1, tiny_real.num_classes, tiny_real.image_size, width=8)  # noqa: E731
    x, y = tiny_real.train.images, tiny_real.train.labels
    cpu = torch.device("cpu")
    assert paths_module.choose_path(cpu, False, factory, x, y, SPEC, 2) == ("loop", "")   # short: nothing compiled
    assert not (tmp_path / "paths.json").exists()
    assert paths_module.choose_path(torch.device("cuda"), False, factory, x, y, SPEC, 2)[0] == "vmap"
    assert paths_module.choose_path(torch.device("cuda"), True, factory, x, y, SPEC, 2)[0] == "loop"
    measured = []

    def fake_steps(factory, batch, engine):
        measured.append(engine.compiled)
        return (5.0, 0.010) if engine.compiled else (0.0, 0.020)   # fast: half the step, 5 s to compile

    monkeypatch.setattr(paths_module, "_step_seconds", fake_steps)
    long_run = dataclasses.replace(SPEC, epochs=10_000)            # 60,000 steps (3 a epoch, 2 models): 1200 s
    path, why = paths_module.choose_path(cpu, False, factory, x, y, long_run, 2)
    assert path == "fast" and "measured on this machine" in why and measured == [False, True]
    assert len(json.loads((tmp_path / "paths.json").read_text())) == 1
    again = paths_module.choose_path(cpu, False, factory, x, y, long_run, 2)
    assert again[0] == "fast" and measured == [False, True]          # cached: the same choice, nothing re-timed
    assert paths_module.choose_path(cpu, False, factory, x, y, dataclasses.replace(SPEC, epochs=10), 2)[0] == "loop"
