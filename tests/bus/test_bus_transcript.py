"""A conversation's transcript in mesh order (hlc, node, id) from the terminal and the Python
API: paging, no cursor moved, and one clear error for each bad input (issue 15)."""

from __future__ import annotations

import json
from typing import Any


def test_transcript_pages_in_mesh_order_and_moves_no_cursor(cli_in_process: Any) -> None:
    cli = cli_in_process
    data = json.loads(cli("bus", "open", "--participants", "a,b", "--json").out)
    conv, token = data["conversation_id"], data["token"]
    for i in range(5):
        assert cli("bus", "send", conv, f"line {i}", "--from", "a" if i % 2 else "b", "--token", token).code == 0
    first = json.loads(cli("bus", "transcript", conv, "--token", token, "--limit", "3", "--json").out)
    assert [m["body"] for m in first["messages"]] == ["line 0", "line 1", "line 2"] and first["more"] is True
    assert all(m["node"] and m["hlc"] for m in first["messages"])
    rest = json.loads(cli("bus", "transcript", conv, "--token", token, "--after", first["messages"][-1]["id"], "--json").out)
    assert [m["body"] for m in rest["messages"]] == ["line 3", "line 4"] and rest["more"] is False
    stamps = [(m["hlc"], m["node"], m["id"]) for m in first["messages"] + rest["messages"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    plain = cli("bus", "transcript", conv, "--token", token, "--limit", "2")
    assert plain.code == 0 and "line 1" in plain.out and "more: --after" in plain.out
    # reading the transcript delivered nothing: b still has every message from a unread
    unread = json.loads(cli("bus", "unread", conv, "--agent", "b", "--token", token, "--json").out)
    assert [m["body"] for m in unread["messages"]] == ["line 1", "line 3"] and unread["acked_seq"] == 0


def test_transcript_bad_input_is_one_clear_line(cli_in_process: Any) -> None:
    cli = cli_in_process
    data = json.loads(cli("bus", "open", "--participants", "a,b", "--json").out)
    conv, token = data["conversation_id"], data["token"]
    other = json.loads(cli("bus", "open", "--participants", "a,b", "--json").out)
    elsewhere = json.loads(cli("bus", "send", other["conversation_id"], "hi", "--from", "a", "--token", other["token"], "--json").out)
    wrong = "a" * 64 if token != "a" * 64 else "b" * 64
    cases = [
        (("bus", "transcript", conv, "--token", wrong), "with this token"),
        (("bus", "transcript", "no-such-id", "--token", token), "no conversation"),
        (("bus", "transcript", conv, "--token", "short"), "malformed"),
        (("bus", "transcript", conv, "--token", token, "--after", "no-such-message"), "after"),
        (("bus", "transcript", conv, "--token", token, "--after", elsewhere["id"]), "after"),
        (("bus", "transcript", conv, "--token", token, "--limit", "0"), "limit"),
    ]
    for args, fragment in cases:
        done = cli(*args)
        assert done.code == (2 if "--limit" in args else 1), (args, done.code, done.err)  # --limit 0: a usage error
        assert fragment in done.err and wrong not in done.err, (args, done.err)
