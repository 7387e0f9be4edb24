"""Parsing of loose caller values (enum names, times) into checked ones.

Every face hands the core strings; these helpers turn them into the values the rules need
and say what to fix when they cannot. They live apart from the service so that the core
modules beside it (lifecycle, graph) share them without importing the service.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import TypeVar

from memmesh.clock import parse_ts
from memmesh.errors import InvalidInputError


def enum_value(enum: type[Enum], value: object, name: str) -> str | None:
    """The value of ``enum`` named by ``value`` (None for None or ""), or a clear error
    listing the allowed values."""
    if value is None or value == "":
        return None
    try:
        return str(enum(value).value)
    except ValueError:
        raise InvalidInputError(f"unknown {name} {value!r}: use one of {', '.join(str(e.value) for e in enum)}", usage=True) from None


E = TypeVar("E", bound=Enum)


def enum_member(enum: type[E], value: object, name: str) -> E:
    """The member of ``enum`` named by ``value``; an empty value is refused like an unknown one."""
    found = enum_value(enum, value, name)
    if found is None:
        raise InvalidInputError(f"{name} is empty: use one of {', '.join(str(e.value) for e in enum)}", usage=True)
    return enum(found)


def parse_time(value: datetime | str | None, name: str) -> datetime | None:
    """An aware UTC datetime from a datetime (naive = UTC) or an RFC 3339 string; None for
    None or ""; a clear error otherwise."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return parse_ts(value)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+23:00 has no UTC equivalent
        raise InvalidInputError(f"{name} {str(value)!r} is out of range once converted to UTC", field=name) from None
    except ValueError:
        raise InvalidInputError(f"{name} {value!r} is not a date/time: use RFC 3339, e.g. 2026-01-31T12:00:00Z", field=name) from None


__all__ = ["enum_member", "enum_value", "parse_time"]
