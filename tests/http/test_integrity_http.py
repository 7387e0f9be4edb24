"""Integrity edges over real HTTP: the daily quota counts what is stored, per top-level
namespace; ``memmesh serve`` says what it serves and fails clearly on a busy port."""

from __future__ import annotations

from memmesh.model import LOCAL_PRINCIPAL


def test_quota_counts_stored_writes_per_top_level_namespace(serve) -> None:
    running = serve(limits={"daily_write_quota": 2})
    key = running.service.create_key("tenant-q", role="writer", namespaces=["q/*"], principal=LOCAL_PRINCIPAL).key
    http = running.http(key)

    first = http.post("/api/v1/memories", json={"id": "q-1", "content": "invoice 17 is paid", "namespace": "q/a"})
    assert first.status_code == 201, first.text
    for _ in range(4):  # a client that lost its 201 retries: nothing new is stored, nothing is charged
        again = http.post("/api/v1/memories", json={"id": "q-1", "content": "invoice 17 is paid", "namespace": "q/a"})
        assert again.status_code in (200, 201) and again.json()["id"] == "q-1", again.text
        duplicate = http.post("/api/v1/memories", json={"content": "invoice 17 is paid", "namespace": "q/a"})
        assert duplicate.status_code in (200, 201) and duplicate.json()["id"] == "q-1", duplicate.text
    same_values = http.patch("/api/v1/memories/q-1", json={"content": "invoice 17 is paid"})
    assert same_values.status_code == 200, same_values.text

    second = http.post("/api/v1/memories", json={"content": "invoice 18 is due", "namespace": "q/b"})
    assert second.status_code == 201, second.text
    escape = http.post("/api/v1/memories", json={"content": "invoice 19 is due", "namespace": "q/c/d"})
    assert escape.status_code == 429, escape.text  # a new sub-namespace shares q's quota
    assert escape.json()["error"]["details"]["namespace"] == "q"
    assert int(escape.headers["retry-after"]) > 0
    confirm = http.post("/api/v1/memories", json={"id": "q-1", "content": "invoice 17 is paid", "namespace": "q/a"})
    assert confirm.status_code in (200, 201)  # even over quota, a retry confirms what is stored
    assert running.service.stats(principal=LOCAL_PRINCIPAL).total == 2
    status = running.service.survey.quota_status(namespace="q/a", principal=LOCAL_PRINCIPAL)
    assert [(n.namespace, n.written_today, n.remaining) for n in status.namespaces] == [("q", 2, 0)]


def test_title_conflict_hint_speaks_the_request_body(server) -> None:
    http = server.http()
    first = http.post("/api/v1/memories", json={"content": "retro every other Friday", "title": "retro"})
    clash = http.post("/api/v1/memories", json={"content": "retro every Thursday", "title": "retro"})
    assert clash.status_code == 409
    error = clash.json()["error"]
    assert error["message"] == (
        f"namespace 'default' already has a memory titled 'retro' ({first.json()['id']}); "
        'pass "on_conflict": "update" or "on_conflict": "version"'
    )
    assert error["details"]["retry_with"] == {"on_conflict": ["update", "version"]}
