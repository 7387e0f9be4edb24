"""CLI papercuts from new-user trials: what a narrow terminal shows, counts in words, what
restore says of agents, a full disk under ``export -o``, usage errors and a lost port race."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import httpx
from tests.conftest import CliResult
from tests.http.http_support import free_port, server_env

from memmesh import Memory

UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def _flat(result: CliResult) -> str:
    return " ".join(result.out.split())


def test_recall_and_list_on_80_columns_show_the_content_and_an_id_get_accepts(cli) -> None:
    text = "The deployment pipeline runs nightly at 02:00 UTC and posts its summary to the ops channel"
    stored = cli("store", text, "-n", "team/ops", "-t", "deploy,ci", "--json")
    assert stored.code == 0, stored.err
    for args in (("recall", "deployment pipeline"), ("search", "pipeline"), ("list",), ("recall", "pipeline", "--explain")):
        shown = cli(*args, extra_env={"COLUMNS": "80"})
        assert shown.code == 0, shown.err
        assert max(len(line) for line in shown.out.splitlines()) <= 80, shown.out
        assert text in _flat(shown), shown.out  # the whole sentence, not "The deployment pip…"
        assert UUID.findall(shown.out) == [json.loads(stored.out)["id"]], shown.out  # whole, on one line
    got = cli("get", UUID.findall(shown.out)[0])  # copied from the output
    assert got.code == 0 and text in got.out
    wide = cli("recall", "deployment pipeline", extra_env={"COLUMNS": "200"})
    assert "┃ content" in wide.out and text[:60] in wide.out  # a wide terminal keeps the table


SPELT_PLURAL = re.compile(r"\b1 (memories|links|tombstones|keys|API keys|registered agents|batches|history entries|vectors)\b")


def test_a_count_of_one_is_spelt_in_the_singular(cli_in_process, tmp_path: Path, db_path: Path) -> None:
    assert cli_in_process("store", "the only fact", "--json").code == 0
    assert cli_in_process("keys", "create", "--agent", "ops", "--role", "admin").code == 0
    backup = cli_in_process("backup", "--to", str(tmp_path / "backups"))
    assert backup.code == 0 and ": 1 memory, 0 links, " in backup.out, backup
    snapshot = next((tmp_path / "backups").glob("*.db"))
    restored = cli_in_process("restore", str(snapshot), "--to", str(tmp_path / "restored.db"))
    assert restored.code == 0 and "restored 1 memory, 0 links, 0 tombstones" in restored.out, restored
    assert "the snapshot held 1 API key; it is not restored; create new ones" in restored.err, restored.err
    migrated = cli_in_process("migrate", "--from", str(db_path), "--to", str(tmp_path / "copy.db"))
    assert migrated.code == 0 and "read 1 memory in 1 batch; wrote 1 memory, 0 links, 1 history entry" in migrated.out, migrated
    assert "the source held 1 API key; it is not copied;" in migrated.err, migrated.err
    dump = tmp_path / "dump.jsonl"
    assert cli_in_process("export", "-o", str(dump)).code == 0
    imported = cli_in_process("--db", str(tmp_path / "imported.db"), "import", str(dump))
    assert imported.code == 0 and "1 memory and 0 links written" in imported.out, imported
    stats = cli_in_process("stats")
    assert stats.out.startswith("1 memory, 0 links, "), stats.out
    said = [backup, restored, migrated, imported, stats, cli_in_process("gc")]
    assert not [m.group() for r in said for m in SPELT_PLURAL.finditer(r.out + r.err)], said


def test_restore_names_the_registered_agents_the_target_lacks(cli_in_process, tmp_path: Path) -> None:
    assert cli_in_process("store", "a fact").code == 0
    for agent in ("ops", "ci"):
        assert cli_in_process("agents", "register", agent).code == 0
    assert cli_in_process("backup", "--to", str(tmp_path / "backups")).code == 0
    snapshot = next((tmp_path / "backups").glob("*.db"))

    same = cli_in_process("restore", str(snapshot))  # into the store it was taken from: it has them
    assert same.code == 0, same.err
    assert "the snapshot held 2 registered agents; agents are not restored, and this store has them all already" in same.err
    assert "register" not in same.err.replace("registered agents", ""), same.err

    other = tmp_path / "other.db"
    assert cli_in_process("--db", str(other), "agents", "register", "ops").code == 0
    into_other = cli_in_process("restore", str(snapshot), "--to", str(other), "--json")
    assert into_other.code == 0, into_other.err
    assert json.loads(into_other.out)["agents_missing"] == ["ci"]
    assert "this store lacks 1 of them (ci): register it with `memmesh agents register`" in into_other.err, into_other.err
    listed = json.loads(cli_in_process("--db", str(other), "agents", "list", "--json").out)
    assert [agent["agent_id"] for agent in listed] == ["ops"]  # restore still copies no agent


def _export_with_a_file_size_limit(db_path: Path, out: Path, limit: int) -> subprocess.CompletedProcess[str]:
    """``memmesh export -o out`` in a process that may write no file past ``limit`` bytes: a
    write past it fails with EFBIG, as one on a full disk fails with ENOSPC (Python ignores
    SIGXFSZ, so the write fails instead of the process being killed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update({"MEMMESH_DB": str(db_path), "MEMMESH_CONFIG": "", "MEMMESH_EMBEDDINGS_PROVIDER": "none"})

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "export", "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limited,
    )


