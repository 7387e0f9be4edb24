"""The ``memmesh`` command line, run as a real process: output, exit codes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import CliResult


def _json(result: CliResult) -> object:
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_store_then_recall_finds_it(cli) -> None:
    stored = _json(cli("store", "The deploy key lives in vault under ops/deploy", "-n", "ops", "-t", "infra,Secrets", "--json"))
    assert stored["namespace"] == "ops" and stored["tags"] == ["infra", "secrets"]
    result = _json(cli("recall", "where is the deploy key", "--json"))
    assert result["hits"][0]["memory"]["id"] == stored["id"]
    assert result["mode"] == "keyword" and "no embedder" in result["notices"][0]
    human = cli("recall", "deploy key")
    assert human.code == 0 and stored["id"] in human.out


def test_crud_commands_and_json_shapes(cli) -> None:
    first = _json(cli("store", "first note", "--json"))
    second = _json(cli("store", "-", "--title", "From stdin", "--metadata", '{"k": 1}', "--json", input="second note\n"))
    assert second["content"] == "second note\n" and second["metadata"] == {"k": 1}
    assert _json(cli("get", first["id"], "--json"))["content"] == "first note"
    page = _json(cli("list", "--limit", "1", "--json"))
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = _json(cli("list", "--cursor", page["next_cursor"], "--json"))
    assert {page["items"][0]["id"], rest["items"][0]["id"]} == {first["id"], second["id"]}
    assert _json(cli("update", first["id"], "--content", "first note, revised", "--json"))["content"] == "first note, revised"
    link = _json(cli("link", first["id"], second["id"], "-r", "derived_from", "--json"))
    assert link["relation"] == "derived_from"
    assert len(_json(cli("links", second["id"], "--json"))) == 1
    assert [e["event"] for e in _json(cli("history", first["id"], "--json"))] == ["add", "update"]
    stats = _json(cli("stats", "--json"))
    assert stats["total"] == 2 and stats["links_count"] == 1
    assert set(stats) == {"total", "by_tier", "by_namespace", "expiring_soon", "links_count", "db_size_bytes"}
    assert _json(cli("search", "revised", "--json"))["hits"][0]["memory"]["id"] == first["id"]
    assert _json(cli("delete", first["id"], "--json"))["id"] == first["id"]
    assert cli("get", first["id"]).code == 1
    assert _json(cli("gc", "--json")) == {"archived": 0, "tombstones_purged": 0, "retention_forgotten": 0}


def test_bad_input_exits_1_with_one_line_and_no_traceback(cli) -> None:
    cli("store", "keep me", "--json")
    cases = [
        (("store", ""), "content is empty"),
        (("store", "x" * 70_000), "limit is 65536"),
        (("get", "no-such-id"), "no memory with id no-such-id"),
        (("delete", "no-such-id"), "no memory with id"),
        (("recall", " "), "query is empty"),
        (("list", "--cursor", "garbage"), "invalid cursor"),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.code == 1, (args, result.err)
        assert result.err.startswith("error: ") and message in result.err, (args, result.err)
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
    assert _json(cli("stats", "--json"))["total"] == 1
    for args, message in [  # a flag's value the core refuses: a usage error (exit 2) naming the flag
        (("store", "x", "-n", "bad//ns"), "--namespace 'bad//ns' is invalid"),
        (("store", "x", "-t", ",".join(f"t{i}" for i in range(40))), "limit is 32"),
        (("store", "x", "--metadata", "{oops"), "--metadata is not valid JSON"),
        (("store", "x", "--metadata", "[1, 2]"), "must be a JSON object"),
    ]:
        result = cli(*args)
        assert result.code == 2 and message in result.err and result.err.rstrip().endswith("see memmesh store --help"), result


def test_usage_errors_exit_2(cli) -> None:
    assert cli("no-such-command").code == 2
    assert cli("store").code == 2
    assert cli("recall", "x", "--top-k", "many").code == 2


def test_corrupt_and_foreign_database_files(cli, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("definitely not sqlite" * 50)
    result = cli("--db", str(junk), "stats")
    assert result.code == 1 and "not a SQLite database" in result.err and "Traceback" not in result.err


def test_config_file_errors_name_the_file_and_key(cli, tmp_path: Path) -> None:
    typo = tmp_path / "typo.toml"
    typo.write_text("[storage]\nbusy_timeout = 10\n")
    result = cli("--config", str(typo), "stats")
    assert result.code == 1 and str(typo) in result.err and "storage.busy_timeout" in result.err
    secret = tmp_path / "secret.toml"
    secret.write_text('[embeddings]\nprovider = "openai"\napi_key = "sk-live-123"\n')
    result = cli("--config", str(secret), "stats")
    assert result.code == 1 and "inline secret" in result.err and "api_key_env" in result.err
    assert "sk-live-123" not in result.err
    broken = tmp_path / "broken.toml"
    broken.write_text("[storage\n")
    result = cli("--config", str(broken), "stats")
    assert result.code == 1 and "not valid TOML" in result.err
    missing = cli("--config", str(tmp_path / "nope.toml"), "stats")
    assert missing.code == 1 and "does not exist" in missing.err


@pytest.mark.slow  # long: started first (tests/conftest.py)
def test_export_import_round_trip_is_lossless_and_idempotent(cli, tmp_path: Path) -> None:
    a = _json(cli("store", "alpha memory", "-n", "x/y", "-t", "one,two", "--priority", "8", "--json"))
    b = _json(cli("store", "beta memory", "--tier", "long", "--metadata", '{"deep": {"list": [1, 2]}}', "--json"))
    cli("update", a["id"], "--content", "alpha memory, changed")
    cli("link", a["id"], b["id"])
    cli("recall", "alpha")  # access counts must survive too
    dump = tmp_path / "dump.jsonl"
    assert cli("export", "--out", str(dump)).code == 0
    other = tmp_path / "other.db"
    report = _json(cli("--db", str(other), "import", str(dump), "--json"))
    assert report["memories_written"] == 2 and report["links_written"] == 1
    again = _json(cli("--db", str(other), "import", str(dump), "--json"))
    assert again["memories_written"] == 0 and again["links_written"] == 0
    for memory_id in (a["id"], b["id"]):
        original = _json(cli("get", memory_id, "--json"))
        copied = _json(cli("--db", str(other), "get", memory_id, "--json"))
        assert copied == original
        assert _json(cli("history", memory_id, "--json")) == _json(cli("--db", str(other), "history", memory_id, "--json"))
    assert _json(cli("--db", str(other), "links", a["id"], "--json")) == _json(cli("links", a["id"], "--json"))
    second_dump = tmp_path / "dump2.jsonl"
    cli("--db", str(other), "export", "--out", str(second_dump))
    strip = [line for line in second_dump.read_text().splitlines()[1:]]
    assert strip == dump.read_text().splitlines()[1:]


def test_import_refuses_a_bad_file_and_writes_nothing(cli, tmp_path: Path) -> None:
    good = _json(cli("store", "good memory", "--json"))
    dump = tmp_path / "dump.jsonl"
    cli("export", "--out", str(dump))
    lines = dump.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([*lines, '{"type": "memory", "memory": {"id": "x"}}']) + "\n")
    other = tmp_path / "other.db"
    result = cli("--db", str(other), "import", str(bad))
    assert result.code == 1 and "line 3" in result.err and "nothing was imported" in result.err
    assert not other.exists()  # a refused import leaves nothing behind, not even an empty store
    not_json = tmp_path / "notjson.jsonl"
    not_json.write_text("hello\n")
    assert "line 1: not JSON" in cli("--db", str(other), "import", str(not_json)).err
    assert good["id"]


def test_doctor_reports_checks(cli, db_path: Path) -> None:
    fresh = _json(cli("doctor", "--json"))  # nothing stored yet: a warning, and doctor creates nothing
    assert {c["name"]: c["status"] for c in fresh["checks"]} == {"store": "warn", "embedder": "warn"}
    assert "memmesh init" in fresh["checks"][0]["detail"] and not db_path.exists()
    cli("init")
    report = _json(cli("doctor", "--json"))
    names = {c["name"]: c["status"] for c in report["checks"]}
    assert names["store"] == "ok" and names["integrity"] == "ok" and names["embedder"] == "warn"
    assert report["config"]["embeddings"]["provider"] == "none"


def test_init_creates_the_database(cli, db_path: Path) -> None:
    info = _json(cli("init", "--json"))
    assert db_path.exists() and info["schema_version"] >= 2
