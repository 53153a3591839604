"""Config overrides from the command line: types, errors, unknown options."""
from dataclasses import dataclass

import pytest

from dsdistill._config import make_config, parse_overrides
from dsdistill.errors import ConfigError


@dataclass


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