def test_an_export_that_runs_out_of_room_says_so_and_leaves_no_file(mem: Memory, db_path: Path, tmp_path: Path) -> None:
    for i in range(60):
        mem.add(f"note {i}: " + "words to fill the export file " * 40, namespace="fill")
    limit = 65_536  # export only reads the store (its -shm file is 32 KiB); the export file is larger
    out = tmp_path / "out.jsonl"
    result = _export_with_a_file_size_limit(db_path, out, limit)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: cannot write the export to {out}: the file grew past the largest file"), result.stderr
    assert f"nothing was written (no {out} was made)" in result.stderr and "check the path" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == []  # no partial file either

    out.write_text("an older export\n")
    again = _export_with_a_file_size_limit(db_path, out, limit)
    assert again.returncode == 1 and f"nothing was written ({out} is as it was)" in again.stderr, again.stderr
    assert out.read_text() == "an older export\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("out")] == ["out.jsonl"]


def test_output_into_a_full_disk_is_one_error_line_not_a_traceback(mem: Memory, db_path: Path) -> None:
    """``memmesh export > file`` (and any other command's output) on a full disk: /dev/full
    fails every write with ENOSPC, as a full disk does."""
    for i in range(30):
        mem.add(f"note {i}: " + "words to fill the output " * 40, namespace="fill")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update({"MEMMESH_DB": str(db_path), "MEMMESH_CONFIG": "", "MEMMESH_EMBEDDINGS_PROVIDER": "none"})
    for args in (["export"], ["list", "--json"], ["list"]):
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [sys.executable, "-m", "memmesh.interfaces.cli.app", *args],
                env=env,
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=120,
            )
        assert done.returncode == 1, (args, done.stderr)
        assert done.stderr == (
            "error: cannot write the output: the disk is full (No space left on device); "
            "what was written is incomplete: free some space or write elsewhere\n"
        ), (args, done.stderr)
    assert len(mem.list(namespace="fill", limit=100).items) == 30


def test_clicks_usage_errors_are_one_error_line_with_exit_2(cli_in_process) -> None:
    cases = [
        (
            ("recall", "deploy", "friday", "policy"),
            "error: got unexpected extra argument(s) (friday policy): memmesh recall takes 1 argument (QUERY); quote",
        ),
        (("get", "01a2", "extra"), "error: got unexpected extra argument(s) (extra): memmesh get takes 1 argument (MEMORY_ID)"),
        (("restore", "a.db", "b.db"), "takes 1 argument (SNAPSHOT)"),
        (("stats", "x"), "memmesh stats takes no arguments; see memmesh stats --help"),
        (("recall",), "error: missing argument 'query'; see memmesh recall --help"),
        (("recall", "x", "--top-k", "many"), "error: invalid value for '--top-k'"),
        (("recall", "x", "--nope"), "error: no such option: --nope"),
        (("nocmd",), "error: no such command 'nocmd'; see memmesh --help"),
        (("agents", "register"), "error: missing argument 'agent_id'; see memmesh agents register --help"),
    ]
    for args, start in cases:
        result = cli_in_process(*args)
        assert result.code == 2 and result.out == "", (args, result)
        assert len(result.err.splitlines()) == 1 and start in result.err and "╭" not in result.err, (args, result.err)
    helped = cli_in_process("recall", "--help")  # help is as it was
    assert helped.code == 0 and "Usage: memmesh recall" in helped.out and "╭" in helped.out
    bare = cli_in_process()
    assert bare.code == 2 and "Usage: memmesh" in bare.out and bare.err == ""
    assert cli_in_process("--version").code == 0


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_of_two_serves_started_at_once_on_one_port_the_loser_says_so_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "memmesh.interfaces.cli.app", "serve", "--db", str(tmp_path / "m.db"), "--port", str(port)]
    env = server_env(tmp_path)
    both = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while not _ready(port) or all(proc.poll() is None for proc in both):  # one serves, the other has ended
            assert time.monotonic() < deadline, "neither serve became ready, or both kept running"
            time.sleep(0.05)
        loser = next(proc for proc in both if proc.poll() is not None)
        out, err = loser.communicate(timeout=10)
        assert loser.returncode == 1 and out == "", (loser.returncode, out, err)
        assert err == (
            f"error: port {port} on 127.0.0.1 is already in use (another memmesh serve?); "
            "stop that process or pick another port with --port\n"
        )
        assert _ready(port)  # the winner serves on
    finally:
        for proc in both:
            if proc.poll() is None:
                proc.terminate()
                proc.communicate(timeout=30)
