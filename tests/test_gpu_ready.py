"""GPU-ready by construction (issue 19), checked on a CPU: tensors follow the model's device (a model on `meta`
stands in for a GPU), bulk draws happen on the device, joint passes fit a memory budget, one host transfer per
iteration, and the deterministic switch."""
from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from conftest import tiny_committee_dir, tiny_method
from device_guard import DeviceGuard

from dsdistill import _seed
from dsdistill.errors import ConfigError
from dsdistill.models import create_model
from dsdistill.synthesizers import Budget, create_synthesizer
from dsdistill.synthesizers import ncfm as ncfm_module
from dsdistill.synthesizers.dm import DM
from dsdistill.synthesizers.joint import activation_bytes, class_chunks, joint_chunks
from dsdistill.synthesizers.sharding import on_host
from dsdistill.teachers.committee import Committee, Member
from dsdistill.teachers.ensemble import Teacher
from dsdistill.teachers.relabel import relabel


def _meta_model(real) -> nn.Module:
    return create_model("convnet", real.channels, real.num_classes, real.image_size, width=8).to("meta").eval()


# ---- 1. the teacher's weight buffer lives with its members
def test_teacher_weights_are_made_on_the_members_device(tiny_real):
    """The CUDA relabel crash: members on the GPU, the weight buffer made on the CPU and never moved. On `meta`
    the same construction is visible without a GPU (the old code made the buffer on the CPU)."""
    model = _meta_model(tiny_real)
    for teacher in (Teacher([model], [1.0], bn_mode="eval"),
                    Committee("c", tiny_real.name, [Member("m", model, 80.0, "0" * 64, 1, 80.0, None)])
                    .teacher(torch.tensor([1.0]), "eval")):
        assert teacher.weights.device.type == "meta" and teacher.device.type == "meta"


def test_stored_relabel_keeps_every_op_on_the_teachers_device(tiny_real):
    """Stored relabelling with the teacher on `meta` and the set's images on the CPU: every op that touches the
    teacher's tensors stays on its device (the old code sent the images to the weight buffer's CPU)."""
    synset = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    teacher = Teacher([_meta_model(tiny_real)], [1.0], bn_mode="eval")
    guard = DeviceGuard("meta")
    with guard:
        labelled = relabel(synset, teacher, "stored")
    assert guard.strays == []
    assert labelled.soft_labels.shape == (8, tiny_real.num_classes)


def test_device_guard_catches_the_old_mismatch(tiny_real):
    """The helper itself: a CPU weight beside a meta member is a stray (what the CUDA crash was)."""
    guard = DeviceGuard("meta")
    with guard, pytest.raises(RuntimeError, match="device"):  # meta, like CUDA, refuses a CPU tensor beside it
        out = _meta_model(tiny_real)(torch.zeros(2, 1, 28, 28, device="meta"))
        _ = torch.tensor(1.0) * out + torch.ones(out.shape[-1])
    assert guard.strays and guard.strays[0][1] == {torch.device("meta"), torch.device("cpu")}


# ---- 2. NCFM's frequencies are drawn on the device
def test_ncfm_frequencies_come_from_a_generator_on_the_images_device(monkeypatch):
    """The old code drew 4096 x D on a CPU generator and copied; now the generator is made on the images' device,
    and on the CPU the draw is the bytes of before (the same seed key)."""
    synth = create_synthesizer("ncfm", num_freqs=16, sampler="gaussian")
    asked = []
    real_make = _seed.make_generator

    def spy(*key, device="cpu"):
        asked.append(torch.device(device))
        return real_make(*key, device=device)

    monkeypatch.setattr(ncfm_module, "make_generator", spy)
    state = types.SimpleNamespace(images=torch.zeros(1))
    freqs = synth.frequencies(state, 3, 5, seed=7, it=2)
    assert asked == [torch.device("cpu")]
    assert freqs.device == state.images.device
    assert torch.equal(freqs, torch.randn(16, 5, generator=real_make(7, "freqs", 3, 2)))
    state.images = types.SimpleNamespace(device=torch.device("meta"))  # where a GPU run's images would be
    with pytest.raises(RuntimeError):  # torch has no meta generator: the point is that it was asked for one
        synth.frequencies(state, 3, 5, seed=7, it=2)
    assert asked[-1] == torch.device("meta")


