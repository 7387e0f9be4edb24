"""``POST …/complete`` with ``claim_next`` on a real uvicorn: the ack and the next task in one
request; a refused ack (lost lease) takes nothing; bad input is a 422 naming the field."""

from __future__ import annotations

from typing import Any


def test_complete_with_claim_next_over_http(serve: Any) -> None:
    http = serve().http()
    opened = http.post("/api/v1/bus/conversations", json={"participants": ["coord", "w1", "w2"], "kind": "queue"}).json()
    conv, auth = opened["conversation_id"], {"X-Bus-Token": opened["token"]}
    base = f"/api/v1/bus/conversations/{conv}"
    for body in ("one", "two"):
        assert http.post(f"{base}/messages", json={"from": "coord", "body": body}, headers=auth).status_code == 201
    first = http.post(f"{base}/claim", json={"worker": "w1", "lease_s": 30}, headers=auth).json()["delivery"]
    plain = {"worker": "w1", "attempt_token": first["attempt_token"], "result": "r1"}
    done = http.post(f"{base}/complete", json={**plain, "claim_next": True, "lease_s": 20}, headers=auth)
    assert done.status_code == 200, done.text
    data = done.json()
    assert data["state"] == "done" and data["result"] == "r1" and data["id"] == first["message"]["id"]
    nxt = data["next"]
    assert nxt["message"]["body"] == "two" and nxt["worker"] == "w1" and nxt["attempt"] == 1
    # the spent token again: 409, and nothing leased with it
    again = http.post(f"{base}/complete", json={**plain, "claim_next": True}, headers=auth)
    assert again.status_code == 409 and again.json()["error"]["code"] == "lease_lost"
    bad = http.post(f"{base}/complete", json={"worker": "w1", "attempt_token": nxt["attempt_token"], "claim_next": "maybe"}, headers=auth)
    assert bad.status_code == 422 and "claim_next" in bad.text
    short = http.post(
        f"{base}/complete", json={"worker": "w1", "attempt_token": nxt["attempt_token"], "claim_next": True, "lease_s": 0}, headers=auth
    )
    assert short.status_code == 422 and "lease_s" in short.text
    last = http.post(f"{base}/complete", json={"worker": "w1", "attempt_token": nxt["attempt_token"], "claim_next": True}, headers=auth)
    assert last.status_code == 200 and last.json()["state"] == "done" and last.json()["next"] is None
    # without claim_next the answer is the task, next null
    http.post(f"{base}/messages", json={"from": "coord", "body": "three"}, headers=auth)
    third = http.post(f"{base}/claim", json={"worker": "w2"}, headers=auth).json()["delivery"]
    alone = http.post(f"{base}/complete", json={"worker": "w2", "attempt_token": third["attempt_token"]}, headers=auth).json()
    assert alone["state"] == "done" and alone["next"] is None
    tasks = http.get(f"{base}/tasks", headers=auth).json()["tasks"]
    assert [(t["body"], t["state"]) for t in tasks] == [("one", "done"), ("two", "done"), ("three", "done")]
