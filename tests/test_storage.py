"""The SQLite file: migrations, foreign and damaged files, many writers, crashes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.conftest import keyword_settings

from memmesh import CorruptDatabaseError, Memory
from memmesh.store.sqlite import LATEST_SCHEMA, MIGRATIONS, _split_sql


def _open(tmp_path: Path, db: Path) -> Memory:
    return Memory(f"sqlite:///{db}", keyword_settings(tmp_path))


def test_new_database_is_at_the_latest_schema(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    with _open(tmp_path, db) as mem:
        assert mem.service.store.schema_version == LATEST_SCHEMA
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(LATEST_SCHEMA)


def test_database_from_an_older_version_is_migrated_with_its_data(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    number, _name, sql = MIGRATIONS[0]
    for statement in _split_sql(sql):
        conn.execute(statement)
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("schema_version", str(number)), ("app", "memmesh"), ("seq", "1"), ("node_id", "old-node")],
    )
    conn.execute(
        "INSERT INTO memories (id, namespace, content, tier, kind, tags, priority, confidence, source, created_at, updated_at, "
        "content_hash, seq) VALUES ('old-1', 'legacy', 'written by schema one', 'long', 'fact', '[\"old\"]', 5, 1.0, 'user', "
        "'2025-01-01T00:00:00.000000Z', '2025-01-01T00:00:00.000000Z', 'h', 1)"
    )
    conn.execute("INSERT INTO memory_tags (tag, memory_id) VALUES ('old', 'old-1')")
    conn.commit()
    conn.close()
    with _open(tmp_path, db) as mem:
        assert mem.service.store.schema_version == LATEST_SCHEMA
        assert mem.get("old-1").content == "written by schema one"
        assert [h.memory.id for h in mem.search("schema one", mode="keyword")] == ["old-1"]
        assert mem.service.node_id == "old-node"
        mem.add("written after the upgrade", namespace="legacy")
        assert mem.stats().total == 2


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    _open(tmp_path, db).close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabaseError, match="newer than this memmesh supports"):
        _open(tmp_path, db)


def test_foreign_and_non_sqlite_files_are_refused_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    with pytest.raises(CorruptDatabaseError, match="another application"):
        _open(tmp_path, foreign)
    assert foreign.read_bytes() == before

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is a text file, not a database" * 100)
    with pytest.raises(CorruptDatabaseError, match="not a SQLite database"):
        _open(tmp_path, junk)
    assert junk.read_bytes() == b"this is a text file, not a database" * 100


WRITER = textwrap.dedent("""
    import sys
    from memmesh import Memory
    from memmesh.config import load_settings
    db, worker, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    settings = load_settings(None, overrides={"embeddings": {"provider": "none"}}, env={})
    mem = Memory("sqlite:///" + db, settings)
    for i in range(count):
        mem.add(f"worker {worker} note {i}", namespace=f"w{worker}")
    print("done", flush=True)
""")


@pytest.mark.slow
def test_eight_processes_writing_one_file_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    _open(tmp_path, db).close()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(w), "500"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(8)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "done"
        assert "locked" not in err
    with _open(tmp_path, db) as mem:
        stats = mem.stats()
        assert stats.total == 4000
        assert {n.namespace: n.count for n in stats.by_namespace} == {f"w{w}": 500 for w in range(8)}
        assert mem.service.store.integrity_check() == "ok"


CRASHER = textwrap.dedent("""
    import sys
    from memmesh import Memory
    from memmesh.config import load_settings
    settings = load_settings(None, overrides={"embeddings": {"provider": "none"}}, env={})
    mem = Memory("sqlite:///" + sys.argv[1], settings)
    i = 0
    while True:
        batch = mem.add_many([{"content": f"batch {i} item {j} " + "x" * 200, "namespace": "crash"} for j in range(50)])
        print(" ".join(m.id for m in batch), flush=True)
        i += 1
""")


@pytest.mark.slow
def test_kill_9_mid_batch_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, str(db)], stdout=subprocess.PIPE, text=True)
    acknowledged: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while len(acknowledged) < 2000 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acknowledged += line.split()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    acknowledged += proc.stdout.read().split()  # lines already written before the kill
    assert len(acknowledged) >= 2000
    with _open(tmp_path, db) as mem:
        assert mem.service.store.integrity_check() == "ok"
        stored = {m.id for m in mem.service.store.iter_memories()}
        assert set(acknowledged) <= stored
        assert len(stored) % 50 == 0  # batches are all or nothing
        hits = mem.search("batch item", mode="keyword", top_k=5, touch=False)
        assert hits
