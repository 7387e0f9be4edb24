"""The REST permission matrix: every route × reader/writer/admin × scoped/unscoped × anonymous.

Generated from the app's route table: a route without a rule in ``permission_rules.HTTP_RULES``
fails :func:`test_every_route_has_a_rule`. Each route is called by each key with a request
inside the scoped keys' namespace and, where the route reaches memories or keys, one reaching
into another namespace; a scoped caller's successful replies are checked to hold nothing of
the other namespace. Real uvicorn on 127.0.0.1, real keys, real HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from memmesh.model import LOCAL_PRINCIPAL
from memmesh.service import Service
from permission_rules import HTTP_ELSEWHERE, HTTP_RULES, HttpRule, expected, seed
from permission_server import matrix_server


@dataclass
class Matrix:
    url: str
    service: Service
    keys: dict[tuple[str, bool], str]
    app: Any


def route_table(routes: list[Any], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path) of every route, included routers walked."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found |= route_table(inner.routes, prefix + route.include_context.prefix)
            continue
        methods = set(getattr(route, "methods", None) or ()) - {"HEAD"}
        for method in methods or {"*"}:
            found.add((method, prefix + route.path))
    return found


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    with matrix_server(tmp_path_factory.mktemp("perm")) as running:
        yield Matrix(running.base_url, running.service, running.keys, running.app)


def test_every_route_has_a_rule(matrix: Matrix) -> None:
    """A new route (or a removed one) must come with its rule in permission_rules.py."""
    table = route_table(matrix.app.routes)
    ruled = set(HTTP_RULES) | set(HTTP_ELSEWHERE)
    assert table - ruled == set(), f"routes without a permission rule: {sorted(table - ruled)}"
    assert ruled - table == set(), f"rules for routes that no longer exist: {sorted(ruled - table)}"


def _call(client: httpx.Client, method: str, request: tuple[str, dict[str, Any]]) -> httpx.Response:
    path, options = request
    return client.request(method, path, **options)


def _assert(response: httpx.Response, outcome: str, rule: HttpRule, scoped: bool, label: str) -> None:
    if outcome == "ok":
        assert response.status_code == rule.ok_status, f"{label}: {response.status_code} {response.text[:300]}"
        if scoped and rule.check is not None:
            rule.check(response.json())
        return
    assert response.status_code == int(outcome), f"{label}: expected {outcome}, got {response.status_code} {response.text[:300]}"
    error = response.json()["error"]
    assert error["code"] == {"401": "unauthorized", "403": "forbidden", "404": "not_found"}[outcome] and error["message"], label


@pytest.mark.parametrize("route", sorted(HTTP_RULES), ids=lambda r: f"{r[0]} {r[1]}")
def test_route_permissions(matrix: Matrix, route: tuple[str, str]) -> None:
    method, _ = route
    rule = HTTP_RULES[route]
    with httpx.Client(base_url=matrix.url, timeout=30) as anonymous:
        response = _call(anonymous, method, rule.own(seed(matrix.service)))
        if rule.role == "public":
            _assert(response, "ok", rule, True, "anonymous")
        else:
            _assert(response, "401", rule, False, "anonymous")
    for (role, scoped), key in matrix.keys.items():
        with httpx.Client(base_url=matrix.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            label = f"{role} {'scoped' if scoped else 'unscoped'}"
            if rule.role == "public":
                _assert(_call(client, method, rule.own(seed(matrix.service))), "ok", rule, scoped, label)
                continue
            own = expected(rule.role, rule.store_wide, role, scoped, False, rule.other_status)
            _assert(_call(client, method, rule.own(seed(matrix.service))), own, rule, scoped, label + " own")
            if rule.other is not None:
                other = expected(rule.role, rule.store_wide, role, scoped, True, rule.other_status)
                _assert(_call(client, method, rule.other(seed(matrix.service))), other, rule, scoped, label + " other")


def test_the_service_never_assumes_a_caller(tmp_path: Path) -> None:
    """The caller is never implicit: a service call without a Principal (or with None) is refused
    before it touches the store, instead of running as the local admin (issue 12)."""
    from memmesh import Memory

    with Memory(f"sqlite:///{tmp_path / 'm.db'}", config=None) as mem:
        svc = mem.service
        for call in (
            lambda: svc.add({"content": "x"}),  # type: ignore[call-arg]
            lambda: svc.add({"content": "x"}, principal=None),  # type: ignore[arg-type]
            lambda: svc.keys(principal=None),  # type: ignore[arg-type]
            lambda: svc.create_key("mallory", role="admin", principal=None),  # type: ignore[arg-type]
            lambda: svc.lifecycle.forget(namespace="default", principal=None),  # type: ignore[arg-type]
        ):
            with pytest.raises(TypeError):
                call()
        assert svc.keys(principal=LOCAL_PRINCIPAL) == [] and mem.stats().total == 0
        assert mem.add("the embedded API passes the local caller").agent_id is None