# ---- 3. joint passes fit a memory budget
def test_activation_estimate_is_the_first_activation_and_more(tiny_real):
    """A ConvNet's first conv output (width x H x W floats per image) is part of the estimate, the probe leaves
    the modes as they were, and at Tiny-ImageNet's shape the one joint pass would need over 100 GB."""
    net = create_model("convnet", 3, 200, 64, width=128, depth=4).train()
    per_image = activation_bytes(net, torch.zeros(1, 3, 64, 64))
    assert per_image >= 128 * 64 * 64 * 4
    assert all(m.training for m in net.modules())
    assert 200 * 256 * 128 * 64 * 64 * 4 / 1e9 > 100  # the figure: the first activation alone
    assert len(class_chunks([256 + 50] * 200, per_image, 8.0)) > 1


def test_class_chunks_keep_order_and_fit_the_budget():
    assert class_chunks([2, 2, 2, 2], 1, 4e-9) == [[0, 1], [2, 3]]
    assert class_chunks([2, 2, 2], 1, 1.0) == [[0, 1, 2]]
    assert class_chunks([5, 1], 1, 1e-9) == [[0], [1]]  # a class over budget still goes, alone
    assert class_chunks([], 1, 1.0) == []


def _one_class_budget(name: str, real) -> float:
    """A budget that holds exactly one class's real and synthetic images (ipc 2)."""
    synth = tiny_method(name)
    net = synth.random_network(real, 0, 0)
    return 1.5 * (synth.config.batch_real + 2) * activation_bytes(net, real.train.images[:1]) / 1e9


@pytest.mark.parametrize("name", ["dm", "datadam", "ncfm"])
def test_chunked_joint_pass_is_the_joint_function(tiny_real, name, monkeypatch):
    """Joint in chunks of one class gives per-class's bytes (the same passes in the same order), and matches the
    one joint pass to float rounding; the passes are counted, so the chunks are known to have run."""
    original, passes = DM._features, []

    def counted(self, net, batches):
        passes.append(len(batches))
        return original(self, net, batches)

    monkeypatch.setattr(DM, "_features", counted)
    budget = _one_class_budget(name, tiny_real)
    # NCFM's joint pass takes the summed image step (its per-class steps match one class at a time)
    extra = {"image_step": "per-iteration"} if name == "ncfm" else {}
    runs = {}
    for label, options in (("joint", {"class_batching": "joint"}),
                           ("chunked", {"class_batching": "joint", "joint_memory_gb": budget}),
                           ("per-class", {"class_batching": "per-class"})):
        passes.clear()
        runs[label] = tiny_method(name, **options, **extra).fit(tiny_real, 2, seed=0, budget=Budget(iterations=2))
        runs[label + " passes"] = list(passes)
    assert runs["joint passes"] == [4, 4] * 2 and runs["chunked passes"] == [1] * 16
    assert torch.equal(runs["chunked"].images, runs["per-class"].images)
    assert torch.allclose(runs["chunked"].images, runs["joint"].images, atol=1e-5)


def test_two_class_chunks_match_the_one_pass(tiny_real):
    budget = 2 * _one_class_budget("dm", tiny_real)
    one = tiny_method("dm", class_batching="joint").fit(tiny_real, 2, seed=0, budget=Budget(iterations=3))
    two = tiny_method("dm", class_batching="joint", joint_memory_gb=budget).fit(tiny_real, 2, seed=0,
                                                                                budget=Budget(iterations=3))
    assert torch.allclose(one.images, two.images, atol=1e-5)


