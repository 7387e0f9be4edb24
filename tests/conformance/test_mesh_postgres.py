"""A mesh node on PostgreSQL, end to end: a real ``memmesh serve`` on each backend, W = 2,
writes, updates, deletes and links on both sides converge (issue 15: both backends)."""

from __future__ import annotations

from pathlib import Path

from tests.federation.mesh_support import Node, wait_for


def test_a_sqlite_node_and_a_postgres_node_replicate_every_change(tmp_path: Path, pg_database: str) -> None:
    a, b = Node(tmp_path, "node-sqlite"), Node(tmp_path, "node-pg")
    b.db = pg_database
    a.args = ["--peers", b.url, "--quorum-writes", "2", "--catchup-interval-secs", "1"]
    b.args = ["--peers", a.url, "--quorum-writes", "2", "--catchup-interval-secs", "1"]
    try:
        a.start(wait=False)
        b.start()
        a.wait_ready()
        wait_for(lambda: all(p.get("node_id") for n in (a, b) for p in n.status()["peers"]), 30, "peers identified")
        x = a.call("POST", "/api/v1/memories", json={"content": "stored on sqlite", "namespace": "pg"})
        y = b.call("POST", "/api/v1/memories", json={"content": "stored on postgres", "namespace": "pg"})
        assert x.status_code == y.status_code == 201, (x.text, y.text)
        x_id, y_id = x.json()["id"], y.json()["id"]
        assert b.call("PATCH", f"/api/v1/memories/{x_id}", json={"content": "stored on sqlite, edited on postgres"}).status_code == 200
        assert a.call("POST", "/api/v1/links", json={"source_id": x_id, "target_id": y_id}).status_code == 201
        gone = b.call("POST", "/api/v1/memories", json={"content": "short-lived", "namespace": "pg"}).json()["id"]
        assert a.call("DELETE", f"/api/v1/memories/{gone}").status_code == 200
        wait_for(lambda: a.state() == b.state() and set(a.state()) == {x_id, y_id}, 30, "identical stores")
        assert a.state()[x_id][0] == "stored on sqlite, edited on postgres"
        assert [link["target_id"] for link in b.call("GET", f"/api/v1/memories/{x_id}/links").json()] == [y_id]
    finally:
        a.stop()
        b.stop()
