"""Keys scoped to one namespace against the governance and curator routes (probe 4) over HTTP
on a real uvicorn: nothing of another namespace is named to them or written for them, and a
standard's `deny` set after an action was queued still refuses it."""

from __future__ import annotations

from memmesh.model import LOCAL_PRINCIPAL

JSON = {"Content-Type": "application/json"}


def test_a_queued_link_to_another_namespace_is_refused_like_an_unknown_id(server) -> None:
    """A link in a namespace whose `link` rule is `approve`, from a memory the key sees to one of
    another namespace, was queued (202); approving it then recorded "memory … is in namespace
    'b/…'" where every key of the first namespace reads it: the id's existence and its namespace.
    Now it is a 404 with the words of an unknown id, and nothing is queued."""
    svc = server.service
    writer_a = server.http(svc.create_key("wa", role="writer", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key)
    writer_b = server.http(svc.create_key("wb", role="writer", namespaces=["b/*"], principal=LOCAL_PRINCIPAL).key)
    admin = server.http(svc.create_key("root", role="admin", namespaces=["*"], principal=LOCAL_PRINCIPAL).key)
    ours = writer_a.post("/api/v1/memories", json={"content": "A's memo", "namespace": "a/gov"}, headers=JSON).json()["id"]
    theirs = writer_b.post("/api/v1/memories", json={"content": "B's secret", "namespace": "b/hidden"}, headers=JSON).json()["id"]
    nobody = "01a23529-0000-7000-8000-000000000000"
    assert admin.put("/api/v1/namespaces/a/gov/standard", json={"governance": {"link": "approve"}}, headers=JSON).status_code == 200

    answers = {}
    for name, other in (("theirs", theirs), ("nobody", nobody)):
        for source, target in ((ours, other), (other, ours)):
            got = writer_a.post("/api/v1/links", json={"source_id": source, "target_id": target, "relation": "related_to"}, headers=JSON)
            assert got.status_code == 404, got.text
            answers.setdefault(name, []).append(got.json()["error"]["message"].replace(other, "<id>"))
    assert answers["theirs"] == answers["nobody"]
    assert admin.get("/api/v1/pending", params={"status": "all"}).json() == []

    # a link between two memories the key sees is still queued, as the standard says
    second = writer_a.post("/api/v1/memories", json={"content": "A's other memo", "namespace": "a/gov"}, headers=JSON).json()["id"]
    queued = writer_a.post("/api/v1/links", json={"source_id": ours, "target_id": second, "relation": "related_to"}, headers=JSON)
    assert queued.status_code == 202


def test_a_pending_action_failed_by_a_move_does_not_name_where_the_memory_went(server) -> None:
    """An update queued in `a/gov` whose memory an admin moved to `b/…` before the approval fails
    (the approval covers `a/gov` only); its recorded error, which every key of `a/*` reads, no
    longer names the namespace the memory went to."""
    svc = server.service
    writer_a = server.http(svc.create_key("wa", role="writer", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key)
    approver_a = server.http(svc.create_key("lead", role="approver", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key)
    admin = server.http(svc.create_key("root", role="admin", namespaces=["*"], principal=LOCAL_PRINCIPAL).key)
    memo = writer_a.post("/api/v1/memories", json={"content": "A's memo", "namespace": "a/gov"}, headers=JSON).json()["id"]
    assert admin.put("/api/v1/namespaces/a/gov/standard", json={"governance": {"update": "approve"}}, headers=JSON).status_code == 200
    queued = writer_a.patch(f"/api/v1/memories/{memo}", json={"content": "A's memo, v2"}, headers=JSON)
    assert queued.status_code == 202
    assert admin.delete("/api/v1/namespaces/a/gov/standard").status_code == 200
    assert admin.patch(f"/api/v1/memories/{memo}", json={"namespace": "b/secret-place"}, headers=JSON).status_code == 200

    decided = approver_a.post(f"/api/v1/pending/{queued.json()['pending_id']}/approve", json={}, headers=JSON)
    assert decided.status_code == 200 and decided.json()["status"] == "failed"
    error = writer_a.get(f"/api/v1/pending/{queued.json()['pending_id']}").json()["error"]
    assert "outside the namespaces pending action" in error and "a/gov" in error
    assert "b/secret-place" not in error
