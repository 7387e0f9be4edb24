"""Backup, restore, export and import through the Python API (``Memory``/``AsyncMemory``) and
the CLI papercuts around them: a --to whose parent is missing, a folder given to restore,
``~`` in paths and URLs, Ctrl-C during an import. Every face calls :mod:`memmesh.transfer`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from tests.conftest import keyword_settings
from tests.signal_support import AS_FROM_A_TERMINAL

from memmesh import AsyncMemory, InvalidInputError, Memory
from memmesh.errors import CorruptDatabaseError, ForbiddenError


def _memory(tmp_path: Path, name: str) -> Memory:
    return Memory(f"sqlite:///{tmp_path / name}", keyword_settings(tmp_path))


def test_backup_then_restore_into_a_new_store_keeps_memories_history_and_links(tmp_path: Path) -> None:
    with _memory(tmp_path, "a.db") as source:
        tea = source.add("Alice prefers tea", namespace="people/alice")
        source.update(tea.id, content="Alice prefers green tea")
        cat = source.add("Alice has a cat", namespace="people/alice")
        source.link(tea.id, cat.id, "related_to")
        result = source.backup(tmp_path / "bk")
    assert result.manifest.memories == 2 and result.manifest.links == 1 and result.manifest.backend == "sqlite"
    assert result.created_folder == str(tmp_path / "bk") and Path(result.snapshot).is_file()
    with _memory(tmp_path, "b.db") as target:
        report = target.restore(result.snapshot)
        assert report.memories_written == 2 and report.rejected == 0
        assert target.get(tea.id).content == "Alice prefers green tea"
        assert len(target.history(tea.id)) == 2 and [link.target_id for link in target.links(tea.id)] == [cat.id]
        assert target.restore(result.snapshot).memories_written == 0  # idempotent


def test_restore_into_the_store_it_came_from_adds_and_never_takes_away(tmp_path: Path) -> None:
    """What docs/backup.md says a restore over a live store does: what was written or changed
    after the snapshot stays, a memory deleted after it comes back. It is not a rollback."""
    with _memory(tmp_path, "live.db") as live:
        kept = live.add("Deploys are frozen on Fridays", namespace="ops")
        gone = live.add("The staging database listens on port 5433", namespace="ops")
        snapshot = live.backup(tmp_path / "bk").snapshot
        later = live.add("Written after the backup", namespace="ops")
        live.update(kept.id, content="Deploys are frozen on Fridays and Saturdays")
        live.delete(gone.id)
        live.restore(snapshot)
        assert {m.id for m in live.get_all(namespace="ops", limit=10)} == {kept.id, gone.id, later.id}
        assert live.get(kept.id).content == "Deploys are frozen on Fridays and Saturdays"  # the newer version


def test_an_in_memory_store_can_be_backed_up_and_restored(tmp_path: Path) -> None:
    with Memory("sqlite:///:memory:", keyword_settings(tmp_path)) as memory:
        memory.add("kept only in memory until backed up")
        result = memory.backup(tmp_path / "bk", retain=1)
        second = memory.backup(tmp_path / "bk", retain=1)
    assert second.removed == [result.snapshot]  # retention works on the default-less folder too
    with _memory(tmp_path, "copy.db") as copy:
        copy.restore(second.snapshot)
        assert [m.content for m in copy.get_all()] == ["kept only in memory until backed up"]


def test_export_then_import_file_round_trips_and_is_idempotent(tmp_path: Path) -> None:
    with _memory(tmp_path, "a.db") as source:
        first = source.add("Deploys are frozen on Fridays", namespace="team/ops")
        second = source.add("The on-call rota is in the wiki", namespace="team/ops")
        source.link(first.id, second.id)
        assert source.export(tmp_path / "dump.jsonl") == 2
    assert not (tmp_path / "dump.jsonl.partial").exists()
    with _memory(tmp_path, "b.db") as target:
        report = target.import_file(tmp_path / "dump.jsonl")
        assert (report.memories_written, report.links_written) == (2, 1)
        assert target.get(first.id).content == "Deploys are frozen on Fridays"
        again = target.import_file(tmp_path / "dump.jsonl")
        assert (again.memories_written, again.memories_skipped) == (0, 2)


def test_import_text_and_file_formats_of_other_tools(tmp_path: Path) -> None:
    graph = tmp_path / "memory.jsonl"
    graph.write_text('{"type":"entity","name":"Ada","entityType":"person","observations":["writes code","likes tea"]}\n')
    with _memory(tmp_path, "a.db") as memory:
        report = memory.import_file(graph, namespace="kg")
        assert report.format == "mcp-memory" and report.totals.added == 3 and report.totals.failed == 0
        mem0 = json.dumps([{"id": "x1", "memory": "Bob plays the cello", "user_id": "bob"}])
        assert memory.import_text(mem0, format="mem0").totals.added == 1
        assert {n.namespace for n in memory.service.namespaces(principal=memory.principal)} == {"kg", "mem0/bob"}
        with pytest.raises(InvalidInputError, match="cannot be sent as text"):
            memory.import_text("/etc", format="basic-memory")
        with pytest.raises(InvalidInputError, match="not one of"):
            memory.import_file(graph, format="word")


def test_async_memory_has_the_same_transfer_methods(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncMemory(f"sqlite:///{tmp_path / 'a.db'}", keyword_settings(tmp_path)) as memory:
            await memory.add("async fact", namespace="n")
            result = await memory.backup(tmp_path / "bk")
            assert await memory.export(tmp_path / "out.jsonl") == 1
            restored = await memory.restore(result.snapshot)
            assert restored.memories_written == 0  # the same store: nothing newer to write
            imported = await memory.import_file(tmp_path / "out.jsonl", dry_run=True)
            assert imported.dry_run and imported.memories_written == 0

    asyncio.run(main())


def test_the_python_api_refuses_bad_transfer_input_and_changes_nothing(tmp_path: Path) -> None:
    with _memory(tmp_path, "a.db") as memory:
        memory.add("something")
        with pytest.raises(InvalidInputError, match=r"its parent .*nope does not exist"):
            memory.backup(tmp_path / "nope" / "deeper")
        assert not (tmp_path / "nope").exists()
        (tmp_path / "file").write_text("x")
        with pytest.raises(InvalidInputError, match="is a file, not a folder"):
            memory.backup(tmp_path / "file")
        with pytest.raises(InvalidInputError, match="retain must be a positive integer"):
            memory.backup(tmp_path, retain=0)
        snapshot = Path(memory.backup(tmp_path / "bk").snapshot)
        with pytest.raises(InvalidInputError, match=r"is a folder; restore takes one snapshot file.*newest"):
            memory.restore(tmp_path / "bk")
        with pytest.raises(InvalidInputError, match="folder with no memmesh snapshot"):
            memory.restore(tmp_path)
        snapshot.write_bytes(snapshot.read_bytes() + b"x")
        with pytest.raises(CorruptDatabaseError, match="damaged"):
            memory.restore(snapshot)
        with pytest.raises(InvalidInputError, match="it is a folder"):
            memory.export(tmp_path)
        assert memory.stats().total == 1


def test_a_namespace_scoped_admin_may_not_back_up_or_restore(tmp_path: Path) -> None:
    with _memory(tmp_path, "a.db") as memory:
        key = memory.service.create_key("ops", role="admin", namespaces=["team/a"], principal=memory.principal)
        who = memory.service.authenticate(key.key, require=True)
        with pytest.raises(ForbiddenError, match="every namespace"):
            memory.service.transfer.backup(tmp_path, principal=who)
        with pytest.raises(ForbiddenError, match="every namespace"):
            memory.service.transfer.restore(tmp_path / "x.db", principal=who)
        assert list(tmp_path.glob("memmesh-*")) == []


# -- CLI papercuts ---------------------------------------------------------------------------------


def test_cli_backup_to_a_missing_parent_refuses_and_a_missing_folder_is_made_and_announced(cli, tmp_path: Path) -> None:
    assert cli("store", "something").code == 0
    refused = cli("backup", "--to", str(tmp_path / "no" / "such" / "dir"))
    assert refused.code == 1 and refused.err.startswith("error: cannot create the backup folder") and "create it first" in refused.err
    assert len(refused.err.splitlines()) == 1 and not (tmp_path / "no").exists()
    made = cli("backup", "--to", str(tmp_path / "fresh"))
    assert made.code == 0 and f"created the backup folder {tmp_path / 'fresh'}" in made.err
    assert len(list((tmp_path / "fresh").glob("memmesh-*.db"))) == 1
    again = cli("backup", "--to", str(tmp_path / "fresh"))
    assert again.code == 0 and "created" not in again.err


def test_cli_restore_of_a_folder_says_it_is_a_folder_and_names_the_snapshot(cli, tmp_path: Path) -> None:
    assert cli("store", "something").code == 0
    assert cli("backup", "--to", str(tmp_path / "bk")).code == 0
    snapshot = next((tmp_path / "bk").glob("memmesh-*.db"))
    result = cli("restore", str(tmp_path / "bk"), "--to", str(tmp_path / "copy.db"))
    assert result.code == 1 and "is a folder" in result.err and str(snapshot) in result.err and "does not exist" not in result.err
    assert len(result.err.splitlines()) == 1 and not (tmp_path / "copy.db").exists()


def test_cli_expands_tilde_in_backup_folders_and_sqlite_urls(cli, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home)}
    assert cli("--db", "sqlite:///~/src.db", "store", "kept at home", extra_env=env).code == 0
    assert (home / "src.db").is_file()  # ~ inside a URL is the home folder, not a literal ./~
    made = cli("--db", "~/src.db", "backup", "--to=~/bk", extra_env=env)  # --to=~ is never seen by a shell
    assert made.code == 0, made.err
    assert len(list((home / "bk").glob("memmesh-*.db"))) == 1 and not Path("~").exists()
    moved = cli("migrate", "--from", "sqlite:///~/src.db", "--to", "sqlite:///~/copy.db", "--json", extra_env=env)
    assert moved.code == 0 and json.loads(moved.out)["memories_written"] == 1 and (home / "copy.db").is_file()


N = 30000  # big enough that the import is still running when Ctrl-C arrives, even on a fast idle machine


def _rows(db: Path) -> int:
    """Memories committed so far, read without memmesh (a plain read-only look)."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        return conn.execute("SELECT count(*) FROM memories").fetchone()[0]


