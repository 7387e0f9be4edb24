"""The bus and sessions over HTTP on a real uvicorn: the issue's flow, long-poll, leases,
errors with the right status, the token never in a log or a reply, /metrics."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from memmesh.bus import notify
from memmesh.workers.supervisor import write_status


def _open(http: Any, **body: Any) -> tuple[str, dict[str, str]]:
    reply = http.post("/api/v1/bus/conversations", json={"participants": ["a", "b"], **body})
    assert reply.status_code == 201, reply.text
    data = reply.json()
    assert len(data["token"]) == 64
    return data["conversation_id"], {"X-Bus-Token": data["token"]}


def test_bus_flow_long_poll_and_errors_over_http(serve: Any, caplog: Any, monkeypatch: Any) -> None:
    caplog.set_level(logging.DEBUG)
    server = serve()
    http = server.http()
    conv, auth = _open(http)
    base = f"/api/v1/bus/conversations/{conv}"
    sent = http.post(f"{base}/messages", json={"from": "a", "body": "hello b"}, headers=auth)
    assert sent.status_code == 201 and sent.json()["seq"] == 1
    unread = http.get(f"{base}/unread", params={"agent": "b"}, headers=auth)
    assert [m["body"] for m in unread.json()["messages"]] == ["hello b"]
    acked = http.post(f"{base}/ack", json={"agent": "b", "all": True}, headers=auth)
    assert acked.status_code == 200 and acked.json()["acked_seq"] == 1

    # long-poll: a message sent while the request waits wakes it (the server's own re-check put
    # 60 s off, so only the wake-up answers within the bound, however loaded the machine)
    monkeypatch.setattr(notify, "RECHECK_S", 60.0)
    threading.Timer(0.3, lambda: server.http().post(f"{base}/messages", json={"from": "a", "body": "later"}, headers=auth)).start()
    started = time.monotonic()
    woken = http.get(f"{base}/unread", params={"agent": "b", "wait": 25}, headers=auth)  # within the client's 30 s
    assert [m["body"] for m in woken.json()["messages"]] == ["later"] and time.monotonic() - started < 20
    assert http.post(f"{base}/ack", json={"agent": "b", "all": True}, headers=auth).json()["acked_seq"] == 2

    listed = http.get("/api/v1/bus/conversations").json()["conversations"]
    assert [c["id"] for c in listed] == [conv] and "token" not in listed[0]

    wrong = {"X-Bus-Token": "f" * 64 if auth["X-Bus-Token"] != "f" * 64 else "e" * 64}
    checks = [
        (http.get(f"{base}/unread", params={"agent": "b"}, headers=wrong), 404, "with this token"),
        (http.get(f"{base}/unread", params={"agent": "b"}), 422, "X-Bus-Token"),
        (http.get("/api/v1/bus/conversations/nope/unread", params={"agent": "b"}, headers=auth), 404, "no conversation"),
        (http.post(f"{base}/messages", json={"from": "a", "body": "x" * 70_000}, headers=auth), 413, "bus.max_message_bytes"),
        (http.post(f"{base}/messages", json={"from": "zed", "body": "hi"}, headers=auth), 403, "not a participant"),
        (http.post(f"{base}/ack", json={"agent": "a", "ids": [sent.json()["id"]]}, headers=auth), 403, "sent by a itself"),
        (http.get(f"{base}/unread", params={"agent": "b", "wait": 3600}, headers=auth), 422, "bus.max_wait_s"),
        (http.post("/api/v1/bus/conversations", json={"participants": []}), 422, "participants"),
    ]
    for reply, status, words in checks:
        assert reply.status_code == status, (status, reply.text)
        error = reply.json()["error"]
        assert words in error["message"] or words in str(error["details"]), reply.text
        assert auth["X-Bus-Token"] not in reply.text and wrong["X-Bus-Token"] not in reply.text
    assert http.get(f"{base}/unread", params={"agent": "b"}, headers=auth).json()["messages"] == [], "refusals changed nothing"

    metrics = http.get("/metrics").text
    assert "memmesh_bus_conversations_open 1" in metrics and 'memmesh_bus_tasks{state="dead"} 0' in metrics
    log_text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert auth["X-Bus-Token"] not in log_text and wrong["X-Bus-Token"] not in log_text, "a token was logged"


def test_task_queue_fencing_and_dead_letters_over_http(serve: Any) -> None:
    server = serve(bus={"max_deliveries": 2})
    http = server.http()
    conv, auth = _open(http, participants=["coord", "w1", "w2"], kind="queue")
    base = f"/api/v1/bus/conversations/{conv}"
    http.post(f"{base}/messages", json={"from": "coord", "body": "job"}, headers=auth)
    first = http.post(f"{base}/claim", json={"worker": "w1", "lease_s": 0.3}, headers=auth).json()["delivery"]
    assert first["attempt"] == 1 and len(first["attempt_token"]) == 32
    time.sleep(0.4)
    second = http.post(f"{base}/claim", json={"worker": "w2", "lease_s": 30}, headers=auth).json()["delivery"]
    assert second["message"]["id"] == first["message"]["id"] and second["attempt"] == 2
    late = http.post(f"{base}/complete", json={"worker": "w1", "attempt_token": first["attempt_token"], "result": "stale"}, headers=auth)
    assert late.status_code == 409 and late.json()["error"]["code"] == "lease_lost"
    beat = http.post(f"{base}/heartbeat", json={"worker": "w2", "attempt_token": second["attempt_token"], "lease_s": 30}, headers=auth)
    assert beat.status_code == 200
    failed = http.post(f"{base}/fail", json={"worker": "w2", "attempt_token": second["attempt_token"], "reason": "bad input"}, headers=auth)
    assert failed.json()["state"] == "dead"  # 2 deliveries = bus.max_deliveries here
    dead = http.get(f"{base}/tasks", params={"state": "dead"}, headers=auth).json()["tasks"]
    assert len(dead) == 1 and "bad input" in dead[0]["dead_reason"] and dead[0]["attempts"] == 2
    assert http.post(f"{base}/claim", json={"worker": "w1"}, headers=auth).json() == {"delivery": None, "deliveries": []}
    assert 'memmesh_bus_tasks{state="dead"} 1' in http.get("/metrics").text


def test_sessions_over_http(serve: Any) -> None:
    http = serve().http()
    for i in range(6):
        reply = http.post(
            "/api/v1/sessions/chat-1/turns", json={"role": "user" if i % 2 == 0 else "assistant", "content": f"turn text {i}"}
        )
        assert reply.status_code == 201 and reply.json()["turn"] == i + 1
    got = http.get("/api/v1/sessions/chat-1/rehydrate", params={"budget_tokens": 200, "query": "text"}).json()
    assert got["tokens_used"] <= 200 and got["recent"][-1]["content"] == "turn text 5"
    assert http.get("/api/v1/sessions").json()["sessions"][0]["turns"] == 6
    missing = http.get("/api/v1/sessions/none-such/rehydrate")
    assert missing.status_code == 404 and "no session" in missing.json()["error"]["message"]
    bad = http.post("/api/v1/sessions/chat-1/turns", json={"role": "user", "content": ""})
    assert bad.status_code == 422


def test_metrics_report_supervised_workers(serve: Any, tmp_path: Path) -> None:
    status = tmp_path / "workers.status.json"
    write_status(
        status,
        {
            "supervisor_pid": __import__("os").getpid(),
            "running": True,
            "workers": [
                {"name": "shard-1", "state": "running", "restarts": 1},
                {"name": "shard-2", "state": "failed", "restarts": 5, "last_error": "exited with code 3; given up"},
            ],
        },
    )
    text = serve(bus={"workers_status_file": str(status)}).http().get("/metrics").text
    assert "memmesh_workers_supervisor_up 1" in text
    assert 'memmesh_workers{state="failed"} 1' in text and 'memmesh_workers{state="running"} 1' in text
    assert 'memmesh_worker_failed{worker="shard-2"} 1' in text and 'memmesh_worker_restarts{worker="shard-2"} 5' in text


def test_fix_hints_name_the_body_field_and_the_route(serve: Any) -> None:
    http = serve().http()
    conv, auth = _open(http)
    nothing = http.post(f"/api/v1/bus/conversations/{conv}/ack", json={"agent": "b"}, headers=auth)
    assert nothing.status_code == 422
    assert nothing.json()["error"]["message"].endswith('; pass "all": true')
    assert nothing.json()["error"]["details"]["retry_with"] == {"all": [True]}
    missing = http.get("/api/v1/sessions/nosuch/rehydrate")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == (
        "no session nosuch: a session starts with its first turn; use POST /api/v1/sessions/{session_id}/turns to add a turn, "
        "or GET /api/v1/sessions to see the sessions there are"
    )
    assert missing.json()["error"]["details"]["use"] == ["session_append", "session_list"]


def test_hints_to_another_operation_name_routes_not_cli_commands(serve: Any) -> None:
    """Core errors that once said "see `memmesh pending list --status all`" to HTTP callers."""
    http = serve().http()
    answers = {
        "pending": http.post("/api/v1/pending/nope/approve", json={}),
        "standard": http.delete("/api/v1/namespaces/nowhere/standard"),
        "key": http.delete("/api/v1/keys/0123456789ab"),
        "run": http.get("/api/v1/curator/runs/nope"),
        "subscription": http.get("/api/v1/subscriptions/nope"),
        "no participant": http.post("/api/v1/bus/conversations", json={"participants": ["a", " "]}),
    }
    messages = {what: answer.json()["error"]["message"] for what, answer in answers.items()}
    assert messages["pending"] == (
        "no pending action with id 'nope'; use GET /api/v1/pending?status=all to see the ids of every pending action, decided ones too"
    )
    assert messages["standard"].endswith("; use GET /api/v1/namespaces/standards to see the namespaces that have one")
    assert messages["key"].endswith("; use GET /api/v1/keys to see the key ids")
    assert messages["run"].endswith("; use GET /api/v1/curator/runs to see the run ids")
    assert messages["subscription"].endswith("; use GET /api/v1/subscriptions to see the subscription ids")
    assert answers["pending"].json()["error"]["details"]["use"] == ["pending_all"]
    for what, message in messages.items():
        assert "memmesh " not in message and "--" not in message and "e.g. a,b" not in message, (what, message)


def test_a_wait_that_is_not_a_finite_number_is_refused_as_such(serve: Any) -> None:
    """?wait=nan was refused as "should be ≥ 0", which reads as if the sign were wrong."""
    http = serve().http()
    conv, auth = _open(http)
    for bad in ("nan", "inf"):
        reply = http.get(f"/api/v1/bus/conversations/{conv}/unread", params={"agent": "b", "wait": bad}, headers=auth)
        assert reply.status_code == 422 and "finite number" in reply.json()["error"]["message"], reply.text
