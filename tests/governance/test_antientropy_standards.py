"""Standards and pending actions are in the anti-entropy digest (issue 15 "Left"): a node that
lost a standard and a pending action behind the feed (a restored backup, a bad disk) differs
in that namespace's digest, and `cluster repair` brings both back through the ordinary merge,
each audited on the repaired node as coming from the origin node. Real ``memmesh serve``
nodes on SQLite files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.federation.mesh_support import mesh, wait_for
from tests.federation.test_anti_entropy import cli, digests

from memmesh.store.sqlite import register_functions


def test_a_standard_and_a_pending_action_lost_behind_the_feed_are_repaired(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 2, names=("node-a", "node-b"))
    a, b = nodes
    try:
        put = a.call("PUT", "/api/v1/namespaces/legal/standard", json={"governance": {"write": "approve"}})
        assert put.status_code == 200, put.text
        queued = a.call("POST", "/api/v1/memories", json={"content": "The supplier contract renews in March.", "namespace": "legal"})
        assert queued.status_code == 202, queued.text
        pending_id = queued.json()["error"]["details"]["pending_id"]
        wait_for(lambda: digests(a)["digest"] == digests(b)["digest"], 60, "b caught up with a")
        assert {n["namespace"]: n["rows"] for n in digests(a)["namespaces"]} == {"legal": 2}  # the standard and the action
        b.stop()
        conn = sqlite3.connect(Path(str(b.db)))
        register_functions(conn)
        with conn:
            assert conn.execute("DELETE FROM namespace_standards WHERE namespace = 'legal'").rowcount == 1
            assert conn.execute("DELETE FROM pending_actions WHERE id = ?", (pending_id,)).rowcount == 1
        conn.close()
        before = cli(tmp_path, b.db, "cluster", "verify", "--peers", a.url, "--json")
        assert before.returncode == 1 and json.loads(before.stdout)["differing"] == ["legal"], before.stdout + before.stderr

        done = cli(tmp_path, b.db, "cluster", "repair", "--peers", a.url, "--json")
        assert done.returncode == 0, done.stderr + done.stdout
        (report,) = json.loads(done.stdout)
        assert report["memories"] == 2 and report["applied_here"] == 2, report
        exported = [json.loads(line) for line in cli(tmp_path, b.db, "audit", "export").stdout.splitlines()]
        repaired = [(e["action"], e["target"]) for e in exported if e["actor"].startswith("system:replica")][-2:]
        assert sorted(repaired) == sorted([("standard.set", "legal"), ("pending.queue", pending_id)])
        assert all(e["actor"].endswith("node:node-a") for e in exported if e["actor"].startswith("system:replica"))
        assert cli(tmp_path, b.db, "audit", "verify").returncode == 0

        b.start()
        assert digests(a)["digest"] == digests(b)["digest"]
        assert b.call("GET", "/api/v1/namespaces/legal/standard").json()["governance"]["write"]["value"] == "approve"
        assert b.call("GET", f"/api/v1/pending/{pending_id}").json()["status"] == "pending"
        again = cli(tmp_path, b.db, "cluster", "repair", "--peers", a.url, "--json")
        (second,) = json.loads(again.stdout)
        assert second["memories"] == 0 and second["namespaces_differing"] == []
    finally:
        for node in nodes:
            node.stop()
