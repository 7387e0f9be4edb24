"""Bad input gets a 4xx in the SPEC error shape, never a 500, and stores nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from tests.conftest import keyword_settings

from memmesh import ContentTooLargeError, InvalidInputError, Memory
from memmesh.model import LOCAL_PRINCIPAL, MAX_METADATA_DEPTH


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
    assert running.service.stats(principal=LOCAL_PRINCIPAL).total == 0


@pytest.mark.parametrize("body", [b"{bad json", b"", b"\xff\xfe", b'{"content": "x"', b"null"])
def test_malformed_bodies(server, body):
    response = server.http().post("/api/v1/memories", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert response.json()["error"]["code"] == "invalid_input"
    _nothing_stored(server)


def test_malformed_json_is_400_with_a_clear_message(server):
    error = _error(server.http().post("/api/v1/recall", content=b'{"query": ', headers={"Content-Type": "application/json"}), 400)
    assert "not valid JSON" in error["message"]


def test_form_encoded_body_is_refused_not_read_as_json(server):
    """A form body used to be read as JSON (CSRF from any web page); now 415 (test_browser_guard.py)."""
    response = server.http().post(
        "/api/v1/memories", content=b'{"content": "curl -d style"}', headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 415
    _nothing_stored(server)


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


@pytest.mark.parametrize("when", ["yesterday", "2026-13-01", "x" * 5000])
def test_a_time_that_is_not_iso_8601_is_422_showing_the_format(server, when):
    """Pydantic said "input is too short"; the message now shows what it read (cut short) and
    the format to use, on every face (the CLI says it against --valid-from)."""
    response = server.http().post("/api/v1/memories", json={"content": "x", "valid_from": when})
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert message.startswith("body.valid_from: ") and "use ISO 8601, e.g. 2026-12-03" in message and len(message) < 200, message


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


def test_a_misplaced_field_is_422_saying_where_it_belongs(server):
    http = server.http()
    error = _error(http.post("/api/v1/recall", json={"query": "x", "namespace": "team", "tier": "long"}), 422)
    assert error["message"] == (
        'body.namespace: unknown field here: it belongs in filters.namespace ({"filters": {"namespace": …}}); '
        'body.tier: unknown field here: it belongs in filters.tier ({"filters": {"tier": …}})'
    )
    assert [e["loc"] for e in error["details"]["errors"]] == [["body", "namespace"], ["body", "tier"]]
    typo = _error(http.post("/api/v1/recall", json={"query": "x", "namspace": "team"}), 422)
    assert typo["message"] == "body.namspace: unknown field"  # nothing beside it takes that name
    deeper = _error(http.post("/api/v1/recall", json={"query": "x", "filters": {"top_k": 3}}), 422)
    assert deeper["message"] == 'body.filters.top_k: unknown field here: it belongs in top_k ({"top_k": …})'
    assert deeper["details"]["errors"][0]["loc"] == ["body", "filters", "top_k"]
    secret = "s3cret-value-1234"
    many = {"query": "x", "filters": {f"field{i}": secret for i in range(5000)}}
    started = time.perf_counter()
    crowd = http.post("/api/v1/recall", json=many)
    assert crowd.status_code == 422 and time.perf_counter() - started < 5
    assert secret not in crowd.text  # field names are listed, never the values sent


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


# -- hostile input (issue 12) -------------------------------------------------------------------

SURROGATE = "\ud800"


def _post_raw(http, path: str, body: object, method: str = "POST"):
    """Send ``body`` as JSON with ``\\u`` escapes, so lone surrogates reach the server as JSON does."""
    return http.request(method, path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


HOSTILE_WRITES: list[tuple[dict, str]] = [
    ({"content": SURROGATE}, "content"),
    ({"content": f"ok{SURROGATE}ok"}, "content"),
    ({"content": "x", "title": SURROGATE}, "title"),
    ({"content": "x", "tags": ["fine", SURROGATE]}, "tags"),
    ({"content": "x", "source": SURROGATE}, "source"),
    ({"content": "x", "agent_id": SURROGATE}, "agent_id"),
    ({"content": "x", "namespace": f"team/{SURROGATE}"}, "namespace"),
    ({"content": "x", "metadata": {"k": SURROGATE}}, "metadata"),
    ({"content": "x", "metadata": {SURROGATE: 1}}, "metadata"),
    ({"content": "nul\u0000inside"}, "content"),
    ({"content": "x", "ttl_seconds": 10**12}, "ttl_seconds"),
    ({"content": "x", "ttl_seconds": 10**40}, "ttl_seconds"),
    ({"content": "x", "ttl_seconds": True}, "ttl_seconds"),
    ({"content": "x", "namespace": "a/../b"}, "namespace"),
    ({"content": "x", "namespace": "../../etc"}, "namespace"),
    ({"content": "x", "namespace": "team/."}, "namespace"),
    ({"content": "x", "namespace": "team\n/evil"}, "namespace"),
    ({"content": "x", "id": "ab\ncd"}, "id"),
    ({"content": "x", "tags": "str"}, "tags"),
    ({"content": "x", "confidence": "1"}, "confidence"),
    ({"content": "x", "confidence": True}, "confidence"),
    ({"content": "x", "priority": True}, "priority"),
    ({"content": "x", "priority": "5"}, "priority"),
    ({"content": "x", "priority": 5.5}, "priority"),
    ({"content": "x", "valid_from": 0}, "valid_from"),
    ({"content": "x", "valid_from": "1700000000"}, "valid_from"),
    ({"content": "x", "valid_to": 1.5}, "valid_to"),
    ({"content": "x", "valid_from": "0001-01-01T00:00:00+14:00"}, "valid_from"),
    ({"content": "x", "source": "s" * 300}, "source"),
    ({"content": "x", "agent_id": "a" * 200}, "agent_id"),
]


@pytest.mark.parametrize(("body", "field"), HOSTILE_WRITES)
def test_hostile_writes_are_422_naming_the_field_and_store_nothing(server, body, field):
    http = server.http()
    for path, payload in (("/api/v1/memories", body), ("/api/v1/memories/batch", {"items": [{"content": "fine"}, body]})):
        error = _error(_post_raw(http, path, payload), 422)
        assert field in error["message"], error
    _nothing_stored(server)


def test_hostile_updates_change_nothing(server):
    http = server.http()
    stored = http.post("/api/v1/memories", json={"content": "original", "namespace": "team"}).json()
    for patch, field in [
        ({"content": SURROGATE}, "content"),
        ({"title": f"t{SURROGATE}"}, "title"),
        ({"namespace": "team/.."}, "namespace"),
        ({"tags": "one,two"}, "tags"),
        ({"priority": True}, "priority"),
        ({"confidence": "0.5"}, "confidence"),
        ({"expires_at": 0}, "expires_at"),
    ]:
        error = _error(_post_raw(http, f"/api/v1/memories/{stored['id']}", patch, "PATCH"), 422)
        assert field in error["message"]
    assert http.get(f"/api/v1/memories/{stored['id']}").json() == {k: v for k, v in stored.items() if k != "existed"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": SURROGATE}, "query"),
        ({"query": f"tea {SURROGATE}"}, "query"),
        ({"query": "x", "filters": {"agent_id": SURROGATE}}, "agent_id"),
        ({"query": "x", "filters": {"namespace": "a/../b"}}, "namespace"),
        ({"query": "x", "filters": {"tags": "str"}}, "tags"),
        ({"query": "x", "filters": {"since": 0}}, "since"),
        ({"query": "x", "top_k": True}, "top_k"),
        ({"query": "x", "explain": "yes"}, "explain"),
        ({"query": "x", "touch": 0}, "touch"),
    ],
)
def test_hostile_recalls_are_422_naming_the_field(server, body, field):
    error = _error(_post_raw(server.http(), "/api/v1/recall", body), 422)
    assert field in error["message"]


def test_retain_true_is_refused_and_deletes_no_snapshot(server):
    http = server.http()
    http.post("/api/v1/memories", json={"content": "worth keeping"})
    made = [http.post("/api/v1/backup", json={}).json()["snapshot"] for _ in range(3)]
    for retain in (True, "1", "true", 1.5, 0):
        _error(http.post("/api/v1/backup", json={"retain": retain}), 422)
    assert all(Path(path).exists() for path in made)


def test_hypothesis_hostile_bodies_never_500_and_store_nothing_when_refused(server):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    http = server.http()
    nasty_text = st.one_of(
        st.text(max_size=40),
        st.sampled_from(["", " ", ".", "..", "a/..", "a\n", "\ud800", "\udfff", "x\u0000", "é" * 70, "💥", "a" * 300]),
    )
    value = st.one_of(
        nasty_text,
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=False),
        st.booleans(),
        st.none(),
        st.lists(nasty_text, max_size=4),
        st.dictionaries(nasty_text, nasty_text, max_size=3),
    )
    names = ("content", "namespace", "title", "tier", "kind", "tags", "priority", "confidence", "source", "agent_id", "metadata")
    fields = st.sampled_from([*names, "id", "valid_from", "valid_to", "ttl_seconds", "on_conflict", "bogus"])
    bodies = st.dictionaries(fields, value, max_size=6).map(lambda d: {"content": "hypothesis", **d} if "content" not in d else d)

    @settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(bodies)
    def check(body: dict) -> None:
        before = server.service.stats(principal=LOCAL_PRINCIPAL).total
        response = _post_raw(http, "/api/v1/memories", body)
        assert response.status_code < 500, (body, response.text)
        if response.status_code not in (200, 201):  # 200: the same content was already stored
            assert response.json()["error"]["message"]
            assert server.service.stats(principal=LOCAL_PRINCIPAL).total == before, body

    check()


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+23:00", "9999-12-31T23:59:59-23:59"])
def test_times_without_a_utc_equivalent_are_422(server, moment):
    http = server.http()
    for params in ({"since": moment}, {"until": moment}):
        error = _error(http.get("/api/v1/memories", params=params), 422)
        assert next(iter(params)) in error["message"]
        _error(http.get("/api/v1/search", params={"q": "x", **params}), 422)
    _error(_post_raw(http, "/api/v1/recall", {"query": "x", "filters": {"as_of": moment}}), 422)
    _error(_post_raw(http, "/api/v1/links", {"source_id": "a", "target_id": "b", "valid_from": moment}), 422)
    _nothing_stored(server)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"content": "x", "metadata": {"n": 1e400}}', "metadata.n"),
        (b'{"content": "x", "metadata": {"a": {"b": [1, -1e400]}}}', "metadata.a.b[1]"),
    ],
)
def test_non_finite_numbers_in_metadata_are_422_naming_the_path(server, body, path):
    """1e400 parses as inf and used to be stored as null with a 201."""
    error = _error(server.http().post("/api/v1/memories", content=body, headers={"Content-Type": "application/json"}), 422)
    assert path in error["message"] and "finite" in error["message"], error
    _nothing_stored(server)


def test_metadata_nested_past_the_limit_is_422_and_the_deepest_allowed_exports(server, tmp_path):
    """Metadata 255 levels deep (0.5 KB) was stored with a 201; the memory's history, every
    export, restore, migration and the sync feed then failed (the serialiser stops at 255
    levels). 32 levels are allowed, and what is allowed comes back out of every door."""
    http = server.http()
    too_deep: object = []
    for _ in range(MAX_METADATA_DEPTH + 1):
        too_deep = [too_deep]
    error = _error(http.post("/api/v1/memories", json={"content": "x", "metadata": {"a": too_deep}}), 422)
    assert "nested" in error["message"] and str(MAX_METADATA_DEPTH) in error["message"], error
    _nothing_stored(server)
    deepest: object = []
    for _ in range(MAX_METADATA_DEPTH - 1):
        deepest = [deepest]
    made = http.post("/api/v1/memories", json={"content": "deep but allowed", "metadata": {"a": deepest}})
    assert made.status_code == 201, made.text
    memory_id = made.json()["id"]
    assert http.get(f"/api/v1/memories/{memory_id}/history").status_code == 200
    assert http.get("/api/v1/memories/" + memory_id).json()["metadata"] == {"a": deepest}


def test_the_deepest_metadata_allowed_survives_export_import_backup_and_restore(tmp_path):
    deepest: object = []
    for _ in range(MAX_METADATA_DEPTH - 1):
        deepest = [deepest]
    with Memory(tmp_path / "a.db", keyword_settings(tmp_path)) as mem:
        kept = mem.add("deep but allowed", metadata={"a": deepest})
        with pytest.raises(InvalidInputError, match="nested"):
            mem.add("too deep", metadata={"a": [deepest]})
        assert mem.export(tmp_path / "out.jsonl") == 1
        snapshot = mem.backup(tmp_path / "backups").snapshot
    with Memory(tmp_path / "b.db", keyword_settings(tmp_path)) as copy:
        copy.import_file(tmp_path / "out.jsonl")
        assert copy.get(kept.id).metadata == {"a": deepest}
    with Memory(tmp_path / "c.db", keyword_settings(tmp_path)) as restored:
        restored.restore(snapshot)
        assert restored.get(kept.id).metadata == {"a": deepest}


@pytest.mark.parametrize("memory_id", ["x" * 10_000, "a\x00b"])
def test_an_id_in_an_error_is_shortened_and_escaped_not_echoed(server, memory_id):
    """A 10,000-character or NUL id used to come back verbatim in the 404's message."""
    response = server.http().patch(f"/api/v1/memories/{quote(memory_id)}", json={"priority": 3})
    error = _error(response, 404, "not_found")
    assert len(error["message"]) < 300 and "\x00" not in error["message"], error["message"][:300]


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/api/v1/memories", b'{"content": "x", "confidence": NaN}', "confidence"),
        ("/api/v1/memories", b'{"content": "x", "priority": Infinity}', "priority"),
        ("/api/v1/recall", b'{"query": "x", "top_k": NaN}', "top_k"),
    ],
)
def test_nan_and_infinity_are_refused_as_not_finite_numbers(server, route, body, field):
    """Python's JSON reader takes NaN and Infinity; they used to be refused as "should be ≤ 1"."""
    error = _error(server.http().post(route, content=body, headers={"Content-Type": "application/json"}), 422)
    assert "finite number" in error["message"] and field in error["message"], error
    _nothing_stored(server)


