"""Issue 16: what a memory write costs in I/O and Python on an audited SQLite store.

Each write unit runs under a SAVEPOINT; SQLite keeps the undo copies of the pages it changes
in a statement journal, which it moves to a new temp file once it passes 64 KiB. Nearly every
memory write changes more than 16 existing pages, so before the writer kept that journal in
memory every write created, filled and deleted a temp file: ~80 KB more written per write
and a sixth of its CPU, most of the audit's overhead. Measured here as the bytes the process
passes to write(2) (``/proc/self/io``), which the temp file doubles.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memmesh import Memory
from memmesh.audit.log import _stamp
from memmesh.clock import format_ts
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL

UNQUEUED = ("a test write", "it writes more than its memories", "none: no standard is set here")
"""What a write with ``within=`` says where writes need approval (required with ``within``)."""


def _written() -> int:
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines() if line)
    return int(fields["wchar"])


def _memory(tmp_path: Path) -> Memory:
    settings = load_settings(None, overrides={"data_dir": str(tmp_path), "embeddings": {"provider": "none"}}, env={})
    return Memory(f"sqlite:///{tmp_path / 'io.db'}", settings)


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
def test_a_memory_write_writes_its_wal_frames_not_a_temp_journal_too(tmp_path: Path) -> None:
    memory = _memory(tmp_path)
    try:
        for i in range(300):  # a store whose tables span many pages, as in use
            memory.add(f"warm-up note {i} about the deployment", namespace=f"team/ns{i % 5}")
        before = _written()
        for i in range(200):
            memory.add(f"measured note {i} about the deployment and its rollback", namespace=f"team/ns{i % 5}")
        per_write = (_written() - before) / 200
        # measured: ~90 KB per write (its WAL frames); with the journal spilled: ~170 KB
        assert per_write < 128 * 1024, f"{per_write:.0f} bytes written per memory write: the undo journal went to a temp file"
        entries = memory.service.audit.entries(principal=LOCAL_PRINCIPAL, since=0, limit=1000).entries
        assert len(entries) == 500 and memory.service.audit.verify(principal=LOCAL_PRINCIPAL).ok
    finally:
        memory.close()


def test_a_failed_write_still_takes_its_changes_and_entries_back(tmp_path: Path) -> None:
    """The journal in memory still undoes a unit that fails (ROLLBACK TO its savepoint)."""
    memory = _memory(tmp_path)
    try:
        memory.add("kept", namespace="n")

        def fail(tx: object, stored: list[object]) -> None:
            raise RuntimeError("the caller fails after writing")

        with pytest.raises(RuntimeError):
            rolled_back = [{"content": "rolled back", "namespace": "n"}]
            memory.service.add_many(rolled_back, principal=LOCAL_PRINCIPAL, within=fail, unqueued=UNQUEUED)
        assert [m.content for m in memory.get_all(namespace="n")] == ["kept"]
        entries = memory.service.audit.entries(principal=LOCAL_PRINCIPAL).entries
        assert [e.action for e in entries] == ["memory.add"] and memory.service.audit.verify(principal=LOCAL_PRINCIPAL).ok
        memory.add("after", namespace="n")
        assert memory.service.audit.verify(principal=LOCAL_PRINCIPAL).ok
    finally:
        memory.close()


def test_the_per_second_stamp_equals_format_ts() -> None:
    """``_stamp`` reuses the text of the whole second: equal to format_ts for any UTC time,
    including second, minute, day and year boundaries and times out of order."""
    rng = random.Random(16)
    base = datetime(2026, 12, 31, 23, 59, 58, 999_999, tzinfo=UTC)
    moments = [base + timedelta(microseconds=k) for k in range(0, 3_000_000, 250_000)]
    moments += [datetime(1970, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)]
    moments += [datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**16)) for _ in range(2000)]
    moments += [datetime(2026, 5, 5, 5, 5, 5, 5, tzinfo=UTC), datetime(2026, 5, 5, 5, 5, 5, tzinfo=UTC)]
    for moment in moments + moments[::-1]:
        assert _stamp(moment) == format_ts(moment)


def test_a_nested_write_that_fails_takes_back_its_own_entries_only(tmp_path: Path) -> None:
    """A write inside a write on the same thread is part of the outer unit: when it fails and
    the outer one goes on, its changes and its entries are gone, the outer ones commit."""
    memory = _memory(tmp_path)
    try:
        service = memory.service

        def fail(tx: object, stored: list[object]) -> None:
            raise RuntimeError("the inner caller fails after writing")

        def inner(tx: object, stored: list[object]) -> None:
            with pytest.raises(RuntimeError):
                rolled_back = [{"content": "inner, rolled back", "namespace": "n"}]
                service.add_many(rolled_back, principal=LOCAL_PRINCIPAL, within=fail, unqueued=UNQUEUED)
            service.add({"content": "inner, kept", "namespace": "n"}, principal=LOCAL_PRINCIPAL)

        service.add_many([{"content": "outer", "namespace": "n"}], principal=LOCAL_PRINCIPAL, within=inner, unqueued=UNQUEUED)
        assert sorted(m.content for m in memory.get_all(namespace="n")) == ["inner, kept", "outer"]
        entries = memory.service.audit.entries(principal=LOCAL_PRINCIPAL).entries
        assert [(e.index, e.action) for e in entries] == [(0, "memory.add"), (1, "memory.add")]
        assert {e.target for e in entries} == {m.id for m in memory.get_all(namespace="n")}
        assert memory.service.audit.verify(principal=LOCAL_PRINCIPAL).ok
    finally:
        memory.close()
