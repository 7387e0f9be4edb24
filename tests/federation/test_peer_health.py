"""A mesh's health tells the truth about its peers (probe24 H1, M1, L1, L2): a peer that
stopped while nothing was queued for it shows as down with its error, in ``/readyz``, in
``memmesh_peer_up``, in the status JSON and in the CLI's table, and as up again once it is
back; a node taken out of ``--peers`` is listed as ``removed``, and neither counted nor
left to make the node degraded for good."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.federation.mesh_support import Node, mesh, start_mesh, wait_for
from tests.http.http_support import server_env

SETTLE_S = 30


def cli_status(tmp_path: Path, node: Node) -> tuple[dict[str, Any], str]:
    """``memmesh cluster status`` of ``node``'s store from another process: the JSON and the table."""

    def run(*extra: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", str(node.db), "cluster", "status", *extra],
            env={**server_env(tmp_path), "COLUMNS": "250"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    return json.loads(run("--json")), run()


def peer_named(status: dict[str, Any], node_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in status["peers"] if p["node_id"] == node_id)
    return found


def table_row(table: str, node_id: str) -> str:
    return next(line for line in table.splitlines() if f" {node_id} " in line)


def test_an_idle_peer_that_stops_is_down_everywhere_with_its_error_and_up_once_back(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 2)  # catch-up every second, nothing written: no push will ever fail
    a, b = nodes
    try:
        wait_for(lambda: a.call("GET", "/readyz").json().get("peers_up") == 1, SETTLE_S, "b up at first")
        b.stop()

        wait_for(lambda: not a.status()["peers"][0]["up"], SETTLE_S, "a's status sees b down")
        (peer,) = a.status()["peers"]
        assert peer["node_id"] == "node-b" and "unreachable" in peer["last_error"] and not peer["removed"]
        wait_for(lambda: a.call("GET", "/readyz").json()["peers_up"] == 0, 10, "readyz sees b down")
        ready = a.call("GET", "/readyz").json()
        assert ready["status"] == "degraded" and ready["peers"] == 1
        assert ready["components"]["peers"]["status"] == "degraded" and "unreachable" in ready["components"]["peers"]["reason"]
        assert 'memmesh_peer_up{peer="node-b"} 0.0' in a.call("GET", "/metrics").text
        status, table = cli_status(tmp_path, a)  # read from the store, by a process with no mesh
        cli_peer = peer_named(status, "node-b")
        assert cli_peer["up"] is False and "unreachable" in cli_peer["last_error"]
        assert " down " in table_row(table, "node-b") and "unreachable" in table

        b.start()
        wait_for(lambda: a.status()["peers"][0]["up"], SETTLE_S, "a's status sees b up again")
        assert a.status()["peers"][0]["last_error"] is None
        wait_for(lambda: a.call("GET", "/readyz").json()["peers_up"] == 1, 10, "readyz sees b up again")
        assert a.call("GET", "/readyz").json()["components"]["peers"]["status"] == "ok"
        assert 'memmesh_peer_up{peer="node-b"} 1.0' in a.call("GET", "/metrics").text
        status, table = cli_status(tmp_path, a)
        assert peer_named(status, "node-b")["up"] is True and peer_named(status, "node-b")["last_error"] is None
        assert " up " in table_row(table, "node-b")
    finally:
        for node in nodes:
            node.stop()


def test_a_node_taken_out_of_peers_is_listed_as_removed_and_not_counted(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 3)
    a, b, c = nodes
    try:
        c.stop()
        kept = a.call("POST", "/api/v1/memories", json={"content": "written after c left", "namespace": "m"}).json()["id"]
        wait_for(lambda: kept in b.ids() and peer_named(a.status(), "node-b")["outbox_changes"] == 0, SETTLE_S, "b has it")

        # a restarts without c in --peers, its clock two minutes ahead: c's outbox (never to be
        # shipped) is then older than the 60 s after which a peer's outbox makes a node degraded
        a.stop()
        a.env["MEMMESH_FEDERATION_CLOCK_OFFSET_MS"] = "120000"
        a.start("--peers", b.url, "--catchup-interval-secs", "1", "--quorum-writes", "2")
        wait_for(lambda: a.call("GET", "/readyz").json().get("peers_up") == 1, SETTLE_S, "b up")

        gone = peer_named(a.status(), "node-c")
        assert gone["removed"] is True and gone["up"] is False and gone["url"] == c.url
        assert gone["outbox_changes"] >= 1 and gone["lag_seconds"] > 60  # its row and cursors are kept
        assert peer_named(a.status(), "node-b")["up"] is True
        ready = a.call("GET", "/readyz").json()
        assert ready["status"] == "ok" and ready["peers"] == 1 and ready["peers_up"] == 1, ready
        assert ready["components"]["outbox"]["status"] == "ok"
        metrics = a.call("GET", "/metrics").text
        assert 'memmesh_peer_up{peer="node-b"} 1.0' in metrics and "node-c" not in metrics

        status, table = cli_status(tmp_path, a)  # another process: the peers a serves with come from the store
        assert peer_named(status, "node-c")["removed"] is True and peer_named(status, "node-b")["removed"] is False
        assert status["quorum_writes"] == 2
        assert " removed " in table_row(table, "node-c") and " up " in table_row(table, "node-b")
        assert "quorum writes 2" in table
    finally:
        for node in nodes:
            node.stop()


def test_a_new_node_its_peer_does_not_list_yet_shows_that_peer_down_with_the_403_until_it_is_restarted(tmp_path: Path) -> None:
    b = Node(tmp_path, "node-b").start()  # an existing node, not yet restarted with the new node's URL
    d = Node(tmp_path, "node-d")
    try:
        d.start("--peers", b.url, "--catchup-interval-secs", "1")
        wait_for(lambda: d.status()["peers"][0].get("node_id") == "node-b", SETTLE_S, "d learned b's id")
        wait_for(lambda: not d.status()["peers"][0]["up"], SETTLE_S, "d sees b refuse it")
        error = d.status()["peers"][0]["last_error"]
        assert "403" in error and "unknown node id 'node-d'" in error and "--peers" in error
        wait_for(lambda: d.call("GET", "/readyz").json()["peers_up"] == 0, 10, "d's readyz agrees")

        b.stop()
        b.start("--peers", d.url, "--catchup-interval-secs", "1")  # what federation.md says to do
        wait_for(lambda: d.status()["peers"][0]["up"], SETTLE_S, "b accepts d once restarted")
        assert d.status()["peers"][0]["last_error"] is None
    finally:
        d.stop()
        b.stop()


def test_only_peers_this_node_pushes_to_make_its_outbox_degraded(tmp_path: Path) -> None:
    """A node whose store was replaced (same URL, new node id) leaves its old row behind with
    no URL: nothing is ever shipped to it again, so its growing lag must not make the node
    degraded for good. A peer this node does push to still does, after
    ``federation.outbox_lag_secs``."""
    lag_env = {"MEMMESH_FEDERATION_OUTBOX_LAG_SECS": "2"}
    (a, b), _ = start_mesh(tmp_path, 2, env_for=lambda node: lag_env)
    new_b = Node(tmp_path, "node-e", port=b.port)  # b's disk replaced: a new store at b's URL
    new_b.env.update(lag_env)
    try:
        b.stop()
        new_b.start("--peers", a.url, "--catchup-interval-secs", "1")
        wrote = a.call("POST", "/api/v1/memories", json={"content": "after b was replaced", "namespace": "m"}).json()["id"]
        wait_for(lambda: wrote in new_b.ids(), SETTLE_S, "the new node at b's URL gets a's writes")

        def old_row_lags() -> bool:
            old = peer_named(a.status(), "node-b")
            return old["url"] is None and old["outbox_changes"] >= 1 and (old["lag_seconds"] or 0) > 2

        wait_for(old_row_lags, SETTLE_S, "the old row has no URL and lags past outbox_lag_secs")
        ready = a.call("GET", "/readyz").json()
        assert ready["components"]["outbox"]["status"] == "ok", ready["components"]["outbox"]

        new_b.stop()  # a peer a does push to: its lag counts
        a.call("POST", "/api/v1/memories", json={"content": "while the new b is down", "namespace": "m"}).raise_for_status()
        wait_for(lambda: a.call("GET", "/readyz").json()["components"]["outbox"]["status"] == "degraded", SETTLE_S, "outbox degraded")
        reason = a.call("GET", "/readyz").json()["components"]["outbox"]["reason"]
        assert new_b.url in reason and "federation.outbox_lag_secs" in reason and "?" not in reason
    finally:
        for node in (a, b, new_b):
            node.stop()