def test_a_misspelt_query_parameter_is_refused_and_deletes_nothing(server):
    """FastAPI ignores query parameters a route does not read: a bulk delete with a misspelt
    filter (``tgs`` for ``tags``) deleted every memory of the namespace, and a misspelt
    ``namspace`` listed the whole store. Now a 422 names the parameter, as for a body field."""
    http = server.http()
    for content, tag in [("keep one", "keep"), ("keep two", "keep"), ("drop me", "old")]:
        assert http.post("/api/v1/memories", json={"content": content, "namespace": "team", "tags": [tag]}).status_code == 201
    refused = http.delete("/api/v1/memories", params={"namespace": "team", "tgs": "old"})
    error = _error(refused, 422)
    assert error["message"] == "query.tgs: unknown field" and error["details"]["errors"][0]["loc"] == ["query", "tgs"]
    assert len(http.get("/api/v1/memories", params={"namespace": "team"}).json()["items"]) == 3
    for path, params in [("/api/v1/memories", {"namspace": "team"}), ("/api/v1/search", {"q": "keep", "namespce": "team"})]:
        assert _error(http.get(path, params=params), 422)["message"].endswith(": unknown field"), path
    deleted = http.delete("/api/v1/memories", params={"namespace": "team", "tags": "old"})
    assert deleted.status_code == 200 and deleted.json()["deleted"] == 1, deleted.text
    assert http.get("/healthz", params={"_": "1700000000"}).status_code == 200  # a probe's cache-buster is not refused
