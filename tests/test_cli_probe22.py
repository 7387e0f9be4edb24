"""CLI findings of a user trial (probe 22): every flag value the core refuses is a usage error
naming the flag (exit 2, ending ``see memmesh COMMAND --help``), tables show ids whole on a
narrow terminal, and errors say what a folder, a path or a deleted memory is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import CliResult


def _usage(result: CliResult, flag: str, command: str) -> None:
    assert result.code == 2, result
    line = result.err.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"error: {flag}"), result.err
    assert line.endswith(f"; see memmesh {command} --help"), result.err


def _queue(cli: Any) -> tuple[str, str]:
    opened = json.loads(cli("bus", "open", "--participants", "a,b", "--kind", "queue", "--json").out)
    return opened["id"], opened["token"]


@pytest.mark.parametrize(
    ("args", "flag", "command"),
    [
        (("store", "x", "--confidence", "nan"), "--confidence: ", "store"),
        (("store", "x", "--valid-from", "yesterday"), "--valid-from: ", "store"),
        (("store", "x", "--tier", "forever"), "--tier: ", "store"),  # Click-like suffix, not just the exit code
        (("store", "x", "--confidence", "nan", "--tier", "forever"), "--tier: ", "store"),  # two bad flags
        (("store", "x", "-n", "a/../b"), "--namespace ", "store"),
        (("bus", "open", "--participants", "a b,c"), "--participants: 'a b'", "bus open"),
        (("bus", "open", "--participants", "a,a"), "--participants names a more than once", "bus open"),
        (("bus", "open", "--participants", "a,b", "--timeout", "0"), "--timeout must be", "bus open"),
        (("bus", "open", "--participants", "a", "--kind", "pile"), "--kind must be", "bus open"),
        (("session", "append", "s1", "hi", "--role", "Big Boss"), "--role 'Big Boss'", "session append"),
        (("pending", "list", "--status", "maybe"), "--status 'maybe' is unknown", "pending list"),
        (("namespace", "set-standard", "-n", "t", "--default-tier", "forever"), "--default-tier 'forever'", "namespace set-standard"),
        (("namespace", "set-standard", "-n", "t", "--governance", "{oops"), "--governance is not valid JSON", "namespace set-standard"),
        (("keys", "create", "--agent", "a", "--role", "emperor"), "--role 'emperor' is unknown", "keys create"),
        (("keys", "create", "--agent", "a b"), "--agent 'a b' is invalid", "keys create"),
        (("store", "x", "--valid-from", "2027-01-01", "--valid-to", "2026-01-01"), "--valid-to must be later", "store"),
        (("inbox", "--agent", ""), "--agent '' is not a valid agent name", "inbox"),
    ],
)
def test_a_flag_value_the_core_refuses_is_a_usage_error_naming_the_flag(
    cli_in_process: Any, args: tuple[str, ...], flag: str, command: str
) -> None:
    assert cli_in_process("init").code == 0
    _usage(cli_in_process(*args), flag, command)


def test_bus_flags_the_queue_refuses_are_usage_errors_naming_the_flag(cli_in_process: Any) -> None:
    assert cli_in_process("init").code == 0
    conv, token = _queue(cli_in_process)
    claim = ("bus", "claim", conv, "--worker", "a", "--token", token)
    _usage(cli_in_process(*claim, "--wait", "99999"), "--wait 99999 s is longer", "bus claim")
    _usage(cli_in_process(*claim, "--lease", "0"), "--lease must be", "bus claim")
    _usage(cli_in_process("bus", "claim", conv, "--worker", "a b", "--token", token), "--worker 'a b'", "bus claim")
    _usage(cli_in_process("bus", "tasks", conv, "--token", token, "--state", "gone"), "--state must be", "bus tasks")
    _usage(cli_in_process("bus", "send", conv, "hi", "--from", "a", "--to", "x y", "--token", token), "--to: 'x y'", "bus send")


def test_a_bad_session_flag_of_remember_is_a_usage_error_before_any_store(cli_in_process: Any, tmp_path: Path, db_path: Path) -> None:
    messages = tmp_path / "m.json"
    messages.write_text('[{"role": "user", "content": "hi"}]')
    _usage(cli_in_process("remember", str(messages), "--session", "bad id/.."), "--session 'bad id/..' is not valid", "remember")
    assert not db_path.exists()


def test_bad_data_that_no_flag_gave_is_still_exit_1(cli_in_process: Any) -> None:
    empty = cli_in_process("store", "")
    assert empty.code == 1 and "see memmesh" not in empty.err, empty
    agent = cli_in_process("agents", "register", "a b")  # an argument is data, named as the core names it
    assert agent.code == 1 and agent.err.startswith("error: agent_id 'a b' is invalid"), agent


def test_tables_show_ids_whole_on_80_columns(cli: Any) -> None:
    assert cli("init").code == 0
    conv, token = _queue(cli)
    assert cli("bus", "send", conv, "a task with a description long enough to need room", "--from", "a", "--token", token).code == 0
    task = json.loads(cli("bus", "tasks", conv, "--token", token, "--json").out)["tasks"][0]["id"]
    key = json.loads(cli("keys", "create", "--agent", "planner-with-a-rather-long-name", "--json").out)
    assert cli("curator", "run", "--dry-run").code == 0
    run = json.loads(cli("curator", "runs", "--json").out)[0]["id"]
    assert cli("session", "append", "a-session-id-that-is-quite-long-too", "hello").code == 0
    narrow = {"COLUMNS": "80"}
    for args, ids in [
        (("bus", "list"), [conv]),
        (("bus", "tasks", conv, "--token", token), [task]),
        (("keys", "list"), [key["id"], "planner-with-a-rather-long-name"]),
        (("agents", "list"), ["planner-with-a-rather-long-name"]),
        (("curator", "runs"), [run]),
        (("session", "list"), ["a-session-id-that-is-quite-long-too"]),
    ]:
        shown = cli(*args, extra_env=narrow)
        assert shown.code == 0, shown
        for ident in ids:
            assert ident in shown.out, (args, ident, shown.out)


def test_remember_of_a_folder_says_it_is_a_folder(cli_in_process: Any, tmp_path: Path) -> None:
    result = cli_in_process("remember", str(tmp_path))
    assert result.code == 1 and f"{tmp_path} is a folder; give one JSON file of messages in it" in result.err, result
    assert "Errno" not in result.err and "UTF-8" not in result.err


def test_a_db_path_is_shown_normalised_and_may_climb_past_the_root(
    cli_in_process: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    climb = "../" * (len(tmp_path.parts) + 2) + str(tmp_path / "r.db").lstrip("/")  # more `..` than folders: the OS stops at /
    made = cli_in_process("--db", climb, "store", "a fact")
    assert made.code == 0 and f"created a new memmesh database at {tmp_path / 'r.db'}\n" in made.err, made
    missing = cli_in_process("--db", f"{tmp_path}/../{tmp_path.name}/none.db", "list")
    assert missing.code == 1 and f"no memmesh database at {tmp_path / 'none.db'}:" in missing.err, missing
    assert "/../" not in missing.err


def test_a_postgres_that_cannot_be_reached_is_one_tidy_line(cli_in_process: Any, tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    assert cli_in_process("store", "a fact").code == 0
    result = cli_in_process("migrate", "--from", str(tmp_path / "memmesh.db"), "--to", "postgresql://nobody@127.0.0.1:1/x")
    assert result.code == 1 and "cannot connect to PostgreSQL at nobody@127.0.0.1:1/x: " in result.err, result
    assert "  " not in result.err and "\t" not in result.err and len(result.err.strip().splitlines()) == 1, repr(result.err)


def test_deleting_a_deleted_memory_says_so_and_how_to_undo(cli_in_process: Any) -> None:
    memory_id = json.loads(cli_in_process("store", "a fact", "--json").out)["id"]
    assert cli_in_process("delete", memory_id).code == 0
    again = cli_in_process("delete", memory_id)
    assert again.code == 1 and f"memory {memory_id} was deleted already" in again.err, again
    assert f"memmesh undelete {memory_id}" in again.err
    assert "no memory with id" in cli_in_process("delete", "01a23bed-0000-7000-8000-000000000000").err  # never existed
    assert cli_in_process("undelete", memory_id).code == 0
