"""A 3-node mesh of real ``memmesh serve`` processes with W = 2 (issue 15)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from tests.federation.mesh_support import Node, mesh, wait_for

SETTLE_S = 30


def test_four_agents_fifty_writes_each_reach_every_node(cluster: list[Node]) -> None:
    def agent(number: int) -> list[tuple[int, str]]:
        out = []
        for i in range(50):
            node = cluster[(number + i) % 3]
            r = node.call("POST", "/api/v1/memories", json={"content": f"agent {number} fact {i}", "namespace": f"agents/a{number}"})
            out.append((r.status_code, r.json().get("id", r.text)))
        return out

    with ThreadPoolExecutor(4) as pool:
        results = [row for rows in pool.map(agent, range(4)) for row in rows]
    assert [code for code, _ in results] == [201] * 200
    ids = {mid for _, mid in results}
    assert len(ids) == 200
    wait_for(lambda: all(node.ids() == ids for node in cluster), SETTLE_S, "all 200 writes on every node")
    states = [node.state() for node in cluster]
    assert states[0] == states[1] == states[2]
    wait_for(lambda: all(p["outbox_changes"] == 0 for n in cluster for p in n.status()["peers"]), SETTLE_S, "empty outboxes")


def test_one_peer_down_still_201_both_down_503_and_the_write_still_replicates(cluster: list[Node]) -> None:
    a, b, c = cluster
    c.stop()
    r = a.call("POST", "/api/v1/memories", json={"content": "with one peer down", "namespace": "probe"})
    assert r.status_code == 201, r.text
    b.stop()
    r = a.call(
        "POST", "/api/v1/memories", json={"id": "01a20000-0000-7000-8000-000000000001", "content": "both down", "namespace": "probe"}
    )
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "quorum_not_met"
    assert error["details"]["got"] == 1 and error["details"]["needed"] == 2 and error["details"]["reason"]
    assert r.headers["Retry-After"] == "1"
    assert "01a20000-0000-7000-8000-000000000001" in a.ids()  # a 503 is not a rollback
    retry = a.call(
        "POST", "/api/v1/memories", json={"id": "01a20000-0000-7000-8000-000000000001", "content": "both down", "namespace": "probe"}
    )
    assert retry.status_code == 503  # the idempotent retry names the same memory, no duplicate
    assert len([m for m in a.ids() if m == "01a20000-0000-7000-8000-000000000001"]) == 1
    b.start()
    c.start()
    wait_for(lambda: a.ids() == b.ids() == c.ids() and len(a.ids()) == 2, SETTLE_S, "the 503 write reached the restarted peers")
    r = a.call(
        "POST", "/api/v1/memories", json={"id": "01a20000-0000-7000-8000-000000000001", "content": "both down", "namespace": "probe"}
    )
    assert r.status_code == 200 and r.json()["existed"] is True  # the client's retry now meets the quorum


def test_kill_9_during_writes_then_restart_loses_no_acknowledged_write(cluster: list[Node]) -> None:
    a, b, c = cluster
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(number: int) -> None:
        i = 0
        while not stop.is_set():
            node = cluster[(number + i) % 3]
            try:
                r = node.call("POST", "/api/v1/memories", json={"content": f"w{number} {i}", "namespace": "chaos"}, timeout=10)
            except httpx.HTTPError:
                r = None
            if r is not None and r.status_code == 201:
                with lock:
                    acknowledged.append(r.json()["id"])
            i += 1

    for node in (c, a):  # their restarts come from warm spares importing beside the writes (memmesh.chaos.warm)
        node.prepare_spare()
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    c.kill()
    time.sleep(1.5)
    c.start()
    time.sleep(1.0)
    a.kill()  # the node that received writes dies too, mid-flight
    time.sleep(1.0)
    a.start()
    time.sleep(1.0)
    # enough writes to mean something, however slow the machine (a loaded one may fit fewer into these ~6 s)
    wait_for(lambda: len(acknowledged) > 20, 60, "more than 20 acknowledged writes")
    stop.set()
    for t in threads:
        t.join()
    assert len(acknowledged) > 20
    want = set(acknowledged)
    wait_for(lambda: all(want <= node.ids() for node in cluster), 60, "every acknowledged write on every node")
    wait_for(lambda: a.state() == b.state() == c.state(), 60, "identical stores")
    for node in (c, a):
        node.drop_spare()  # none left if both restarts used theirs


def test_updates_deletes_and_links_replicate_and_a_delete_never_comes_back(cluster: list[Node]) -> None:
    a, b, c = cluster
    x = a.call("POST", "/api/v1/memories", json={"content": "the deploy day is Tuesday", "namespace": "ops"}).json()["id"]
    y = b.call("POST", "/api/v1/memories", json={"content": "the deploy window is 2pm", "namespace": "ops"}).json()["id"]
    assert c.call("PATCH", f"/api/v1/memories/{x}", json={"content": "the deploy day is Wednesday"}).status_code == 200
    assert b.call("POST", "/api/v1/links", json={"source_id": x, "target_id": y, "relation": "related_to"}).status_code == 201
    wait_for(lambda: all(len(n.call("GET", f"/api/v1/memories/{x}/links").json()) == 1 for n in cluster), SETTLE_S, "link everywhere")
    wait_for(
        lambda: all(n.call("GET", f"/api/v1/memories/{x}").json()["content"] == "the deploy day is Wednesday" for n in cluster),
        SETTLE_S,
        "update",
    )
    assert a.call("DELETE", f"/api/v1/memories/{x}").status_code == 200
    wait_for(lambda: all(x not in n.ids() for n in cluster), SETTLE_S, "delete everywhere")
    # links go with the memory, on every node
    assert all(n.call("GET", f"/api/v1/memories/{y}/links").json() == [] for n in cluster)
    # restart a node: catch-up from scratch cursors must not revive the deleted memory
    c.stop()
    c.start()
    time.sleep(3)
    assert all(x not in n.ids() for n in cluster)
    history = b.call("GET", f"/api/v1/memories/{x}/history").json()
    assert [e["event"] for e in history][-1] == "delete"


def test_a_node_keeps_its_id(tmp_path: Path) -> None:
    node = Node(tmp_path, "node-x").start()
    node.call("POST", "/api/v1/memories", json={"content": "anything", "namespace": "t"})
    node.stop()
    renamed = Node(tmp_path, "node-y", port=node.port)
    renamed.db = node.db
    renamed.start(wait=False)
    assert renamed.proc is not None and renamed.proc.wait(30) != 0
    assert "belongs to node 'node-x'" in renamed.log.read_text()
    node.start()
    assert node.status()["node_id"] == "node-x"
    node.stop()


def test_two_nodes_without_quorum_replicate_both_ways(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 2)
    try:
        a, b = nodes
        ids = {a.call("POST", "/api/v1/memories", json={"content": f"a {i}", "namespace": "t"}).json()["id"] for i in range(10)}
        ids |= {b.call("POST", "/api/v1/memories", json={"content": f"b {i}", "namespace": "t"}).json()["id"] for i in range(10)}
        wait_for(lambda: a.ids() == b.ids() == ids, SETTLE_S, "both ways")
    finally:
        for node in nodes:
            node.stop()


def test_cluster_status_metrics_and_readyz_show_the_mesh(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from tests.http.http_support import server_env

    nodes = mesh(tmp_path, 2)
    try:
        a, b = nodes
        a.call("POST", "/api/v1/memories", json={"content": "counted", "namespace": "s"})
        wait_for(lambda: a.status()["peers"][0]["outbox_changes"] == 0, 30, "acknowledged")
        # /readyz probes at most once a second: the report may be a moment old
        wait_for(lambda: a.call("GET", "/readyz").json()["peers_up"] == 1, 10, "readyz sees the peer")
        assert a.call("GET", "/readyz").json()["peers"] == 1
        metrics = a.call("GET", "/metrics").text
        assert 'memmesh_peer_outbox_changes{peer="node-b"} 0.0' in metrics and 'memmesh_peer_up{peer="node-b"} 1.0' in metrics
        b.stop()
        a.call("POST", "/api/v1/memories", json={"content": "waiting for b", "namespace": "s"})
        wait_for(lambda: a.status()["peers"][0]["last_error"], 30, "b reported down")
        wait_for(lambda: a.call("GET", "/readyz").json()["peers_up"] == 0, 10, "readyz sees b down")
        assert 'memmesh_peer_up{peer="node-b"} 0.0' in a.call("GET", "/metrics").text
        proc = subprocess.run(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", str(a.db), "cluster", "status", "--json"],
            env=server_env(tmp_path),
            capture_output=True,
            text=True,
            check=True,
        )
        status = json.loads(proc.stdout)
        assert status["node_id"] == "node-a"
        (peer,) = status["peers"]
        assert peer["node_id"] == "node-b" and peer["outbox_changes"] >= 1 and peer["last_contact"] and peer["last_error"]
        table = subprocess.run(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", str(a.db), "cluster", "status"],
            env={**server_env(tmp_path), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "node node-a" in table and "node-b" in table
    finally:
        for node in nodes:
            node.stop()


def test_a_node_restarted_on_a_new_store_with_a_new_id_is_learned_and_filled(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 2)
    a, b = nodes
    try:
        before = {a.call("POST", "/api/v1/memories", json={"content": f"old {i}", "namespace": "n"}).json()["id"] for i in range(5)}
        wait_for(lambda: b.ids() == before, 30, "replicated")
        b.stop()
        fresh = Node(tmp_path, "node-b2", port=b.port)  # same URL, new store, new id
        fresh.start("--peers", a.url, "--catchup-interval-secs", "1")
        nodes.append(fresh)
        mine = fresh.call("POST", "/api/v1/memories", json={"content": "from the new node", "namespace": "n"}).json()["id"]
        wait_for(lambda: fresh.ids() == before | {mine} and a.ids() == before | {mine}, 30, "both ways with the new id")
        assert {p["node_id"] for p in a.status()["peers"] if p["url"] == fresh.url} == {"node-b2"}
    finally:
        for node in nodes:
            node.stop()
