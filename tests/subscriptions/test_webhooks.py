"""Webhook deliveries to a real local receiver: signed, retried with backoff from the store's
queue, dead-lettered after max_attempts, redirects not followed, the SSRF guard applied at
subscribe time and again before every call (with the checked address pinned)."""

from __future__ import annotations

import hashlib
import hmac
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hook_receiver import Receiver
from tests.conftest import FakeClock, keyword_settings

from memmesh import Memory
from memmesh.errors import ForbiddenError, InvalidInputError, NotFoundError
from memmesh.model import LOCAL_PRINCIPAL, Principal
from memmesh.subscriptions import signing

L = LOCAL_PRINCIPAL


def open_mem(tmp_path: Path, clock: FakeClock, **subscriptions: Any) -> Memory:
    settings = keyword_settings(tmp_path, subscriptions={"allow_loopback_webhooks": True, "retry_base_s": 10, **subscriptions})
    return Memory(f"sqlite:///{tmp_path / 'hooks.db'}", settings, clock=clock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def hooked(tmp_path: Path, clock: FakeClock) -> Iterator[Memory]:
    mem = open_mem(tmp_path, clock, max_attempts=3)
    yield mem
    mem.close()


def test_changes_are_delivered_signed_in_order_and_only_inside_the_namespace(hooked: Memory, receiver: Receiver) -> None:
    svc = hooked.service
    before = hooked.add("existed before the subscription", namespace="team/a")
    sub = svc.subscriptions.subscribe("team", receiver.url, principal=L)
    kept = hooked.add("the runbook moved to the wiki", namespace="team/a")
    hooked.update(kept.id, content="the runbook moved to the ops wiki")
    hooked.add("not watched", namespace="other")
    hooked.delete(kept.id)
    hooked.update(before.id, tags=["old"])

    run = svc.subscriptions.run_once(principal=L)
    assert (run.queued, run.delivered, run.retried, run.dead) == (2, 2, 0, 0)
    got = receiver.received
    # deliveries report each memory's latest state in the change feed: `kept` was created,
    # updated and deleted before the pass, so one delivery (the delete) reports it
    assert [(r.json()["event"], r.json()["memory_id"]) for r in got] == [("memory.deleted", kept.id), ("memory.updated", before.id)]
    for r in got:
        stamp, sig = r.headers["x-memmesh-timestamp"], r.headers["x-memmesh-signature"]
        expected = "sha256=" + hmac.new(sub.secret.encode(), f"{stamp}.".encode() + r.body, hashlib.sha256).hexdigest()
        assert sig == expected and signing.verify(sub.secret, stamp, sig, r.body)
        assert not signing.verify(sub.secret, stamp, sig, r.body + b" ")  # a changed body fails
        assert not signing.verify("another secret of enough length", stamp, sig, r.body)
        assert r.json()["subscription_id"] == sub.id and r.headers["x-memmesh-delivery"] == r.json()["id"]
        assert r.json()["namespace"].startswith("team")
    assert all(d.state == "delivered" for d in svc.subscriptions.deliveries(sub.id, principal=L))
    assert svc.subscriptions.run_once(principal=L).queued == 0  # nothing is delivered twice


def test_each_change_is_one_delivery_when_passes_run_between_them(hooked: Memory, receiver: Receiver) -> None:
    svc = hooked.service
    sub = svc.subscriptions.subscribe("team", receiver.url, events=["memory.created", "memory.deleted"], principal=L)
    m = hooked.add("first", namespace="team/x")
    svc.subscriptions.run_once(principal=L)
    hooked.update(m.id, content="first, edited")  # not subscribed to updates
    svc.subscriptions.run_once(principal=L)
    hooked.delete(m.id)
    svc.subscriptions.run_once(principal=L)
    events = [r.json() for r in receiver.received]
    assert [(e["event"], e["memory_id"]) for e in events] == [("memory.created", m.id), ("memory.deleted", m.id)]
    assert events[0]["memory"]["content"] == "first" and events[1]["memory"] is None
    assert len(svc.subscriptions.deliveries(sub.id, principal=L)) == 2


def test_failures_retry_with_backoff_then_dead_letter(hooked: Memory, receiver: Receiver, clock: FakeClock) -> None:
    svc = hooked.service
    receiver.statuses = [500]
    sub = svc.subscriptions.subscribe("team", receiver.url, principal=L)
    hooked.add("flaky receiver", namespace="team")
    first = svc.subscriptions.run_once(principal=L)
    assert (first.queued, first.retried) == (1, 1)
    [pending] = svc.subscriptions.deliveries(sub.id, principal=L)
    assert pending.state == "pending" and pending.attempts == 1 and pending.last_error == "answered HTTP 500"
    assert pending.next_attempt_at == clock.now + __import__("datetime").timedelta(seconds=10)  # retry_base_s
    assert svc.subscriptions.run_once(principal=L).retried == 0 and len(receiver.received) == 1  # not due yet
    clock.advance(seconds=10)
    assert svc.subscriptions.run_once(principal=L).retried == 1
    [again] = svc.subscriptions.deliveries(sub.id, principal=L)
    assert again.next_attempt_at == clock.now + __import__("datetime").timedelta(seconds=20)  # doubled
    clock.advance(seconds=20)
    assert svc.subscriptions.run_once(principal=L).dead == 1
    [dead] = svc.subscriptions.deliveries(sub.id, state="dead", principal=L)
    assert dead.attempts == 3 and dead.last_error == "gave up after 3 attempts: answered HTTP 500" and dead.last_status == 500
    clock.advance(days=1)
    assert svc.subscriptions.run_once(principal=L).dead == 0 and len(receiver.received) == 3  # dead stays dead
    receiver.statuses = [204]
    hooked.add("receiver is back", namespace="team")
    assert svc.subscriptions.run_once(principal=L).delivered == 1


def test_redirects_are_not_followed(hooked: Memory, receiver: Receiver) -> None:
    svc = hooked.service
    receiver.statuses = [302]
    sub = svc.subscriptions.subscribe("team", receiver.url, principal=L)
    hooked.add("bounce me", namespace="team")
    assert svc.subscriptions.run_once(principal=L).retried == 1
    assert [r.path for r in receiver.received] == ["/hook"]  # /elsewhere was never called
    [d] = svc.subscriptions.deliveries(sub.id, principal=L)
    assert d.last_status == 302 and "redirects are not followed" in (d.last_error or "")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:9/x", "a loopback address"),
        ("http://localhost:9/x", "a loopback address"),  # a DNS answer that points inside
        ("http://[::1]:9/x", "a loopback address"),
        ("http://[::ffff:127.0.0.1]:9/x", "a loopback address"),
        ("http://10.1.2.3/x", "a private address"),
        ("https://192.168.0.10/x", "a private address"),
        ("http://172.16.5.5/x", "a private address"),
        ("http://169.254.10.1/x", "a link-local address"),
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://100.64.0.1/x", "a non-public address"),
        ("http://0.0.0.0/x", "an unspecified or multicast address"),
    ],
)
def test_ssrf_guard_refuses_inside_targets(tmp_path: Path, clock: FakeClock, url: str, why: str) -> None:
    with Memory(f"sqlite:///{tmp_path / 'guarded.db'}", keyword_settings(tmp_path), clock=clock) as mem:
        with pytest.raises(InvalidInputError) as refused:
            mem.service.subscriptions.subscribe("team", url, principal=L)
        assert why in refused.value.message and refused.value.code == "webhook_refused"
        if why not in ("a cloud metadata address", "an unspecified or multicast address"):
            assert "subscriptions.allow_loopback_webhooks" in refused.value.message
        assert mem.service.subscriptions.list(principal=L) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/",
        "http://169.254.170.2/v2/credentials/x",  # AWS ECS/Fargate container credentials
        "http://169.254.170.23/v1/credentials",  # EKS Pod Identity agent
        "http://[fd00:ec2::23]/v1/credentials",
        "http://168.63.129.16/machine",  # Azure WireServer
    ],
)
def test_metadata_address_is_refused_even_when_internal_targets_are_allowed(hooked: Memory, url: str) -> None:
    with pytest.raises(InvalidInputError, match="cloud metadata"):
        hooked.service.subscriptions.subscribe("team", url, principal=L)
    assert hooked.service.subscriptions.list(principal=L) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "must be an http:// or https:// URL (got scheme 'ftp'"),
        ("file:///etc/passwd", "must be an http:// or https:// URL (got scheme 'file'"),
        ("javascript:alert(1)", "must be an http:// or https:// URL"),
        ("example.com/hook", "must be an http:// or https:// URL (got scheme 'none'"),
        ("http://user:pw@8.8.8.8/x", "must not hold a user name or password"),
        ("http:///nohost", "has no host"),
        ("http://8.8.8.8:99999/x", "is not a valid URL"),
        ("", "url is required"),
    ],
)
def test_bad_urls_are_one_clear_error_and_store_nothing(hooked: Memory, url: str, message: str) -> None:
    with pytest.raises(InvalidInputError) as bad:
        hooked.service.subscriptions.subscribe("team", url, principal=L)
    assert message in bad.value.message
    assert hooked.service.subscriptions.list(principal=L) == []


