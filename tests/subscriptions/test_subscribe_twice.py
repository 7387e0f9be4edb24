"""Subscribing the same URL to the same namespace twice gives back the first subscription
(HTTP 200 with ``existed: true``, like storing the same memory again), never a second one
that would deliver every change twice; asking for other events is a conflict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.http.http_support import ThreadServer, http_settings

from memmesh.model import LOCAL_PRINCIPAL

HOOK = "http://8.8.8.8/hooks/memmesh?token=abc"


def test_http_subscribing_twice_answers_the_existing_subscription(tmp_path: Path) -> None:
    server = ThreadServer(http_settings(tmp_path))
    running = server.start()
    try:
        svc = running.service
        alice = svc.create_key("alice", role="writer", namespaces=["team/*"], principal=LOCAL_PRINCIPAL).key
        bob = svc.create_key("bob", role="writer", namespaces=["team/*"], principal=LOCAL_PRINCIPAL).key
        body = {"namespace": "team/alpha", "url": HOOK, "events": ["memory.created", "memory.deleted"]}
        first = running.http(alice).post("/api/v1/subscriptions", json=body)
        assert first.status_code == 201 and first.json()["existed"] is False, first.text
        again = running.http(alice).post("/api/v1/subscriptions", json={**body, "events": ["memory.deleted", "memory.created"]})
        assert again.status_code == 200, again.text
        assert again.json()["existed"] is True
        assert (again.json()["id"], again.json()["secret"]) == (first.json()["id"], first.json()["secret"])

        for changed, words in (({"events": ["memory.updated"]}, "other events"), ({"secret": "s" * 20}, "another secret")):
            refused = running.http(alice).post("/api/v1/subscriptions", json={**body, **changed})
            assert refused.status_code == 409, refused.text
            message = refused.json()["error"]["message"]
            assert words in message and f"unsubscribe {first.json()['id']} first" in message and "token=abc" not in message

        theirs = running.http(bob).post("/api/v1/subscriptions", json=body)  # another agent's own subscription
        assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
        listed = running.http(alice).get("/api/v1/subscriptions").json()
        assert sorted(s["id"] for s in listed) == sorted([first.json()["id"], theirs.json()["id"]])

        running.http(alice).delete(f"/api/v1/subscriptions/{first.json()['id']}")
        renewed = running.http(alice).post("/api/v1/subscriptions", json=body)  # unsubscribed: a new one
        assert renewed.status_code == 201 and renewed.json()["id"] != first.json()["id"]
    finally:
        running.close_clients()
        server.stop()


def test_cli_subscribe_add_twice_keeps_one_subscription(cli_in_process: Any) -> None:
    cli = cli_in_process
    first = cli("subscribe", "add", HOOK, "--namespace", "team", "--json")
    assert first.code == 0, first.err
    again = cli("subscribe", "add", HOOK, "--namespace", "team")
    assert again.code == 0 and "already subscribed: subscription " + json.loads(first.out)["id"] in again.out, again
    listed = json.loads(cli("subscribe", "list", "--json").out)
    assert [s["id"] for s in listed] == [json.loads(first.out)["id"]]
    other = cli("subscribe", "add", HOOK, "--namespace", "team", "--events", "memory.created")
    assert other.code == 1 and "other events" in other.err, other
    assert len(json.loads(cli("subscribe", "list", "--json").out)) == 1
