"""The sync routes over HTTP: peer keys only, bad input refused with the store unchanged,
and a peer that answers garbage never reaches the store (issue 15)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.federation.mesh_support import Node, wait_for
from tests.http.http_support import server_env


def make_key(tmp_path: Path, node: Node, agent: str, role: str) -> str:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "memmesh.interfaces.cli.app",
            "--db",
            str(node.db),
            "keys",
            "create",
            "--agent",
            agent,
            "--role",
            role,
            "--json",
        ],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)["key"]


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two nodes that require keys and reach each other with peer keys; plus admin and writer keys on a."""
    a, b = Node(tmp_path, "node-a"), Node(tmp_path, "node-b")
    keys = {
        "a_peer": make_key(tmp_path, a, "node-b", "peer"),  # what b sends to a
        "b_peer": make_key(tmp_path, b, "node-a", "peer"),  # what a sends to b
        "a_admin": make_key(tmp_path, a, "ops", "admin"),
        "a_writer": make_key(tmp_path, a, "bot", "writer"),
        "b_admin": make_key(tmp_path, b, "ops", "admin"),
    }
    (tmp_path / "a.keys").write_text(f"# a's keys for its peers\n{b.url} {keys['b_peer']}\n")
    (tmp_path / "b.keys").write_text(f"{keys['a_peer']}\n")
    for secret in ("a.keys", "b.keys"):
        (tmp_path / secret).chmod(0o600)  # a key file others can read is refused at start
    a.args = ["--require-auth", "--peers", b.url, "--peer-key-file", str(tmp_path / "a.keys"), "--catchup-interval-secs", "1"]
    b.args = ["--require-auth", "--peers", a.url, "--peer-key-file", str(tmp_path / "b.keys"), "--catchup-interval-secs", "1"]
    a.start(wait=False)
    b.start()
    a.wait_ready()
    a.headers = {"Authorization": f"Bearer {keys['a_admin']}"}
    b.headers = {"Authorization": f"Bearer {keys['b_admin']}"}
    wait_for(lambda: all(p.get("node_id") for n in (a, b) for p in n.status()["peers"]), 30, "peers identified")
    yield {"a": a, "b": b, "keys": keys}
    a.stop()
    b.stop()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_peer_keys_replicate_and_open_nothing_else(keyed: dict[str, Any]) -> None:
    a, b, keys = keyed["a"], keyed["b"], keyed["keys"]
    r = a.call(
        "POST", "/api/v1/memories", json={"content": "written with a writer key", "namespace": "k"}, headers=bearer(keys["a_writer"])
    )
    assert r.status_code == 201
    wait_for(lambda: r.json()["id"] in b.ids(), 30, "replicated with peer keys")
    peer = bearer(keys["a_peer"])
    assert a.call("GET", "/api/v1/memories", headers=peer).status_code == 403
    assert a.call("POST", "/api/v1/memories", json={"content": "x"}, headers=peer).status_code == 403
    assert a.call("GET", "/api/v1/sync/status", headers=peer).status_code == 403
    assert a.call("POST", "/api/v1/sync/push", json={"node": "node-b", "items": []}, headers=bearer(keys["a_writer"])).status_code == 403
    assert a.call("GET", "/api/v1/sync/since", params={"peer": "node-b"}, headers=bearer(keys["a_admin"])).status_code == 403
    assert a.call("GET", "/api/v1/sync/since", params={"peer": "node-b"}, headers={"Authorization": ""}).status_code == 401
    assert a.call("GET", "/api/v1/sync/since", params={"peer": "node-b"}, headers=peer).status_code == 200
    # anti-entropy reads every namespace: peers and store-wide admins only
    writer, none = bearer(keys["a_writer"]), {"Authorization": ""}
    assert a.call("GET", "/api/v1/sync/digest", headers=writer).status_code == 403
    assert a.call("GET", "/api/v1/sync/digest", headers=none).status_code == 401
    assert a.call("GET", "/api/v1/sync/digest", headers=peer).status_code == 200
    assert a.call("POST", "/api/v1/sync/items", json={"ids": [r.json()["id"]]}, headers=writer).status_code == 403
    assert a.call("POST", "/api/v1/sync/items", json={"ids": [r.json()["id"]]}, headers=none).status_code == 401
    items = a.call("POST", "/api/v1/sync/items", json={"ids": [r.json()["id"]]}, headers=peer)
    assert items.status_code == 200 and [i["memory"]["id"] for i in items.json()["items"] if i.get("memory")] == [r.json()["id"]]


