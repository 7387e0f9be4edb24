"""A backup of a store whose disk is full succeeds, and retention never costs the new snapshot.

The snapshot goes to another disk; only its ``admin.backup`` audit entry needs the store's
disk. It used to fail the command (exit 1, ``write to … failed``) after the snapshot and its
manifest were complete and ``--retain`` had already removed older snapshots, so each retry
added another snapshot. Now the backup succeeds and the entry it could not record is a
warning (stderr, ``warnings`` in the JSON, the Python result and the HTTP answer).

The store's disk is "full" as in tests/test_disk_full.py: a soft ``RLIMIT_FSIZE`` on the real
process. Only the store's write must meet it, not the snapshot's, so the store's WAL is first
grown past the limit while a reader holds an old snapshot (SQLite cannot restart the WAL
under it): the entry's frames then land beyond the limit, while the snapshot, a copy of the
much smaller database, fits under it.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from tests.http.http_support import SpawnedServer
from tests.test_disk_full import _limit

NOT_RECORDED = "the snapshot is complete, but its admin.backup audit entry could not be recorded: write to "


@contextmanager
def store_writes_fail(db: Path) -> Iterator[int]:
    """A file-size limit under which the store's next write fails and a snapshot still fits."""
    reader = sqlite3.connect(db)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM meta").fetchone()  # holds the WAL from restarting
    writer = sqlite3.connect(db)
    for i in range(400):
        writer.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('test-padding', ?)", (str(i),))
        writer.commit()
    writer.execute("DELETE FROM meta WHERE key = 'test-padding'")
    writer.commit()
    writer.close()
    limit = Path(f"{db}-wal").stat().st_size // 2
    assert db.stat().st_size < limit // 2, "the snapshot would not fit under the limit: the test would prove nothing"
    try:
        yield limit
    finally:
        reader.rollback()
        reader.close()


def _env(tmp_path: Path, db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update({"MEMMESH_DB": str(db), "MEMMESH_DATA_DIR": str(tmp_path / "data"), "MEMMESH_EMBEDDINGS_PROVIDER": "none", "COLUMNS": "200"})
    return env


def _limited(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return apply


def _run(tmp_path: Path, db: Path, args: list[str], limit: int) -> subprocess.CompletedProcess[str]:
    env = _env(tmp_path, db)
    command = [sys.executable, *args]
    return subprocess.run(command, preexec_fn=_limited(limit), env=env, capture_output=True, text=True, timeout=120, check=False)


PYTHON_BACKUP = """
import json, sys
from memmesh import Memory
with Memory(sys.argv[1]) as mem:
    made = mem.backup(sys.argv[2])
print(json.dumps({"snapshot": made.snapshot, "warnings": made.warnings}))
"""


def test_a_backup_of_a_store_whose_disk_is_full_succeeds_and_warns_that_its_audit_entry_is_missing(tmp_path, db_path, cli) -> None:
    assert cli("store", "Deploys are frozen on Fridays", "-n", "ops").code == 0
    folder = tmp_path / "backups"
    first = json.loads(cli("backup", "--to", str(folder), "--json").out)["snapshot"]
    cli_app = ["-m", "memmesh.interfaces.cli.app", "--db", str(db_path)]
    with store_writes_fail(db_path) as limit:
        done = _run(tmp_path, db_path, [*cli_app, "backup", "--to", str(folder), "--retain", "1", "--json"], limit)
        assert done.returncode == 0, done.stdout + done.stderr
        made = json.loads(done.stdout)
        assert len(made["warnings"]) == 1 and made["warnings"][0].startswith(NOT_RECORDED), made["warnings"]
        assert made["removed"] == [first] and Path(made["snapshot"]).is_file()

        text = _run(tmp_path, db_path, [*cli_app, "backup", "--to", str(folder)], limit)
        assert text.returncode == 0, text.stdout + text.stderr
        assert text.stdout.startswith("snapshot "), text.stdout
        assert f"warning: {NOT_RECORDED}" in text.stderr, text.stderr

        python = _run(tmp_path, db_path, ["-c", PYTHON_BACKUP, f"sqlite:///{db_path}", str(folder)], limit)
        assert python.returncode == 0, python.stdout + python.stderr
        result = json.loads(python.stdout.splitlines()[-1])
        assert len(result["warnings"]) == 1 and result["warnings"][0].startswith(NOT_RECORDED), result
    restored = cli("restore", made["snapshot"], "--to", f"sqlite:///{tmp_path / 'restored.db'}", "--json")
    assert restored.code == 0 and json.loads(restored.out)["memories_written"] == 1, restored.out + restored.err
    actions = [e["action"] for e in json.loads(cli("audit", "export", "--json").out)]
    assert actions.count("admin.backup") == 1  # only the backup taken while the disk had room


def test_a_backup_over_http_on_a_full_store_answers_201_with_the_warning(tmp_path: Path) -> None:
    db = tmp_path / "full.db"
    server = SpawnedServer(tmp_path, db).wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert http.post("/api/v1/memories", json={"namespace": "ops", "content": "kept"}).status_code == 201
            with store_writes_fail(db) as limit:
                _limit(server.proc.pid, limit)
                answer = http.post("/api/v1/backup", json={})
                _limit(server.proc.pid, None)
            assert answer.status_code == 201, answer.text
            made = answer.json()
            assert len(made["warnings"]) == 1 and made["warnings"][0].startswith(NOT_RECORDED), made
            assert Path(made["snapshot"]).is_file()
    finally:
        server.terminate()


def test_retention_never_removes_the_snapshot_it_just_made(tmp_path, db_path, cli) -> None:
    """An older snapshot dated later than now (a clock that was ahead, a copy from elsewhere)
    used to outrank the new one: `--retain 1` deleted the snapshot it had just made and kept
    the old one, while the output named the deleted file as the backup."""
    assert cli("store", "Deploys are frozen on Fridays", "-n", "ops").code == 0
    folder = tmp_path / "backups"
    old = json.loads(cli("backup", "--to", str(folder), "--json").out)["snapshot"]
    manifest = Path(f"{old}.manifest.json")
    dated = json.loads(manifest.read_text())
    dated["created_at"] = "2099-01-01T00:00:00Z"
    manifest.write_text(json.dumps(dated))
    done = cli("backup", "--to", str(folder), "--retain", "1", "--json")
    assert done.code == 0, done.err
    made = json.loads(done.out)
    assert Path(made["snapshot"]).is_file() and Path(f"{made['snapshot']}.manifest.json").is_file()
    assert made["removed"] == [old] and not Path(old).exists()
