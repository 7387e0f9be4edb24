"""How a copy of the bus (conversations, messages, read cursors) joins the store that
``migrate`` or ``restore`` writes into (why it is carried: :mod:`memmesh.io.extras`).

A conversation's messages are numbered 1, 2, … and its readers' cursors count over those
numbers, so the copy is decided per conversation, not per row:

- **The target lacks the conversation**, or holds it numbered as the source numbers it
  (every message both hold has the same number on both sides, and every number the copy
  would write is free: a re-run, a copy that stopped midway, a newer backup restored over an
  older copy): messages keep their numbers, the conversation's ``last_seq`` is raised first
  to cover them (so a send on the target meanwhile numbers after them), and each cursor moves
  up to the source's, never down. The numbers are taken in the same transaction as the
  conversation's first PAGE messages are written: a reader of the target never sees a
  number taken whose message is not there yet, so an ``ack --all`` cannot move its cursor
  past a copied message it never saw. Only a conversation of more than PAGE missing
  messages is written in several transactions: between them a reader may see the first
  pages before the rest arrives (below its cursor if it acks everything meanwhile).
- **The target numbers it otherwise** (a mesh peer that took the chat in another order): the
  messages it lacks are added after its last one, as late arrivals, so its readers see them
  as unread; its cursors stay as they are (they count over its own numbers).
- A conversation the target holds under the same id with another kind or token is another
  conversation: nothing of the source's is merged into it.

A message the target holds (same id) stays as the target has it: its task state there is
the newer one when a backup is restored into the store it came from. Writes are at most
PAGE rows each, so a PostgreSQL transaction never holds more change numbers than that (each
chat row takes one, :mod:`memmesh.store.migrations` 21).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from memmesh.store.extra_tables import CARRIED

Row = tuple[Any, ...]

BUS_TABLES = ("bus_conversations", "bus_messages", "bus_cursors")
PAGE = 500

CONV = CARRIED["bus_conversations"]
MSG = CARRIED["bus_messages"]
CUR = CARRIED["bus_cursors"]
C_ID, C_KIND, C_TOKEN, C_ACTIVITY, C_LAST = (CONV.index(n) for n in ("id", "kind", "token_hash", "last_activity", "last_seq"))
M_CONV, M_SEQ, M_ID, M_CREATED = (MSG.index(n) for n in ("conversation_id", "seq", "id", "created_at"))


@dataclass
class Held:
    """What the target holds of the bus, read once before the copy."""

    conversations: dict[str, Row]
    """id → (kind, token_hash, last_seq)."""
    messages: dict[str, tuple[str, int]]
    """message id → (conversation id, seq)."""
    taken: set[tuple[str, int]]
    cursors: dict[tuple[str, str], tuple[int, int]]


@dataclass
class Plan:
    """One conversation's copy."""

    conversation: Row
    held_last: int | None
    """The target's ``last_seq`` for it (None: the target lacks it, the row is inserted)."""
    keep_numbers: bool
    messages: list[Row]
    """The source's messages the target lacks, in the source's order."""
    cursors: list[Row] = field(default_factory=list)
    """Cursors to insert or raise (only when the numbers are kept)."""

    @property
    def fresh(self) -> bool:
        return self.held_last is None

    @property
    def top(self) -> int:
        """The highest number the conversation must cover once copied."""
        return max([int(self.conversation[C_LAST]), *(int(m[M_SEQ]) for m in self.messages)])


def carry_bus(rows_of: Callable[[str], list[Row]], target: Any, *, dry_run: bool) -> dict[str, int]:
    """Copy the bus rows ``target`` lacks (see the module doc); rows written (or raised) per
    table, or that would be in a dry run."""
    plans = list(_plans(rows_of, _held(target)))
    counts = {
        "bus_conversations": sum(1 for p in plans if p.fresh or _raises_conversation(p)),
        "bus_messages": sum(len(p.messages) for p in plans),
        "bus_cursors": sum(len(p.cursors) for p in plans),
    }
    if dry_run:
        return counts
    q = target.dialect.q
    # each conversation with its (first PAGE) messages in one transaction, then the cursors:
    # a message never comes before its conversation, nor a cursor before its messages
    written = dict.fromkeys(BUS_TABLES, 0)
    _write_pages(target, list(_conversation_steps(plans, q, written)))
    _write_pages(target, list(_cursor_steps(plans, q, written)))
    return written


