"""Batch send, batch claim and batch complete through every face: HTTP on a real uvicorn
(API keys required), MCP over stdio with the real client, and the CLI.

The rules (limits, per-entry fencing, one write per batch) are the core's and are checked
on both backends in tests/conformance; here each face is checked to reach them, to answer
refusals with the right status and a message that says what to fix, and to write nothing
when it refuses a whole call.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "http"))
from http_support import Running, ThreadServer, http_settings
from tests.mcp.conftest import keyword_mcp_env

from memmesh import Memory
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL

TOO_BIG = "x" * 70_000
"""Past bus.max_message_bytes (64 KiB by default)."""


@dataclass
class Queue:
    http: httpx.Client
    base: str
    auth: dict[str, str]
    server: Running

    def tasks(self) -> list[dict[str, Any]]:
        """The queue's tasks as the server holds them (state, attempts, worker, result, history)."""
        reply = self.http.get(f"{self.base}/tasks", headers=self.auth)
        assert reply.status_code == 200, reply.text
        return list(reply.json()["tasks"])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Running]:
    server = ThreadServer(http_settings(tmp_path, auth={"require_auth": True}))
    running = server.start()
    yield running
    running.close_clients()
    server.stop()


def _key(server: Running, name: str, role: str) -> str:
    assert server.service is not None
    return server.service.create_key(name, role=role, principal=LOCAL_PRINCIPAL).key


def _queue(server: Running, *workers: str) -> Queue:
    http = server.http(_key(server, "coordinator", "writer"))
    opened = http.post("/api/v1/bus/conversations", json={"participants": ["coord", *workers], "kind": "queue"})
    assert opened.status_code == 201, opened.text
    data = opened.json()
    return Queue(http, f"/api/v1/bus/conversations/{data['conversation_id']}", {"X-Bus-Token": data["token"]}, server)


def test_batch_send_claim_and_complete_over_http(served: Running) -> None:
    q = _queue(served, "w1", "w2")
    sent = q.http.post(f"{q.base}/messages/batch", json={"from": "coord", "bodies": [f"job {i}" for i in range(6)]}, headers=q.auth)
    assert sent.status_code == 201, sent.text
    assert [(m["seq"], m["body"]) for m in sent.json()["messages"]] == [(i + 1, f"job {i}") for i in range(6)]

    claimed = q.http.post(f"{q.base}/claim", json={"worker": "w1", "limit": 5, "lease_s": 0.3}, headers=q.auth)
    assert claimed.status_code == 200, claimed.text
    got = claimed.json()
    first = got["deliveries"]
    assert [d["message"]["body"] for d in first] == [f"job {i}" for i in range(5)]
    assert got["delivery"] == first[0] and len({d["attempt_token"] for d in first}) == 5
    time.sleep(0.5)  # every one of those leases runs out: w1 takes four back, w2 the fifth and the last ready task
    batch = q.http.post(f"{q.base}/claim", json={"worker": "w1", "limit": 4, "lease_s": 60}, headers=q.auth).json()["deliveries"]
    assert [(d["message"]["body"], d["attempt"]) for d in batch] == [(f"job {i}", 2) for i in range(4)]
    other = q.http.post(f"{q.base}/claim", json={"worker": "w2", "limit": 5, "lease_s": 60}, headers=q.auth).json()["deliveries"]
    assert [(d["message"]["body"], d["attempt"]) for d in other] == [("job 4", 2), ("job 5", 1)]

    results = [{"attempt_token": first[0]["attempt_token"], "result": "stale"}]
    results += [{"attempt_token": d["attempt_token"], "result": f"done {d['message']['body']}"} for d in batch]
    results += [{"attempt_token": other[1]["attempt_token"]}, {"attempt_token": batch[1]["attempt_token"]}]
    done = q.http.post(f"{q.base}/complete/batch", json={"worker": "w1", "results": results}, headers=q.auth)
    assert done.status_code == 200, done.text  # some entries refused: still 200, the outcomes say which
    body = done.json()
    assert (body["completed"], body["refused"]) == (4, 3)
    codes = [o["error"]["code"] if o["error"] else o["task"]["state"] for o in body["outcomes"]]
    assert codes == ["lease_lost", "done", "done", "done", "done", "forbidden", "invalid_input"]
    assert [o["attempt_token"] for o in body["outcomes"]] == [r["attempt_token"] for r in results]
    stale, foreign, twice = body["outcomes"][0]["error"], body["outcomes"][5]["error"], body["outcomes"][6]["error"]
    assert "no longer holds its task" in stale["message"]
    assert "leased to w2, not w1" in foreign["message"]
    assert "listed twice" in twice["message"]

    tasks = {t["body"]: t for t in q.tasks()}
    assert [tasks[f"job {i}"]["result"] for i in range(4)] == [f"done job {i}" for i in range(4)], "the stale entry wrote its result"
    assert {tasks[f"job {i}"]["state"] for i in range(4)} == {"done"}
    assert (tasks["job 4"]["state"], tasks["job 4"]["worker"], tasks["job 4"]["result"]) == ("leased", "w2", None)
    assert (tasks["job 5"]["state"], tasks["job 5"]["worker"]) == ("leased", "w2"), "a refused entry changed its task"

    # w2 completes its two in one call, then the queue is empty: limit > 1 answers an empty list
    mine = [{"attempt_token": d["attempt_token"], "result": "ok"} for d in other]
    assert q.http.post(f"{q.base}/complete/batch", json={"worker": "w2", "results": mine}, headers=q.auth).json()["completed"] == 2
    empty = q.http.post(f"{q.base}/claim", json={"worker": "w2", "limit": 3}, headers=q.auth)
    assert empty.json() == {"delivery": None, "deliveries": []}


