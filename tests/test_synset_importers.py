"""Importing other tools' sets: supported layouts, clear refusals, and no code execution."""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dsdistill.errors import SetFileError
from dsdistill.synset import SyntheticSet, import_set

K, IPC = 3, 2
META = dict(dataset="toy", num_classes=K, mean=(0.5,), std=(0.25,))


def images(seed: int = 0) -> torch.Tensor:
    return torch.randn(K * IPC, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


LABELS = torch.arange(K).repeat_interleave(IPC)


def dc_results(experiments: int = 2) -> dict:
    """The DC/DSA/DM layout; accuracies are numpy scalars, as DC's `epoch` returns them."""
    return {"data": [[images(e), LABELS.clone()] for e in range(experiments)],
            "accs_all_exps": {"ConvNet": [np.float64(0.5), np.float64(0.6)]}}


def test_dc_results_file_picks_experiment(tmp_path: Path) -> None:
    path = tmp_path / "res_DM_toy_ConvNet_2ipc.pt"
    torch.save(dc_results(), path)
    synset = import_set(path, experiment=1, method="dm", **META)
    assert torch.equal(synset.images, images(1)) and torch.equal(synset.labels, LABELS)
    assert synset.class_names == ["0", "1", "2"] and synset.soft_labels is None
    source = synset.extra["source"]
    assert source["structure"] == "dc-results" and source["experiment"] == 1
    assert source["accs_all_exps"] == {"ConvNet": [0.5, 0.6]} and len(source["sha256"]) == 64
    synset.save(tmp_path / "set.h5")
    assert SyntheticSet.load(tmp_path / "set.h5").payload_sha256() == synset.payload_sha256()


def test_dc_results_written_under_numpy_1(tmp_path: Path) -> None:
    """Published DC files name numpy.core.multiarray.scalar (numpy 1); they must still load."""
    buffer = io.BytesIO()
    torch.save(dc_results(), buffer, _use_new_zipfile_serialization=False)
    raw = buffer.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in raw
    path = tmp_path / "old.pt"
    path.write_bytes(raw)
    assert torch.equal(import_set(path, **META).images, images(0))


def test_dc_results_missing_experiment(tmp_path: Path) -> None:
    torch.save(dc_results(2), tmp_path / "res.pt")
    with pytest.raises(SetFileError, match=r"holds experiments 0\.\.1; experiment 5 does not"):
        import_set(tmp_path / "res.pt", experiment=5, **META)


@pytest.mark.parametrize("payload", [
    lambda: (images(), LABELS),
    lambda: [images(), LABELS],
    lambda: {"images": images(), "labels": LABELS},
    lambda: {"image_syn": images(), "label_syn": LABELS.float()},
])
def test_tensor_pair_layouts(tmp_path: Path, payload) -> None:
    torch.save(payload(), tmp_path / "pair.pt")
    synset = import_set(tmp_path / "pair.pt", class_names=["x", "y", "z"], **META)
    assert torch.equal(synset.images, images()) and synset.labels.dtype == torch.int64
    assert torch.equal(synset.labels, LABELS) and synset.class_names == ["x", "y", "z"]


def test_experiment_needs_a_results_file(tmp_path: Path) -> None:
    torch.save((images(), LABELS), tmp_path / "pair.pt")
    with pytest.raises(SetFileError, match="experiment=1 applies only to DC/DSA/DM"):
        import_set(tmp_path / "pair.pt", experiment=1, **META)


def test_two_files_with_learned_lr(tmp_path: Path) -> None:
    torch.save(images().requires_grad_(), tmp_path / "images_best.pt")
    torch.save(LABELS, tmp_path / "labels_best.pt")
    torch.save(torch.tensor(0.01), tmp_path / "lr_best.pt")
    synset = import_set(tmp_path / "images_best.pt", labels_path=tmp_path / "labels_best.pt",
                        lr=tmp_path / "lr_best.pt", method="mtt", **META)
    assert synset.lr == pytest.approx(0.01) and not synset.images.requires_grad
    assert synset.extra["source"]["structure"] == "tensor-files"
    assert "lr_sha256" in synset.extra["source"] and "labels_sha256" in synset.extra["source"]


def test_images_alone_ask_for_labels(tmp_path: Path) -> None:
    torch.save(images(), tmp_path / "images_best.pt")
    with pytest.raises(SetFileError, match="pass labels_path="):
        import_set(tmp_path / "images_best.pt", **META)


def test_soft_labels_become_soft_labels_with_argmax(tmp_path: Path) -> None:
    soft = torch.softmax(torch.randn(K * IPC, K, generator=torch.Generator().manual_seed(3)), 1)
    torch.save((images(), soft), tmp_path / "soft.pt")
    synset = import_set(tmp_path / "soft.pt", **META)
    assert torch.equal(synset.soft_labels, soft) and torch.equal(synset.labels, soft.argmax(1))
    assert "argmax" in synset.extra["label_source"]


class _Malicious:
    """Unpickling this would create a marker file: proof that the file ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_malicious_pickle_is_refused(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"images": images(), "labels": _Malicious(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(SetFileError, match="refusing to load") as caught:
        import_set(path, **META)
    assert not marker.exists() and "\n" not in str(caught.value)
    # The payload is live: an unrestricted unpickler would have run it.
    if writer == "pickle":
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_unknown_structure_is_described(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(2, 2), "epoch": 3}, tmp_path / "ckpt.pt")
    with pytest.raises(SetFileError, match=r"unknown structure: found dict \{'weights': "
                                           r"float32 tensor \(2, 2\), 'epoch': int\}"):
        import_set(tmp_path / "ckpt.pt", **META)


def test_not_a_torch_file(tmp_path: Path) -> None:
    (tmp_path / "x.pt").write_bytes(bytes(range(256)))
    with pytest.raises(SetFileError, match="not a torch file of tensors") as caught:
        import_set(tmp_path / "x.pt", **META)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


def test_set_file_is_not_imported(tmp_path: Path) -> None:
    torch.save((images(), LABELS), tmp_path / "pair.pt")
    import_set(tmp_path / "pair.pt", **META).save(tmp_path / "set.h5")
    with pytest.raises(SetFileError, match="read with SyntheticSet.load"):
        import_set(tmp_path / "set.h5", **META)


def test_text_file_is_not_a_torch_file(tmp_path: Path) -> None:
    (tmp_path / "x.pt").write_text("hello")
    with pytest.raises(SetFileError, match="not a readable torch file"):
        import_set(tmp_path / "x.pt", **META)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SetFileError, match="no such file"):
        import_set(tmp_path / "absent.pt", **META)


def test_metadata_mismatch_is_reported(tmp_path: Path) -> None:
    torch.save((images(), LABELS), tmp_path / "pair.pt")
    with pytest.raises(SetFileError, match="mean must hold 1 finite numbers"):
        import_set(tmp_path / "pair.pt", dataset="cifar10", num_classes=K,
                   mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010))
