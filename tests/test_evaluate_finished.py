"""An interrupted evaluation resumes at the next model (dsdistill.evaluate.finished) and scores exactly what
an uninterrupted one scores."""
import dataclasses
import json

import pytest

from dsdistill.evaluate import evaluate, finished, get_protocol, trainer
from dsdistill.evaluate.finished import FinishedModel, FinishedModels
from dsdistill.synthesizers import create_synthesizer
from dsdistill.train import loop

TINY = dataclasses.replace(get_protocol("dc"), name="tiny", epochs=4, seeds=(0, 1, 2), batch_size=16,
                           model_options=(("width", 8),))


def interrupt_after(monkeypatch, adds: int):
    """Raise KeyboardInterrupt right after the log holds `adds` more models (as Ctrl-C between two models)."""
    original, seen = FinishedModels.add, []

    def add(self, arch, seed, model):
        original(self, arch, seed, model)
        seen.append((arch, seed))
        if len(seen) == adds:
            raise KeyboardInterrupt

    monkeypatch.setattr(FinishedModels, "add", add)


def count_trained(monkeypatch) -> list[int]:
    """Seeds of the models actually built (a resumed model is never built again)."""
    built, original = [], trainer.make_models

    def make_models(factory, seeds, device):
        built.extend(seeds)
        return original(factory, seeds, device)

    monkeypatch.setattr(trainer, "make_models", make_models)
    return built


@pytest.mark.parametrize("path", ["loop", "vmap"])
def test_interrupted_evaluation_resumes_to_the_same_scores(tiny_real, tmp_path, monkeypatch, path):
    synset = create_synthesizer("random").fit(tiny_real, 3, seed=0)
    archs = ["convnet", "mlp"]
    fresh = evaluate(synset, TINY, data=tiny_real, device="cpu", path=path, archs=archs)
    log = tmp_path / "eval.partial.json"
    # loop: stop after the second convnet model; vmap (each architecture's models train as one): after convnet
    interrupt_after(monkeypatch, 2 if path == "loop" else 3)
    with pytest.raises(KeyboardInterrupt):
        evaluate(synset, TINY, data=tiny_real, device="cpu", path=path, archs=archs, resume=log)
    held = json.loads(log.read_text())
    assert sorted(held["models"]) == (["convnet/loop/0", "convnet/loop/1"] if path == "loop"
                                      else ["convnet/vmap/0", "convnet/vmap/1", "convnet/vmap/2"])
    monkeypatch.undo()
    built = count_trained(monkeypatch)
    resumed = evaluate(synset, TINY, data=tiny_real, device="cpu", path=path, archs=archs, resume=log)
    assert built == ([2, 0, 1, 2] if path == "loop" else [0, 1, 2])  # only the models not finished before
    assert [r.accuracies for r in resumed.results] == [r.accuracies for r in fresh.results]
    assert any(n.startswith(f"resumed: {len(held['models'])} model(s)") for n in resumed.notes)
    assert not log.exists()  # the report is complete: the log is gone


def test_a_log_of_another_evaluation_is_not_used(tiny_real, tmp_path, monkeypatch):
    log = tmp_path / "eval.partial.json"
    one, other = (create_synthesizer("random").fit(tiny_real, 2, seed=s) for s in (0, 1))
    interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        evaluate(one, TINY, data=tiny_real, device="cpu", path="loop", resume=log)
    monkeypatch.undo()
    built = count_trained(monkeypatch)
    report = evaluate(other, TINY, data=tiny_real, device="cpu", path="loop", resume=log)
    assert built == [0, 1, 2] and not any(n.startswith("resumed") for n in report.notes)
    assert report.results[0].accuracies == evaluate(other, TINY, data=tiny_real, device="cpu").results[0].accuracies


def test_log_round_trip_and_damage(tmp_path):
    path, identity = tmp_path / "log.json", {"set_sha256": "ab", "protocol_hash": "cd"}
    log = FinishedModels(path, identity)
    log.for_arch("convnet/loop").add(3, FinishedModel(0.5, 1.0, 0.1))
    again = FinishedModels(path, identity)
    assert again.resumed == 1 and again.for_arch("convnet/loop").get(3) == FinishedModel(0.5, 1.0, 0.1)
    assert again.get("convnet/loop", 4) is None and again.get("mlp/loop", 3) is None
    assert FinishedModels(path, {**identity, "protocol_hash": "ef"}).resumed == 0
    path.write_text("{not json")
    assert FinishedModels(path, identity).resumed == 0  # a damaged log costs only its models
    again.remove()
    assert not path.exists()
    assert finished.FinishedModels(None, identity).path is None


def stop_at_point(monkeypatch, seed: int, epoch: int):
    """Save every epoch, and raise KeyboardInterrupt once model `seed` is saved after `epoch` epochs."""
    monkeypatch.setattr(finished, "SAVE_EVERY_SECONDS", 0.0)
    original = FinishedModels.save_point

    def save_point(self, arch, s, point):
        original(self, arch, s, point)
        if s == seed and point().epoch == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(FinishedModels, "save_point", save_point)


def epochs_trained(monkeypatch) -> list[tuple[int, int]]:
    seen, original = [], loop.batch_order

    def batch_order(n, batch_size, seed, purpose, epoch, limit=0):
        seen.append((seed, epoch))
        return original(n, batch_size, seed, purpose, epoch, limit)

    monkeypatch.setattr(loop, "batch_order", batch_order)
    return seen


@pytest.mark.parametrize("epoch", [1, 2, 3])  # TINY decays the lr (and drops the momentum) at epoch 2
def test_a_model_interrupted_mid_training_continues_from_its_epoch(tiny_real, tmp_path, monkeypatch, epoch):
    synset = create_synthesizer("random").fit(tiny_real, 3, seed=0)
    fresh = evaluate(synset, TINY, data=tiny_real, device="cpu", path="loop")
    log = tmp_path / "eval.partial.json"
    stop_at_point(monkeypatch, seed=1, epoch=epoch)
    with pytest.raises(KeyboardInterrupt):
        evaluate(synset, TINY, data=tiny_real, device="cpu", path="loop", resume=log)
    assert (tmp_path / "eval.partial.json.model.pt").exists()
    monkeypatch.undo()
    seen = epochs_trained(monkeypatch)
    resumed = evaluate(synset, TINY, data=tiny_real, device="cpu", path="loop", resume=log)
    assert seen == [(1, e) for e in range(epoch, 4)] + [(2, e) for e in range(4)]
    assert resumed.results[0].accuracies == fresh.results[0].accuracies
    assert not log.exists() and not (tmp_path / "eval.partial.json.model.pt").exists()


def test_a_saved_model_of_another_seed_or_evaluation_is_not_used(tiny_real, tmp_path, monkeypatch):
    synset = create_synthesizer("random").fit(tiny_real, 3, seed=0)
    log = tmp_path / "eval.partial.json"
    stop_at_point(monkeypatch, seed=0, epoch=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate(synset, TINY, data=tiny_real, device="cpu", path="loop", resume=log)
    monkeypatch.undo()
    log.unlink(missing_ok=True)  # no finished model: seed 0 starts again, from its saved epoch
    other = dataclasses.replace(TINY, seeds=(1, 2))
    seen = epochs_trained(monkeypatch)
    evaluate(synset, other, data=tiny_real, device="cpu", path="loop", resume=log)  # another protocol
    assert seen == [(1, e) for e in range(4)] + [(2, e) for e in range(4)]
