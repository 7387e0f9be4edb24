"""Copy one memmesh store into another (SQLite ↔ PostgreSQL), exactly and idempotently.

Everything is copied as it is, ids, timestamps, versions and access counts included:
memories with their history, links, tombstones, the archive and the stored vectors (with
the model id they were made by; a target configured for another model simply sees them
as missing and ``memmesh reindex`` embeds those). Nothing is re-embedded here, which is
what makes a migration fast.

The copy works batch by batch, each batch one write transaction on the target, so an
interrupted run keeps what it wrote and a re-run only writes what is still missing
(resumable); a run over an up-to-date target writes nothing (idempotent). For a memory
present on both sides the newer ``updated_at`` wins, as in ``import``. ``dry_run`` does all
the reading and counting and writes nothing.

The source is read from one snapshot when its store offers one (PostgreSQL: a REPEATABLE
READ transaction, as ``backup`` uses), so a migration from a live database copies one point
in time: every memory with the history that led to it. History is checked per memory, for
every memory, not only those whose ``updated_at`` changed: a re-run adds whatever entries
the target lacks (repairing a copy made by an older memmesh without the snapshot), and a
final pass reads the target's history back and reports any memory still short of entries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from memmesh.access import close_copy
from memmesh.errors import StorageError
from memmesh.io.extras import check_extras, copy_extras
from memmesh.model import HistoryEntry, HistoryEvent, Link, Memory, Tombstone
from memmesh.store.base import Filter, Store, VectorRow, WriteTx, key_rows
from memmesh.wording import count

T = TypeVar("T")

Progress = Callable[[int], None]
"""Called with the number of memories just processed."""


class MigrateReport(BaseModel):
    """The migrate report (docs/backup.md), plus what else was copied."""

    from_url: str
    to_url: str
    batches: int = 0
    dry_run: bool = False
    memories_read: int = 0
    memories_written: int = 0
    links_written: int = 0
    history_written: int = 0
    tombstones_written: int = 0
    vectors_written: int = 0
    archived_written: int = 0
    extras_written: dict[str, int] = Field(default_factory=dict)
    """Rows of the feature tables carried (subscriptions, deliveries, inbox, extraction
    slots: :mod:`memmesh.io.extras`), per table."""
    errors: list[str] = Field(default_factory=list)
    api_keys_not_copied: int = 0
    """API key rows the source held (revoked included), never copied: when non-zero the
    target is marked to require keys from the start, as the source did (a dry run marks nothing)."""
    target_api_keys: int = 0
    """The target's own unrevoked keys after the copy, counted when keys were left behind (a
    copy into a live store leaves them working): with none, the copy needs a new key first."""


def migrate(
    source: Store,
    target: Store,
    *,
    now: datetime,
    batch_size: int = 500,
    dry_run: bool = False,
    progress: Progress | None = None,
    keys_left: int | None = None,
) -> MigrateReport:
    """Copy everything in ``source`` that ``target`` lacks or holds an older copy of.

    ``keys_left``: the API key rows the source held, when the caller counted them (restore:
    the snapshot's); by default they are counted in ``source`` (:func:`memmesh.store.base.key_rows`)."""
    report = MigrateReport(from_url=source.url, to_url=target.url, dry_run=dry_run)
    report.api_keys_not_copied = key_rows(source) if keys_left is None else keys_left
    check_extras(source, target)  # before anything is written: a bad bus row refuses the whole copy
    if not dry_run:
        close_copy(target, report.api_keys_not_copied)  # before any memory: a store that had keys is never copied open
    snapshot = getattr(source, "snapshot", None)
    with snapshot() if snapshot is not None else nullcontext():
        history = _history_by_memory(source.iter_history())
        present = _history_keys(target.iter_history())
        known = {t.id for t in target.tombstones_since(0)}
        copied: list[str] = []
        for batch in batched(source.iter_memories(batch=batch_size), batch_size):
            report.memories_read += len(batch)
            report.batches += 1
            _copy_memories(source, target, batch, history, present, known, report, now)
            copied += [m.id for m in batch]
            if progress:
                progress(len(batch))
        _copy_tombstones(source, target, history, present, report, batch_size)
        _copy_links(source, target, report, batch_size)
        _copy_archive(source, target, now, report)
        report.extras_written = copy_extras(source, target, dry_run=dry_run)
    if not dry_run:
        _verify_history(target, copied, history, report)
        if report.api_keys_not_copied:
            report.target_api_keys = len(target.api_keys())
    return report


def _history_keys(entries: Iterable[HistoryEntry]) -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    for entry in entries:
        keys.setdefault(entry.memory_id, set()).add(_history_key(entry))
    return keys


def _verify_history(target: Store, ids: Sequence[str], history: dict[str, list[HistoryEntry]], report: MigrateReport) -> None:
    """Read the target's history back: every copied memory must hold all its source entries."""
    stored = _history_keys(target.iter_history())
    for memory_id in ids:
        missing = [e for e in history.get(memory_id, []) if _history_key(e) not in stored.get(memory_id, set())]
        if missing:
            report.errors.append(
                f"memory {memory_id}: {count(len(missing), 'history entry')} of the source missing "
                "in the target after the copy; run migrate again to repair"
            )


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` items (the last may be shorter); ``itertools.batched`` from 3.12."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _history_by_memory(entries: Iterable[HistoryEntry]) -> dict[str, list[HistoryEntry]]:
    grouped: dict[str, list[HistoryEntry]] = {}
    for entry in entries:
        grouped.setdefault(entry.memory_id, []).append(entry)
    return grouped


def _newer(incoming: Memory, existing: Memory | None) -> bool:
    """True when writing ``incoming`` changes the target: absent there, or older there."""
    return existing is None or (existing != incoming and existing.updated_at < incoming.updated_at)


def _missing_history(present: dict[str, set[str]], memory_id: str, entries: Sequence[HistoryEntry]) -> list[HistoryEntry]:
    """Source history entries the target does not have yet (so a re-run adds none)."""
    have = present.get(memory_id, set())
    return [e for e in entries if _history_key(e) not in have]


def _history_key(entry: HistoryEntry) -> str:
    return json.dumps(entry.model_dump(mode="json"), sort_keys=True)


def _vectors_to_copy(source: Store, target: Store, ids: Sequence[str]) -> list[VectorRow]:
    have = {row.memory_id: row for row in target.get_vectors(ids)}
    wanted = []
    for row in source.get_vectors(ids):
        old = have.get(row.memory_id)
        if old is None or old.model != row.model or not np.array_equal(old.vector, _as_stored(target, row.vector)):
            wanted.append(row)
    return wanted


def _as_stored(store: Store, vector: np.ndarray) -> np.ndarray:
    """``vector`` as ``store`` would read it back: stored vectors are compact (8-bit on SQLite,
    float16 on PostgreSQL, schema 16), so a vector copied between backends is compared in the
    target's form, or a re-run would rewrite every vector."""
    dialect = getattr(store, "dialect", None)
    if dialect is None:
        return vector
    stored: np.ndarray = dialect.load_vector(dialect.vector(vector))
    return stored


def _copy_memories(
    source: Store,
    target: Store,
    batch: list[Memory],
    history: dict[str, list[HistoryEntry]],
    present: dict[str, set[str]],
    known: set[str],
    report: MigrateReport,
    now: datetime,
) -> None:
    existing = {m.id: m for m in target.get_many([m.id for m in batch])}
    changed = [m for m in batch if _newer(m, existing.get(m.id))]
    # Every memory's history is checked, changed or not: a re-run repairs a short history.
    new_history = {m.id: _missing_history(present, m.id, history.get(m.id, [])) for m in batch}
    for memory in changed:
        if memory.id in known and memory.id not in existing:
            # Deleted in the target, live in the source: the copy brings it back, and its
            # history must say so, or it would end in the target's `delete`.
            new_history[memory.id].append(_restored(memory, report.from_url, now))
    vectors = _vectors_to_copy(source, target, [m.id for m in batch])
    if report.dry_run:
        report.memories_written += len(changed)
        report.history_written += sum(len(v) for v in new_history.values())
        report.vectors_written += len(vectors)
        return
    try:
        with target.write() as tx:
            _write_batch(tx, changed, existing, new_history, vectors, report, careful=False)
    except StorageError:
        # Most likely the same content already exists in the target under another id (a
        # unique clash): redo the batch checking each memory, which names the culprits.
        with target.write() as tx:
            _write_batch(tx, changed, existing, new_history, vectors, report, careful=True)


def _write_batch(
    tx: WriteTx,
    changed: list[Memory],
    existing: dict[str, Memory],
    new_history: dict[str, list[HistoryEntry]],
    vectors: list[VectorRow],
    report: MigrateReport,
    *,
    careful: bool,
) -> None:
    """One target transaction for a batch; counts only once it is all written."""
    seq = tx.next_seq()
    inserts = [m for m in changed if m.id not in existing]
    if careful:
        inserts = [m for m in inserts if _no_clash(tx, m, report)]
    for memory in changed:
        if memory.id in existing:
            tx.update_memory(memory, seq)
    tx.insert_memories(inserts, seq)
    written = [m for m in changed if m.id in existing] + inserts
    present = set(existing) | {m.id for m in inserts}
    entries = [entry for memory_id in sorted(present & set(new_history)) for entry in new_history[memory_id]]
    tx.add_history_many(entries)
    rows = [row for row in vectors if row.memory_id in present]
    tx.put_vectors(rows, seq)
    report.memories_written += len(written)
    report.history_written += len(entries)
    report.vectors_written += len(rows)


def _restored(memory: Memory, source_url: str, now: datetime) -> HistoryEntry:
    """The history entry of a memory a migration or restore brings back after a delete."""
    snapshot = memory.model_dump(mode="json", exclude={"access_count", "last_accessed_at", "version"})
    return HistoryEntry(memory_id=memory.id, event=HistoryEvent.restore, new={**snapshot, "restored_from": source_url}, at=now)


def _no_clash(tx: WriteTx, memory: Memory, report: MigrateReport) -> bool:
    clash = tx.find_by_hash(memory.namespace, memory.content_hash)
    if clash is not None and clash.id != memory.id:
        report.errors.append(
            f"memory {memory.id}: the target already holds the same content in {memory.namespace!r} as {clash.id}; not copied"
        )
        return False
    return True


def _copy_tombstones(
    source: Store,
    target: Store,
    history: dict[str, list[HistoryEntry]],
    present: dict[str, set[str]],
    report: MigrateReport,
    batch_size: int,
) -> None:
    tombstones = source.tombstones_since(0)
    for start in range(0, len(tombstones), batch_size):
        batch = tombstones[start : start + batch_size]
        live = {m.id: m for m in target.get_many([t.id for t in batch])}
        todo = [t for t in batch if _tombstone_applies(t, live.get(t.id))]
        if report.dry_run:
            report.tombstones_written += len(todo)
            continue
        with target.write() as tx:
            seq = tx.next_seq()
            for tombstone in todo:
                if tx.tombstone(tombstone.id) == tombstone:
                    continue
                tx.delete_links(tombstone.id)
                tx.delete_memory(tombstone, seq)
                report.tombstones_written += 1
                entries = _missing_history(present, tombstone.id, history.get(tombstone.id, []))
                for entry in entries:
                    tx.add_history(entry)
                report.history_written += len(entries)


def _tombstone_applies(tombstone: Tombstone, live: Memory | None) -> bool:
    """A deletion is copied unless the target holds a copy written after it."""
    return live is None or live.updated_at <= tombstone.deleted_at


def _copy_links(source: Store, target: Store, report: MigrateReport, batch_size: int) -> None:
    present = {_link_key(link) for link in target.iter_links()}
    missing = [link for link in source.iter_links() if _link_key(link) not in present]
    if report.dry_run:
        report.links_written += len(missing)
        return
    for start in range(0, len(missing), batch_size):
        with target.write() as tx:
            seq = tx.next_seq()
            for link in missing[start : start + batch_size]:
                if tx.get(link.source_id) is None or tx.get(link.target_id) is None:
                    report.errors.append(
                        f"link {link.source_id} -{link.relation.value}-> {link.target_id}: an end is missing in the target; not copied"
                    )
                    continue
                tx.put_link(link, seq)
                report.links_written += 1


def _link_key(link: Link) -> str:
    return json.dumps(link.model_dump(mode="json"), sort_keys=True)


def _copy_archive(source: Store, target: Store, now: datetime, report: MigrateReport) -> None:
    everything = Filter(now=now, include_expired=True)
    archived = source.archived(everything, 10**9)
    present = {a.memory.id for a in target.archived(everything, 10**9)}
    todo = [a for a in archived if a.memory.id not in present]
    if report.dry_run or not todo:
        report.archived_written += len(todo)
        return
    with target.write() as tx:
        for item in todo:
            tx.archive(item.memory, item.archived_at, item.reason)
            report.archived_written += 1


def report_dict(report: MigrateReport) -> dict[str, Any]:
    """The report as printed by ``memmesh migrate --json``."""
    return report.model_dump(mode="json")
