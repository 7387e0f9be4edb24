"""The MCP permission matrix: every tool of the ``full`` profile, over ``/mcp`` (reader/writer/admin
× scoped/unscoped, real uvicorn, real ``mcp`` client) and over stdio (the local caller).

Generated from the tool catalogue: a tool without a rule in ``permission_rules.TOOL_RULES``
fails :func:`test_every_tool_has_a_rule`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from memmesh.compose import build
from memmesh.config import load_settings
from memmesh.interfaces.mcp.catalog import ALL_TOOLS, resolve_profile, tools_for
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.service import Service
from permission_rules import OTHER, OWN, TOOL_RULES, ToolRule, World, expected, seed
from permission_server import matrix_server


@dataclass
class Served:
    url: str
    service: Service
    keys: dict[tuple[str, bool], str]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with matrix_server(tmp_path_factory.mktemp("permmcp"), mcp={"profile": "full"}) as running:
        yield Served(running.base_url + "/mcp", running.service, running.keys)


@asynccontextmanager
async def http_session(url: str, key: str) -> AsyncIterator[ClientSession]:
    async with (
        create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def test_every_tool_has_a_rule() -> None:
    """Every tool of the full profile (the whole catalogue) has its rule, and no rule is stale."""
    full = set(tools_for(resolve_profile("full")))
    assert full == set(ALL_TOOLS)
    assert full - set(TOOL_RULES) == set(), f"tools without a permission rule: {sorted(full - set(TOOL_RULES))}"
    assert set(TOOL_RULES) - full == set(), f"rules for tools that no longer exist: {sorted(set(TOOL_RULES) - full)}"


async def _outcome(session: ClientSession, name: str, arguments: dict[str, Any]) -> tuple[str, Any, str]:
    """("ok", data, text) or (error code, None, text) for one call."""
    result = await session.call_tool(name, arguments)
    text = "".join(getattr(block, "text", "") for block in result.content)
    if result.is_error:
        code = (result.structured_content or {}).get("error", {}).get("code", "untyped")
        return code, None, text
    try:
        return "ok", json.loads(text), text
    except json.JSONDecodeError:
        return "ok", text, text


def _check(name: str, rule: ToolRule, want: str, got: tuple[str, Any, str], scoped: bool, label: str) -> None:
    code, data, text = got
    if want == "ok":
        allowed = rule.own_error or "ok"
        assert code == allowed, f"{name} {label}: expected {allowed}, got {code}: {text[:300]}"
        if scoped and code == "ok" and rule.check is not None:
            rule.check(data)
    elif want == "403":
        assert code == "forbidden", f"{name} {label}: expected forbidden, got {code}: {text[:300]}"
    else:  # a scoped reach into team/b: refused either way, never served
        if rule.other_filtered and code == "ok":
            assert rule.check is not None
            rule.check(data)
            return
        assert code in ("forbidden", "not_found"), f"{name} {label}: expected a refusal, got {code}: {text[:300]}"


@pytest.mark.slow  # long: started first (tests/conftest.py)
def test_every_tool_over_http_for_every_role_and_scope(served: Served) -> None:
    async def run(role: str, scoped: bool, key: str) -> None:
        label = f"{role} {'scoped' if scoped else 'unscoped'}"
        async with http_session(served.url, key) as session:
            listed = {t.name for t in (await session.list_tools()).tools}
            assert listed == set(ALL_TOOLS), label
            for name, rule in TOOL_RULES.items():
                world = seed(served.service)
                own = expected(rule.role, rule.store_wide, role, scoped, False, 404)
                _check(name, rule, own, await _outcome(session, name, rule.own(world)), scoped, label + " own")
                if rule.other is not None:
                    other = expected(rule.role, rule.store_wide, role, scoped, True, 404)
                    _check(name, rule, other, await _outcome(session, name, rule.other(seed(served.service))), scoped, label + " other")

    for (role, scoped), key in served.keys.items():
        asyncio.run(run(role, scoped, key))


def test_every_tool_over_stdio_as_the_local_caller(tmp_path: Path) -> None:
    """Over stdio the caller is this machine's user: every tool works, none fails for want of
    a caller (the service refuses to run without one)."""
    db = tmp_path / "stdio.db"
    settings = load_settings(
        None, overrides={"data_dir": str(tmp_path), "embeddings": {"provider": "none"}, "storage": {"url": f"sqlite:///{db}"}}, env={}
    )
    service = build(settings)
    worlds: dict[str, tuple[World, World]] = {name: (seed(service), seed(service)) for name in TOOL_RULES}
    service.close()  # background extraction of the seeded conversations finishes first
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    (tmp_path / "absent.toml").write_text("")
    env.update(
        {
            "MEMMESH_DB": str(db),
            "MEMMESH_DATA_DIR": str(tmp_path),
            "MEMMESH_CONFIG": str(tmp_path / "absent.toml"),
            "MEMMESH_EMBEDDINGS_PROVIDER": "none",
        }
    )
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "memmesh.interfaces.cli.app", "mcp", "--profile", "full"], env=env, cwd=str(tmp_path)
    )

    async def run() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            assert {t.name for t in (await session.list_tools()).tools} == set(ALL_TOOLS)
            for name, rule in TOOL_RULES.items():
                own_world, other_world = worlds[name]
                _check(name, rule, "ok", await _outcome(session, name, rule.own(own_world)), False, "local own")
                if rule.other is not None:
                    code, _, text = await _outcome(session, name, rule.other(other_world))
                    assert code in ("ok", "not_found", "conflict", "invalid_input"), f"{name} local other: {code} {text[:200]}"
                    assert code != "forbidden", f"{name}: the local caller was refused: {text[:200]}"

    asyncio.run(run())


def _lines(service: Service, namespace: str) -> list[dict[str, Any]]:
    from memmesh.io.jsonl import export_lines

    return [json.loads(line) for line in export_lines(service, namespace, principal=LOCAL_PRINCIPAL)]


def test_a_scoped_admin_exports_and_imports_only_its_namespaces(served: Served) -> None:
    """Finding 2: an a/* admin exported every namespace with history and imported over others'."""
    svc = served.service
    world = seed(svc)
    svc.update(world.b1, {"content": f"b secret {world.tag}"}, principal=LOCAL_PRINCIPAL)
    mine = f"{OWN}/{world.tag}"  # a namespace of its own, so the export stays small on this shared server
    lead = svc.create_key(f"lead-{world.tag}", role="admin", namespaces=[mine], principal=LOCAL_PRINCIPAL).key
    theirs = svc.get(world.b1, principal=LOCAL_PRINCIPAL)
    header = json.dumps(_lines(svc, OWN)[0])

    # b1 rewritten into the lead's namespace with a later updated_at: the id is another namespace's
    forged = next(r for r in _lines(svc, "team/b") if r.get("memory", {}).get("id") == world.b1)
    forged["memory"].update({"namespace": mine, "content": "planted", "updated_at": "2999-01-01T00:00:00Z"})
    from memmesh.service import content_hash

    forged["memory"]["content_hash"] = content_hash(mine, "planted")
    forged["history"] = []
    into_b = next(r for r in _lines(svc, "team/b") if r.get("memory", {}).get("id") == world.b1)
    into_b["memory"].update({"id": "0190f5d2-6a4b-7c1e-9d2f-3b4c5d6e7f81", "content": "planted in b", "updated_at": "2999-01-01T00:00:00Z"})
    into_b["memory"]["content_hash"] = content_hash("team/b", "planted in b")
    into_b["history"] = []
    own_memory = next(r for r in _lines(svc, mine) if r["type"] == "memory")
    stray_history = json.loads(json.dumps(own_memory))
    stray_history["history"][0]["memory_id"] = world.b1
    link_out = {
        "type": "link",
        "link": {"source_id": world.a2, "target_id": world.b1, "relation": "supersedes", "created_at": "2026-01-01T00:00:00Z"},
    }

    async def run() -> None:
        async with http_session(served.url, lead) as session:
            code, data, text = await _outcome(session, "memory_export", {})
            assert code == "ok", text
            exported = data["jsonl"]
            assert "team/b" not in exported and f"b secret {world.tag}" not in exported and world.b1 not in exported
            assert world.a2 in exported and world.a1 not in exported  # a1 is in team/a, above the lead's namespace
            code, _, text = await _outcome(session, "memory_export", {"namespace": "team/b"})
            assert code == "forbidden", text
            for record, refusal in (
                (forged, "not_found"),
                (into_b, "forbidden"),
                (stray_history, "invalid_input"),
                (link_out, "not_found"),
            ):
                for dry_run in (True, False):
                    code, _, text = await _outcome(
                        session, "memory_import", {"jsonl": f"{header}\n{json.dumps(record)}\n", "dry_run": dry_run}
                    )
                    assert code == refusal, f"{record['type']}: {code} {text}"
            code, _, text = await _outcome(session, "memory_backup", {})
            assert code == "forbidden", text

    asyncio.run(run())
    assert svc.get(world.b1, principal=LOCAL_PRINCIPAL) == theirs  # untouched
    assert all(link.relation.value != "supersedes" for link in svc.links(world.a2, principal=LOCAL_PRINCIPAL))
    assert svc.recall("planted", mode="keyword", principal=LOCAL_PRINCIPAL).hits == []


def test_memory_restore_answers_alike_for_hidden_and_unknown_ids(served: Served) -> None:
    svc = served.service
    world = seed(svc)
    key = svc.create_key(f"w-{world.tag}", role="writer", namespaces=[OWN], principal=LOCAL_PRINCIPAL).key

    async def run() -> list[str]:
        async with http_session(served.url, key) as session:
            texts = []
            for memory_id in (world.b1, world.gone_b, "0190f5d2-6a4b-7c1e-9d2f-000000000000"):
                code, _, text = await _outcome(session, "memory_restore", {"id": memory_id})
                assert code == "not_found", text
                texts.append(text.replace(memory_id, "<id>"))
            return texts

    live_hidden, deleted_hidden, unknown = asyncio.run(run())
    assert live_hidden == deleted_hidden == unknown


def test_a_deleted_id_of_another_namespace_cannot_be_taken_over(served: Served) -> None:
    """memory_store and a scoped admin's memory_import with the id of b's deleted memory got
    the id moved into the caller's namespace (b lost its history); now not found, like a live one."""
    svc = served.service
    world = seed(svc)
    mine = f"{OWN}/{world.tag}"
    lead = svc.create_key(f"lead-t-{world.tag}", role="admin", namespaces=[mine], principal=LOCAL_PRINCIPAL).key
    header = json.dumps(_lines(svc, OWN)[0])
    own_record = next(r for r in _lines(svc, mine) if r["type"] == "memory")
    from memmesh.service import content_hash

    taken = json.loads(json.dumps(own_record))
    taken["memory"].update({"id": world.gone_b, "content": "taken over", "content_hash": content_hash(mine, "taken over")})
    taken["history"] = []

    async def run() -> None:
        async with http_session(served.url, lead) as session:
            code, _, text = await _outcome(session, "memory_store", {"content": "taken", "namespace": mine, "id": world.gone_b})
            assert code == "not_found", text
            code, _, text = await _outcome(session, "memory_import", {"jsonl": f"{header}\n{json.dumps(taken)}\n"})
            assert code == "not_found", text

    asyncio.run(run())
    assert svc.lifecycle.restore(world.gone_b, principal=LOCAL_PRINCIPAL).namespace == "team/b"


def test_memory_context_prompt_outside_the_keys_scope_names_the_scope_error(served: Served) -> None:
    """It used to answer a bare "Error rendering prompt memory_context"."""
    svc = served.service
    world = seed(svc)
    key = svc.create_key(f"p-{world.tag}", role="reader", namespaces=[OWN], principal=LOCAL_PRINCIPAL).key

    async def run() -> str:
        async with http_session(served.url, key) as session:
            with pytest.raises(Exception) as refused:  # the SDK client error; we read its text
                await session.get_prompt("memory_context", {"task": "plan", "namespace": OTHER})
            ok = await session.get_prompt("memory_context", {"task": "plan", "namespace": OWN})
            assert ok.messages
            return str(refused.value)

    message = asyncio.run(run())
    assert "Error rendering prompt" not in message and OTHER in message, message
