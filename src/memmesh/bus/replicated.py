"""Bus conversations and messages that arrive from mesh peers (issue 15, schema 21).

What replicates and why:

- A **chat conversation**'s fixed fields (id, kind, topic, participants, creator, creation
  time, timeout) and its token *only as the SHA-256 the store keeps*: the same token then
  works on every node, and the token itself never leaves the node that printed it.
- A **chat message**, immutable, with its global id, the node that wrote it (``origin``) and
  its hybrid-logical-clock stamp (``hlc``). Every node shows a conversation's transcript in
  the order ``(hlc, origin, id)``: the same order everywhere, and causal (a reply written after
  reading a message carries a later stamp).
- Each node numbers the messages it *receives* with its own arrival sequence (``seq``), and
  read cursors (``delivered_seq``/``acked_seq``) count over that: a message from a peer that
  was written "in the past" (a partition healed) gets the next local number, so it is still
  delivered by ``unread`` and no cursor ever moves back.

What does not replicate: read cursors (each node's agents read on that node), a
conversation's last activity (each node keeps its own, raised by every message it takes in),
and task queues (``kind = queue``): a lease and its attempt token are a claim on *this*
node's work; replicating them would let two nodes hand the same task to two workers, so
fencing could no longer hold. Run a queue's workers against one node (or one PostgreSQL).

Applying is idempotent: an id already held is a duplicate and changes nothing. A malformed
or inconsistent item (a message for a conversation this node does not hold, a sender who is
not a participant, a body over this node's size limit) raises InvalidInputError, and the
peer's whole batch is refused (422) with the store unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from memmesh.bus.sql import Rows
from memmesh.errors import InvalidInputError
from memmesh.model import text_problem


def apply_item(rows: Rows, item: Mapping[str, Any], *, max_message_bytes: int) -> bool:
    """Take in one replicated bus object inside the caller's write; True when it was new."""
    if item.get("conversation") is not None:
        return _conversation(rows, item["conversation"])
    if item.get("message") is not None:
        return _message(rows, item["message"], max_message_bytes)
    raise InvalidInputError("a bus item carries neither a conversation nor a message")


def _conversation(rows: Rows, conv: Mapping[str, Any]) -> bool:
    held = rows.one("SELECT kind, token_hash FROM bus_conversations WHERE id = ?" + rows.for_update, (conv["id"],))
    if held is not None:
        if held[0] != conv["kind"] or held[1] != conv["token_hash"]:
            raise InvalidInputError(f"bus conversation {conv['id']}: this node holds another conversation under that id")
        return False
    for name in ("topic",):
        problem = text_problem(conv.get(name))
        if problem:
            raise InvalidInputError(f"bus conversation {conv['id']}: {name} {problem}")
    rows.run(
        "INSERT INTO bus_conversations (id, kind, topic, participants, token_hash, created_by, created_at, last_activity, timeout_s) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            conv["id"],
            conv["kind"],
            conv.get("topic"),
            json.dumps(list(conv["participants"])),
            conv["token_hash"],
            conv.get("created_by"),
            float(conv["created_at"]),
            float(conv["created_at"]),
            float(conv["timeout_s"]),
        ),
    )
    return True


def _message(rows: Rows, msg: Mapping[str, Any], max_message_bytes: int) -> bool:
    conv = rows.one(
        "SELECT kind, participants FROM bus_conversations WHERE id = ?" + rows.for_update, (msg["conversation_id"],)
    )  # locks the conversation: two applies of the same message (a push and a pull) take turns
    if rows.one("SELECT 1 FROM bus_messages WHERE id = ?", (msg["id"],)) is not None:
        return False
    what = f"bus message {msg['id']}"
    if conv is None or conv[0] != "chat":
        raise InvalidInputError(f"{what} is for conversation {msg['conversation_id']}, which this node does not hold as a chat")
    participants = json.loads(conv[1])
    for role in ("sender", "recipient"):
        if msg.get(role) is not None and msg[role] not in participants:
            raise InvalidInputError(f"{what}: {role} {msg[role]!r} is not a participant of conversation {msg['conversation_id']}")
    body = msg["body"]
    problem = text_problem(body) or ("is empty" if not body.strip() else None)
    if problem:
        raise InvalidInputError(f"{what}: body {problem}")
    size = len(body.encode("utf-8"))
    if size > max_message_bytes:
        raise InvalidInputError(f"{what} is {size} bytes; this node's limit is {max_message_bytes} (bus.max_message_bytes)")
    top = rows.one(
        "UPDATE bus_conversations SET last_seq = last_seq + 1, "
        "last_activity = CASE WHEN last_activity < ? THEN ? ELSE last_activity END WHERE id = ? RETURNING last_seq",
        (msg["created_at"], msg["created_at"], msg["conversation_id"]),
    )
    rows.run(
        "INSERT INTO bus_messages (id, conversation_id, seq, sender, recipient, body, created_at, origin, hlc) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            msg["id"],
            msg["conversation_id"],
            int(top[0]),  # type: ignore[index]  # the conversation row exists: it was read above
            msg["sender"],
            msg.get("recipient"),
            body,
            float(msg["created_at"]),
            msg["origin"],
            msg["hlc"],
        ),
    )
    return True