def test_bad_batches_are_rejected_and_change_nothing(keyed: dict[str, Any]) -> None:
    a, keys = keyed["a"], keyed["keys"]
    peer = bearer(keys["a_peer"])
    made = a.call("POST", "/api/v1/memories", json={"content": "the original", "namespace": "k"}).json()
    before = a.status()["change_counter"]

    def push(body: Any, raw: bytes | None = None) -> Any:
        if raw is not None:
            return a.call("POST", "/api/v1/sync/push", content=raw, headers={**peer, "Content-Type": "application/json"})
        return a.call("POST", "/api/v1/sync/push", json=body, headers=peer)

    assert push(None, raw=b"{not json").status_code == 400
    assert push({"node": "node-b", "items": [{"seq": 1}]}).status_code == 422  # an item with nothing in it
    both = {"seq": 0, "memory": made, "link": {"source_id": "a", "target_id": "b", "created_at": made["created_at"]}}
    assert push({"node": "node-b", "items": [both]}).status_code == 422
    assert push({"node": "node-b", "items": [{"seq": 0, "memory": {**made, "version": {}}}]}).status_code == 422
    assert push({"node": "node-b", "since": 5, "upto": 2, "items": []}).status_code == 422
    assert push({"node": "node-b", "extra": 1, "items": []}).status_code == 422
    forged = {**made, "content": "tampered"}
    r = push({"node": "node-b", "items": [{"seq": 0, "memory": forged}]})
    assert r.status_code == 422 and "content_hash" in r.json()["error"]["message"]
    r = push({"node": "node-z", "items": [{"seq": 0, "memory": made}]})
    assert r.status_code == 403 and "unknown node id" in r.json()["error"]["message"]
    assert push({"node": "node-a", "items": []}).status_code == 422  # our own id
    future = {**made, "version": {**made["version"], "hlc": "9999999999999.00000"}}
    r = push({"node": "node-b", "items": [{"seq": 0, "memory": future}]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "clock_skew"
    status = a.status()
    assert status["clock_refused"] >= 1
    assert status["change_counter"] == before
    assert a.call("GET", f"/api/v1/memories/{made['id']}").json()["content"] == "the original"
    # a replayed batch is applied once: the second time it changes nothing
    other = {"content": "pushed twice", "namespace": "k"}
    source = keyed["b"].call("POST", "/api/v1/memories", json=other).json()
    wait_for(lambda: source["id"] in a.ids(), 30, "replicated")
    counter = a.status()["change_counter"]
    again = push({"node": "node-b", "items": [{"seq": 0, "memory": source}]})
    assert again.status_code == 200 and again.json()["applied"] == 0
    assert a.status()["change_counter"] == counter
    # the feed's own bad input
    for params in ({"peer": "node-b", "since": -1}, {"peer": "node-b", "limit": 0}, {}):
        assert a.call("GET", "/api/v1/sync/since", params=params, headers=peer).status_code == 422
    assert a.call("GET", "/api/v1/sync/since", params={"peer": "node-q"}, headers=peer).status_code == 403


class Garbage(BaseHTTPRequestHandler):
    """A 'peer' that says hello like a node, then answers every sync call with nonsense."""

    def do_GET(self) -> None:
        if self.path.startswith("/api/v1/sync/hello"):
            self._send({"node": "evil", "hlc": "0000000000001.00000", "seq": 3, "schema_version": 5})
        else:
            self._send({"node": "evil", "items": "all of them", "more": "yes"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<html>not a sync report</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send(self, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_peer_answering_garbage_is_logged_and_changes_nothing(tmp_path: Path) -> None:
    fake = ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    node = Node(tmp_path, "node-a")
    try:
        node.start(
            "--peers",
            f"http://127.0.0.1:{fake.server_address[1]}",
            "--catchup-interval-secs",
            "0.5",
            "--quorum-writes",
            "2",
            "--quorum-timeout-ms",
            "500",
        )
        r = node.call("POST", "/api/v1/memories", json={"content": "needs a quorum", "namespace": "g"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "quorum_not_met"
        assert "not JSON" in r.json()["error"]["details"]["reason"]
        wait_for(lambda: (node.status()["peers"][0].get("last_error") or "") != "", 30, "the garbage is reported")
        status = node.status()
        assert status["change_counter"] == 1  # only our own write; nothing from the garbage
        assert len(node.ids()) == 1  # the 503 write stays; nothing came from the garbage
        assert "not a sync page" in node.log.read_text()  # the catch-up pull's garbage, logged
    finally:
        node.stop()
        fake.shutdown()


def test_sync_daemon_replicates_a_store_without_a_server(tmp_path: Path) -> None:
    server = Node(tmp_path, "node-a")
    laptop_db = tmp_path / "laptop.db"
    key = make_key(tmp_path, server, "laptop", "peer")  # a peer key made for the laptop's node id introduces it
    admin = make_key(tmp_path, server, "ops", "admin")
    server.start("--require-auth")
    server.headers = {"Authorization": f"Bearer {admin}"}
    on_server = server.call("POST", "/api/v1/memories", json={"content": "written on the server", "namespace": "d"}).json()["id"]
    cli = [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", str(laptop_db)]
    laptop_env = {**server_env(tmp_path), "MEMMESH_STORAGE_NODE_ID": "laptop"}  # the store takes its id on first use
    subprocess.run([*cli, "store", "written on the laptop", "--namespace", "d"], env=laptop_env, check=True, capture_output=True)
    (tmp_path / "laptop.keys").write_text(key + "\n")
    (tmp_path / "laptop.keys").chmod(0o600)
    daemon = subprocess.Popen(
        [
            *cli,
            "sync-daemon",
            "--peers",
            server.url,
            "--interval",
            "0.5",
            "--peer-key-file",
            str(tmp_path / "laptop.keys"),
            "--node-id",
            "laptop",
        ],
        env=server_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: len(server.ids()) == 2, 30, "the laptop's write on the server")

        def laptop_ids() -> set[str]:
            out = subprocess.run([*cli, "list", "--json"], env=server_env(tmp_path), capture_output=True, text=True, check=True).stdout
            return {m["id"] for m in json.loads(out)["items"]}

        wait_for(lambda: on_server in laptop_ids(), 30, "the server's write on the laptop")
    finally:
        daemon.terminate()
        code = daemon.wait(30)
        server.stop()
        output = daemon.stdout.read().decode() if daemon.stdout else ""
        assert code == 0, output


def test_cluster_resync_copies_a_peer_s_current_state_into_a_store(tmp_path: Path) -> None:
    source = Node(tmp_path, "node-a")
    key = make_key(tmp_path, source, "node-b", "peer")  # introduces node-b to node-a
    source.headers = {"Authorization": f"Bearer {make_key(tmp_path, source, 'ops', 'admin')}"}
    source.start("--require-auth")
    (tmp_path / "b.keys").write_text(key + "\n")
    (tmp_path / "b.keys").chmod(0o600)
    try:
        ids = {source.call("POST", "/api/v1/memories", json={"content": f"on a {i}", "namespace": "r"}).json()["id"] for i in range(5)}
        gone = source.call("POST", "/api/v1/memories", json={"content": "deleted on a", "namespace": "r"}).json()["id"]
        source.call("DELETE", f"/api/v1/memories/{gone}")
        cli = [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", str(tmp_path / "b.db")]
        env = {**server_env(tmp_path), "MEMMESH_STORAGE_NODE_ID": "node-b"}
        subprocess.run([*cli, "store", "only on b", "--namespace", "r"], env=env, check=True, capture_output=True)
        resync = [*cli, "cluster", "resync", "--from", source.url, "--peer-key-file", str(tmp_path / "b.keys"), "--json"]

        served = Node(tmp_path, "node-b", db=tmp_path / "b.db").start()  # b's own server, still running
        try:
            refused = subprocess.run(resync, env=env, capture_output=True, text=True)
            assert refused.returncode == 1 and "a memmesh server is running on this store" in refused.stderr, refused.stderr
            assert "stop it, then run `memmesh cluster resync`" in refused.stderr and refused.stdout == ""
            assert len(served.ids()) == 1  # nothing of a's was written
        finally:
            served.stop()  # a clean stop removes its mark: the resync may run now

        out = subprocess.run(resync, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["applied"] == 8 and report["skipped"] == 0  # 5 memories, a tombstone, 2 agents; b's own write is kept
        listed = subprocess.run([*cli, "list", "--json"], env=env, capture_output=True, text=True, check=True).stdout
        held = {m["id"] for m in json.loads(listed)["items"]}
        assert ids < held and gone not in held and len(held) == 6
        bad = subprocess.run([*cli, "cluster", "resync", "--from", "http://127.0.0.1:9"], env=env, capture_output=True, text=True)
        assert bad.returncode != 0 and "unreachable" in bad.stderr
    finally:
        source.stop()