@pytest.fixture
def served_one_poll(tmp_path: Path) -> Iterator[Running]:
    """As ``served``, with one long-poll slot: a poll's 429 says another one still waits."""
    server = ThreadServer(http_settings(tmp_path, auth={"require_auth": True}, bus={"max_long_polls": 1}))
    running = server.start()
    yield running
    running.close_clients()
    server.stop()


def test_a_waiting_batch_claim_wakes_for_a_batch_send_and_ends_when_the_client_goes(served_one_poll: Running) -> None:
    q = _queue(served_one_poll, "w1")
    later = threading.Timer(
        0.3, lambda: q.http.post(f"{q.base}/messages/batch", json={"from": "coord", "bodies": ["a", "b"]}, headers=q.auth)
    )
    later.start()
    started = time.monotonic()
    woken = q.http.post(f"{q.base}/claim", json={"worker": "w1", "limit": 3, "wait_s": 60}, headers=q.auth)
    later.join()
    assert [d["message"]["body"] for d in woken.json()["deliveries"]] == ["a", "b"] and time.monotonic() - started < 30

    # a client that gives up mid-wait takes no task: the wait ends with it (while_connected)
    with pytest.raises(httpx.ReadTimeout):
        q.http.post(f"{q.base}/claim", json={"worker": "w1", "limit": 3, "wait_s": 60}, headers=q.auth, timeout=0.5)
    deadline = time.monotonic() + 20  # before a and b's 30 s leases run out; a wait that outlived its client is still there
    while True:  # until the gone client's wait ended (a fixed 0.3 s raced a loaded machine): its slot is free again
        probe = q.http.post(f"{q.base}/claim", json={"worker": "w1", "wait_s": 0.01}, headers=q.auth)
        if probe.status_code == 200:
            assert probe.json()["delivery"] is None, probe.text
            break
        assert probe.status_code == 429 and time.monotonic() < deadline, f"the gone client's wait still waits: {probe.text}"
        time.sleep(0.05)
    q.http.post(f"{q.base}/messages/batch", json={"from": "coord", "bodies": ["c"]}, headers=q.auth)
    time.sleep(0.3)
    assert [t["state"] for t in q.tasks() if t["body"] == "c"] == ["ready"], "a gone client's wait leased a task"


