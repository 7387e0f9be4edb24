"""CLI findings of a user trial (probe 22): every flag value the core refuses is a usage error
naming the flag (exit 2, ending ``see memmesh COMMAND --help``), tables show ids whole on a
narrow terminal, and errors say what a folder, a path or a deleted memory is."""

from __future__ import annotations

import json
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


def test_bad_data_that_no_flag_gave_is_still_exit_1(cli_in_process: Any) -> None:
    empty = cli_in_process("store", "")
    assert empty.code == 1 and "see memmesh" not in empty.err, empty


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
