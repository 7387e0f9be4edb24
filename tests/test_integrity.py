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
    for refused_write in (
        ("store", "   "),
        ("store", "x", "--metadata", "[1]"),
        ("import", str(tmp_path / "no-such.jsonl")),
        ("keys", "create", "--agent", "bot", "--role", "emperor"),
        ("agents", "register", "bad id!"),
    ):
        result = run("--db", str(fresh), *refused_write)
        assert (
            result.code == (2 if "--role" in refused_write or "--metadata" in refused_write else 1)  # a flag's value: usage
            and result.err.startswith("error: ")
            and len(result.err.splitlines()) == 1
        ), result.err
        assert not fresh.exists() and not Path(f"{fresh}-wal").exists()  # a refused write leaves no empty store behind
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


# -- clean edges ---------------------------------------------------------------------------


def test_version_alone_prints_the_version_and_exits_0(run) -> None:
    from memmesh import __version__

    result = run("--version")
    assert (result.code, result.out, result.err) == (0, f"{__version__}\n", "")


def test_export_to_a_bad_path_is_one_line_and_leaves_nothing(run, tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    assert run("--db", str(db), "store", "something to export").code == 0
    for target in (tmp_path / "no-such-dir" / "out.jsonl", tmp_path, tmp_path / ("a" * 300 + ".jsonl")):  # the long name: a traceback once
        result = run("--db", str(db), "export", "-o", str(target))
        assert result.code == 1 and "Traceback" not in result.err and len(result.err.splitlines()) == 1, result.err
        assert result.err.startswith(f"error: cannot write the export to {str(target)[:60]}")  # a 380-character path is clipped
        assert result.err.rstrip().endswith(("does not exist; check the path", "give a file name", "File name too long; check the path"))
    assert not (tmp_path / "no-such-dir").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if "jsonl" in p.name) == []


def test_title_conflict_hint_is_a_flag_on_the_cli_and_a_keyword_in_python(run, tmp_path: Path) -> None:
    from memmesh import ConflictError, Memory
    from memmesh.config import load_settings

    db = tmp_path / "x.db"
    first = run("--db", str(db), "store", "retro every other Friday", "--title", "retro", "--json").json()
    clash = run("--db", str(db), "store", "retro every Thursday", "--title", "retro")
    assert clash.code == 1
    assert clash.err == (
        f"error: namespace 'default' already has a memory titled 'retro' ({first['id']}); "  # type: ignore[index]
        "pass --on-conflict update or --on-conflict version\n"
    )
    fixed = run("--db", str(db), "store", "retro every Thursday", "--title", "retro", "--on-conflict", "update", "--json").json()
    assert fixed["id"] == first["id"]  # type: ignore[index]

    settings = load_settings(None, overrides={"data_dir": str(tmp_path), "embeddings": {"provider": "none"}}, env={})
    with Memory(f"sqlite:///{db}", settings) as mem, pytest.raises(ConflictError) as caught:
        mem.add("retro on Mondays now", title="retro")
    assert str(caught.value).endswith("pass on_conflict='update' or on_conflict='version'")
    assert caught.value.details["retry_with"] == {"on_conflict": ["update", "version"]}


def test_a_bad_environment_variable_is_named_not_the_config_file(run, tmp_path: Path) -> None:
    bad = run("stats", extra_env={"MEMMESH_STORAGE_BUSY_TIMEOUT_MS": "soon"})
    assert bad.code == 1 and "config file" not in bad.err
    assert bad.err.startswith("error: environment variable MEMMESH_STORAGE_BUSY_TIMEOUT_MS: 'storage.busy_timeout_ms': ")
    flag = run("serve", "--port", "99999")
    assert flag.code == 2 and flag.err.startswith("error: --port: Input should be ")  # a bad flag: usage, named as typed
    conf = tmp_path / "bad.toml"
    conf.write_text("[server]\nport = -1\n")
    both = run("--config", str(conf), "stats", extra_env={"MEMMESH_RECALL_CANDIDATES": "0"})
    assert both.code == 1
    assert (
        f"config file {conf}: 'server.port'" in both.err
        and "environment variable MEMMESH_RECALL_CANDIDATES: 'recall.candidates'" in both.err
    )


