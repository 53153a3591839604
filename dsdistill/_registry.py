"""Name -> object registries: the one extension mechanism of dsdistill (no if/elif chains)."""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> str:
    """'unknown protocol 'dcc'; did you mean 'dc'? valid: ...': the closest name (difflib's ratio >= 0.6, its
    default) first, so a typo is fixed without reading the list."""
    valid = list(valid)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown {kind} {name!r}; {hint}valid: {', '.join(valid)}"


class Registry(Generic[T]):
    """A registry of one kind of thing (datasets, models, synthesizers, ...).

    Registering a name twice is an error (timm only warns; a silent overwrite hides bugs).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str, offer: Iterable[str] | None = None) -> T:
        """The entry `name`; an unknown name is one line listing the valid names (`offer`, when given, narrows
        the list to those that fit the caller, e.g. synthesizers only for `distill`) and the close ones."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(unknown_name(self.kind, name, self.list() if offer is None else offer)) from None

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def items(self) -> list[tuple[str, Any]]:
        return [(n, self._items[n]) for n in self.list()]
