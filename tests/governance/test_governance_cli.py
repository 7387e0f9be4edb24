"""The ``namespace`` and ``pending`` commands through the real console entry point."""

from __future__ import annotations

import json


def test_cli_standard_queue_approve_and_reject(cli) -> None:
    set_ = cli("namespace", "set-standard", "--namespace", "org/legal", "--governance", '{"write":"approve","delete":"deny"}', "--json")
    assert set_.code == 0, set_.err
    assert json.loads(set_.out)["governance"] == {"write": "approve", "delete": "deny"}

    queued = cli("store", "NDA template", "--namespace", "org/legal/nda")
    assert queued.code == 3 and queued.err.startswith("pending: write in namespace 'org/legal/nda' awaits approval"), queued.err
    assert json.loads(cli("list", "--json").out)["items"] == []
    pending = json.loads(cli("pending", "list", "--json").out)
    assert [p["action"] for p in pending] == ["write"]

    approved = cli("pending", "approve", pending[0]["id"], "--reason", "reviewed")
    assert approved.code == 0 and "approved and applied" in approved.out
    stored_id = json.loads(cli("list", "--json").out)["items"][0]["id"]
    assert f'approved and applied: {{"memory_ids": ["{stored_id}"]}}' in approved.out  # JSON, not a Python repr
    again = cli("pending", "approve", pending[0]["id"])
    assert again.code == 1 and "already applied" in again.err
    stored = json.loads(cli("list", "--json").out)["items"]
    assert [m["content"] for m in stored] == ["NDA template"]

    denied = cli("delete", stored[0]["id"])
    assert denied.code == 1 and "denied by the standard set on 'org/legal' (governance.delete = deny)" in denied.err

    second = cli("store", "NDA v2", "--namespace", "org/legal/nda", "--json")  # --json: the 202 body on stdout, for a script
    assert second.code == 3 and second.err.startswith("pending: "), second.err
    body = json.loads(second.out)
    second_id = body["pending_id"]
    assert body["status"] == "pending" and body["error"]["code"] == "pending_approval", body
    assert [p["id"] for p in json.loads(cli("pending", "list", "--json").out)] == [second_id]
    rejected = cli("pending", "reject", second_id, "--reason", "duplicate", "--json")
    assert rejected.code == 0 and json.loads(rejected.out)["reason"] == "duplicate"
    assert [p["status"] for p in json.loads(cli("pending", "list", "--status", "all", "--json").out)] == ["applied", "rejected"]

    view = cli("namespace", "get-standard", "--namespace", "org/legal/nda")
    assert view.code == 0 and "write: approve (set on org/legal)" in view.out and "link: allow (default)" in view.out
    assert "org/legal" in cli("namespace", "list").out
    assert cli("namespace", "clear-standard", "--namespace", "org/legal").code == 0
    assert cli("store", "now free", "--namespace", "org/legal/nda").code == 0


def test_cli_bad_input_is_one_line_and_changes_nothing(cli) -> None:
    assert cli("namespace", "set-standard", "-n", "org", "--governance", '{"delete":"deny"}').code == 0
    for args, message, code in (
        (("--governance", '{"write":'), "--governance is not valid JSON", 2),  # a value --governance never takes
        (("--governance", '{"publish":"deny"}'), "governance names an unknown action 'publish'", 2),  # not a choice: usage
        (("--governance", '{"write":"yes"}'), "governance.write is 'yes': use one of allow, approve, deny", 2),
        (("--default-tier", "forever"), "--default-tier 'forever' is not a tier", 2),
        (("--ttl", "-5"), "--ttl must be a whole number", 2),
    ):
        bad = cli("namespace", "set-standard", "-n", "org", *args)
        assert bad.code == code and bad.err.strip().count("\n") == 0 and message in bad.err, (args, bad.err)
    assert json.loads(cli("namespace", "list", "--json").out)[0]["governance"] == {"delete": "deny"}
    missing = cli("pending", "reject", "nope")
    assert missing.code == 1 and "no pending action with id 'nope'" in missing.err
    status = cli("pending", "list", "--status", "done")
    assert status.code == 2 and "--status 'done' is unknown" in status.err
    assert cli("namespace", "clear-standard", "-n", "org/none").code == 1
