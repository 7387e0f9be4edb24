"""/metrics counts error answers by their code, so an operator can alert on storage errors
(a full disk answered 503 storage_error) instead of reading per-route status counts."""

from __future__ import annotations

import re

from memmesh.config import LimitsSettings


def _errors(text: str) -> dict[tuple[str, str], float]:
    found = re.findall(r'^memmesh_http_errors_total\{code="([a-z_]+)",status="(\d+)"\} ([0-9.e+]+)$', text, re.M)
    return {(code, status): float(n) for code, status, n in found}


def test_error_answers_are_counted_by_code_and_status(server) -> None:
    http = server.http()
    assert http.post("/api/v1/memories", json={"content": ""}).status_code == 422  # the core refuses it
    assert http.post("/api/v1/memories", json={"content": "x", "priority": "high"}).status_code == 422  # FastAPI does
    assert http.get("/api/v1/memories/0190aaaa-0000-7000-8000-000000000000").status_code == 404
    assert http.get("/api/v1/no-such-route").status_code == 404
    assert http.post("/api/v1/memories", json={"content": "kept"}).status_code == 201
    counts = _errors(http.get("/metrics").text)
    assert counts == {("invalid_input", "422"): 2.0, ("not_found", "404"): 2.0}, counts


def test_refusals_before_any_route_are_counted_too(server) -> None:
    """The request middleware answers some errors itself (wrong content type, a body over the
    limit): they count like the handlers' answers."""
    http = server.http()
    assert http.post("/api/v1/memories", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    too_big = b'{"content": "' + b"x" * (LimitsSettings().max_body_bytes + 10) + b'"}'
    assert http.post("/api/v1/memories", content=too_big, headers={"Content-Type": "application/json"}).status_code == 413
    counts = _errors(http.get("/metrics").text)
    assert counts.get(("unsupported_media_type", "415")) == 1.0 and counts.get(("too_large", "413")) == 1.0, counts
