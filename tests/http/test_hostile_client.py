"""A hostile client against a real server: a missing, wrong or revoked key is told 401 before
anything else; an oversized error list stays small and quick; a long-poll of a key revoked
while it waits delivers nothing."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from memmesh.interfaces.http import middleware
from memmesh.model import LOCAL_PRINCIPAL

MADE_UP = "mm_000000000000_made-up-secret"


def _closed(serve, **sections):
    running = serve(**sections)
    admin = running.service.create_key("root", role="admin", principal=LOCAL_PRINCIPAL)
    revoked = running.service.create_key("gone", role="writer", namespaces=["A"], principal=LOCAL_PRINCIPAL)
    running.service.revoke_key(revoked.id, principal=LOCAL_PRINCIPAL)
    return running, admin, revoked


@pytest.mark.parametrize(
    ("path", "headers", "body"),
    [
        ("/api/v1/memories", {"Content-Type": "application/x-www-form-urlencoded"}, b"content=x"),  # 415 before
        ("/api/v1/memories", {"Content-Type": "text/plain"}, b"{}"),  # 415 before
        ("/api/v1/memories", {"Content-Type": "application/json"}, b"{"),  # 400 (not JSON) before
        ("/api/v1/memories", {"Content-Type": "application/json"}, b"x" * (3 * 1024 * 1024)),  # 413 before
        ("/api/v1/memories", {"Content-Type": "application/json", "Origin": "http://evil.example"}, b"{}"),  # 403 before
        ("/api/v1/no-such-route", {"Content-Type": "application/json"}, b"{}"),  # 404 before
        ("/mcp", {"Content-Type": "application/json"}, b"x" * (3 * 1024 * 1024)),  # 413 before
    ],
    ids=["form", "text", "not-json", "too-large", "cross-origin", "unknown-route", "mcp-too-large"],
)
@pytest.mark.parametrize("who", ["keyless", "made-up", "revoked"])
def test_a_request_without_a_valid_key_is_401_before_any_other_check(serve, path, headers, body, who):
    running, _admin, revoked = _closed(serve)
    key = {"keyless": None, "made-up": MADE_UP, "revoked": revoked.key}[who]
    response = running.http(key).post(path, headers=headers, content=body)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert running.service.stats(principal=LOCAL_PRINCIPAL).total == 0


def test_a_valid_key_still_gets_the_other_refusals(serve):
    running, admin, _revoked = _closed(serve)
    http = running.http(admin.key)
    assert http.post("/api/v1/memories", headers={"Content-Type": "text/plain"}, content=b"{}").status_code == 415
    assert http.post("/api/v1/memories", headers={"Content-Type": "application/json"}, content=b"{").status_code == 400
    assert http.post("/api/v1/no-such-route", json={}).status_code == 404
    too_big = http.post("/api/v1/memories", headers={"Content-Type": "application/json"}, content=b"x" * (3 * 1024 * 1024))
    assert too_big.status_code == 413


def test_an_open_server_keeps_its_refusals(server):
    http = server.http()
    assert http.post("/api/v1/memories", headers={"Content-Type": "text/plain"}, content=b"{}").status_code == 415
    assert http.post("/api/v1/memories", headers={"Origin": "http://evil.example"}, json={"content": "x"}).status_code == 403


def test_a_422_lists_20_errors_and_counts_the_rest(serve):
    running, admin, _revoked = _closed(serve)
    body = {f"f{i}": i for i in range(5_000)}
    body.update(content="hello", namespace="A")
    response = running.http(admin.key).post(
        "/api/v1/memories", content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert len(error["details"]["errors"]) == 20 and error["details"]["more_errors"] == 4_980
    assert "and 4980 more errors" in error["message"]
    assert len(response.content) < 10_000  # every error listed made 500 KB here (10 MB for 100,000)
    assert running.service.stats(principal=LOCAL_PRINCIPAL).total == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/memories", {**{f"f{i}": i for i in range(100_000)}, "content": "x", "namespace": "A"}),
        ("/api/v1/recall", {"query": "x", "filters": {"tags": list(range(250_000))}}),
        ("/api/v1/memories/batch", {"items": [{"content": "x", "namespace": "A", "tags": list(range(20_000))}]}),
    ],
    ids=["100000-unknown-fields", "250000-wrong-tags", "nested-20000"],
)
def test_a_body_with_a_huge_array_or_object_is_413_at_once_and_the_server_stays_responsive(serve, path, body, monkeypatch):
    """Validation answered each bad element with an error, on the event loop: these bodies
    held it (and /healthz with it) for 3 to 10 s each. Now the width check refuses them (413)
    before any route validates them, on a worker thread: the test holds that check until
    /healthz has answered (a check on the event loop would hold /healthz with it, and the probe
    would time out), instead of timing /healthz against a bound a loaded machine can pass."""
    running, admin, _revoked = _closed(serve)
    answers: dict[str, object] = {}
    raw = json.dumps(body).encode()
    checking, release = threading.Event(), threading.Event()
    real = middleware._too_wide

    def held(payload: bytes):
        if payload == raw:
            checking.set()
            release.wait(60)
        return real(payload)

    monkeypatch.setattr(middleware, "_too_wide", held)

    def hostile() -> None:
        answers["hostile"] = running.http(admin.key).post(path, content=raw, headers={"Content-Type": "application/json"})

    thread = threading.Thread(target=hostile)
    thread.start()
    try:
        assert checking.wait(60), "the hostile body never reached the width check"
        assert httpx.get(running.url + "/healthz", timeout=10).status_code == 200
        assert "hostile" not in answers  # still held: /healthz was answered while the check ran
    finally:
        release.set()
    thread.join(60)
    response = answers["hostile"]
    assert response.status_code == 413, response.text  # type: ignore[attr-defined]
    assert "at most 10000 fit in one" in response.json()["error"]["message"]  # type: ignore[attr-defined]
    assert running.service.stats(principal=LOCAL_PRINCIPAL).total == 0


def test_a_long_string_is_not_mistaken_for_a_huge_array(serve):
    """Only arrays and objects count their elements: a body that is one 30,000-character JSON
    string is a wrong body (422), not one too wide (413)."""
    running, admin, _revoked = _closed(serve)
    raw = json.dumps("x" * 30_000).encode()
    response = running.http(admin.key).post("/api/v1/memories", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text


def test_a_long_poll_whose_key_is_revoked_while_it_waits_delivers_nothing(serve):
    running, admin, _revoked = _closed(serve, bus={"max_long_polls_per_key": 2})  # a third poll's 429 says both wait
    svc = running.service
    agent = svc.create_key("poller", role="writer", namespaces=["A"], principal=LOCAL_PRINCIPAL)
    http = running.http(agent.key)
    chat = http.post("/api/v1/bus/conversations", json={"participants": ["a", "b"]}).json()
    queue = http.post("/api/v1/bus/conversations", json={"participants": ["w", "boss"], "kind": "queue"}).json()
    answers: dict[str, object] = {}

    def unread() -> None:
        url = f"/api/v1/bus/conversations/{chat['conversation_id']}/unread"
        while (
            got := running.http(agent.key).get(url, params={"agent": "b", "wait": 20}, headers={"X-Bus-Token": chat["token"]})
        ).status_code == 429:
            time.sleep(0.05)  # the probe below held one of the key's two slots a moment
        answers["unread"] = got

    def claim() -> None:
        url = f"/api/v1/bus/conversations/{queue['conversation_id']}/claim"
        while (
            got := running.http(agent.key).post(url, json={"worker": "w", "wait_s": 20}, headers={"X-Bus-Token": queue["token"]})
        ).status_code == 429:
            time.sleep(0.05)  # the probe below held one of the key's two slots a moment
        answers["claim"] = got

    waiting = [threading.Thread(target=unread), threading.Thread(target=claim)]
    for thread in waiting:
        thread.start()
    deadline = time.monotonic() + 60
    while True:  # until both wait (not a guessed 1.0 s): the key's third long-poll is refused
        probe = http.get(
            f"/api/v1/bus/conversations/{chat['conversation_id']}/unread",
            params={"agent": "a", "wait": 0.01},
            headers={"X-Bus-Token": chat["token"]},
        )
        if probe.status_code == 429:
            assert "this key already has 2 long-polls waiting" in probe.json()["error"]["message"], probe.text
            break
        assert probe.status_code == 200 and time.monotonic() < deadline, f"the two long-polls never both waited: {probe.text}"
        time.sleep(0.05)
    svc.revoke_key(agent.id, principal=LOCAL_PRINCIPAL)
    boss = running.http(admin.key)
    sent = boss.post(
        f"/api/v1/bus/conversations/{chat['conversation_id']}/messages",
        json={"from": "a", "body": "after the revocation"},
        headers={"X-Bus-Token": chat["token"]},
    )
    assert sent.status_code == 201, sent.text
    task = boss.post(
        f"/api/v1/bus/conversations/{queue['conversation_id']}/messages",
        json={"from": "boss", "body": "a task after the revocation"},
        headers={"X-Bus-Token": queue["token"]},
    )
    assert task.status_code == 201, task.text
    for thread in waiting:
        thread.join(30)
    for name in ("unread", "claim"):
        response = answers[name]
        assert response.status_code == 401, (name, response.text)  # type: ignore[attr-defined]
        assert "after the revocation" not in response.text  # type: ignore[attr-defined]
    tasks = boss.get(f"/api/v1/bus/conversations/{queue['conversation_id']}/tasks", headers={"X-Bus-Token": queue["token"]}).json()
    assert [(t["state"], t["attempts"]) for t in tasks["tasks"]] == [("ready", 0)]  # not leased to the revoked key's worker
    again = boss.get(
        f"/api/v1/bus/conversations/{chat['conversation_id']}/unread", params={"agent": "b"}, headers={"X-Bus-Token": chat["token"]}
    )
    assert [m["body"] for m in again.json()["messages"]] == ["after the revocation"]