def _hostile(q: Queue, leased: str) -> list[tuple[str, dict[str, Any], int, str]]:
    """(route tail, body, status, words the error must hold) for each bad call; ``leased`` is
    a live attempt token, so a refused batch that wrote anything would complete its task."""
    ok = {"attempt_token": leased, "result": "must not be stored"}
    return [
        ("claim", {"worker": "w1", "limit": 0}, 422, "body.limit: Input should be greater than or equal to 1"),
        ("claim", {"worker": "w1", "limit": 101}, 422, "body.limit: Input should be less than or equal to 100"),
        ("claim", {"worker": "w1", "limit": "abc"}, 422, "body.limit: give a number, not text"),
        ("claim", {"worker": "w1", "limit": True}, 422, "body.limit: give a number, not true/false"),
        ("claim", {"worker": "w1", "limit": 2.5}, 422, "body.limit: Input should be a valid integer"),
        ("claim", {"worker": "w1", "limit": 5, "wait_s": 3600}, 422, "bus.max_wait_s"),
        ("claim", {"worker": "nobody", "limit": 5}, 403, "not a participant"),
        ("complete/batch", {"worker": "w1", "results": "abc"}, 422, "body.results: Input should be a valid list"),
        ("complete/batch", {"worker": "w1", "results": {"attempt_token": leased}}, 422, "body.results"),
        ("complete/batch", {"worker": "w1", "results": []}, 422, "body.results: List should have at least 1 item"),
        ("complete/batch", {"worker": "w1", "results": [ok] * 101}, 422, "body.results: List should have at most 100 items"),
        ("complete/batch", {"worker": "w1", "results": [ok, {"attempt_token": "xyz"}]}, 422, "results[1].attempt_token is malformed"),
        ("complete/batch", {"worker": "w1", "results": [ok, {"attempt_token": leased, "result": TOO_BIG}]}, 413, "bus.max_message_bytes"),
        ("complete/batch", {"worker": "w1", "results": [ok, {"attempt_token": leased, "result": " "}]}, 422, "results[1]: result is empty"),
        ("complete/batch", {"worker": "w1", "results": [{**ok, "claim_next": True}]}, 422, "body.results.0.claim_next: unknown field"),
        ("complete/batch", {"worker": "w1", "results": [{"result": "x"}]}, 422, "body.results.0.attempt_token: Field required"),
        ("complete/batch", {"results": [ok]}, 422, "body.worker: Field required"),
        ("complete/batch", {"worker": "nobody", "results": [ok]}, 403, "not a participant"),
        ("messages/batch", {"from": "coord", "bodies": []}, 422, "body.bodies: List should have at least 1 item"),
        ("messages/batch", {"from": "coord", "bodies": ["x"] * 101}, 422, "body.bodies: List should have at most 100 items"),
        ("messages/batch", {"from": "coord", "bodies": "abc"}, 422, "body.bodies: Input should be a valid list"),
        ("messages/batch", {"from": "coord", "bodies": ["fine", TOO_BIG]}, 413, "bus.max_message_bytes"),
        ("messages/batch", {"from": "coord", "bodies": ["fine", "  "]}, 422, "message is empty"),
        ("messages/batch", {"from": "coord", "bodies": ["fine"], "to": "w1"}, 422, "task queue"),
        ("messages/batch", {"from": "mallory", "bodies": ["fine"]}, 403, "not a participant"),
        ("messages/batch", {"bodies": ["fine"]}, 422, "body.from: Field required"),
    ]


def test_hostile_batches_are_refused_whole_with_a_message_that_says_what_to_fix(served: Running) -> None:
    q = _queue(served, "w1")
    q.http.post(f"{q.base}/messages/batch", json={"from": "coord", "bodies": ["one", "two", "three"]}, headers=q.auth)
    leased = q.http.post(f"{q.base}/claim", json={"worker": "w1", "lease_s": 300}, headers=q.auth).json()["delivery"]["attempt_token"]
    before = q.tasks()
    assert [t["state"] for t in before] == ["leased", "ready", "ready"]
    for tail, body, status, words in _hostile(q, leased):
        reply = q.http.post(f"{q.base}/{tail}", json=body, headers=q.auth)
        label = f"{tail} {json.dumps(body)[:120]}"
        assert reply.status_code == status, f"{label}: {reply.status_code} {reply.text[:300]}"
        error = reply.json()["error"]
        assert words in error["message"], f"{label}: {error['message']}"
        assert q.auth["X-Bus-Token"] not in reply.text
        assert q.tasks() == before, f"{label} changed the queue"