def _held(target: Any) -> Held:
    with target.reading() as conn:
        convs = {r[0]: tuple(r[1:]) for r in conn.execute("SELECT id, kind, token_hash, last_seq FROM bus_conversations").fetchall()}
        msgs = {r[0]: (r[1], int(r[2])) for r in conn.execute("SELECT id, conversation_id, seq FROM bus_messages").fetchall()}
        cursors = {
            (r[0], r[1]): (int(r[2]), int(r[3]))
            for r in conn.execute("SELECT conversation_id, agent, delivered_seq, acked_seq FROM bus_cursors").fetchall()
        }
    return Held(convs, msgs, set(msgs.values()), cursors)


def _plans(rows_of: Callable[[str], list[Row]], held: Held) -> Iterator[Plan]:
    messages: dict[str, list[Row]] = {}
    for row in sorted(rows_of("bus_messages"), key=lambda m: (m[M_CONV], int(m[M_SEQ]))):
        messages.setdefault(row[M_CONV], []).append(row)
    cursors: dict[str, list[Row]] = {}
    for row in rows_of("bus_cursors"):
        cursors.setdefault(row[0], []).append(row)
    for conv in rows_of("bus_conversations"):
        plan = _plan(conv, messages.get(conv[C_ID], []), cursors.get(conv[C_ID], []), held)
        if plan is not None:
            yield plan


def _plan(conv: Row, messages: list[Row], cursors: list[Row], held: Held) -> Plan | None:
    cid = conv[C_ID]
    there = held.conversations.get(cid)
    if there is not None and (there[0], there[1]) != (conv[C_KIND], conv[C_TOKEN]):
        return None  # another conversation under this id: nothing is merged into it
    missing = [m for m in messages if m[M_ID] not in held.messages]
    same = all(held.messages[m[M_ID]] == (cid, int(m[M_SEQ])) for m in messages if m[M_ID] in held.messages)
    keep = there is None or (same and all((cid, int(m[M_SEQ])) not in held.taken for m in missing))
    plan = Plan(conv, None if there is None else int(there[2]), keep_numbers=keep, messages=missing)
    if keep:
        plan.cursors = [c for c in cursors if _moves(c, held.cursors.get((cid, c[1])))]
    return plan


def _moves(cursor: Row, there: tuple[int, int] | None) -> bool:
    return there is None or int(cursor[2]) > there[0] or int(cursor[3]) > there[1]


def _raises_conversation(plan: Plan) -> bool:
    """A held conversation whose numbers are kept and whose copied messages go past its last_seq."""
    return plan.held_last is not None and plan.keep_numbers and plan.top > plan.held_last


Step = tuple[int, Callable[[Any], int]]
"""(rows it writes, the write: takes the transaction's connection, returns rows changed)."""


def _write_pages(target: Any, steps: list[Step]) -> None:
    """Run the steps, as many in one transaction as fit in PAGE rows (a step is never split);
    the steps count what they write themselves (into ``written``)."""
    pages: list[list[Step]] = [[]]
    size = 0
    for step in steps:
        if pages[-1] and size + step[0] > PAGE:
            pages.append([])
            size = 0
        pages[-1].append(step)
        size += step[0]
    for page in pages:
        if page:
            with target.write() as tx:
                for _, run in page:
                    run(tx.conn)


