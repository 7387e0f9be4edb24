"""Namespace standards replicate across the mesh (issue 15, schema 20): a standard set or
cleared on one node is enforced on every node; concurrent set/clear on two partitioned nodes
resolves by last writer on (HLC, node id), the same on both; a clear is a tombstone an older
set never revives; replays change nothing; a malformed standard in a batch is refused whole.
In-process nodes on both backends for the merge rules, real ``memmesh serve`` nodes for the
faces (PostgreSQL from scripts/pg_test_server.py: fails, never skips)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.federation.mesh_support import Node, mesh, proxied_mesh, wait_for
from tests.federation.test_catchup_backends import node, pg_url

from memmesh.chaos.nodes import stop_mesh
from memmesh.errors import InvalidInputError
from memmesh.federation.changes import SyncBatch, SyncItem, SyncPage
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.service import Service

__all__ = ["pg_url"]


@pytest.fixture(params=["sqlite", "postgres"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Service, Service]]:
    """Two in-process nodes that know each other: a on SQLite, b on the parametrised backend."""
    b_url = f"sqlite:///{tmp_path / 'b.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    a, b = node(f"sqlite:///{tmp_path / 'a.db'}", "node-a", "node-b"), node(b_url, "node-b", "node-a")
    yield a, b
    a.close()
    b.close()


def sync(source: Service, target: Service) -> list[SyncPage]:
    """Pull ``source``'s feed into ``target`` from where ``target`` left off; the pages."""
    peer = next(p for p in target.store.peers() if p.node_id == source.node_id)
    since, pages = peer.recv_seq, []
    while True:
        page = source.replica.feed(peer=target.node_id, since=since, limit=50, omit_own=True, principal=P)
        target.replica.apply(page, principal=P)
        pages.append(page)
        since = page.upto
        if not page.more:
            return pages


def replay(pages: list[SyncPage], target: Service) -> Any:
    """Apply the pages' items again as a batch outside the feed (no cursor can skip it)."""
    items = [item for page in pages for item in page.items]
    return target.replica.apply(SyncBatch(node=pages[0].node, items=items), principal=P)


def rows(service: Service) -> list[tuple[Any, ...]]:
    """Every standard row a node holds, cleared ones too, with its stamp (not its local seq)."""
    with service.store.reading() as conn:
        found = conn.execute(
            "SELECT namespace, governance, default_tier, ttl_seconds, retention_days, required_tags, updated_at, updated_by, "
            "cleared, hlc, node FROM namespace_standards ORDER BY namespace"
        ).fetchall()
    return [tuple(r) for r in found]


def test_set_and_clear_reach_the_peer_and_a_replay_changes_nothing(pair: tuple[Service, Service]) -> None:
    a, b = pair
    a.governance.set_standard("legal", governance={"write": "deny"}, required_tags=["contract"], principal=P)
    first = sync(a, b)
    assert [s.namespace for s in b.governance.list_standards(principal=P)] == ["legal"]
    assert b.governance.get_standard("legal/eu", principal=P).governance["write"].value == "deny"
    assert rows(a) == rows(b)

    report = replay(first, b)
    assert report.applied == 0 and report.duplicates >= 1
    assert rows(a) == rows(b)

    a.governance.clear_standard("legal", principal=P)
    sync(a, b)
    assert b.governance.list_standards(principal=P) == []
    assert rows(a) == rows(b) and rows(b)[0][8] == 1  # kept as a tombstone row

    # the older set, pushed again after the clear, never brings the standard back
    assert replay(first, b).applied == 0
    assert b.governance.list_standards(principal=P) == []
    # a set after the clear is newer and wins
    a.governance.set_standard("legal", governance={"delete": "approve"}, principal=P)
    sync(a, b)
    assert [s.governance for s in b.governance.list_standards(principal=P)] == [{"delete": "approve"}]


@pytest.mark.parametrize("first", ["clear", "set"])
def test_concurrent_set_and_clear_on_partitioned_nodes_end_the_same_everywhere(pair: tuple[Service, Service], first: str) -> None:
    a, b = pair
    a.governance.set_standard("ops", governance={"write": "approve"}, principal=P)
    sync(a, b)
    sync(b, a)
    # partitioned: a clears while b replaces it; the later stamp must win on both
    # (10 ms apart, so the second one's HLC is later although the nodes do not talk)
    if first == "clear":
        a.governance.clear_standard("ops", principal=P)
        time.sleep(0.01)
        b.governance.set_standard("ops", governance={"write": "deny"}, ttl_seconds=60, principal=P)
    else:
        b.governance.set_standard("ops", governance={"write": "deny"}, ttl_seconds=60, principal=P)
        time.sleep(0.01)
        a.governance.clear_standard("ops", principal=P)
    later = max([rows(a)[0], rows(b)[0]], key=lambda r: (r[9], r[10]))
    sync(a, b)
    sync(b, a)
    assert rows(a) == rows(b) == [later]
    expected = [] if later[8] else [{"write": "deny"}]
    assert [s.governance for s in a.governance.list_standards(principal=P)] == expected
    assert [s.governance for s in b.governance.list_standards(principal=P)] == expected
    assert (later[8] == 1) == (first == "set")  # the later write is the one kept