@pytest.mark.parametrize(
    ("tail", "body"),
    [
        ("claim", {"worker": "w1", "limit": 5}),
        ("messages/batch", {"from": "coord", "bodies": ["a", "b"]}),
        ("complete/batch", {"worker": "w1", "results": [{"attempt_token": "0" * 32}]}),
    ],
)
def test_each_batch_route_checks_the_token_and_the_key(served: Running, tail: str, body: dict[str, Any]) -> None:
    q = _queue(served, "w1")
    q.http.post(f"{q.base}/messages", json={"from": "coord", "body": "job"}, headers=q.auth)
    before = q.tasks()
    wrong = "f" * 64 if q.auth["X-Bus-Token"] != "f" * 64 else "e" * 64
    reader = served.http(_key(served, "viewer", "reader"))
    revoked_key = served.service.create_key("gone", role="writer", principal=LOCAL_PRINCIPAL)  # type: ignore[union-attr]
    served.service.revoke_key(revoked_key.id, principal=LOCAL_PRINCIPAL)  # type: ignore[union-attr]
    revoked = served.http(revoked_key.key)
    anonymous = served.http()
    url = f"{q.base}/{tail}"
    cases = [
        (q.http.post(url, json=body), 422, "header.X-Bus-Token: Field required"),
        (q.http.post(url, json=body, headers={"X-Bus-Token": wrong}), 404, "with this token"),
        (q.http.post(url, json=body, headers={"X-Bus-Token": "abc"}), 403, "malformed"),
        (q.http.post("/api/v1/bus/conversations/nope/" + tail, json=body, headers=q.auth), 404, "no conversation nope"),
        (reader.post(url, json=body, headers=q.auth), 403, "writer"),
        (revoked.post(url, json=body, headers=q.auth), 401, "revoked"),
        (anonymous.post(url, json=body, headers=q.auth), 401, "API key"),
    ]
    for reply, status, words in cases:
        assert reply.status_code == status, (status, reply.text)
        message = reply.json()["error"]["message"]
        assert words in message, message
        assert q.auth["X-Bus-Token"] not in reply.text and wrong not in reply.text
    assert q.tasks() == before, "a refused call changed the queue"


# -- MCP ----------------------------------------------------------------------------------------


def test_batch_tools_over_mcp_stdio(tmp_path: Path) -> None:
    env = keyword_mcp_env(tmp_path, tmp_path / "mcp.db")
    settings = load_settings(None, overrides={"data_dir": str(tmp_path / "py"), "embeddings": {"provider": "none"}}, env={})

    async def scenario() -> None:
        async with env.client("--profile", "power") as c:
            listed = {t.name: t for t in (await c.session.list_tools()).tools}
            assert listed["bus_claim_task"].input_schema["properties"]["limit"]["default"] == 1
            assert listed["bus_complete_tasks"].input_schema["required"] == ["conversation_id", "token", "worker", "results"]
            queue = await c.ok("bus_open_conversation", participants=["coord", "w1"], kind="queue")
            q = {"conversation_id": queue["conversation_id"], "token": queue["token"]}
            for i in range(3):
                await c.ok("bus_send_message", **q, sender="coord", body=f"job {i}")
            one = await c.ok("bus_claim_task", **q, worker="w1", lease_seconds=60)
            assert set(one) == {"delivery"} and one["delivery"]["message"]["body"] == "job 0"  # limit 1: the answer as before
            short = (await c.ok("bus_claim_task", **q, worker="w1", limit=5, lease_seconds=0.3))["deliveries"]
            assert [d["message"]["body"] for d in short] == ["job 1", "job 2"]
            await asyncio.sleep(0.5)
            again = (await c.ok("bus_claim_task", **q, worker="w1", limit=5, lease_seconds=60))["deliveries"]
            assert [(d["message"]["body"], d["attempt"]) for d in again] == [("job 1", 2), ("job 2", 2)]
            results = [{"attempt_token": short[0]["attempt_token"], "result": "late"}]
            results += [{"attempt_token": d["attempt_token"], "result": f"ok {d['message']['body']}"} for d in again]
            batch = await c.ok("bus_complete_tasks", **q, worker="w1", results=results)
            assert (batch["completed"], batch["refused"]) == (2, 1)
            assert batch["outcomes"][0]["error"]["code"] == "lease_lost" and batch["outcomes"][0].get("task") is None
            assert [o["task"]["result"] for o in batch["outcomes"][1:]] == ["ok job 1", "ok job 2"]

            with Memory(f"sqlite:///{env.db}", settings) as mem:
                before = mem.service.bus.tasks(q["conversation_id"], token=q["token"], principal=LOCAL_PRINCIPAL)
            assert [(t.state, t.result) for t in before] == [("leased", None), ("done", "ok job 1"), ("done", "ok job 2")]
            live = {"attempt_token": one["delivery"]["attempt_token"]}  # a refused call that wrote would complete job 0
            hostile = [
                ("bus_claim_task", {"worker": "w1", "limit": 0}, "limit must be between 1 and 100"),
                ("bus_claim_task", {"worker": "w1", "limit": 101}, "limit must be between 1 and 100"),
                ("bus_claim_task", {"worker": "w1", "limit": "abc"}, "limit"),
                ("bus_complete_tasks", {"worker": "w1", "results": "abc"}, "results"),
                ("bus_complete_tasks", {"worker": "w1", "results": []}, "results must be a non-empty list"),
                ("bus_complete_tasks", {"worker": "w1", "results": [live] * 101}, "at most 100"),
                ("bus_complete_tasks", {"worker": "w1", "results": [{"attempt_token": "xyz"}]}, "results[0].attempt_token is malformed"),
                ("bus_complete_tasks", {"worker": "w1", "results": [{**live, "result": TOO_BIG}]}, "bus.max_message_bytes"),
                ("bus_complete_tasks", {"worker": "w1", "results": [{"result": "x"}]}, "results[0] is not an {attempt_token, result}"),
            ]
            for name, arguments, words in hostile:
                refused = await c.call(name, **q, **arguments)
                assert refused.is_error and words in refused.text, (name, arguments, refused.text[:300])
                assert q["token"] not in refused.text
            wrong = await c.call("bus_complete_tasks", conversation_id=q["conversation_id"], token="f" * 64, worker="w1", results=[live])
            assert wrong.is_error and "with this token" in wrong.text
            with Memory(f"sqlite:///{env.db}", settings) as mem:
                after = mem.service.bus.tasks(q["conversation_id"], token=q["token"], principal=LOCAL_PRINCIPAL)
            assert after == before, "a refused call changed the queue"

    asyncio.run(scenario())


