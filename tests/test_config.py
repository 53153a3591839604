"""dsdistill._config: --set overrides (types, errors, unknown options) and check_values (a config's values are of
their declared types, finite and not negative)."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from dsdistill._config import SIGNED, check_values, make_config, parse_overrides
from dsdistill.errors import ConfigError
from dsdistill.synthesizers import SYNTHESIZERS


@dataclass
class _Cfg:
    lr: float = 1.0
    steps: int = 3
    flip: bool = False
    name: str = "x"
    maybe: int | None = None
    sizes: tuple[int, ...] = (1, 2)


def test_parse_overrides_coerces_types():
    got = parse_overrides(_Cfg, ["lr=0.5", "steps=7", "flip=true", "name=y", "maybe=none", "sizes=3,4"])
    assert got == {"lr": 0.5, "steps": 7, "flip": True, "name": "y", "maybe": None, "sizes": (3, 4)}
    assert parse_overrides(_Cfg, ["maybe=5"]) == {"maybe": 5}


@pytest.mark.parametrize("pair,msg", [("nope=1", "unknown option 'nope'.*valid: flip, lr"),
                                      ("steps=abc", "expected int"), ("flip=maybe", "true or false"),
                                      ("novalue", "key=value")])
def test_parse_overrides_errors(pair, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_overrides(_Cfg, [pair])


def test_make_config_drops_none_and_rejects_unknown():
    assert make_config(_Cfg, {"lr": None, "steps": 9}) == _Cfg(steps=9)
    with pytest.raises(ConfigError, match="unknown option"):
        make_config(_Cfg, {"bogus": 1})


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
