"""Session guarantees across nodes (issue 24): a client that talks to a different node on
every operation gets read-your-writes and monotonic reads, or an explicit 409 ``not_yet``;
never a silent older value."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.federation.mesh_support import mesh

from memmesh.errors import InvalidInputError, NotYetError
from memmesh.federation.session import CAUSALITY_HEADER, SessionToken, format_token, merge_tokens, parse_token
from memmesh.interfaces.client import Client


def test_a_client_hopping_nodes_on_every_operation_reads_its_writes_and_never_goes_back(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 3)
    session = SessionToken()
    clients = [Client(node.url, session=session, retries=5, max_retry_wait=1) for node in nodes]
    try:
        memory = clients[0].add("version 0 of the deploy note", namespace="ops")
        for step in range(1, 31):
            writer = clients[step % 3]
            reader = clients[(step + 1) % 3]
            writer.update(memory.id, content=f"version {step} of the deploy note")
            # read-your-writes on the next node, at once: never an older version
            assert reader.get(memory.id).content == f"version {step} of the deploy note"
            # monotonic reads on the third node
            assert clients[(step + 2) % 3].get(memory.id).content == f"version {step} of the deploy note"
            if step % 10 == 0:
                created = writer.add(f"fact written at step {step}", namespace="ops")
                assert reader.get(created.id).content == f"fact written at step {step}"
        assert set(parse_token(session.value)) == {"node-a", "node-b", "node-c"}
    finally:
        for client in clients:
            client.close()
        for node in nodes:
            node.stop()


def test_a_node_that_has_not_caught_up_answers_not_yet_instead_of_an_older_value(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 2)
    a, b = nodes
    try:
        first = a.call("POST", "/api/v1/memories", json={"content": "written on a", "namespace": "ops"})
        assert first.status_code == 201
        token = first.headers[CAUSALITY_HEADER]
        assert parse_token(token)["node-a"] >= 1
        b.pause()  # b cannot receive anything while a changes the memory, and a dies before it can push
        try:
            second = a.call(
                "PATCH", f"/api/v1/memories/{first.json()['id']}", json={"content": "changed on a"}, headers={CAUSALITY_HEADER: token}
            )
            assert second.status_code == 200
            newer = second.headers[CAUSALITY_HEADER]
            a.kill()
        finally:
            b.resume()
        held = b.call("GET", f"/api/v1/memories/{first.json()['id']}")
        assert held.status_code in (200, 404)  # without a token: whatever b holds
        refused = b.call("GET", f"/api/v1/memories/{first.json()['id']}", headers={CAUSALITY_HEADER: newer})
        assert refused.status_code == 409, refused.text
        body = refused.json()["error"]
        assert body["code"] == "not_yet" and body["details"]["missing"] == {"node-a": parse_token(newer)["node-a"]}
        assert refused.headers["Retry-After"] == "1"
        with Client(b.url, session=SessionToken(newer), retries=0) as client, pytest.raises(NotYetError):
            client.get(first.json()["id"])
        # a write with that token is refused too: it would not follow what the session saw
        write = b.call(
            "POST", "/api/v1/memories", json={"content": "not before catching up", "namespace": "ops"}, headers={CAUSALITY_HEADER: newer}
        )
        assert write.status_code == 409
        assert "not before catching up" not in {m[0] for m in b.state().values()}
        # a comes back and pushes: the same token is now covered, and b answers the newer value
        a.start()
        with Client(b.url, session=SessionToken(newer), retries=5, max_retry_wait=1) as client:
            assert client.get(first.json()["id"]).content == "changed on a"
        # bad input: a token that is not node:number
        bad = b.call("GET", "/api/v1/memories", headers={CAUSALITY_HEADER: "node-a=3"})
        assert bad.status_code == 422 and "node-id:change-number" in bad.json()["error"]["message"]
    finally:
        for node in nodes:
            node.stop()


def test_tokens_parse_merge_and_refuse_garbage() -> None:
    assert parse_token("node-b:3, node-a:10,node-b:7") == {"node-a": 10, "node-b": 7}
    assert format_token(merge_tokens({"a": 1, "b": 5}, {"b": 2, "c": 9})) == "a:1,b:5,c:9"
    assert parse_token("") == {} and parse_token(None) == {}
    for bad in ("node-a", "node-a:-1", "node-a:x", ":5", "node a:1"):
        with pytest.raises(InvalidInputError):
            parse_token(bad)
    with pytest.raises(InvalidInputError, match="at most 64"):
        parse_token(",".join(f"n{i}:1" for i in range(65)))
    session = SessionToken()
    session.observe("n1:4")
    session.observe("garbage from a proxy")  # ignored, the session keeps what it had
    session.observe("n1:2,n2:1")
    assert session.value == "n1:4,n2:1"
