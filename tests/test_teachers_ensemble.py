"""The ensemble teacher: prior weights, one forward over the members, batch-norm statistics in train mode."""
import pytest
import torch

from dsdistill._seed import seeded_init
from dsdistill.errors import ConfigError
from dsdistill.models import create_model
from dsdistill.teachers.ensemble import Teacher, prior_weights


def test_teacher_weights_and_bssl_keep_running_stats(trained_teacher):
    w = prior_weights([90.0, 85.0], 5.0)
    assert torch.allclose(w, torch.softmax(torch.tensor([18.0, 17.0]), 0))
    other = seeded_init(create_model("convnet-bn", 1, 4, 28, width=8), 1, "t")
    teacher = Teacher([trained_teacher, other], w, bn_mode="train")
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    x = torch.randn(5, 1, 28, 28)
    out = teacher(x)
    expected_bn = [m for m in teacher.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(m.training for m in expected_bn) and not teacher.members[0].training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items() if "num_batches" not in k)
    trained_teacher.train(), other.train()
    direct = w[0] * trained_teacher(x) + w[1] * other(x)
    assert torch.allclose(out, direct, atol=1e-5)
    with pytest.raises(ConfigError, match="BatchNorm"):
        Teacher([create_model("convnet", 1, 4, 28, width=8)], [1.0], bn_mode="train")
