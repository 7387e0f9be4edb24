"""Per-namespace content digests and anti-entropy (issue 24, "cheap catch-up"): equal
stores have equal digests, a difference the feed never carried is found by descending the
digest tree and repaired by exchanging only the differing bucket's rows."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.federation.mesh_support import Node, mesh, wait_for
from tests.http.http_support import free_port, server_env

from memmesh import Memory
from memmesh.config import db_override, load_settings
from memmesh.store.sqlite import register_functions


def cli(tmp_path: Path, db: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", str(db), *args],
        env=server_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )


def digests(node: Node) -> dict[str, Any]:
    response = node.call("GET", "/api/v1/sync/digest")
    assert response.status_code == 200, response.text
    return response.json()


def seeded(db: Path, node: str) -> Memory:
    """The embedded API on ``db`` as node ``node``, keyword-only like the test servers."""
    settings = load_settings(
        None,
        overrides={
            **db_override(str(db)),
            "storage": {**db_override(str(db))["storage"], "node_id": node},
            "embeddings": {"provider": "none"},
        },
        env={},
    )
    return Memory(config=settings)


def test_equal_stores_have_equal_digests_and_verify_says_so(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 2)
    a, b = nodes
    try:
        for i in range(30):
            ns = "proj" if i % 2 else "ops"
            assert a.call("POST", "/api/v1/memories", json={"content": f"fact number {i}", "namespace": ns}).status_code == 201
        wait_for(lambda: len(b.ids()) == 30, 30, "b holds all 30")
        wait_for(lambda: digests(a)["digest"] == digests(b)["digest"], 30, "equal digests")
        report = digests(a)
        assert {n["namespace"]: n["rows"] for n in report["namespaces"]} == {"ops": 15, "proj": 15}
        assert report["node"] == "node-a" and digests(b)["node"] == "node-b"

        done = cli(tmp_path, a.db, "cluster", "verify", "--peers", b.url, "--json")
        assert done.returncode == 0, done.stderr + done.stdout
        verdict = json.loads(done.stdout)
        assert verdict["consistent"] is True and verdict["differing"] == []
        assert [n["node"] for n in verdict["nodes"]] == ["node-a", "node-b"]

        # one namespace changes on a only while b is paused: verify names it, exit code 1
        b.pause()
        try:
            assert a.call("POST", "/api/v1/memories", json={"content": "only on a for now", "namespace": "proj"}).status_code == 201
        finally:
            b.resume()
        # (b may already have it by the time verify runs; then both agree again)
        wait_for(lambda: digests(a)["digest"] == digests(b)["digest"], 30, "equal digests after the new write")

        # bad input: a prefix that is not hex, an empty namespace
        assert a.call("GET", "/api/v1/sync/digest", params={"namespace": "proj", "prefix": "xyz"}).status_code == 422
        bad = a.call("GET", "/api/v1/sync/digest", params={"namespace": ""})
        assert bad.status_code == 422 and "namespace" in bad.text
    finally:
        for node in nodes:
            node.stop()


def _lose_rows(db: Path, memory_id: str, link_source: str) -> None:
    """What a restored backup or a bad disk does: the feed never carries this difference."""
    conn = sqlite3.connect(db)
    register_functions(conn)
    with conn:
        conn.execute("DELETE FROM memory_tags WHERE memory_id = ?", (memory_id,))
        conn.execute("DELETE FROM memories WHERE id = ?", (memory_id,))
        assert conn.execute("DELETE FROM links WHERE source_id = ?", (link_source,)).rowcount == 1
    conn.close()


def test_one_diverged_memory_is_repaired_with_few_rows_exchanged(tmp_path: Path) -> None:
    """2,000 memories (plus links) on two nodes; b loses a memory and a link behind the feed
    while it is stopped; `cluster repair` on b finds both by descending the digest trees and
    exchanges far fewer than 100 rows."""
    with seeded(tmp_path / "node-a.db", "node-a") as memory:
        records = memory.add_many([{"content": f"seeded fact {i}", "namespace": "proj" if i % 3 else "ops"} for i in range(2000)])
        for left, right in zip(records[:50], records[50:100], strict=True):
            memory.link(left.id, right.id, "related_to")
    nodes = mesh(tmp_path, 2, names=("node-a", "node-b"))
    a, b = nodes
    try:
        wait_for(lambda: digests(a)["digest"] == digests(b)["digest"], 120, "b caught up with a")
        lost, linked = records[7].id, records[20].id
        b.stop()  # b stays down until repaired: a running mesh would repair it on its own (next test)
        _lose_rows(Path(str(b.db)), lost, linked)
        before = cli(tmp_path, b.db, "cluster", "verify", "--peers", a.url, "--json")
        assert before.returncode == 1 and json.loads(before.stdout)["differing"] == ["proj"]

        done = cli(tmp_path, b.db, "cluster", "repair", "--peers", a.url, "--json")
        assert done.returncode == 0, done.stderr + done.stdout
        (report,) = json.loads(done.stdout)
        assert report["peer"] == "node-a"
        assert report["memories"] == 2, report
        assert report["rows_exchanged"] <= 100, report
        assert report["applied_here"] >= 1, report
        b.start()
        assert digests(a)["digest"] == digests(b)["digest"]
        assert lost in b.ids()
        assert b.call("GET", f"/api/v1/memories/{lost}").json()["content"] == "seeded fact 7"
        assert [link["target_id"] for link in b.call("GET", f"/api/v1/memories/{linked}/links").json()] == [records[70].id]
        verify = cli(tmp_path, b.db, "cluster", "verify", "--peers", a.url, "--json")
        assert verify.returncode == 0, verify.stdout

        # a second repair has nothing to do and exchanges no rows
        again = cli(tmp_path, b.db, "cluster", "repair", "--peers", a.url, "--json")
        (second,) = json.loads(again.stdout)
        assert second["memories"] == 0 and second["rows_exchanged"] == 0 and second["namespaces_differing"] == []
    finally:
        for node in nodes:
            node.stop()


def test_a_running_mesh_repairs_a_row_lost_behind_the_feed_on_its_own(tmp_path: Path) -> None:
    """Anti-entropy runs every few catch-up rounds: no command needed."""
    nodes = mesh(tmp_path, 2)
    a, b = nodes
    try:
        written = a.call("POST", "/api/v1/memories/batch", json={"items": [{"content": f"fact {i}", "namespace": "p"} for i in range(100)]})
        assert written.status_code == 201
        ids = [m["id"] for m in written.json()]
        wait_for(lambda: len(b.ids()) == 100, 60, "b holds all 100")
        b.stop()
        conn = sqlite3.connect(Path(str(b.db)))
        register_functions(conn)
        with conn:
            conn.execute("DELETE FROM memories WHERE id = ?", (ids[42],))
        conn.close()
        b.start()
        assert ids[42] not in b.ids()
        wait_for(lambda: ids[42] in b.ids(), 90, "anti-entropy brought the lost memory back")
        wait_for(lambda: digests(a)["digest"] == digests(b)["digest"], 30, "equal digests")
    finally:
        for node in nodes:
            node.stop()


def test_verify_and_repair_refuse_bad_peers_clearly(tmp_path: Path) -> None:
    db = tmp_path / "alone.db"
    assert cli(tmp_path, db, "store", "a memory on a node alone", "--namespace", "p").returncode == 0
    bad = cli(tmp_path, db, "cluster", "verify", "--peers", "ftp://10.0.0.2")
    assert bad.returncode != 0 and "http(s) URL" in bad.stderr + bad.stdout
    port = free_port()  # nothing listens there
    down = cli(tmp_path, db, "cluster", "verify", "--peers", f"http://127.0.0.1:{port}", "--json")
    assert down.returncode == 1
    answer = json.loads(down.stdout)
    assert "unreachable" in answer["errors"][f"http://127.0.0.1:{port}"]
    assert answer["consistent"] is False and answer["differing"] == []  # no peer read: not a success
    assert [n["rows"] for n in answer["nodes"][0]["namespaces"]] == [1]  # this node's digests are still shown
    table = cli(tmp_path, db, "cluster", "verify", "--peers", f"http://127.0.0.1:{port}")
    assert table.returncode == 1 and "0 namespaces differ" not in table.stdout
    assert table.stdout.rstrip().endswith("not consistent: 1 peer could not be read, so its digests are unknown"), table.stdout
    repair = cli(tmp_path, db, "cluster", "repair", "--peers", f"http://127.0.0.1:{port}")
    assert repair.returncode != 0 and "unreachable" in repair.stderr + repair.stdout
