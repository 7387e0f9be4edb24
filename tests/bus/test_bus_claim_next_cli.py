"""``memmesh bus complete --claim-next``: the ack and the next task from the terminal."""

from __future__ import annotations

import json
from typing import Any


def test_complete_claim_next_from_the_terminal(cli_in_process: Any) -> None:
    cli = cli_in_process
    data = json.loads(cli("bus", "open", "--participants", "coord,w", "--kind", "queue", "--json").out)
    conv, token = data["conversation_id"], data["token"]
    for body in ("first job", "second job"):
        assert cli("bus", "send", conv, body, "--from", "coord", "--token", token).code == 0
    got = json.loads(cli("bus", "claim", conv, "--worker", "w", "--token", token, "--json").out)
    done = cli("bus", "complete", conv, got["attempt_token"], "--worker", "w", "--token", token, "--claim-next", "--lease", "60", "--json")
    assert done.code == 0, done.err
    task = json.loads(done.out)
    assert task["state"] == "done" and task["next"]["message"]["body"] == "second job"
    text = cli("bus", "complete", conv, task["next"]["attempt_token"], "--worker", "w", "--token", token, "--claim-next")
    assert text.code == 0 and "done" in text.out and "no task ready" in text.out
    stale = cli("bus", "complete", conv, got["attempt_token"], "--worker", "w", "--token", token, "--claim-next")
    assert stale.code != 0 and stale.err.startswith("error:") and "no longer holds" in stale.err
    bad = cli("bus", "complete", conv, got["attempt_token"], "--worker", "w", "--token", token, "--claim-next", "--lease", "0")
    assert bad.code != 0 and "lease" in bad.err