def _conversation_steps(plans: list[Plan], q: Callable[[str], str], written: dict[str, int]) -> Iterator[Step]:
    """Per conversation: its row (inserted, or its numbers reserved) and its first PAGE missing
    messages as one step (one transaction), then its further messages PAGE at a time."""
    insert = q(f"INSERT INTO bus_conversations ({', '.join(CONV)}) VALUES ({', '.join('?' for _ in CONV)}) ON CONFLICT DO NOTHING")
    reserve = q(
        "UPDATE bus_conversations SET last_seq = ?, last_activity = CASE WHEN last_activity < ? THEN ? ELSE last_activity END "
        "WHERE id = ? AND last_seq = ?"
    )
    messages = _message_writer(q)

    def opened(plan: Plan, chunk: list[Row]) -> Callable[[Any], int]:
        """Insert the conversation, or take the numbers the copy writes provided it has not
        moved since it was read (if it has, its numbers can no longer be trusted to agree: its
        messages come after its own); then write ``chunk`` in the same transaction."""

        def run(conn: Any) -> int:
            conv, at = plan.conversation, plan.conversation[C_ACTIVITY]
            if plan.fresh:
                changed = int(conn.execute(insert, (*conv[:C_LAST], plan.top, *conv[C_LAST + 1 :])).rowcount)
            elif _raises_conversation(plan):
                changed = int(conn.execute(reserve, (plan.top, at, at, conv[C_ID], plan.held_last)).rowcount)
                if not changed:
                    plan.keep_numbers, plan.cursors = False, []
            else:
                changed = 0
            written["bus_conversations"] += changed
            return changed + messages(conn, plan, chunk, written)

        return run

    def more(plan: Plan, chunk: list[Row]) -> Callable[[Any], int]:
        return lambda conn: messages(conn, plan, chunk, written)

    for plan in plans:
        chunks = [plan.messages[i : i + PAGE] for i in range(0, len(plan.messages), PAGE)] or [[]]
        if plan.fresh or _raises_conversation(plan) or chunks[0]:
            yield 1 + len(chunks[0]), opened(plan, chunks[0])
        for chunk in chunks[1:]:
            yield len(chunk), more(plan, chunk)


def _message_writer(q: Callable[[str], str]) -> Callable[[Any, Plan, list[Row], dict[str, int]], int]:
    """Writes a chunk of a conversation's missing messages, deciding when it runs (after the
    conversation's own write in the same transaction) whether they keep their numbers or are
    numbered after the target's last message."""
    insert = q(f"INSERT INTO bus_messages ({', '.join(MSG)}) VALUES ({', '.join('?' for _ in MSG)}) ON CONFLICT DO NOTHING")
    number = q(
        "UPDATE bus_conversations SET last_seq = last_seq + ?, "
        "last_activity = CASE WHEN last_activity < ? THEN ? ELSE last_activity END WHERE id = ? RETURNING last_seq"
    )

    def write(conn: Any, plan: Plan, rows: list[Row], written: dict[str, int]) -> int:
        if not rows:
            return 0
        if not plan.keep_numbers:
            newest = max(float(r[M_CREATED]) for r in rows)
            last = int(conn.execute(number, (len(rows), newest, newest, plan.conversation[C_ID])).fetchone()[0])
            first = last - len(rows) + 1
            rows = [(*r[:M_SEQ], first + i, *r[M_SEQ + 1 :]) for i, r in enumerate(rows)]
        changed = sum(int(conn.execute(insert, row).rowcount) for row in rows)
        written["bus_messages"] += changed
        return changed

    return write


def _cursor_steps(plans: list[Plan], q: Callable[[str], str], written: dict[str, int]) -> Iterator[Step]:
    upsert = q(
        f"INSERT INTO bus_cursors ({', '.join(CUR)}) VALUES (?, ?, ?, ?) ON CONFLICT (conversation_id, agent) DO UPDATE SET "
        "delivered_seq = CASE WHEN bus_cursors.delivered_seq < excluded.delivered_seq THEN excluded.delivered_seq "
        "ELSE bus_cursors.delivered_seq END, "
        "acked_seq = CASE WHEN bus_cursors.acked_seq < excluded.acked_seq THEN excluded.acked_seq ELSE bus_cursors.acked_seq END "
        "WHERE bus_cursors.delivered_seq < excluded.delivered_seq OR bus_cursors.acked_seq < excluded.acked_seq"
    )

    def raised(cursor: Row) -> Callable[[Any], int]:
        def run(conn: Any) -> int:
            changed = int(conn.execute(upsert, cursor).rowcount)
            written["bus_cursors"] += changed
            return changed

        return run

    for plan in plans:
        for cursor in plan.cursors:
            yield 1, raised(cursor)


__all__ = ["BUS_TABLES", "carry_bus"]
