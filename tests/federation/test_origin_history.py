"""Full origin history (issue 15 / 24): a node that receives only a memory's latest state
(it was down while the memory was edited) still shows every version the origin recorded,
also when it hears of the memory only through a third node; replays add nothing twice.
Real ``memmesh serve`` nodes, history read through the REST API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.federation.mesh_support import Node, mesh, wait_for


def history(node: Node, memory_id: str) -> list[dict[str, Any]]:
    answer = node.call("GET", f"/api/v1/memories/{memory_id}/history")
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def authored(entries: list[dict[str, Any]]) -> list[tuple[str, str | None, str, Any]]:
    """The entries the writing nodes recorded (not a node's records of applying a version)."""
    return [
        (e["event"], e["actor"], e["at"], (e.get("new") or {}).get("content"))
        for e in entries
        if not (e["actor"] or "").startswith("sync:")
    ]


def holds(node: Node, memory_id: str, content: str) -> bool:
    answer = node.call("GET", f"/api/v1/memories/{memory_id}")
    return answer.status_code == 200 and answer.json()["content"] == content


def test_a_node_that_missed_the_edits_shows_every_version_of_the_origin(tmp_path: Path) -> None:
    a, b, c = mesh(tmp_path, 3)
    try:
        b.stop()
        c.stop()
        made = a.call("POST", "/api/v1/memories", json={"content": "deploy at 5pm", "namespace": "ops"})
        assert made.status_code == 201
        memory_id = made.json()["id"]
        for content in ("deploy at 6pm", "deploy at 7pm, after the freeze"):
            assert a.call("PATCH", f"/api/v1/memories/{memory_id}", json={"content": content}).status_code == 200
        origin = authored(history(a, memory_id))
        assert [(event, content) for event, _, _, content in origin] == [
            ("add", "deploy at 5pm"),
            ("update", "deploy at 6pm"),
            ("update", "deploy at 7pm, after the freeze"),
        ]

        # b comes back and catches up: it receives only the latest state, yet its history
        # shows the origin's three versions, followed by its own record of applying it
        b.start()
        wait_for(lambda: holds(b, memory_id, "deploy at 7pm, after the freeze"), 60, "b caught up")
        on_b = history(b, memory_id)
        assert authored(on_b) == origin
        assert on_b[-1]["actor"] == "sync:node-a" and on_b[-1]["new"]["origin"]["node"] == "node-a"

        # c hears of it only through b (a is down): the origin's versions travel on
        a.stop()
        c.start()
        wait_for(lambda: holds(c, memory_id, "deploy at 7pm, after the freeze"), 60, "c caught up from b")
        assert authored(history(c, memory_id)) == origin

        # a comes back; everyone syncs with everyone again: no entry arrives twice anywhere
        a.start()
        assert b.call("PATCH", f"/api/v1/memories/{memory_id}", json={"content": "deploy at 8pm"}).status_code == 200
        for node in (a, b, c):
            wait_for(lambda node=node: holds(node, memory_id, "deploy at 8pm"), 60, f"{node.name} has the edit made on b")
        full = authored(history(b, memory_id))
        assert full[:3] == origin and [(e, content) for e, _, _, content in full[3:]] == [("update", "deploy at 8pm")]
        for node in (a, b, c):
            assert authored(history(node, memory_id)) == full, node.name
    finally:
        for node in (a, b, c):
            node.stop()


def test_shipped_history_is_checked(tmp_path: Path) -> None:
    """Bad input: history attached to a link, or naming another memory, is a malformed batch."""
    (a,) = mesh(tmp_path, 1)
    try:
        hello = a.call("GET", "/api/v1/sync/hello").json()
        version = {"clock": {"node-z": 1}, "node": "node-z", "hlc": hello["hlc"]}
        entry = {"memory_id": "other", "event": "add", "new": {"content": "x"}, "actor": "someone", "at": "2026-11-30T00:00:00Z"}
        tomb = {"id": "m1", "namespace": "ops", "deleted_at": "2026-11-30T00:00:00Z", "version": version}
        batch = {"node": "node-z", "items": [{"seq": 0, "tombstone": tomb, "history": [entry]}]}
        answer = a.call("POST", "/api/v1/sync/push", json=batch)
        assert answer.status_code == 422, answer.text
        assert "names another memory" in answer.json()["error"]["message"]
    finally:
        a.stop()