def test_bad_events_and_secrets_are_refused(hooked: Memory, receiver: Receiver) -> None:
    subs = hooked.service.subscriptions
    with pytest.raises(InvalidInputError, match=r"events names an unknown event 'memory\.read'"):
        subs.subscribe("team", receiver.url, events=["memory.read"], principal=L)
    with pytest.raises(InvalidInputError, match="secret must be 16 to 256 characters"):
        subs.subscribe("team", receiver.url, secret="short", principal=L)
    with pytest.raises(NotFoundError):
        subs.unsubscribe("no-such-id", principal=L)
    assert subs.list(principal=L) == []


def test_every_call_rechecks_the_target_and_connects_to_the_checked_address(
    tmp_path: Path, clock: FakeClock, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that resolves inside is refused at delivery time too (DNS can change after the
    subscribe), and an allowed name is called at the address that was checked, with the name
    kept in the Host header: a second, different DNS answer is never used."""
    real = socket.getaddrinfo
    answers = {"hooks.example": "127.0.0.1"}

    def fake_dns(host: str, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], args[0] if args else 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    allowed = open_mem(tmp_path, clock)
    try:
        url = f"http://hooks.example:{receiver.port}/hook"
        sub = allowed.service.subscriptions.subscribe("team", url, principal=L)
        allowed.add("pinned", namespace="team")
        assert allowed.service.subscriptions.run_once(principal=L).delivered == 1
        assert receiver.received[0].headers["host"] == f"hooks.example:{receiver.port}"
    finally:
        allowed.close()
    strict = Memory(f"sqlite:///{tmp_path / 'hooks.db'}", keyword_settings(tmp_path), clock=clock)  # same store, guard on
    try:
        strict.add("now refused", namespace="team")
        assert strict.service.subscriptions.run_once(principal=L).retried == 1
        assert len(receiver.received) == 1  # not called
        last = strict.service.subscriptions.deliveries(sub.id, state="pending", principal=L)[0]
        assert "resolves to 127.0.0.1, a loopback address" in (last.last_error or "")
    finally:
        strict.close()


def test_subscriptions_are_scoped_by_the_callers_key(hooked: Memory, receiver: Receiver) -> None:
    svc = hooked.service
    key = svc.create_key("watcher", role="reader", namespaces=["team/a"], principal=L)
    watcher = Principal(agent_id="watcher", role="reader", namespaces=["team/a"], key_id=key.id)
    with pytest.raises(ForbiddenError):
        svc.subscriptions.subscribe("team", receiver.url, principal=watcher)  # wider than the key
    sub = svc.subscriptions.subscribe("team/a", receiver.url, principal=watcher)
    other = Principal(agent_id="other", role="writer", namespaces=["team/b"])
    assert svc.subscriptions.list(principal=other) == []
    with pytest.raises(NotFoundError):
        svc.subscriptions.get(sub.id, principal=other)
    peer = Principal(agent_id="peer", role="writer", namespaces=["team/a"])
    for stranger in (other, peer):  # one answer, whether the caller can see it or not
        with pytest.raises(ForbiddenError, match="only the agent that made a subscription or an admin"):
            svc.subscriptions.unsubscribe(sub.id, principal=stranger)
    hooked.add("seen", namespace="team/a")
    svc.subscriptions.run_once(principal=L)
    assert [r.json()["memory"]["content"] for r in receiver.received] == ["seen"]
    svc.revoke_key(key.id, principal=L)  # a revoked key's subscription stops
    hooked.add("not delivered", namespace="team/a")
    svc.subscriptions.run_once(principal=L)
    assert len(receiver.received) == 1
    assert svc.subscriptions.get(sub.id, principal=L).state == "revoked"


def test_subscribe_and_unsubscribe_are_audited_without_the_secret(hooked: Memory, receiver: Receiver) -> None:
    svc = hooked.service
    sub = svc.subscriptions.subscribe("team", receiver.url, secret="a-secret-nobody-may-see", principal=L)
    svc.subscriptions.unsubscribe(sub.id, principal=L)
    entries = [e for e in svc.audit.entries(principal=L, limit=1000).entries if e.target == sub.id]
    assert [(e.action, e.namespace) for e in entries] == [("subscription.create", "team"), ("subscription.delete", "team")]
    assert entries[0].detail["url"] == receiver.url and "a-secret-nobody-may-see" not in repr(entries)
    assert svc.audit.verify(principal=L).ok


def test_queued_deliveries_stop_when_the_key_is_revoked_before_they_go_out(hooked: Memory, receiver: Receiver, clock: FakeClock) -> None:
    # Before: revocation was noticed only when new changes were queued, so deliveries queued
    # under the key (here: retrying after a failure) kept going out after it was revoked.
    svc = hooked.service
    key = svc.create_key("watcher", role="reader", namespaces=["team"], principal=L)
    watcher = Principal(agent_id="watcher", role="reader", namespaces=["team"], key_id=key.id)
    sub = svc.subscriptions.subscribe("team", receiver.url, principal=watcher)
    receiver.statuses = [500, 500, 204]
    hooked.add("queued before the revocation", namespace="team")
    hooked.add("also queued", namespace="team")
    assert svc.subscriptions.run_once(principal=L).retried == 2
    svc.revoke_key(key.id, principal=L)
    clock.advance(seconds=10)
    run = svc.subscriptions.run_once(principal=L)
    assert (run.delivered, run.dead) == (0, 2), run
    assert len(receiver.received) == 2, "nothing went out after the revocation"
    assert svc.subscriptions.get(sub.id, principal=L).state == "revoked"
    dead = svc.subscriptions.deliveries(sub.id, state="dead", principal=L)
    assert len(dead) == 2 and all("revoked" in (d.last_error or "") for d in dead)


def test_other_readers_of_a_namespace_see_a_webhook_urls_origin_not_its_token(hooked: Memory, receiver: Receiver) -> None:
    # Before: any reader of the namespace listed the full URL (chat webhooks carry their token
    # in the path or query) and the owner's key id.
    svc = hooked.service
    url = receiver.url + "/api/webhooks/123/SECRET-TOKEN?token=also-secret"
    key = svc.create_key("owner", role="writer", namespaces=["team"], principal=L)
    owner = Principal(agent_id="owner", role="writer", namespaces=["team"], key_id=key.id)
    sub = svc.subscriptions.subscribe("team", url, principal=owner)
    reader = Principal(agent_id="reader", role="reader", namespaces=["team"])
    origin = receiver.url.rsplit("/", 1)[0] if receiver.url.count("/") > 2 else receiver.url
    for seen in (svc.subscriptions.list(principal=reader)[0], svc.subscriptions.get(sub.id, principal=reader)):
        assert "SECRET" not in seen.url and "also-secret" not in seen.url and seen.owner_key is None
        assert seen.url == origin.rstrip("/") + "/…" and seen.id == sub.id and seen.owner_agent == "owner"
    admin = Principal(agent_id="boss", role="admin", namespaces=["team"])
    for full in (owner, admin, L):
        assert svc.subscriptions.get(sub.id, principal=full).url == url


def test_the_log_names_a_webhooks_origin_not_its_token(
    hooked: Memory, receiver: Receiver, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: subscribing and dead-lettering logged the full URL, token and all.
    svc = hooked.service
    receiver.statuses = [500]
    with caplog.at_level("INFO", logger="memmesh.subscriptions"):
        svc.subscriptions.subscribe("team", receiver.url + "/hooks/SECRET-TOKEN", principal=L)
        hooked.add("failing", namespace="team")
        for _ in range(3):
            svc.subscriptions.run_once(principal=L)
            clock.advance(seconds=100)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "dead-lettered" in logged and "subscription " in logged
    assert "SECRET-TOKEN" not in logged and "/…" in logged


def test_a_receiver_cannot_hold_the_worker_with_an_endless_answer(tmp_path: Path, clock: FakeClock) -> None:
    # Before: the whole answer body was read, so a receiver announcing a huge body and
    # trickling it (or never sending it) held the delivery worker until the read timed out
    # and failed a delivery it had accepted with 200 (and a fast huge body filled memory).
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def answer() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10000000000\r\n\r\nstarting")

    threading.Thread(target=answer, daemon=True).start()
    mem = open_mem(tmp_path, clock, timeout_s=2)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
        sub = mem.service.subscriptions.subscribe("team", url, principal=L)
        mem.add("endless answer", namespace="team")
        run = mem.service.subscriptions.run_once(principal=L)
        assert (run.delivered, run.retried) == (1, 0), (run, mem.service.subscriptions.deliveries(sub.id, principal=L))
    finally:
        mem.close()
        listener.close()
        for conn in held:
            conn.close()
