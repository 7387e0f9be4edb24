"""Counts in the words people read: ``1 memory``, ``2 memories``, ``1 API key``.

Messages used to spell every count in the plural ("1 API keys", "restored 1 memories");
every message that puts a number before a noun goes through :func:`count`.
"""

from __future__ import annotations

_VOWELS = frozenset("aeiou")


def plural(noun: str) -> str:
    """The plural of a regular English noun, the last word of ``noun`` inflected:
    ``memory`` → ``memories``, ``history entry`` → ``history entries``, ``key`` → ``keys``,
    ``pass`` → ``passes``."""
    if noun.endswith("y") and noun[-2:-1] not in _VOWELS:
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def count(n: int, noun: str, irregular: str | None = None) -> str:
    """``n`` and ``noun`` in the number ``n`` takes: ``1 link``, ``0 links``, ``3 links``.
    ``irregular`` is the plural where :func:`plural` would spell it wrong."""
    return f"{n} {noun if n == 1 else irregular or plural(noun)}"


def agree(n: int, one: str, many: str) -> str:
    """The word that agrees with a count of ``n``: ``agree(1, "was", "were")`` → ``was``."""
    return one if n == 1 else many
