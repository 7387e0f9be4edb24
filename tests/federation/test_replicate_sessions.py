"""Sessions replicate with their turns (real nodes): a session started on one node is listed
and rehydrates on the others, and a turn appended there is numbered after the replicated
ones (before, the other nodes said "no session" and numbered their next turn 1 again)."""

from __future__ import annotations

from pathlib import Path

from tests.federation.mesh_support import Node, mesh, wait_for

SETTLE_S = 30


def turns(node: Node, session_id: str) -> list[tuple[int, str]]:
    response = node.call("GET", f"/api/v1/sessions/{session_id}/rehydrate")
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    return [(t["turn"], t["content"]) for t in response.json()["recent"]]


def append(node: Node, session_id: str, content: str) -> int:
    response = node.call("POST", f"/api/v1/sessions/{session_id}/turns", json={"role": "user", "content": content})
    assert response.status_code == 201, response.text
    number: int = response.json()["turn"]
    return number


def test_a_session_started_on_one_node_continues_on_another(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 2)
    try:
        a, b = nodes
        assert [append(a, "trip", text) for text in ("book the train", "and a hotel")] == [1, 2]
        wait_for(lambda: turns(b, "trip") == [(1, "book the train"), (2, "and a hotel")], SETTLE_S, "the session on b")
        listed = b.call("GET", "/api/v1/sessions").json()["sessions"]
        assert [(s["session_id"], s["turns"]) for s in listed] == [("trip", 2)]
        assert append(b, "trip", "near the station") == 3
        want = [(1, "book the train"), (2, "and a hotel"), (3, "near the station")]
        wait_for(lambda: turns(a, "trip") == want, SETTLE_S, "b's turn on a")
        assert append(a, "trip", "for two nights") == 4
    finally:
        for node in nodes:
            node.stop()
