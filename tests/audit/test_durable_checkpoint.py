"""A signed checkpoint never covers an entry a power loss could take back (SQLite, WAL,
synchronous=NORMAL: a commit is written to the WAL but not fsynced).

The case that broke it: a reader holding a snapshot (any open read under ``serve``) keeps a
passive checkpoint from moving any frame, and a passive checkpoint that moves nothing syncs
nothing, so the newest entries were signed while still only in the page cache. The fsync
itself cannot be seen through memmesh's interfaces, so the test records the fsync calls the
process makes while ``audit checkpoint`` signs."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from memmesh import Memory
from memmesh.audit.notes import init_key
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[Memory]:
    init_key(tmp_path / "signing.key", "durable-test")
    audit = {"signing_key_file": str(tmp_path / "signing.key"), "checkpoint_dir": str(tmp_path / "checkpoints")}
    settings = load_settings(
        None,
        overrides={"data_dir": str(tmp_path), "embeddings": {"provider": "none"}, "storage": {"synchronous": "NORMAL"}, "audit": audit},
        env={"MEMMESH_CONFIG": ""},
    )
    mem = Memory(f"sqlite:///{tmp_path / 'durable.db'}", settings)
    yield mem
    mem.close()


def test_the_wal_is_fsynced_before_signing_while_a_reader_pins_it(memory: Memory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "durable.db"
    memory.add("first, signed with nothing pinning the WAL", namespace="ops")
    assert memory.service.audit.checkpoint(principal=LOCAL_PRINCIPAL) is not None

    reader = sqlite3.connect(db, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM memories").fetchall()  # holds its snapshot
        memory.add("second, committed while the reader holds its snapshot", namespace="ops")

        synced: list[str] = []
        real_fsync = os.fsync

        def recording_fsync(fd: int) -> None:
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", recording_fsync)
        signed = memory.service.audit.checkpoint(principal=LOCAL_PRINCIPAL)
        monkeypatch.undo()
        assert signed is not None and signed.size == memory.service.audit.verify(principal=LOCAL_PRINCIPAL).size

        # the situation is the one described: a passive checkpoint cannot move the new frames
        busy, log_frames, moved = sqlite3.connect(db).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert log_frames > moved, (busy, log_frames, moved)
        # ... so the WAL holding them had to be synced before the checkpoint was written
        wal = os.path.realpath(f"{db}-wal")
        assert wal in synced, synced
        ledger = os.path.realpath(tmp_path / "checkpoints" / "checkpoints.jsonl")
        assert ledger in synced and synced.index(wal) < synced.index(ledger), synced
    finally:
        reader.close()
