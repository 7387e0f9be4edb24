"""No silent no-ops on user data: reads, dry runs and refusals leave nothing on disk; a
store is created only by a write, which says so; restores leave an honest history.

Every test runs the real ``memmesh`` command in a subprocess, in its own working
directory and home, so a stray relative path or a literal ``~`` folder would show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> object:
        assert self.code == 0, self.err
        return json.loads(self.out)


@pytest.fixture
def run(tmp_path: Path):
    """``memmesh`` with cwd and HOME in tmp_path/home, no --db unless given, keyword-only."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "none.toml").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update(
        {
            "HOME": str(home),
            "MEMMESH_CONFIG": str(tmp_path / "none.toml"),
            "MEMMESH_DATA_DIR": str(tmp_path / "data" / "not-yet"),
            "MEMMESH_EMBEDDINGS_PROVIDER": "none",
            "COLUMNS": "200",
        }
    )

    def go(*args: str, input: str | None = None, extra_env: dict[str, str] | None = None) -> Run:
        proc = subprocess.run(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", *args],
            input=input,
            capture_output=True,
            text=True,
            cwd=home,
            env={**env, **(extra_env or {})},
            timeout=120,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return go


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_read_commands_on_a_missing_store_fail_and_create_nothing(run, tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    before = _files(tmp_path)
    for args in (
        ("recall", "anything"),
        ("search", "anything"),
        ("list",),
        ("get", "some-id"),
        ("history", "some-id"),
        ("export",),
        ("stats",),
        ("gc",),
        ("backup", "--to", str(tmp_path / "snaps")),
        ("update", "some-id", "--content", "x"),
    ):
        result = run("--db", str(missing), *args)
        assert result.code == 1, (args, result.err)
        assert result.err == f"error: no memmesh database at {missing}: the file does not exist; check the path (nothing was created)\n"
    relative = run("--db", "relative.db", "list")  # named by its absolute path, against the working directory
    assert relative.code == 1 and f"no memmesh database at {tmp_path / 'home' / 'relative.db'}" in relative.err
    assert _files(tmp_path) == before


def test_a_write_creates_a_store_once_and_says_so_but_never_a_missing_folder(run, tmp_path: Path) -> None:
    nowhere = tmp_path / "no-such-dir" / "x.db"
    refused = run("--db", str(nowhere), "store", "hello")
    assert refused.code == 1 and "Traceback" not in refused.err
    assert f"the folder {nowhere.parent} does not exist" in refused.err and not nowhere.parent.exists()

    fresh = tmp_path / "fresh.db"
    first = run("--db", str(fresh), "store", "hello")
    assert first.code == 0 and first.err == f"created a new memmesh database at {fresh}\n"
    second = run("--db", str(fresh), "store", "hello again")
    assert second.code == 0 and second.err == ""
    assert run("--db", str(fresh), "list").code == 0

    # The default database (no --db) lives in the data dir, which is made on first use.
    default = run("store", "in the default store")
    data_db = tmp_path / "data" / "not-yet" / "memmesh.db"
    assert default.code == 0 and default.err == f"created a new memmesh database at {data_db}\n" and data_db.is_file()


def test_migrate_from_a_wrong_path_fails_and_tilde_is_expanded(run, tmp_path: Path) -> None:
    home = tmp_path / "home"
    wrong = run("migrate", "--from", "sqlite:///memmesh.db", "--to", str(tmp_path / "target.db"))
    assert wrong.code == 1 and f"no memmesh database at {home / 'memmesh.db'}" in wrong.err
    assert _files(home) == [] and not (tmp_path / "target.db").exists()

    assert run("--db", str(home / "mine.db"), "store", "a fact worth keeping").code == 0
    done = run("migrate", "--from", "sqlite:///~/mine.db", "--to", "sqlite:///~/copy.db", "--json").json()
    assert done["memories_written"] == 1  # type: ignore[index]
    assert {"copy.db", "mine.db"} <= set(_files(home))
    assert not (home / "~").exists()
    copied = run("--db", "~/copy.db", "list", "--json").json()
    assert [m["content"] for m in copied["items"]] == ["a fact worth keeping"]  # type: ignore[index]


def test_migrate_dry_run_creates_no_target(run, tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    for text in ("one", "two", "three"):
        assert run("--db", str(source), "store", text).code == 0
    target = tmp_path / "target.db"
    dry = run("migrate", "--from", str(source), "--to", str(target), "--dry-run", "--json").json()
    assert dry["dry_run"] is True and dry["memories_written"] == 3  # type: ignore[index]
    assert dry["to_url"] == f"sqlite:///{target}"  # type: ignore[index]
    assert not target.exists() and not Path(f"{target}-wal").exists()


def test_a_refused_restore_creates_nothing_and_a_restore_ends_history_in_restore(run, tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    kept = run("--db", str(db), "store", "the office wifi password is in the safe", "--json").json()
    snap = run("--db", str(db), "backup", "--to", str(tmp_path / "snaps"), "--json").json()
    snapshot = Path(snap["snapshot"])  # type: ignore[index]

    manifest = Path(f"{snapshot}.manifest.json")
    good = manifest.read_text()
    manifest.write_text(json.dumps({**json.loads(good), "schema_version": 99}))
    target = tmp_path / "restored.db"
    refused = run("restore", str(snapshot), "--to", str(target))
    assert refused.code == 1 and "newer" in refused.err and "nothing was changed" in refused.err
    assert not target.exists()
    manifest.write_text(good)

    assert run("--db", str(db), "delete", kept["id"]).code == 0  # type: ignore[index]
    back = run("--db", str(db), "restore", str(snapshot), "--json").json()
    assert back["memories_written"] == 1  # type: ignore[index]
    events = [e["event"] for e in run("--db", str(db), "history", kept["id"], "--json").json()]  # type: ignore[index,union-attr]
    assert events == ["add", "delete", "restore"]
    assert run("--db", str(db), "get", kept["id"]).code == 0  # type: ignore[index]
    again = run("--db", str(db), "restore", str(snapshot), "--json").json()
    assert again["memories_written"] == 0 and again["history_written"] == 0  # type: ignore[index]

    fresh = run("restore", str(snapshot), "--to", str(target), "--json")
    assert fresh.code == 0 and fresh.err == f"created a new memmesh database at {target}\n"


def test_reimporting_a_deleted_memory_ends_its_history_in_restore(run, tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    kept = run("--db", str(db), "store", "standup moved to 9:30", "--json").json()
    dump = tmp_path / "dump.jsonl"
    assert run("--db", str(db), "export", "-o", str(dump)).code == 0
    assert run("--db", str(db), "delete", kept["id"]).code == 0  # type: ignore[index]
    assert run("--db", str(db), "import", str(dump)).code == 0
    events = [e["event"] for e in run("--db", str(db), "history", kept["id"], "--json").json()]  # type: ignore[index,union-attr]
    assert events == ["add", "delete", "restore"]
