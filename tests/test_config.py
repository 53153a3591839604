"""dsdistill._config.check_values: a config's values are of their declared types, finite and not negative."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from dsdistill._config import SIGNED, check_values, make_config
from dsdistill.errors import ConfigError
from dsdistill.synthesizers import SYNTHESIZERS


@dataclass
class Toy:
    steps: int = 3
    lr: float = 0.1
    name: str = "a"
    sizes: tuple[int, ...] = (1, 2)
    cap: int | None = None
    shift: float = field(default=-1.0, metadata={SIGNED: True})


@pytest.mark.parametrize("values, says", [
    ({"steps": "10"}, "steps = '10': expected int"),
    ({"steps": 2.5}, "expected int"),
    ({"steps": True}, "expected int"),
    ({"lr": "abc"}, "lr = 'abc': expected float"),
    ({"lr": float("nan")}, "expected a finite number"),
    ({"steps": -1}, "steps = -1: must not be negative"),
    ({"sizes": (1, -2)}, "sizes = -2: must not be negative"),
    ({"sizes": ("x",)}, "expected tuple"),
    ({"name": 3}, "expected str"),
])
def test_values_of_the_wrong_kind_are_refused_when_the_config_is_made(values, says):
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        make_config(Toy, values)


def test_valid_values_pass_and_signed_fields_may_be_negative():
    toy = make_config(Toy, {"steps": 0, "lr": 1, "cap": 4, "shift": -3.5, "sizes": [4]})
    assert (toy.steps, toy.lr, toy.cap, toy.shift) == (0, 1, 4, -3.5)
    assert check_values(Toy()) == Toy()


def test_every_registered_default_and_preset_passes():
    for name, cls in SYNTHESIZERS.items():
        make_config(cls.Config, {})
        for preset, values in getattr(cls, "PRESETS", {}).items():
            make_config(cls.Config, {k: v for k, v in values.items() if k != "iterations"})


def test_a_method_built_with_a_negative_count_is_refused():
    from dsdistill.synthesizers import create_synthesizer
    with pytest.raises(ConfigError, match="checkpoint_every = -1: must not be negative"):
        create_synthesizer("dm", checkpoint_every=-1)
    with pytest.raises(ConfigError, match="feature_epochs = -1"):
        create_synthesizer("herding", feature_epochs=-1)
