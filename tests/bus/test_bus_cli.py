"""The bus and sessions from the terminal, exactly as issue 17 spells the commands."""

from __future__ import annotations

import json
from typing import Any


def test_issue_flow_open_send_unread_ack_list(cli: Any) -> None:
    opened = cli("bus", "open", "--participants", "a,b", "--json")
    assert opened.code == 0, opened.err
    data = json.loads(opened.out)
    conv, token = data["conversation_id"], data["token"]
    assert len(token) == 64 and data["participants"] == ["a", "b"]
    sent = cli("bus", "send", conv, "hello from a", "--from", "a", "--token", token)
    assert sent.code == 0 and "#1" in sent.out
    via_env = cli("bus", "send", conv, "second", "--from", "a", extra_env={"MEMMESH_BUS_TOKEN": token})
    assert via_env.code == 0, via_env.err
    unread = cli("bus", "unread", conv, "--agent", "b", "--token", token, "--json")
    messages = json.loads(unread.out)["messages"]
    assert [m["body"] for m in messages] == ["hello from a", "second"]
    first_id = messages[0]["id"]
    acked = cli("bus", "ack", conv, first_id, "--agent", "b", "--token", token, "--json")
    assert json.loads(acked.out)["acked_seq"] == 1
    assert [m["body"] for m in json.loads(cli("bus", "unread", conv, "--agent", "b", "--token", token, "--json").out)["messages"]] == [
        "second"
    ]
    assert cli("bus", "ack", conv, "--agent", "b", "--token", token, "--all").code == 0
    assert json.loads(cli("bus", "unread", conv, "--agent", "b", "--token", token, "--json").out) == {
        "messages": [],
        "acked_seq": 2,
        "more": False,
    }
    listed = json.loads(cli("bus", "list", "--json").out)["conversations"]
    assert [c["id"] for c in listed] == [conv] and listed[0]["messages"] == 2
    assert token not in cli("bus", "list").out


def test_bad_input_is_one_clear_line_and_never_echoes_the_token(cli_in_process: Any) -> None:
    cli = cli_in_process
    data = json.loads(cli("bus", "open", "--participants", "a,b", "--json").out)
    conv, token = data["conversation_id"], data["token"]
    wrong = "a" * 64 if token != "a" * 64 else "b" * 64
    cases = [
        (("bus", "unread", conv, "--agent", "b", "--token", wrong), "with this token"),
        (("bus", "unread", "no-such-id", "--agent", "b", "--token", token), "no conversation"),
        (("bus", "send", conv, "x" * 70_000, "--from", "a", "--token", token), "bus.max_message_bytes"),
        (("bus", "send", conv, "hi", "--from", "carol", "--token", token), "not a participant"),
        (("bus", "ack", conv, "--agent", "b", "--token", token), "say what to ack"),
        (("bus", "open", "--participants", ",", "--json"), "participant"),
        (("bus", "claim", conv, "--worker", "a", "--token", token), "not a task queue"),
    ]
    for args, words in cases:
        result = cli(*args)
        assert result.code != 0 and result.err.startswith("error:") and words in result.err, (args, result.err)
        assert len(result.err.strip().splitlines()) == 1, result.err
        assert token not in result.err and wrong not in result.err
    missing = cli("bus", "send", conv, "hi", "--from", "a")
    assert missing.code == 2 and "--token" in missing.err


def test_queue_and_session_commands(cli_in_process: Any, cli: Any) -> None:
    """In-process (many calls); the session family's text output once through the real subprocess."""
    real, cli = cli, cli_in_process
    data = json.loads(cli("bus", "open", "--participants", "coord,w1", "--kind", "queue", "--json").out)
    conv, token = data["conversation_id"], data["token"]
    env = {"MEMMESH_BUS_TOKEN": token}
    assert cli("bus", "send", conv, "index shard 3", "--from", "coord", extra_env=env).code == 0
    claimed = json.loads(cli("bus", "claim", conv, "--worker", "w1", "--lease", "30", "--json", extra_env=env).out)
    attempt = claimed["attempt_token"]
    assert claimed["message"]["body"] == "index shard 3"
    assert cli("bus", "claim", conv, "--worker", "w1", extra_env=env).code == 3  # nothing else ready
    assert cli("bus", "heartbeat", conv, attempt, "--worker", "w1", extra_env=env).code == 0
    done = json.loads(cli("bus", "complete", conv, attempt, "--worker", "w1", "--result", "42 docs", "--json", extra_env=env).out)
    assert done["state"] == "done" and done["result"] == "42 docs"
    again = cli("bus", "complete", conv, attempt, "--worker", "w1", extra_env=env)
    assert again.code != 0 and "no longer holds its task" in again.err
    assert "completed or failed with this attempt already" in again.err  # not only "its lease expired": it did not
    tasks = json.loads(cli("bus", "tasks", conv, "--json", extra_env=env).out)["tasks"]
    assert [t["state"] for t in tasks] == ["done"]

    for i in range(4):
        assert cli("session", "append", "plan-1", f"step {i} decided", "--role", "user" if i % 2 == 0 else "assistant").code == 0
    rehydrated = json.loads(cli("session", "rehydrate", "plan-1", "--budget-tokens", "100", "--json").out)
    assert rehydrated["tokens_used"] <= 100 and rehydrated["recent"][-1]["content"] == "step 3 decided"
    text = real("session", "rehydrate", "plan-1")
    assert "[turn 4] assistant: step 3 decided" in text.out
    assert json.loads(cli("session", "list", "--json").out)["sessions"][0]["turns"] == 4
    missing = cli("session", "rehydrate", "nope")
    assert missing.code != 0 and "no session nope" in missing.err
    # The same id under another root is another session; then the root must be named.
    assert cli("session", "append", "plan-1", "the other team's plan", "--namespace", "other").code == 0
    ambiguous = cli("session", "rehydrate", "plan-1")
    assert ambiguous.code == 2 and "several roots (other, sessions): give namespace" in ambiguous.err, ambiguous.err
    other = json.loads(cli("session", "rehydrate", "plan-1", "--namespace", "other", "--json").out)
    assert other["namespace"] == "other/plan-1" and [t["content"] for t in other["recent"]] == ["the other team's plan"]
