"""Schemathesis fuzzes every operation in /openapi.json against a real server: no 5xx, and
every response (errors included) matches the documented status codes and schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from http_support import ThreadServer, http_settings
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from memmesh.model import LOCAL_PRINCIPAL

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, response_headers_conformance]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("fuzz")
    server = ThreadServer(http_settings(folder, limits={"max_page_size": 200}))
    running = server.start()
    running.service.add({"content": "a seeded memory so reads find something", "namespace": "seed"}, principal=LOCAL_PRINCIPAL)
    yield running.url
    server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server: str):
    return schemathesis.openapi.from_url(f"{fuzz_server}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@pytest.mark.timeout(120)
def test_api_conforms_to_its_schema(case):
    case.call_and_validate(checks=CHECKS)
