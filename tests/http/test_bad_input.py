"""Bad input gets a 4xx in the SPEC error shape, never a 500, and stores nothing."""

from __future__ import annotations

import pytest

from memmesh import ContentTooLargeError, InvalidInputError


def _error(response, status: int, code: str = "invalid_input") -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if status == 422:  # docs/http.md: every 422 lists {loc, message, type} in details.errors
        errors = error["details"].get("errors")
        assert errors and all(set(e) == {"loc", "message", "type"} and e["message"] for e in errors), error
    return error


def _nothing_stored(running) -> None:
    assert running.service.stats().total == 0


@pytest.mark.parametrize("body", [b"{bad json", b"", b"\xff\xfe", b'{"content": "x"', b"null"])
def test_malformed_bodies(server, body):
    response = server.http().post("/api/v1/memories", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] == "invalid_input"
    _nothing_stored(server)


def test_malformed_json_is_400_with_a_clear_message(server):
    error = _error(server.http().post("/api/v1/recall", content=b'{"query": ', headers={"Content-Type": "application/json"}), 400)
    assert "not valid JSON" in error["message"]


def test_form_encoded_body_is_read_as_json(server):
    response = server.http().post(
        "/api/v1/memories", content=b'{"content": "curl -d style"}', headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": 42}, "content"),
        ({"content": "x", "priority": "high"}, "priority"),
        ({"content": "x", "priority": 11}, "priority"),
        ({"content": "x", "confidence": 2}, "confidence"),
        ({"content": "x", "tier": "forever"}, "tier"),
        ({"content": "x", "tags": "not-a-list-but-ok", "metadata": []}, "metadata"),
        ({"content": "x", "namespace": "bad namespace"}, "namespace"),
        ({"content": "x", "namspace": "typo"}, "namspace"),
        ({"content": "x", "valid_from": "yesterday"}, "valid_from"),
        ({}, "content"),
    ],
)
def test_wrong_types_and_unknown_fields_are_422_naming_the_field(server, body, field):
    error = _error(server.http().post("/api/v1/memories", json=body), 422)
    assert field in error["message"]
    assert any(field in e["loc"] for e in error["details"]["errors"])
    _nothing_stored(server)


def test_blank_content_and_bad_recall_bodies(server):
    http = server.http()
    _error(http.post("/api/v1/memories", json={"content": "   "}), 422)
    _error(http.post("/api/v1/recall", json={"query": ""}), 422)
    _error(http.post("/api/v1/recall", json={"query": "x", "mode": "telepathy"}), 422)
    _error(http.post("/api/v1/recall", json={"query": "x", "top_k": 0}), 422)
    _error(http.post("/api/v1/recall", json={"query": "x", "top_k": 5000}), 422)
    _error(http.post("/api/v1/recall", json={"query": "x", "filters": {"tier": "nope"}}), 422)
    _error(http.post("/api/v1/recall", json={"query": "x", "filter": {}}), 422)
    _error(http.post("/api/v1/recall", json={"query": "x", "mode": "vector"}), 422)  # no embedder configured
    _error(http.get("/api/v1/search"), 422)
    _error(http.get("/api/v1/search", params={"q": "x", "since": "not a date"}), 422)
    _error(http.post("/api/v1/links", json={"source_id": "a", "target_id": "a"}), 422)
    _error(http.post("/api/v1/memories/batch", json={"items": []}), 422)
    _nothing_stored(server)


def test_batch_with_one_bad_item_stores_none(server):
    items = [{"content": "good"}, {"content": "bad", "priority": 0}]
    response = server.http().post("/api/v1/memories/batch", json={"items": items})
    _error(response, 422)
    _nothing_stored(server)


def test_bad_ids_cursors_and_page_sizes(server):
    http = server.http()
    for bad in ("does-not-exist", "%20", "..", "x" * 300, "ü"):
        assert http.get(f"/api/v1/memories/{bad}").status_code in (404,), bad
    _error(http.get("/api/v1/memories/nope"), 404, "not_found")
    _error(http.get("/api/v1/memories/nope/history"), 404, "not_found")
    _error(http.patch("/api/v1/memories/nope", json={"priority": 3}), 404, "not_found")
    _error(http.delete("/api/v1/memories/nope"), 404, "not_found")
    _error(http.get("/api/v1/memories", params={"cursor": "garbage!!"}), 422)
    _error(http.get("/api/v1/memories", params={"cursor": "WzEsMl0"}), 422)  # base64 of [1,2]
    _error(http.get("/api/v1/memories", params={"limit": 0}), 422)
    _error(http.get("/api/v1/memories", params={"limit": "ten"}), 422)
    _error(http.get("/api/v1/memories", params={"limit": 1001}), 422)
    _error(http.get("/api/v1/memories", params={"namespace": "a//b"}), 422)
    _error(http.patch("/api/v1/memories/nope", json={"colour": "red"}), 422)


def test_unknown_routes_and_methods(server):
    http = server.http()
    _error(http.get("/api/v1/nothing-here"), 404, "not_found")
    _error(http.get("/"), 404, "not_found")
    response = http.put("/api/v1/memories", json={})
    _error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]
    _error(http.post("/api/v1/stats"), 405, "method_not_allowed")


def test_oversize_body_is_413_before_parsing(serve):
    running = serve(limits={"max_body_bytes": 4096})
    http = running.http()
    big = {"content": "x" * 5000}
    _error(http.post("/api/v1/memories", json=big), 413, "too_large")

    def chunks():
        yield b'{"content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    chunked = http.post("/api/v1/memories", content=chunks(), headers={"Content-Type": "application/json"})
    _error(chunked, 413, "too_large")
    _nothing_stored(running)
    with pytest.raises(ContentTooLargeError):
        running.client().add("z" * 5000)
    assert http.post("/api/v1/memories", json={"content": "small"}).status_code == 201


def test_oversize_content_is_413(serve):
    running = serve(limits={"max_content_bytes": 100})
    _error(running.http().post("/api/v1/memories", json={"content": "é" * 60}), 413, "too_large")
    items = [{"content": "ok"}, {"content": "w" * 101}]
    _error(running.http().post("/api/v1/memories/batch", json={"items": items}), 413, "too_large")
    _nothing_stored(running)
    with pytest.raises(InvalidInputError):
        running.client().add("q" * 101)
