"""End to end on real Fashion-MNIST (skipped with a reason when the Debian package is not installed)."""
from pathlib import Path

import pytest

import dsdistill

FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
pytestmark = pytest.mark.skipif(not FMNIST.exists(), reason="dataset-fashion-mnist is not installed (make data)")


def test_public_api_select_distill_save_load_evaluate(tmp_path):
    real = dsdistill.load_dataset("fashion-mnist")
    synth = dsdistill.create_synthesizer("datadam", width=16, batch_real=16, flip=True)
    synset = synth.fit(real, ipc=1, seed=0, budget=dsdistill.Budget(iterations=2))
    synset.save(tmp_path / "s.h5")
    loaded = dsdistill.SyntheticSet.load(tmp_path / "s.h5")
    assert loaded.payload_sha256() == synset.payload_sha256() and loaded.method == "datadam"
    chosen = dsdistill.create_synthesizer("random").fit(real, ipc=1, seed=0)
    report = dsdistill.evaluate(chosen, "smoke", data=real, device="cpu")
    assert 0.0 <= report.results[0].mean <= 1.0 and report.protocol == "smoke"
