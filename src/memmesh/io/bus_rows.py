"""The values a carried bus row may hold, checked before a restore or migrate writes anything.

A backup's manifest is unsigned, so an edited snapshot can pass its checksum: a bus row with
a kind the bus does not know, participants that are not a JSON list of agent names, a number
that is text, NaN or negative, a message of a conversation nobody holds or a cursor past its
conversation's last message would be copied as is and then break every ``bus list`` (or make
an agent miss messages for good). The whole copy is refused instead, naming the table, the
row's key and the field, as a snapshot damaged in any other way is. The rules are the bus's
own (:data:`memmesh.bus.model.ConversationKind`, :data:`~memmesh.bus.model.TaskState`,
:func:`memmesh.bus.core.check_agent_name`), not copies of them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any, get_args

from memmesh.bus.core import check_agent_name
from memmesh.bus.model import ConversationKind, TaskState
from memmesh.errors import CorruptDatabaseError, InvalidInputError
from memmesh.store.extra_tables import CARRIED

Row = tuple[Any, ...]
KINDS: tuple[str, ...] = get_args(ConversationKind)
STATES: tuple[str, ...] = get_args(TaskState)


def check_bus_rows(rows_of: Callable[[str], list[Row]], held_last: dict[str, int]) -> None:
    """Raise :class:`CorruptDatabaseError` for the first bad bus row of the source.

    ``held_last``: the target's conversations (id → last_seq), which a source's message or
    cursor may belong to without the source holding the conversation itself."""
    problem = next(_problems(rows_of, held_last), None)
    if problem is not None:
        raise CorruptDatabaseError(f"the source's bus is damaged: {problem}; nothing was changed")


def _problems(rows_of: Callable[[str], list[Row]], held_last: dict[str, int]) -> Iterator[str]:
    kinds: dict[str, str] = {}
    last: dict[str, int] = dict(held_last)
    for row in rows_of("bus_conversations"):
        values = dict(zip(CARRIED["bus_conversations"], row, strict=True))
        where = f"bus_conversations row {str(values['id'])[:40]!r}"
        yield from _field(where, values, _conversation_problems(values))
        kinds[values["id"]], last[values["id"]] = values["kind"], values["last_seq"]
    for row in rows_of("bus_messages"):
        values = dict(zip(CARRIED["bus_messages"], row, strict=True))
        where = f"bus_messages row {str(values['id'])[:40]!r}"
        yield from _field(where, values, _message_problems(values, kinds, last))
    for row in rows_of("bus_cursors"):
        values = dict(zip(CARRIED["bus_cursors"], row, strict=True))
        where = f"bus_cursors row ({str(values['conversation_id'])[:40]!r}, {str(values['agent'])[:40]!r})"
        yield from _field(where, values, _cursor_problems(values, last))


def _field(where: str, values: dict[str, Any], problems: Iterator[tuple[str, str]]) -> Iterator[str]:
    for name, what in problems:
        yield f"{where} field {name} ({repr(values[name])[:40]}) {what}"


def _conversation_problems(v: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield from _text(v, "id", "token_hash")
    if v["kind"] not in KINDS:
        yield "kind", f"is not one of {', '.join(KINDS)}"
    if not _agents(v["participants"]):
        yield "participants", "is not a JSON list of valid agent names"
    yield from _numbers(v, ("created_at", "last_activity", "timeout_s"), nullable=("archived_at",))
    yield from _counts(v, "last_seq")


def _message_problems(v: dict[str, Any], kinds: dict[str, str], last: dict[str, int]) -> Iterator[tuple[str, str]]:
    yield from _text(v, "conversation_id", "id")
    if v["conversation_id"] not in last:
        yield "conversation_id", "names a conversation neither the source nor the target holds"
    yield from _counts(v, "seq", "attempts")
    if not _agent(v["sender"]):
        yield "sender", "is not a valid agent name"
    if v["recipient"] is not None and not _agent(v["recipient"]):
        yield "recipient", "is not a valid agent name"
    yield from _numbers(v, ("created_at",), nullable=("lease_expires",))
    kind = kinds.get(v["conversation_id"])
    if kind == "queue" and v["state"] not in STATES:
        yield "state", f"is not one of {', '.join(STATES)}"
    if kind == "chat" and v["state"] is not None:
        yield "state", "must be null in a chat"


def _cursor_problems(v: dict[str, Any], last: dict[str, int]) -> Iterator[tuple[str, str]]:
    if not _agent(v["agent"]):
        yield "agent", "is not a valid agent name"
    top = last.get(v["conversation_id"])
    if top is None:
        yield "conversation_id", "names a conversation neither the source nor the target holds"
    for name in ("delivered_seq", "acked_seq"):
        if not _count(v[name]):
            yield name, "is not a whole number of 0 or more"
        elif _count(top) and v[name] > top:
            yield name, f"is past the conversation's last message (#{top})"


def _text(v: dict[str, Any], *names: str) -> Iterator[tuple[str, str]]:
    for name in names:
        if not isinstance(v[name], str) or not v[name]:
            yield name, "is not a non-empty string"


def _counts(v: dict[str, Any], *names: str) -> Iterator[tuple[str, str]]:
    for name in names:
        if not _count(v[name]):
            yield name, "is not a whole number of 0 or more"


def _numbers(v: dict[str, Any], names: tuple[str, ...], nullable: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    for name in (*names, *nullable):
        if (v[name] is not None or name not in nullable) and not _finite(v[name]):
            yield name, "is not a finite number"


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _agent(name: object) -> bool:
    try:
        return isinstance(name, str) and check_agent_name(name) == name
    except InvalidInputError:
        return False


def _agents(raw: object) -> bool:
    try:
        names = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return False
    return isinstance(names, list) and all(_agent(n) for n in names)


__all__ = ["check_bus_rows"]
