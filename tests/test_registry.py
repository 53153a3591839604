"""The registry every name goes through: register, get, list, duplicates."""
import pytest

from dsdistill._registry import Registry
from dsdistill.errors import UnknownNameError


def test_registry_register_get_list_and_duplicates():
    reg = Registry("thing")
    reg.register("b")(2)
    reg.register("a")(1)
    assert reg.get("a") == 1 and reg.list() == ["a", "b"] and reg.list("a*") == ["a"]
    with pytest.raises(ValueError, match="twice"):
        reg.register("a")(3)
    with pytest.raises(UnknownNameError, match="valid: a, b"):
        reg.get("zzz")


def test_registry_offers_close_names_and_a_narrowed_list():
    reg = Registry("protocol")
    for name in ("dc", "dc-quick", "kd", "smoke"):
        reg.register(name)(name)
    with pytest.raises(UnknownNameError, match=r"^unknown protocol 'smoek'; did you mean 'smoke'\? valid: dc, "):
        reg.get("smoek")
    with pytest.raises(UnknownNameError, match=r"^unknown protocol 'zzz'; valid: dc, dc-quick, kd, smoke$"):
        reg.get("zzz")  # nothing close: no suggestion
    with pytest.raises(UnknownNameError, match=r"^unknown protocol 'kdd'; did you mean 'kd'\? valid: kd, smoke$"):
        reg.get("kdd", offer=["kd", "smoke"])
