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


def test_a_rollback_leaves_alone_what_moved_out_of_the_run_s_namespaces(server) -> None:
    """A writer of `a/*` curates `a/rb`; an admin then moves a memory the run tagged to `b/…`.
    The writer's rollback used to put the old tags back on that memory in `b/…` (a write outside
    its key, as that key). Now the memory is kept as it is and named under `conflicts`, without
    naming where it went; what stayed in `a/rb` is rolled back as before."""
    svc = server.service
    writer_a = server.http(svc.create_key("wa", role="writer", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key)
    admin = server.http(svc.create_key("root", role="admin", namespaces=["*"], principal=LOCAL_PRINCIPAL).key)
    moved_id, stays_id = (
        writer_a.post("/api/v1/memories", json={"content": text, "namespace": "a/rb"}, headers=JSON).json()["id"]
        for text in ("Mango service stores invoices in S3 buckets.", "Kiwi team deploys the billing cron nightly.")
    )
    run = writer_a.post("/api/v1/curator/run", json={"namespace": "a/rb"}, headers=JSON).json()
    tagged = admin.get(f"/api/v1/memories/{moved_id}").json()["tags"]
    assert tagged and admin.get(f"/api/v1/memories/{stays_id}").json()["tags"]
    assert admin.patch(f"/api/v1/memories/{moved_id}", json={"namespace": "b/elsewhere"}, headers=JSON).status_code == 200

    undone = writer_a.post(f"/api/v1/curator/runs/{run['run_id']}/rollback")
    assert undone.status_code == 200, undone.text
    assert admin.get(f"/api/v1/memories/{moved_id}").json()["tags"] == tagged
    assert [e["actor"] for e in admin.get(f"/api/v1/memories/{moved_id}/history").json()] == ["wa", "wa", "root"]
    conflicts = undone.json()["conflicts"]
    assert len(conflicts) == 1 and moved_id in conflicts[0] and "b/elsewhere" not in conflicts[0]
    assert admin.get(f"/api/v1/memories/{stays_id}").json()["tags"] == []


def test_a_rollback_keeps_a_link_whose_other_end_moved_out_of_the_key_s_namespaces(server) -> None:
    """The run links two near-duplicates `supersedes`; an admin moves one of them to `b/…`. The
    writer's rollback no longer removes that link (a change to a memory of `b/…`): it is kept
    and named under `conflicts`."""
    svc = server.service
    writer_a = server.http(svc.create_key("wa", role="writer", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key)
    admin = server.http(svc.create_key("root", role="admin", namespaces=["*"], principal=LOCAL_PRINCIPAL).key)
    for text in ("Kiwi project uses rust for the ingestion pipeline.", "The Kiwi project uses Rust for its ingestion pipeline."):
        assert writer_a.post("/api/v1/memories", json={"content": text, "namespace": "a/dup"}, headers=JSON).status_code == 201
    run = writer_a.post("/api/v1/curator/run", json={"namespace": "a/dup"}, headers=JSON).json()
    [cluster] = run["clusters"]
    [superseded] = cluster["superseded"]
    assert admin.patch(f"/api/v1/memories/{superseded}", json={"namespace": "b/elsewhere"}, headers=JSON).status_code == 200

    undone = writer_a.post(f"/api/v1/curator/runs/{run['run_id']}/rollback").json()
    [conflict] = undone["conflicts"]
    assert conflict.startswith(f"link of memory {cluster['keep']}") and "b/elsewhere" not in conflict
    assert [lk["relation"] for lk in admin.get(f"/api/v1/memories/{superseded}/links").json()] == ["supersedes"]


def test_an_action_queued_before_its_namespace_turned_to_deny_is_not_applied(server) -> None:
    """A write queued under `write: approve`, then the admin sets `write: deny`: approving it
    used to write it anyway, past a rule that now refuses everyone (an approver overriding its
    admin). Now the approval records the action `failed`, naming the deny rule, and nothing is
    written; an action queued before a standard was relaxed still applies."""
    svc = server.service
    writer = server.http(svc.create_key("wa", role="writer", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key)
    lead = server.http(svc.create_key("lead", role="approver", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key)
    admin = server.http(svc.create_key("root", role="admin", namespaces=["*"], principal=LOCAL_PRINCIPAL).key)
    assert admin.put("/api/v1/namespaces/a/gov/standard", json={"governance": {"write": "approve"}}, headers=JSON).status_code == 200
    denied = writer.post("/api/v1/memories", json={"content": "queued, then denied", "namespace": "a/gov"}, headers=JSON)
    relaxed = writer.post("/api/v1/memories", json={"content": "queued, then allowed", "namespace": "a/gov/open"}, headers=JSON)
    assert denied.status_code == relaxed.status_code == 202
    assert admin.put("/api/v1/namespaces/a/gov/standard", json={"governance": {"write": "deny"}}, headers=JSON).status_code == 200
    assert admin.put("/api/v1/namespaces/a/gov/open/standard", json={"governance": {"write": "allow"}}, headers=JSON).status_code == 200

    decided = lead.post(f"/api/v1/pending/{denied.json()['pending_id']}/approve", json={}, headers=JSON).json()
    assert decided["status"] == "failed" and decided["result"] is None
    assert "governance.write = deny" in decided["error"] and "nothing was applied" in decided["error"]
    assert admin.get("/api/v1/memories", params={"namespace": "a/gov"}).json()["items"] == []

    applied = lead.post(f"/api/v1/pending/{relaxed.json()['pending_id']}/approve", json={}, headers=JSON).json()
    assert applied["status"] == "applied"


def test_other_namespaces_pending_actions_never_crowd_a_key_s_own_out_of_its_list(server, monkeypatch) -> None:
    """A namespace-limited key's pending list was the store's oldest `MAX_LISTED` (10,000) pending
    actions of every namespace, filtered to its own afterwards: once other namespaces had queued
    that many (or, with `status=all`, decided: advisory mode records one per would-be refusal),
    its approver saw an empty queue. The store now selects the key's namespaces first. (The
    bound is lowered here so that a few actions stand for 10,000.)"""
    from memmesh.governance import core

    monkeypatch.setattr(core, "MAX_LISTED", 3)
    svc = server.service
    writer_a = server.http(svc.create_key("wa", role="writer", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key)
    writer_b = server.http(svc.create_key("wb", role="writer", namespaces=["b/*"], principal=LOCAL_PRINCIPAL).key)
    lead_a = server.http(svc.create_key("lead", role="approver", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key)
    admin = server.http(svc.create_key("root", role="admin", namespaces=["*"], principal=LOCAL_PRINCIPAL).key)
    for ns in ("a", "b"):
        assert admin.put(f"/api/v1/namespaces/{ns}/standard", json={"governance": {"write": "approve"}}, headers=JSON).status_code == 200
    for i in range(3):
        assert writer_b.post("/api/v1/memories", json={"content": f"B {i}", "namespace": "b/q"}, headers=JSON).status_code == 202
    ours = writer_a.post("/api/v1/memories", json={"content": "A's", "namespace": "a/q"}, headers=JSON).json()["pending_id"]
    for status in ("pending", "all"):
        assert [p["id"] for p in lead_a.get("/api/v1/pending", params={"status": status}).json()] == [ours]
    assert len(admin.get("/api/v1/pending").json()) == 4
