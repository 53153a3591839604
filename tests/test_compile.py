"""dsdistill._compile: torch.compile with a compiler failure as one clear line."""
import pytest
import torch

from dsdistill import _compile
from dsdistill.errors import ConfigError


def test_a_compiled_function_computes_the_eager_one():
    fn = _compile.compiled(lambda x: torch.relu(x) * 2 + 1, "a test function", "run it eagerly")
    x = torch.randn(8, 4)
    assert torch.allclose(fn(x), torch.relu(x) * 2 + 1)


def test_a_compiler_failure_is_one_line_naming_the_way_out(monkeypatch):
    class BackendCompilerFailed(Exception):
        pass

    BackendCompilerFailed.__module__ = "torch._dynamo.exc"

    def broken(*args, **kwargs):
        raise BackendCompilerFailed("inductor: no C++ compiler found\nmore detail")

    monkeypatch.setattr(_compile.torch, "compile", lambda fn, dynamic=False: broken)
    fn = _compile.compiled(lambda x: x, "the feature pass", "drop --set compile=true")
    with pytest.raises(ConfigError, match=r"could not compile the feature pass \(BackendCompilerFailed: inductor: "
                                          r"no C\+\+ compiler found\); drop --set compile=true"):
        fn(torch.zeros(1))
    monkeypatch.setattr(_compile.torch, "compile", lambda fn, dynamic=False: lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):   # not a compiler error: passed through untouched
        _compile.compiled(lambda x: x, "x", "y")(torch.zeros(1))
