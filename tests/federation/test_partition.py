"""Partition one node with fault-injecting proxies, write on both sides, heal (issue 15)."""

from __future__ import annotations

from pathlib import Path

from tests.federation.mesh_support import Node, proxied_mesh, wait_for


def test_writes_on_both_sides_of_a_partition_converge_to_identical_stores_and_conflicts(tmp_path: Path) -> None:
    nodes, proxies = proxied_mesh(tmp_path, 3)
    a, b, c = nodes
    try:
        x, y, z = (
            a.call("POST", "/api/v1/memories", json={"content": f"{n} before the split", "namespace": "p"}).json()["id"] for n in "xyz"
        )
        wait_for(lambda: all({x, y, z} <= n.ids() for n in nodes), 30, "replicated before the split")

        for (src, dst), proxy in proxies.items():
            if "node-c" in (src, dst):
                proxy.cut()
        assert a.call("PATCH", f"/api/v1/memories/{x}", json={"content": "x as the majority side says"}).status_code == 200
        assert c.call("PATCH", f"/api/v1/memories/{x}", json={"content": "x as the cut-off node says"}).status_code == 200
        assert a.call("DELETE", f"/api/v1/memories/{y}").status_code == 200
        assert c.call("PATCH", f"/api/v1/memories/{y}", json={"content": "y edited while cut off"}).status_code == 200
        assert a.call("DELETE", f"/api/v1/memories/{z}").status_code == 200
        mine = a.call("POST", "/api/v1/memories", json={"content": "written on the majority side", "namespace": "p"}).json()["id"]
        theirs = c.call("POST", "/api/v1/memories", json={"content": "written while cut off", "namespace": "p"}).json()["id"]
        wait_for(lambda: z not in b.ids() and mine in b.ids(), 30, "the majority side agrees")
        assert z in c.ids() and theirs not in a.ids()  # the partition holds

        for proxy in proxies.values():
            proxy.heal()
        wait_for(lambda: a.state() == b.state() == c.state(), 60, "identical stores after healing")
        ids = a.ids()
        assert z not in ids  # the delete nobody contested stays
        assert {mine, theirs} <= ids

        def conflict_ids(node: Node) -> tuple[str, ...]:
            return tuple(sorted(item["id"] for item in node.call("GET", "/api/v1/sync/conflicts").json()))

        wait_for(lambda: len({conflict_ids(n) for n in nodes}) == 1, 30, "the same conflicts on every node")
        conflicts = [n.call("GET", "/api/v1/sync/conflicts").json() for n in nodes]
        assert conflicts[0] == conflicts[1] == conflicts[2]
        assert {item["memory_id"] for item in conflicts[0]} == {x, y}  # both contested memories recorded, loser kept
        kept = a.state()[x][0]
        lost = next(item for item in conflicts[0] if item["memory_id"] == x)["loser"]["content"]
        assert {kept, lost} == {"x as the majority side says", "x as the cut-off node says"}
    finally:
        for node in nodes:
            node.stop()
        for proxy in proxies.values():
            proxy.close()