def test_get_and_history_print_fields_and_tables_keep_ids_whole(run, tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    long_text = "Deploys are frozen on Fridays and on the weekend unless the on-call lead signs off in the channel"
    made = run(
        "--db", str(db), "store", long_text, "-n", "team/ops/release", "-t", "deploys,policy", "-m", '{"ticket": {"id": 7}}', "--json"
    )
    memory_id = made.json()["id"]  # type: ignore[index]
    assert run("--db", str(db), "update", memory_id, "--content", "Deploys are frozen on Fridays", "--priority", "9").code == 0

    shown = run("--db", str(db), "get", memory_id).out
    assert "{'" not in shown and "<" not in shown
    lines = {line.split(None, 1)[0]: line.split(None, 1)[1].strip() for line in shown.splitlines() if line.strip()}
    assert lines["id"] == memory_id and lines["tags"] == "deploys, policy" and lines["metadata"] == '{"ticket": {"id": 7}}'
    assert lines["content"] == "Deploys are frozen on Fridays" and lines["tier"] == "mid"

    history = run("--db", str(db), "history", memory_id).out
    assert "{'" not in history and "HistoryEvent" not in history
    assert f"Deploys are frozen on Fridays and on the weekend unless the on-call lead signs off in the channel → {lines['content']}" in (
        " ".join(history.split())
    )
    assert " add " in history and " update " in history and "priority  5 → 9" in history

    narrow = {"COLUMNS": "80"}
    for args in (("list",), ("recall", "deploys frozen"), ("search", "deploys")):
        table = run("--db", str(db), *args, extra_env=narrow)
        assert table.code == 0 and memory_id in table.out, (args, table.out)
        assert max(len(line) for line in table.out.splitlines()) <= 80


def test_serve_says_what_it_serves_and_a_busy_port_is_one_line(run, tmp_path: Path) -> None:
    import socket
    import time

    db = tmp_path / "served.db"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("--db", str(db), "serve", "--port", str(port))
        assert result.code == 1 and result.out == ""
        assert result.err == (
            f"error: port {port} on 127.0.0.1 is already in use (another memmesh serve?); "
            "stop that process or pick another port with --port\n"
        )
    assert not db.exists()  # refused before any store was opened

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update({"MEMMESH_CONFIG": str(tmp_path / "none.toml"), "MEMMESH_EMBEDDINGS_PROVIDER": "none"})
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", "serve", "--db", f"sqlite:///{db}", "--port", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while "Application startup complete" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        started = [line for line in log.read_text().splitlines() if "memmesh serving" in line]
        assert len(started) == 1, log.read_text()
        assert started[0].endswith(
            f"memmesh serving sqlite:///{db} (new database) at http://127.0.0.1:{port}; "
            "auth: open on loopback, no API keys yet (the first `memmesh keys create` turns keys on)"
        )
    finally:
        proc.terminate()
        proc.wait(30)


def test_readme_python_snippet_runs_twice(tmp_path: Path) -> None:
    import re

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "Memory()" in block)
    script = tmp_path / "snippet.py"
    script.write_text(snippet)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update({"MEMMESH_DATA_DIR": str(tmp_path / "data"), "MEMMESH_CONFIG": str(tmp_path / "none.toml")})
    (tmp_path / "none.toml").write_text("")
    outputs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout.splitlines())
    first, second = outputs
    assert first[0].endswith(" Alice prefers green tea") and first[-1] == "mid add, update"
    assert second[0].endswith(" Alice prefers green tea") and second[-1] == "mid add, update, update, update"


def test_import_progress_bar_counts(run, tmp_path: Path) -> None:
    import pty
    import re

    db = tmp_path / "x.db"
    for i in range(3):
        assert run("--db", str(db), "store", f"fact number {i}").code == 0
    dump = tmp_path / "dump.jsonl"
    assert run("--db", str(db), "export", "-o", str(dump)).code == 0
    master, slave = pty.openpty()  # a real terminal on stderr, where the bar is drawn
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update({"MEMMESH_CONFIG": str(tmp_path / "none.toml"), "MEMMESH_EMBEDDINGS_PROVIDER": "none", "COLUMNS": "100"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", str(tmp_path / "copy.db"), "import", str(dump)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b"3 memories" in out
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn.decode("utf-8", "replace"))
    assert "importing" in text and "3/3" in text, text


def test_python_api_create_false_refuses_a_missing_store(tmp_path: Path) -> None:
    from memmesh import Memory, NotFoundError
    from memmesh.config import load_settings

    settings = load_settings(None, overrides={"data_dir": str(tmp_path / "data"), "embeddings": {"provider": "none"}}, env={})
    with pytest.raises(NotFoundError, match=f"no memmesh database at {tmp_path / 'absent.db'}"):
        Memory(str(tmp_path / "absent.db"), settings, create=False)
    assert not (tmp_path / "absent.db").exists()
    with Memory(f"sqlite:///{tmp_path / 'made.db'}", settings) as mem:
        assert mem.service.store.created and str(mem.add("first").tier) == "mid"
    with Memory(f"sqlite:///{tmp_path / 'made.db'}", settings, create=False) as mem:
        assert not mem.service.store.created and [m.content for m in mem.get_all()] == ["first"]
