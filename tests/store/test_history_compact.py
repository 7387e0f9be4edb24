"""History snapshots are stored packed (schema 19, issue 21) and read back exactly as written.

The ``add``, ``delete``, ``archive`` and ``restore`` events record the whole memory; schema 19
stores that as a positional array (``memmesh.store.sql.history_codec``). These tests check,
on both backends, that every reader gets the very entries that were written (key order
included), that odd snapshots which do not fit the format are kept keyed, that a store
written before schema 19 is packed in place by the migration with the same answers, and that
a deleted memory keeps its history."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

from memmesh import Memory
from memmesh.model import LOCAL_PRINCIPAL, HistoryEntry, HistoryEvent
from memmesh.store.open import open_store
from memmesh.store.sqlite import register_functions
from schema_rewind import rewind

AT = datetime(2026, 1, 1, 12, tzinfo=UTC)  # the fixtures' FakeClock


def _raw_history(url: str, tmp_path: Path) -> list[tuple[str, str, Any, Any]]:
    """The history rows as stored: (memory_id, event, old, new), JSON decoded, oldest first."""
    if url.startswith("sqlite"):
        with sqlite3.connect(tmp_path / "conformance.db") as conn:
            rows = conn.execute("SELECT memory_id, event, old, new FROM history ORDER BY id").fetchall()
        return [(m, e, json.loads(o) if o else None, json.loads(n) if n else None) for m, e, o, n in rows]
    with psycopg.connect(url) as conn:
        return [tuple(row) for row in conn.execute("SELECT memory_id, event, old, new FROM history ORDER BY id")]  # type: ignore[misc]


def _stored_size(url: str, tmp_path: Path) -> int:
    """Bytes of every stored history ``old``/``new`` value."""
    if url.startswith("sqlite"):
        with sqlite3.connect(tmp_path / "conformance.db") as conn:
            return int(conn.execute("SELECT coalesce(sum(length(old)), 0) + coalesce(sum(length(new)), 0) FROM history").fetchone()[0])
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(sum(octet_length(old::text)), 0) + coalesce(sum(octet_length(new::text)), 0) FROM history")
        return int(row.fetchone()[0])  # type: ignore[index]


def _index_names(url: str, tmp_path: Path) -> set[str]:
    if url.startswith("sqlite"):
        with sqlite3.connect(tmp_path / "conformance.db") as conn:
            return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'memories'")}
    with psycopg.connect(url) as conn:
        return {row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'memories'")}


def test_namespace_queries_still_read_a_covering_index(tmp_path: Path, open_memory: Callable[..., Memory]) -> None:
    """Schema 19 drops memories_ns_created: the namespace count and list queries read the
    other namespace indexes instead, never the table (EXPLAIN QUERY PLAN)."""
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    open_memory(url).add_many([{"content": f"note {i}", "namespace": f"ns{i % 3}"} for i in range(30)])
    queries = [
        "SELECT count(*) FROM (SELECT 1 FROM memories WHERE namespace = 'ns1' OR (namespace > 'ns1/' AND namespace < 'ns10') LIMIT 201)",
        "SELECT namespace, count(*) FROM memories GROUP BY namespace",
        "SELECT id FROM memories WHERE namespace = 'ns1' ORDER BY created_at DESC, id DESC LIMIT 50",
    ]
    with sqlite3.connect(tmp_path / "plans.db") as conn:
        for query in queries:
            steps = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query) if " memories " in row[3] + " "]
            assert steps and all("COVERING INDEX memories_ns_" in step for step in steps), (query, steps)


def _dumped(entries: list[HistoryEntry]) -> list[str]:
    """Entries as every face serialises them: key order counts."""
    return [entry.model_dump_json() for entry in entries]


def _life(mem: Memory) -> list[str]:
    """A memory per kind of history event; returns their ids."""
    kept = mem.add("the deploy key rotates every Monday ünïcödé ✓", namespace="ops", tags=["ops", "keys"], metadata={"b": 1, "a": [2]})
    mem.update(kept.id, content="the deploy key rotates every Tuesday", tags=["ops"])
    mem.update(kept.id, tier="long")
    gone = mem.add("a note that is deleted", namespace="ops", title="Gone", priority=4)
    mem.delete(gone.id)
    short = mem.add("a short-lived note", namespace="scratch", tier="short")
    return [kept.id, gone.id, short.id]


def test_every_event_reads_back_exactly_and_snapshots_are_stored_packed(
    backend_url: str, open_memory: Callable[..., Memory], tmp_path: Path
) -> None:
    mem = open_memory(backend_url)
    ids = _life(mem)
    histories = {memory_id: mem.history(memory_id) for memory_id in ids}
    assert [e.event for e in histories[ids[0]]] == ["add", "update", "update"]
    assert [e.event for e in histories[ids[1]]] == ["add", "delete"]
    add = histories[ids[0]][0].new
    assert add is not None and list(add)[:4] == ["id", "namespace", "title", "content"] and add["id"] == ids[0]
    assert add["content_hash"] and add["updated_at"] == add["created_at"]
    assert histories[ids[1]][1].old is not None and histories[ids[1]][1].old["title"] == "Gone"  # the tombstoned memory's history

    raw = _raw_history(backend_url, tmp_path)
    snapshots = [value for _m, event, old, new in raw if event in ("add", "delete") for value in (old, new) if value is not None]
    assert snapshots and all(isinstance(v, list) and v[0] == 1 for v in snapshots)  # packed, not keyed
    assert all(isinstance(n, dict) for _m, event, _o, n in raw if event == "update")  # a change's fields stay keyed
    # the same entries again, through a fresh store (nothing cached): identical, key order included
    mem.close()
    again = open_memory(backend_url)
    assert {i: _dumped(again.history(i)) for i in ids} == {i: _dumped(h) for i, h in histories.items()}
    store = again.service.store
    assert _dumped([e for e in store.iter_history() if e.memory_id in ids]) == _dumped([e for i in ids for e in histories[i]])
    assert {i: _dumped(h) for i, h in store.history_many(ids).items()} == {i: _dumped(h) for i, h in histories.items()}


def test_snapshots_that_do_not_fit_the_format_are_kept_exactly(
    backend_url: str, open_memory: Callable[..., Memory], tmp_path: Path
) -> None:
    mem = open_memory(backend_url)
    memory = mem.add("a memory whose history gets odd entries", namespace="odd")
    snapshot = mem.history(memory.id)[0].new
    assert snapshot is not None
    plus_two = timezone(timedelta(hours=2))
    odd = [
        {**snapshot, "restored_from": "sqlite:///elsewhere.db"},  # extra key after the 18: packed with a trailing object
        {**snapshot, "id": "someone-else"},  # another id: kept in full
        {**snapshot, "content_hash": "0" * 64},  # a hash that does not match: kept
        {**snapshot, "created_at": "2026-01-01T14:00:00+02:00"},  # same instant as ``at``, other spelling: kept
        {**snapshot, "updated_at": "2026-01-02T00:00:00Z"},
        {k: v for k, v in snapshot.items() if k != "title"},  # a key missing: stays keyed
        dict(reversed(list(snapshot.items()))),  # other key order: stays keyed
        {**snapshot, "id": 0, "content_hash": 0},  # values that look like the format's markers
        {**snapshot, "created_at": 1, "updated_at": 1.0},  # equal to ==, not as JSON: kept as written
        {"same_as": memory.id},
    ]
    entries = [
        HistoryEntry(memory_id=memory.id, event=HistoryEvent.restore, old=value, new=odd[-1 - n], actor="tester", at=AT)
        for n, value in enumerate(odd)
    ]
    entries.append(HistoryEntry(memory_id=memory.id, event=HistoryEvent.restore, new=snapshot, at=AT.astimezone(plus_two)))
    entries.append(HistoryEntry(memory_id=memory.id, event=HistoryEvent.restore, new=snapshot, at=AT + timedelta(seconds=1)))
    store = mem.service.store
    with store.write() as tx:
        tx.add_history_many(entries)
    mem.close()
    store = open_store(backend_url)
    try:
        got = store.history(memory.id)[1:]
    finally:
        store.close()
    assert len(got) == len(entries)
    for written, read in zip(entries, got, strict=True):
        assert json.dumps(read.old) == json.dumps(written.old)  # values, types and key order
        assert json.dumps(read.new) == json.dumps(written.new)
        assert read.at == written.at and read.actor == written.actor
    raw = _raw_history(backend_url, tmp_path)[1:]
    assert isinstance(raw[0][2], list) and raw[0][2][-1] == {"restored_from": "sqlite:///elsewhere.db"}
    assert isinstance(raw[5][2], dict) and isinstance(raw[6][2], dict)


def test_an_add_event_takes_less_than_half_the_bytes_of_a_keyed_copy(
    backend_url: str, open_memory: Callable[..., Memory], tmp_path: Path
) -> None:
    mem = open_memory(backend_url)
    added = mem.add_many([f"fact {i}: the build cache lives on volume {i % 7} of the shared array" for i in range(50)])
    keyed = sum(len(json.dumps(e.new, ensure_ascii=False)) for m in added for e in mem.history(m.id))
    assert _stored_size(backend_url, tmp_path) * 2 < keyed


def _unpack_to_schema_18(url: str, tmp_path: Path, histories: dict[str, list[HistoryEntry]]) -> None:
    """Make the store what schema 18 wrote: every history value a keyed object, schema_version 18."""
    entries = [e for i in sorted(histories) for e in histories[i]]
    if url.startswith("sqlite"):
        with sqlite3.connect(tmp_path / "conformance.db") as conn:
            register_functions(conn)
            ids = [row[0] for row in conn.execute("SELECT id FROM history ORDER BY memory_id, id")]
            dump = lambda v: None if v is None else json.dumps(v, ensure_ascii=False)  # noqa: E731 - what schema 18 wrote
            for row_id, entry in zip(ids, entries, strict=True):
                conn.execute("UPDATE history SET old = ?, new = ? WHERE id = ?", (dump(entry.old), dump(entry.new), row_id))
            conn.execute("CREATE INDEX memories_ns_created ON memories(namespace, created_at)")
            rewind(conn, 18, "sqlite")
        return
    from psycopg.types.json import Json

    with psycopg.connect(url, autocommit=True) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM history ORDER BY memory_id, id")]
        for row_id, entry in zip(ids, entries, strict=True):
            conn.execute("UPDATE history SET old = %s, new = %s WHERE id = %s", (Json(entry.old), Json(entry.new), row_id))
        conn.execute("CREATE INDEX memories_ns_created ON memories (namespace, created_at)")
        rewind(conn, 18, "postgres")


def test_a_store_written_before_schema_19_is_packed_in_place_with_the_same_answers(
    backend_url: str, open_memory: Callable[..., Memory], tmp_path: Path
) -> None:
    mem = open_memory(backend_url)
    ids = _life(mem)
    first = mem.history(ids[0])[0].new
    assert first is not None
    odd = [
        {**first, "restored_from": "sqlite:///elsewhere.db"},
        {**first, "id": "another-id"},
        {**first, "content_hash": "f" * 64},
        {**first, "updated_at": "2026-01-03T00:00:00Z", "metadata": {"z": "\u00e9 ✓", "a": None}},
        {k: v for k, v in first.items() if k != "tags"},
    ]
    with mem.service.store.write() as tx:
        tx.add_history_many([HistoryEntry(memory_id=ids[0], event=HistoryEvent.restore, new=v, at=AT) for v in odd])
    histories = {memory_id: mem.history(memory_id) for memory_id in ids}
    mem.close()
    _unpack_to_schema_18(backend_url, tmp_path, histories)
    assert all(isinstance(v, dict) for row in _raw_history(backend_url, tmp_path) for v in row[2:] if v is not None)
    before = _stored_size(backend_url, tmp_path)

    again = open_memory(backend_url)  # opening migrates
    assert again.service.store.schema_version >= 19
    assert {i: _dumped(again.history(i)) for i in ids} == {i: _dumped(h) for i, h in histories.items()}
    raw = _raw_history(backend_url, tmp_path)
    assert all(isinstance(new, list) for _m, event, _o, new in raw if event == "add")
    assert all(isinstance(old, list) for _m, event, old, _n in raw if event == "delete")
    assert _stored_size(backend_url, tmp_path) < before * 0.75
    assert _index_names(backend_url, tmp_path) >= {"memories_ns_order", "memories_ns_hash"}
    assert "memories_ns_created" not in _index_names(backend_url, tmp_path)  # a prefix of memories_ns_order
    later = again.add("written after the upgrade", namespace="ops")
    assert again.history(later.id)[0].new is not None


def test_undelete_backup_and_migrate_carry_the_same_history(
    backend_url: str, open_memory: Callable[..., Memory], tmp_path: Path, cli: Any
) -> None:
    mem = open_memory(backend_url)
    ids = _life(mem)
    before_delete = mem.history(ids[1])[0].new
    histories = {memory_id: _dumped(mem.history(memory_id)) for memory_id in ids}

    back = mem.service.lifecycle.restore(ids[1], principal=LOCAL_PRINCIPAL)  # undelete: from the packed delete snapshot
    assert before_delete is not None
    assert back.content == before_delete["content"] and back.title == "Gone" and back.priority == 4
    assert back.content_hash == before_delete["content_hash"] and back.created_at.isoformat().startswith("2026-01-01T12:00")
    events = mem.history(ids[1])
    assert [e.event for e in events] == ["add", "delete", "restore"] and _dumped(events[:2]) == histories[ids[1]]
    histories[ids[1]] = _dumped(events)

    snapshot = mem.backup(tmp_path / "bk").snapshot
    restored = open_memory(f"sqlite:///{tmp_path / 'restored.db'}")
    restored.restore(snapshot)
    assert {i: _dumped(restored.history(i)) for i in ids} == histories
    mem.close()

    copy = tmp_path / "copy.db"
    run = cli("migrate", "--from", backend_url, "--to", f"sqlite:///{copy}", "--json")
    assert run.code == 0, run.err
    migrated = open_memory(f"sqlite:///{copy}")
    assert {i: _dumped(migrated.history(i)) for i in ids} == histories
    shown = cli("history", ids[0], "--json", extra_env={"MEMMESH_DB": str(copy)})
    assert shown.code == 0, shown.err
    assert [e["event"] for e in json.loads(shown.out)] == ["add", "update", "update"]