@pytest.mark.slow  # long: started first (tests/conftest.py)
def test_ctrl_c_during_an_import_exits_130_with_one_line_and_a_rerun_finishes(cli, tmp_path: Path, db_path: Path) -> None:
    assert cli("store", "the store exists", "-n", "other").code == 0
    source = tmp_path / "big.json"
    records = [{"id": f"m{i}", "memory": f"user fact number {i} about things", "user_id": f"u{i % 7}"} for i in range(N)]
    source.write_text(json.dumps({"results": records}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update({"MEMMESH_DB": str(db_path), "MEMMESH_CONFIG": "", "MEMMESH_EMBEDDINGS_PROVIDER": "none"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "import", str(source), "--spot-check", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=AS_FROM_A_TERMINAL,  # a test run started in the background ignores SIGINT (signal_support.py)
    )
    deadline = time.monotonic() + 60
    while _rows(db_path) < 2:  # some batches committed
        assert time.monotonic() < deadline and proc.poll() is None, "the import ended before it could be interrupted"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("import interrupted (Ctrl-C)") and "Traceback" not in err
    assert "run the same command again" in err
    total = json.loads(cli("stats", "--json").out)["total"]
    assert 1 < total < N + 1 and (total - 1) % 200 == 0  # whole batches only: nothing half-written
    finished = cli("import", str(source), "--spot-check", "0", "--json")
    assert finished.code == 0 and json.loads(finished.out)["totals"]["added"] == N + 1 - total
    assert json.loads(cli("stats", "--json").out)["total"] == N + 1