# -- CLI ----------------------------------------------------------------------------------------


def test_cli_claims_with_a_limit_and_completes_several_tokens(cli_in_process: Any) -> None:
    cli = cli_in_process
    data = json.loads(cli("bus", "open", "--participants", "coord,w1", "--kind", "queue", "--json").out)
    conv, token = data["conversation_id"], data["token"]
    auth = ("--token", token)
    for i in range(4):
        assert cli("bus", "send", conv, f"job {i}", "--from", "coord", *auth).code == 0
    printed = cli("bus", "claim", conv, "--worker", "w1", "--limit", "3", *auth)
    assert printed.code == 0, printed.err
    lines = printed.out.splitlines()
    assert lines[1::2] == ["job 0", "job 1", "job 2"] and all(line.startswith("task ") for line in lines[0::2])
    tokens = [line.split(" token ")[1] for line in lines[0::2]]
    as_json = json.loads(cli("bus", "claim", conv, "--worker", "w1", "--limit", "3", "--json", *auth).out)
    assert [d["message"]["body"] for d in as_json["deliveries"]] == ["job 3"]
    tokens.append(as_json["deliveries"][0]["attempt_token"])

    done = cli("bus", "complete", conv, *tokens[:2], "--worker", "w1", "--result", "ok", *auth)
    assert done.code == 0, done.err
    assert len([line for line in done.out.splitlines() if line.endswith(" done")]) == 2
    partly = cli("bus", "complete", conv, tokens[0], *tokens[2:], "--worker", "w1", "--json", *auth)
    assert partly.code == 1
    outcome = json.loads(partly.out)
    assert (outcome["completed"], outcome["refused"]) == (2, 1) and outcome["outcomes"][0]["error"]["code"] == "lease_lost"
    again = cli("bus", "complete", conv, tokens[0], tokens[1], "--worker", "w1", *auth)
    assert again.code == 1 and "refused (lease_lost)" in again.err
    assert cli("bus", "claim", conv, "--worker", "w1", "--limit", "3", *auth).code == 3  # none ready: exit 3, as without --limit

    bad = [
        (("bus", "claim", conv, "--worker", "w1", "--limit", "0", *auth), "--limit must be between 1 and 100"),
        (("bus", "claim", conv, "--worker", "w1", "--limit", "101", *auth), "--limit must be between 1 and 100"),
        (("bus", "complete", conv, tokens[0], tokens[1], "--claim-next", "--worker", "w1", *auth), "--claim-next takes one"),
        (("bus", "complete", conv, tokens[0], "xyz", "--worker", "w1", *auth), "results[1].attempt_token is malformed"),
    ]
    for args, words in bad:
        got = cli(*args)
        assert got.code != 0 and words in got.err, (args, got.code, got.err)
        assert token not in got.err and token not in got.out