def test_a_malformed_standard_in_a_batch_is_refused_and_nothing_is_written(pair: tuple[Service, Service]) -> None:
    a, b = pair
    a.add({"content": "a fact that travels with the bad item", "namespace": "ops"}, principal=P)
    a.governance.set_standard("ops", governance={"write": "approve"}, principal=P)
    page = a.replica.feed(peer="node-b", since=0, principal=P)
    good = [item.model_dump(mode="json", exclude_none=True) for item in page.items]
    before = (rows(b), sorted(m.id for m in b.store.iter_memories()), b.store.change_counter())
    for bad in ({"write": "maybe"}, {"erase": "deny"}):
        data = [dict(item) for item in good]
        for item in data:
            if "standard" in item:
                item["standard"] = {**item["standard"], "governance": bad}
        batch = SyncBatch(node="node-a", items=[SyncItem.model_validate(item) for item in data])
        with pytest.raises(InvalidInputError, match="replicated standard of namespace 'ops'"):
            b.replica.apply(batch, principal=P)
        assert (rows(b), sorted(m.id for m in b.store.iter_memories()), b.store.change_counter()) == before
    with pytest.raises(ValueError, match="hlc"):
        SyncItem.model_validate({"seq": 1, "standard": {**good[-1]["standard"], "hlc": "yesterday"}})


def test_a_standard_set_on_one_served_node_is_enforced_on_its_peer(tmp_path: Path) -> None:
    a, b = mesh(tmp_path, 2)
    try:
        r = a.call("PUT", "/api/v1/namespaces/legal/standard", json={"governance": {"write": "deny"}})
        assert r.status_code == 200, r.text

        def denied_on_b() -> bool:
            return b.call("GET", "/api/v1/namespaces/legal/standard").json().get("standard") is not None

        wait_for(denied_on_b, 30, "the standard on node b")
        r = b.call("POST", "/api/v1/memories", json={"content": "a contract clause", "namespace": "legal"})
        assert r.status_code == 403, r.text
        assert "denied by the standard set on 'legal'" in r.json()["error"]["message"]

        # a malformed standard pushed to b: 422, nothing changes
        hello = a.call("GET", "/api/v1/sync/hello").json()
        bad = {
            "node": hello["node"],
            "items": [
                {
                    "seq": 0,
                    "standard": {
                        "namespace": "legal",
                        "governance": {"write": "sometimes"},
                        "updated_at": "2026-01-01T00:00:00Z",
                        "hlc": hello["hlc"],
                        "node": hello["node"],
                    },
                }
            ],
        }
        r = b.call("POST", "/api/v1/sync/push", json=bad)
        assert r.status_code == 422, r.text
        assert "governance.write" in r.json()["error"]["message"]
        assert b.call("GET", "/api/v1/namespaces/legal/standard").json()["standard"]["governance"] == {"write": "deny"}

        assert a.call("DELETE", "/api/v1/namespaces/legal/standard").status_code == 200
        wait_for(lambda: not denied_on_b(), 30, "the clear on node b")
        r = b.call("POST", "/api/v1/memories", json={"content": "a contract clause", "namespace": "legal"})
        assert r.status_code == 201, r.text
    finally:
        a.stop()
        b.stop()


def test_served_nodes_split_by_a_partition_end_with_the_same_standard(tmp_path: Path) -> None:
    """Three real nodes behind fault-injecting proxies: node c is cut off, a replaces the
    standard while c clears it (later), the partition heals: every node holds c's clear."""
    nodes, proxies = proxied_mesh(tmp_path, 3)
    a, b, c = nodes

    def standard(node: Node) -> Any:
        return node.call("GET", "/api/v1/namespaces/ops/standard").json().get("standard")

    try:
        assert a.call("PUT", "/api/v1/namespaces/ops/standard", json={"governance": {"write": "approve"}}).status_code == 200
        wait_for(lambda: all(standard(n) is not None for n in nodes), 30, "the standard on every node")
        for (src, dst), proxy in proxies.items():
            if "node-c" in (src, dst):
                proxy.cut()
        assert a.call("PUT", "/api/v1/namespaces/ops/standard", json={"governance": {"write": "deny"}}).status_code == 200
        wait_for(lambda: (standard(b) or {}).get("governance") == {"write": "deny"}, 30, "the majority side agrees")
        time.sleep(0.05)
        assert c.call("DELETE", "/api/v1/namespaces/ops/standard").status_code == 200
        assert standard(c) is None and standard(a) is not None  # the partition holds
        for proxy in proxies.values():
            proxy.heal()
        wait_for(lambda: all(standard(n) is None for n in nodes), 60, "the later clear on every node")
        r = b.call("POST", "/api/v1/memories", json={"content": "allowed again", "namespace": "ops"})
        assert r.status_code == 201, r.text
    finally:
        stop_mesh(nodes, proxies)