def test_batch_norm_joint_pass_over_budget_is_refused(tiny_real):
    """Train-mode BN normalises all classes of the pass together: chunks would be another objective."""
    with pytest.raises(ConfigError, match="joint_memory_gb.*batch norm"):
        tiny_method("dm", norm="batch", joint_memory_gb=1e-9).fit(tiny_real, 2, budget=Budget(iterations=1))
    net = create_model("convnet-bn", 1, 4, 28, width=8).eval()  # eval-mode BN (CV-DD's voters) may be chunked
    assert len(joint_chunks(net, [(torch.zeros(3, 1, 28, 28),)] * 4, 1e-9, "x")) == 4
    with pytest.raises(ConfigError, match="positive"):
        joint_chunks(net, [(torch.zeros(3, 1, 28, 28),)], 0.0, "x")


def test_cvdd_voters_go_in_chunks_to_the_same_images(tiny_real):
    options = {"committee": tiny_committee_dir(), "init": "real", "flip": True}
    joint = create_synthesizer("cvdd", **options).fit(tiny_real, 2, seed=1, budget=Budget(iterations=4))
    chunked = create_synthesizer("cvdd", joint_memory_gb=1e-9, **options).fit(tiny_real, 2, seed=1,
                                                                                budget=Budget(iterations=4))
    per_class = create_synthesizer("cvdd", class_batching="per-class", **options).fit(
        tiny_real, 2, seed=1, budget=Budget(iterations=4))
    assert torch.equal(chunked.images, per_class.images)
    assert torch.allclose(chunked.images, joint.images, atol=1e-4)


def test_joint_memory_budget_is_not_part_of_the_recipe():
    """How a pass is chunked does not change the function, so stored records keep their keys."""
    from dsdistill.synthesizers.base import _OPERATIONAL
    assert "joint_memory_gb" in _OPERATIONAL


# ---- 5. one host transfer per iteration
def test_on_host_reads_what_item_reads():
    values = [torch.tensor(1 / 3), torch.tensor(2.5, dtype=torch.float64)]
    parts = [{"a": torch.tensor(0.1)}, {"a": torch.tensor(0.7), "b": torch.tensor(1e-8, dtype=torch.float64)}]
    head, tail = on_host(values, parts)
    assert head == [v.item() for v in values]
    assert tail == [{k: v.item() for k, v in p.items()} for p in parts]
    assert on_host([]) == ([], [])


def test_dm_step_reads_the_device_once_per_iteration(tiny_real, monkeypatch):
    """The per-class `.item()` (one wait for the GPU per class) is gone: a per-class DataDAM step makes no
    .item() on a value computed from the images, and its logged loss is the sum of the per-class terms, as before."""
    calls = []
    original = torch.Tensor.item

    def item(self):
        if self.requires_grad:  # a loss on the images' device (DSA's pick reads a CPU generator's draw: no wait)
            calls.append(1)
        return original(self)

    synth = tiny_method("datadam", class_batching="per-class")
    state = synth.start(tiny_real, 2, 0, budget=Budget(iterations=1))
    monkeypatch.setattr(torch.Tensor, "item", item)
    figures = synth.step(state, tiny_real, 0, 0)
    assert calls == []
    assert len(figures["class_losses"]) == 4 and figures["loss"] == sum(figures["class_losses"])
    assert set(figures) >= {"sam", "mmd"}


def test_activation_bytes_under_a_flop_counter():
    """The paper dry run counts FLOPs (FlopCounterMode) while a joint pass sizes itself on a synthetic image, a
    leaf that requires grad: the probe forward must not hand the module tracker a no-grad view of it."""
    from torch.utils.flop_counter import FlopCounterMode
    net = create_model("convnet", 1, 4, 28, width=12, depth=2)
    x = torch.randn(2, 1, 28, 28, requires_grad=True)
    with FlopCounterMode(display=False):
        assert activation_bytes(net, x) > 0
