"""Subscriptions and inboxes through the faces: HTTP on real ``memmesh serve`` processes
(including a queue that survives a kill -9 and a restart), and the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from hook_receiver import Receiver, wait_for

from memmesh.subscriptions import signing

JSON = {"Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    (tmp_path / "absent.toml").write_text("")
    env.update(
        {
            "MEMMESH_DATA_DIR": str(tmp_path / "data"),
            "MEMMESH_CONFIG": str(tmp_path / "absent.toml"),
            "MEMMESH_EMBEDDINGS_PROVIDER": "none",
            "COLUMNS": "200",
        }
    )
    return env


class Served:
    """``memmesh serve`` in a subprocess (stopped by its pid)."""

    def __init__(self, tmp_path: Path, db: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"serve-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "memmesh.interfaces.cli.app", "serve", "--db", str(db), "--port", str(self.port)],
                env={**base_env(tmp_path), **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.log.read_text()[-2000:])
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("serve did not start: " + self.log.read_text()[-2000:])

    def http(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=30)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(db: Path, **env: str) -> Served:
        served = Served(tmp_path, db, env)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


FAST = {
    "MEMMESH_SUBSCRIPTIONS_ALLOW_LOOPBACK_WEBHOOKS": "true",
    "MEMMESH_SUBSCRIPTIONS_POLL_INTERVAL_S": "0.1",
    "MEMMESH_SUBSCRIPTIONS_RETRY_BASE_S": "0.3",
    "MEMMESH_SUBSCRIPTIONS_RETRY_MAX_S": "0.5",
    "MEMMESH_SUBSCRIPTIONS_TIMEOUT_S": "2",
}


def test_queued_delivery_survives_a_killed_server_and_is_delivered_after_restart(tmp_path: Path, serve: Callable[..., Served]) -> None:
    db = tmp_path / "durable.db"
    port = free_port()  # the receiver's port, closed for now: every attempt fails
    first = serve(db, **FAST)
    with first.http() as http:
        made = http.post("/api/v1/subscriptions", json={"namespace": "ops", "url": f"http://127.0.0.1:{port}/hook"}, headers=JSON)
        assert made.status_code == 201, made.text
        sub = made.json()
        stored = http.post("/api/v1/memories", json={"content": "page the on-call", "namespace": "ops/alerts"}, headers=JSON).json()

        def failed_once() -> bool:
            found = http.get(f"/api/v1/subscriptions/{sub['id']}/deliveries").json()
            return bool(found) and found[0]["attempts"] >= 1 and found[0]["last_error"] is not None

        wait_for(failed_once, 30, "a failed attempt")
        [pending] = http.get(f"/api/v1/subscriptions/{sub['id']}/deliveries").json()
        assert pending["state"] == "pending" and "ConnectError" in pending["last_error"]
    first.stop(signal.SIGKILL)  # no graceful shutdown: the queue is only what the store holds

    receiver = Receiver(port=port).start()
    try:
        second = serve(db, **FAST)
        # 60 s: a delivery claimed at the moment of the kill waits out its claim (timeout_s + 30 s)
        wait_for(lambda: len(receiver.received) >= 1, 60, "the delivery after the restart")
        got = receiver.received[0]
        assert got.json()["memory_id"] == stored["id"] and got.json()["event"] == "memory.created"
        assert signing.verify(sub["secret"], got.headers["x-memmesh-timestamp"], got.headers["x-memmesh-signature"], got.body)
        with second.http() as http:
            wait_for(lambda: http.get(f"/api/v1/subscriptions/{sub['id']}/deliveries").json()[0]["state"] == "delivered", 10, "delivered")
            [done] = http.get(f"/api/v1/subscriptions/{sub['id']}/deliveries").json()
            assert done["attempts"] >= 2 and done["delivered_at"] and "secret" not in http.get("/api/v1/subscriptions").json()[0]
        time.sleep(0.5)
        assert len(receiver.received) == 1  # delivered once
    finally:
        receiver.stop()


def test_http_refusals_scopes_and_inbox(tmp_path: Path, serve: Callable[..., Served]) -> None:
    db = tmp_path / "faces.db"
    env = base_env(tmp_path) | {"MEMMESH_DB": str(db)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "memmesh.interfaces.cli.app", *args], env=env, capture_output=True, text=True)

    keys = {}
    for agent, role, ns in (("alice", "writer", "team/a"), ("bob", "reader", "team/a"), ("carol", "writer", "team/b")):
        made = cli("keys", "create", "--agent", agent, "--role", role, "--namespace", ns, "--json")
        assert made.returncode == 0, made.stderr
        keys[agent] = json.loads(made.stdout)["key"]
    served = serve(db)
    alice, bob, carol = (served.http(keys[n]) for n in ("alice", "bob", "carol"))
    try:
        ftp = alice.post("/api/v1/subscriptions", json={"namespace": "team/a", "url": "ftp://files.example/x"}, headers=JSON)
        assert ftp.status_code == 422 and "http:// or https://" in ftp.json()["error"]["message"]
        inside = alice.post("/api/v1/subscriptions", json={"namespace": "team/a", "url": "http://localhost:8080/x"}, headers=JSON)
        assert inside.status_code == 422 and inside.json()["error"]["code"] == "webhook_refused"
        assert "allow_loopback_webhooks" in inside.json()["error"]["message"]
        wide = alice.post("/api/v1/subscriptions", json={"namespace": "team/b", "url": "http://8.8.8.8/x"}, headers=JSON)
        assert wide.status_code == 403
        made = alice.post(
            "/api/v1/subscriptions", json={"namespace": "team/a", "url": "http://8.8.8.8/x", "events": ["memory.deleted"]}, headers=JSON
        )
        assert made.status_code == 201 and made.json()["owner_agent"] == "alice"
        sub_id = made.json()["id"]
        assert [s["id"] for s in bob.get("/api/v1/subscriptions").json()] == [sub_id]
        assert carol.get("/api/v1/subscriptions").json() == [] and carol.get(f"/api/v1/subscriptions/{sub_id}").status_code == 404
        assert bob.delete(f"/api/v1/subscriptions/{sub_id}").status_code == 403
        assert alice.get("/api/v1/subscriptions").json()[0]["url"] == "http://8.8.8.8/x"

        sent = alice.post("/api/v1/notify", json={"to": "bob", "body": "review the runbook", "namespace": "team/a"}, headers=JSON)
        assert sent.status_code == 201 and sent.json()["sender"] == "alice"
        assert alice.post("/api/v1/notify", json={"to": "bob", "body": "psst", "namespace": "team/b"}, headers=JSON).status_code == 403
        assert alice.post("/api/v1/notify", json={"to": "bad name!", "body": "x"}, headers=JSON).status_code == 422
        assert alice.post("/api/v1/notify", json={"to": "bob", "body": "  "}, headers=JSON).status_code == 422
        assert bob.post("/api/v1/notify", json={"to": "alice", "body": "hi"}, headers=JSON).status_code == 403  # a reader
        assert bob.get("/api/v1/inbox", params={"agent": "alice"}).status_code == 403
        inbox = bob.get("/api/v1/inbox").json()
        assert [(m["sender"], m["body"], m["namespace"]) for m in inbox] == [("alice", "review the runbook", "team/a")]
        assert bob.get("/api/v1/inbox").json() == []  # read once
        assert [m["body"] for m in bob.get("/api/v1/inbox", params={"all": True}).json()] == ["review the runbook"]
        assert alice.delete(f"/api/v1/subscriptions/{sub_id}").status_code == 200
        assert alice.get("/api/v1/subscriptions").json() == []
    finally:
        for client in (alice, bob, carol):
            client.close()


@pytest.mark.slow  # long: started first (tests/conftest.py)
def test_cli_subscribe_notify_inbox(tmp_path: Path) -> None:
    env = base_env(tmp_path) | {"MEMMESH_DB": str(tmp_path / "cli.db")}

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", *args], env=env | extra, capture_output=True, text=True, timeout=120
        )

    bad = cli("subscribe", "add", "gopher://x/y", "-n", "team")
    assert bad.returncode == 1 and "must be an http:// or https:// URL" in bad.stderr and bad.stderr.count("\n") == 1
    refused = cli("subscribe", "add", "http://127.0.0.1:9/x", "-n", "team")
    assert refused.returncode == 1 and "a loopback address" in refused.stderr
    assert not (tmp_path / "cli.db").exists()  # a refused subscribe leaves no store behind

    receiver = Receiver().start()
    try:
        allow = {"MEMMESH_SUBSCRIPTIONS_ALLOW_LOOPBACK_WEBHOOKS": "true"}
        made = cli("subscribe", "add", receiver.url, "-n", "team", "--secret", "s3cret-s3cret-s3cret", "--json", **allow)
        assert made.returncode == 0, made.stderr
        sub = json.loads(made.stdout)
        assert sub["secret"] == "s3cret-s3cret-s3cret"
        assert cli("store", "deploy friday", "--namespace", "team/ops").returncode == 0
        ran = cli("subscribe", "deliver", "--json", **allow)
        assert json.loads(ran.stdout) == {"queued": 1, "delivered": 1, "retried": 0, "dead": 0}, ran.stderr
        got = receiver.received[0]
        assert signing.verify("s3cret-s3cret-s3cret", got.headers["x-memmesh-timestamp"], got.headers["x-memmesh-signature"], got.body)
        listed = cli("subscribe", "deliveries", sub["id"], "--json")
        assert [d["state"] for d in json.loads(listed.stdout)] == ["delivered"]
        assert "team" in cli("subscribe", "list").stdout
        assert cli("subscribe", "remove", sub["id"]).returncode == 0
        missing = cli("subscribe", "remove", sub["id"])
        assert missing.returncode == 1 and "no subscription with id" in missing.stderr
    finally:
        receiver.stop()

    assert cli("notify", "bob", "the deploy moved to monday", "--from", "alice", "--subject", "deploy").returncode == 0
    nameless = cli("notify", "bad agent", "x")
    assert nameless.returncode == 1 and "not a valid agent name" in nameless.stderr
    read = cli("inbox", "--agent", "bob", "--json")
    assert [(m["sender"], m["subject"], m["body"]) for m in json.loads(read.stdout)] == [("alice", "deploy", "the deploy moved to monday")]
    assert "no notifications" in cli("inbox", "--agent", "bob").stdout
