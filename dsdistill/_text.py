"""Words for the messages and tables we print: a count with its noun in the right number ("1 iteration")."""
from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """'1 iteration', '3 iterations', '0 iterations'; `plural` for nouns that do not take an s (e.g. 'entries')."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


__all__ = ["count"]
