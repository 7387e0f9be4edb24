"""New-user papercuts (session 4): what the CLI says when a store changes nothing, an update
has nothing to change, a key is revoked twice or pasted whole, and a refused serve."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from memmesh.memory import Memory


def test_storing_existing_content_says_so_and_keeps_the_new_tags(cli, db_path: Path) -> None:
    first = cli("store", "deploys happen on Tuesdays", "--tags", "ops", "--json")
    assert first.code == 0, first.err
    memory_id = json.loads(first.out)["id"]
    again = cli("store", "deploys happen on Tuesdays", "--tags", "release,ops")
    assert again.code == 0, again.err
    assert "already stored as" in again.out and memory_id in again.out and "tags now ops, release" in again.out
    assert not again.out.startswith("stored")
    listed = json.loads(cli("list", "--json").out)["items"]
    assert [(m["id"], m["tags"]) for m in listed] == [(memory_id, ["ops", "release"])]  # one memory, both tags
    history = json.loads(cli("history", memory_id, "--json").out)
    assert [e["event"] for e in history] == ["add", "update"]  # the merge is an update on the record
    same = cli("store", "deploys happen on Tuesdays", "--tags", "ops")
    assert "already stored as" in same.out and len(json.loads(cli("history", memory_id, "--json").out)) == 2  # nothing new: no write


def test_the_tag_merge_is_the_cores_rule_for_every_face(tmp_path: Path, mem: Memory) -> None:
    first = mem.add("the office closes at six", tags=["facts"])
    again = mem.add("the office closes at six", tags=["office", "facts"])
    assert again.id == first.id and again.tags == ["facts", "office"]
    retried = mem.add("the office closes at six", id=first.id, tags=["hours"])  # a retry by id merges too
    assert retried.id == first.id and retried.tags == ["facts", "office", "hours"]
    assert mem.stats().total == 1


def test_update_without_a_change_is_a_usage_error(cli) -> None:
    memory_id = json.loads(cli("store", "a fact to keep", "--json").out)["id"]
    result = cli("update", memory_id)
    assert result.code == 2 and "nothing to update" in result.err and "--content" in result.err
    assert [e["event"] for e in json.loads(cli("history", memory_id, "--json").out)] == ["add"]


def test_revoke_never_echoes_a_secret_and_a_second_revoke_is_refused(cli) -> None:
    created = json.loads(cli("keys", "create", "--agent", "bot", "--json").out)
    secret = created["key"].split("_", 2)[2]
    pasted = cli("keys", "revoke", created["key"])  # the whole key, as copied from where it leaked
    assert pasted.code == 0, pasted.err
    assert f"revoked key {created['id']}" in pasted.out and secret not in pasted.out + pasted.err
    twice = cli("keys", "revoke", created["id"])
    assert twice.code == 1 and f"API key {created['id']} was already revoked at" in twice.err
    unknown = cli("keys", "revoke", "mm_0123456789ab_" + secret)
    assert unknown.code == 1 and "no API key with id '0123456789ab'" in unknown.err and secret not in unknown.err
    keys = json.loads(cli("keys", "list", "--all", "--json").out)
    assert [(k["id"], bool(k["revoked_at"])) for k in keys] == [(created["id"], True)]


def test_a_refused_network_bind_creates_no_database(cli, tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    result = cli("--db", str(db), "serve", "--host", "0.0.0.0", "--port", "0")
    assert result.code == 1 and "refusing to listen on 0.0.0.0 with no API keys" in result.err
    assert not db.exists() and not list(tmp_path.glob("fresh.db*"))


def test_get_and_list_show_square_brackets_as_stored(cli) -> None:
    # Rich read "[postgres]" and "[b]" in stored text as style tags and dropped them:
    # `get` showed content, title and tags other than what was stored
    content = "install with pip install 'memmesh[postgres]', then [b]restart[/b]"
    stored = cli("store", content, "--title", "setup [draft]", "--tags", "ops[x]", "--json")
    assert stored.code == 0, stored.err
    memory_id = json.loads(stored.out)["id"]
    shown = cli("get", memory_id)
    assert shown.code == 0, shown.err
    lines = {line.split(None, 1)[0]: line.split(None, 1)[1].strip() for line in shown.out.splitlines() if line.strip()}
    assert (lines["content"], lines["title"], lines["tags"]) == (content, "setup [draft]", "ops[x]")
    listed = cli("list")
    assert listed.code == 0, listed.err
    assert "ops[x]" in listed.out and "'memmesh[postgres]', then [b]restart[/b]" in listed.out


def test_agent_names_and_task_results_keep_their_brackets(cli) -> None:
    assert cli("agents", "register", "bot", "--name", "Bot [beta]", "--role", "writer", "-n", "team/*").code == 0
    assert "Bot [beta]" in cli("agents", "list").out
    opened = json.loads(cli("bus", "open", "--participants", "boss,worker", "--kind", "queue", "--json").out)
    token = {"MEMMESH_BUS_TOKEN": opened["token"]}
    queue = opened["conversation_id"]
    assert cli("bus", "send", queue, "index it", "--from", "boss", extra_env=token).code == 0
    attempt = json.loads(cli("bus", "claim", queue, "--worker", "worker", "--json", extra_env=token).out)["attempt_token"]
    assert cli("bus", "complete", queue, attempt, "--worker", "worker", "--result", "ok [12 pages]", extra_env=token).code == 0
    assert "ok [12 pages]" in cli("bus", "tasks", queue, extra_env=token).out


def test_storing_again_names_the_tags_as_they_are(cli) -> None:
    assert cli("store", "the runbook is in the wiki", "--tags", "ops[beta]").code == 0
    again = cli("store", "the runbook is in the wiki", "--tags", "wiki")
    assert again.code == 0, again.err
    assert "tags now ops[beta], wiki" in again.out


def test_long_runs_leave_no_stray_line_on_a_redirected_stderr(cli, tmp_path: Path) -> None:
    assert cli("store", "deploys are frozen on Fridays", "-n", "team/ops").code == 0
    dump = tmp_path / "dump.jsonl"
    exported = cli("export", "-o", str(dump))
    assert exported.code == 0 and exported.err == f"exported to {dump}\n"
    imported = cli("--db", str(tmp_path / "other.db"), "import", str(dump))
    assert imported.code == 0 and imported.err == f"created a new memmesh database at {tmp_path / 'other.db'}\n"


def test_serve_with_tls_names_an_https_address(cli, tmp_path: Path) -> None:
    # the start line said http:// while only https answered: the address to copy did not work
    assert cli("certs", "init", "--dir", str(tmp_path / "certs"), "--nodes", "node-a", "--hosts", "127.0.0.1").code == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update({"MEMMESH_CONFIG": str(tmp_path / "absent.toml"), "MEMMESH_EMBEDDINGS_PROVIDER": "none"})
    certs = tmp_path / "certs"
    tls = ["--tls-cert", str(certs / "node-a.pem"), "--tls-key", str(certs / "node-a.key")]
    log = tmp_path / "serve.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", str(tmp_path / "tls.db"), "serve", "--port", str(port), *tls],
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
        assert f" at https://127.0.0.1:{port}; auth: " in started[0]
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_import_report_names_the_file_as_it_is(cli, tmp_path: Path) -> None:
    source = tmp_path / "notes[old].json"
    source.write_text(json.dumps({"results": [{"id": "1", "memory": "likes tea"}]}))
    imported = cli("import", str(source))
    assert imported.code == 0, imported.err
    assert f"import mem0 from {source}" in " ".join(imported.out.split())  # the title may wrap


def test_restore_of_an_empty_path_says_none_was_given(cli, tmp_path: Path) -> None:
    # `memmesh restore "$snapshot"` with an empty $snapshot was told "." is a folder without snapshots
    result = cli("restore", "", "--to", f"sqlite:///{tmp_path / 'restored.db'}")
    assert result.code == 1
    assert result.err.startswith("error: no snapshot given (the path is empty): name the snapshot file `memmesh backup` made")
    assert not (tmp_path / "restored.db").exists()


def test_a_postgres_keyword_connection_string_is_answered_with_the_url_it_spells(cli_in_process, tmp_path: Path) -> None:
    """``psql``-style ``host=… dbname=…`` (what ``scripts/pg_test_server.py ensure`` prints)
    given to ``--db``, ``MEMMESH_DB`` or ``migrate --to`` used to be taken for a SQLite file
    name ('cannot create the database ./host=/var/…'); now the error writes the URL to use,
    creates nothing, and never echoes a password."""
    socket_dsn = "host=/var/run/pg port=5433 user=postgres dbname=team"
    socket_url = "postgresql://postgres@/team?host=/var/run/pg&port=5433"
    cases = [
        (("--db", socket_dsn, "stats"), {}, socket_url),
        (("stats",), {"MEMMESH_DB": "host=db.example dbname=mm"}, "postgresql://db.example/mm"),
        (("migrate", "--from", str(tmp_path / "memmesh.db"), "--to", socket_dsn), {}, socket_url),
        (("--db", "host=db port=6000 user=me password=s3cret dbname=mm", "stats"), {}, "postgresql://me@db:6000/mm"),
    ]
    cli_in_process("store", "a fact")  # a source for migrate
    for args, env, url in cases:
        result = cli_in_process(*args, extra_env=env)
        assert result.code == 1, result
        assert "is a PostgreSQL keyword connection string, not a store URL: write it as " + url in result.err, result.err
        assert "s3cret" not in result.err + result.out
    assert sorted(p.name for p in tmp_path.iterdir() if "=" in p.name) == []  # no folder or file named host=…
    plain = cli_in_process("--db", str(tmp_path / "lr=0.1.db"), "store", "x")  # a file name with '=' is still a file
    assert plain.code == 0 and (tmp_path / "lr=0.1.db").exists(), plain
