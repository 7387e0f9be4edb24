"""The feature tables ``migrate``, ``restore`` and ``backup`` carry (a SQLite backup is the file;
the PostgreSQL logical dump writes their rows, :mod:`memmesh.store.logical`),
and the ones they deliberately leave behind.

:func:`memmesh.io.migrate.migrate` copies memories with everything the store API knows
(history, links, tombstones, vectors, the archive). The tables the extensions added beside
them are plain rows, read and written here by SQL (one text for both backends), each
``INSERT … ON CONFLICT DO NOTHING`` so a re-run writes nothing new (idempotent, resumable):

- ``bus_conversations``, ``bus_messages``, ``bus_cursors`` — the bus: chats with their
  unread messages and each agent's read cursor, task queues with every task's state,
  attempts, history, result and dead letters. Without them every conversation was gone
  and its token opened nothing. A leased task keeps its lease (its worker may still
  complete it; it is ready again when the lease runs out, as on the source); tokens are
  kept as their hashes, so the source's conversation tokens work on the copy. Numbers are
  kept where the target numbers the conversation the same way, else the messages it lacks
  come after its own (:mod:`memmesh.io.bus_carry`); chat rows take the target's change
  numbers, so a mesh sees them as its own news;
- ``subscriptions`` — a user would lose their webhooks. Each subscription's ``seen_seq``
  (a position in the *source's* change feed) is reset to the target's change-feed head, so
  the memories the migration itself writes are not delivered as fresh changes; a
  subscription owned by an API key the target does not have stops as "owner revoked", as it
  would on the source once the key went;
- ``subscription_deliveries`` — pending deliveries are still owed to the receiver, the
  delivered and dead ones are the record ``subscriptions deliveries`` shows;
- ``inbox_messages`` — unread agent messages;
- ``extraction_slots`` — which fact holds a single-valued attribute ("ana|lives in"); without
  them a fact remembered after the move would not supersede the copied one;
- ``session_turns`` — each session's namespace (its key) and turn counter: without it a
  copied session answered "no session" to ``rehydrate`` and ``list`` although its turns
  were copied, and its next turn was numbered 1 again. A session both sides hold keeps the
  higher count (the copied turns are there), so the next turn never reuses a number.

Deliberately not carried (see docs/backup.md, "What else is carried, and what is not"):
``curator_runs`` / ``curator_changes`` (a rollback record describes the source store's
versions; rolling a run back on a copy would fight the migration's own history), ``leases``
(the curator's and gc's turns among the source's servers), ``extraction_jobs`` (transient work of one server; the facts they made are
memories and are copied). Nothing of the bus is left behind: its per-process queue hints
(:mod:`memmesh.bus.hints`) live in memory only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memmesh.io.bus_carry import BUS_TABLES, carry_bus
from memmesh.io.bus_rows import check_bus_rows
from memmesh.store.extra_tables import CARRIED, read_rows

Row = tuple[Any, ...]

NOT_CARRIED = ("curator_runs", "curator_changes", "leases", "extraction_jobs")

PAGE = 1000


def _q(store: Any, sql: str) -> str:
    return str(store.dialect.q(sql))


def sql_source(store: Any) -> Any | None:
    """What holds the tables behind ``store`` (a restore's checked source wraps a snapshot):
    a store read by SQL, or a logical snapshot with its ``extra_rows``; None for neither."""
    inner = getattr(store, "source", store)
    if hasattr(inner, "extra_rows") or (hasattr(inner, "dialect") and hasattr(inner, "reading")):
        return inner
    return None


def check_extras(source: Any, target: Any) -> None:
    """Refuse a source whose carried bus rows hold values the bus cannot read
    (:mod:`memmesh.io.bus_rows`); called before the copy writes anything."""
    origin = sql_source(source)
    if origin is None:
        return
    with target.reading() as conn:
        held = {r[0]: int(r[1]) for r in conn.execute("SELECT id, last_seq FROM bus_conversations").fetchall()}
    check_bus_rows(lambda table: _rows(origin, table), held)


def _rows(origin: Any, table: str) -> list[Row]:
    return list(origin.extra_rows(table)) if hasattr(origin, "extra_rows") else read_rows(origin, table)


def copy_extras(source: Any, target: Any, *, dry_run: bool = False) -> dict[str, int]:
    """Copy the :data:`CARRIED` rows ``target`` lacks; rows written (would be, in a dry run)
    per table. Runs after the memories were copied, so ``seen_seq`` can start at the
    target's head."""
    origin = sql_source(source)
    if origin is None:
        return {}

    def rows_of(table: str) -> list[Row]:
        return _rows(origin, table)

    written = carry_bus(rows_of, target, dry_run=dry_run)  # first: see CARRIED's order
    for table, columns in CARRIED.items():
        if table not in BUS_TABLES:
            written[table] = _copy_table(rows_of(table), target, table, columns, dry_run=dry_run)
    return written


def _copy_table(rows: list[Row], target: Any, table: str, columns: tuple[str, ...], *, dry_run: bool) -> int:
    if not rows:
        return 0
    merge = MERGES.get(table, Merge())
    key = merge.key or columns[:1]
    at = [columns.index(name) for name in key]
    with target.reading() as conn:
        present = {tuple(r) for r in conn.execute(f"SELECT {', '.join(key)} FROM {table}").fetchall()}
    held = [tuple(r[i] for i in at) in present for r in rows]
    missing = [r for r, both in zip(rows, held, strict=True) if not both]
    changed = merge.shared(target, [r for r, both in zip(rows, held, strict=True) if both], dry_run) if merge.shared else 0
    if dry_run or not missing:
        return len(missing) + changed
    if merge.fresh:
        missing = merge.fresh(target, columns, missing)
    insert = _q(target, f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) ON CONFLICT DO NOTHING")
    for start in range(0, len(missing), PAGE):
        with target.write() as tx:
            for row in missing[start : start + PAGE]:
                tx.conn.execute(insert, row)
    return len(missing) + changed


def _from_target_head(target: Any, columns: tuple[str, ...], rows: list[Row]) -> list[Row]:
    """Subscriptions the target lacks start at the target's change-feed head: the memories the
    copy itself wrote are not news to their receivers."""
    head = int(target.change_counter())
    seen = columns.index("seen_seq")
    return [(*r[:seen], head, *r[seen + 1 :]) for r in rows]


def _raise_turn_counts(target: Any, shared: list[Row], dry_run: bool) -> int:
    """Sessions both stores hold (same namespace): the target's turn counter moves up to the
    source's when the source's is higher (its turns were just copied); never down. How many
    moved."""
    raise_sql = _q(
        target,
        "UPDATE session_turns SET turns = ?, updated_at = CASE WHEN updated_at > ? THEN updated_at ELSE ? END "
        "WHERE namespace = ? AND turns < ?",
    )
    moved = 0
    with target.reading() as conn:
        counts = {r[0]: int(r[1]) for r in conn.execute("SELECT namespace, turns FROM session_turns").fetchall()}
    higher = [r for r in shared if isinstance(r[2], int) and r[2] > counts.get(r[1], r[2])]
    if dry_run or not higher:
        return len(higher)
    for start in range(0, len(higher), PAGE):
        with target.write() as tx:
            for _sid, ns, turns, _created, updated in higher[start : start + PAGE]:
                moved += tx.conn.execute(raise_sql, (turns, updated, updated, ns, turns)).rowcount
    return moved


@dataclass(frozen=True)
class Merge:
    """How the copy treats one carried table: the columns that name a row (default: the
    first), what a row the target lacks becomes before it is written (``fresh``), and what
    happens to rows both stores hold (``shared``: returns how many changed; by default they
    are left as the target has them)."""

    key: tuple[str, ...] = ()
    fresh: Callable[[Any, tuple[str, ...], list[Row]], list[Row]] | None = None
    shared: Callable[[Any, list[Row], bool], int] | None = None


MERGES: dict[str, Merge] = {
    "subscriptions": Merge(fresh=_from_target_head),
    "extraction_slots": Merge(key=("namespace", "slot_key", "memory_id")),
    "session_turns": Merge(key=("namespace",), shared=_raise_turn_counts),
}
"""The tables whose copy is more than "insert the rows the target lacks"."""


__all__ = ["CARRIED", "NOT_CARRIED", "copy_extras", "sql_source"]  # CARRIED lives in store.extra_tables
