"""An explicit empty session root (``namespace=""``, or only spaces) is a usage error on every
face, saying what to give; before, it silently meant the default root, like leaving it out.
Append, turns, rehydrate and remember all pass their root through one rule
(``Sessions._pick``), so they refuse it alike and nothing is written."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "http"))
from http_support import Running
from tests.mcp.conftest import keyword_mcp_env

from memmesh import Memory
from memmesh.errors import InvalidInputError

SAYS = "namespace is empty: give the root the session lives under, such as 'sessions' (the default)"


def test_python_api_refuses_an_empty_root_and_writes_nothing(mem: Memory) -> None:
    mem.session_append("s1", content="hello")
    sessions, who = mem.service.sessions, mem.principal
    calls: list[Callable[[], object]] = [
        lambda: mem.session_rehydrate("s1", namespace=""),
        lambda: mem.session_rehydrate("s1", namespace="   "),
        lambda: mem.session_append("s1", content="more", namespace=""),
        lambda: mem.session_append("new-1", content="first", namespace=" "),
        lambda: sessions.turns("s1", namespace="", principal=who),
        lambda: sessions.append_many("s1", [{"role": "user", "content": "more"}], namespace="", principal=who),
        lambda: mem.service.extraction.remember([{"role": "user", "content": "I live in Lyon."}], namespace="", principal=who),
    ]
    for call in calls:
        with pytest.raises(InvalidInputError) as refused:
            call()
        assert refused.value.usage and refused.value.field == "namespace", refused.value
        assert str(refused.value).startswith(SAYS), refused.value
    assert [t.content for t in sessions.turns("s1", principal=who)] == ["hello"]
    assert [s.session_id for s in mem.session_list()] == ["s1"]
    assert mem.session_rehydrate("s1").namespace == mem.session_rehydrate("s1", namespace="sessions").namespace == "sessions/s1"


def test_cli_answers_an_empty_namespace_as_a_usage_error(cli_in_process: Any) -> None:
    cli = cli_in_process
    assert cli("session", "append", "s1", "hello").code == 0
    for args in (("session", "rehydrate", "s1", "--namespace", ""), ("session", "append", "s1", "more", "--namespace", "")):
        refused = cli(*args)
        assert refused.code == 2, refused
        assert "--namespace is empty: give the root the session lives under" in refused.err, refused.err
    assert "[turn 1] user: hello" in cli("session", "rehydrate", "s1").out
    assert "turn 2" not in cli("session", "rehydrate", "s1").out


def test_http_answers_an_empty_namespace_with_422(http_server: Running) -> None:
    http = http_server.http()
    assert http.post("/api/v1/sessions/s1/turns", json={"content": "hello"}).status_code == 201
    refused = http.get("/api/v1/sessions/s1/rehydrate", params={"namespace": ""})
    assert str(refused.request.url).endswith("?namespace="), refused.request.url
    assert refused.status_code == 422 and refused.json()["error"]["message"].startswith(SAYS), refused.text
    appended = http.post("/api/v1/sessions/s1/turns", json={"content": "more", "namespace": ""})
    assert appended.status_code == 422 and appended.json()["error"]["message"].startswith(SAYS), appended.text
    found = http.get("/api/v1/sessions/s1/rehydrate").json()
    assert [t["content"] for t in found["recent"]] == ["hello"]


def test_mcp_answers_an_empty_namespace_with_a_tool_error(tmp_path: Path) -> None:
    mcp = keyword_mcp_env(tmp_path, tmp_path / "mcp.db")

    async def scenario() -> None:
        async with mcp.client("--profile", "power") as client:
            await client.ok("session_append", session_id="s1", content="hello")
            for tool, args in (("session_rehydrate", {}), ("session_append", {"content": "more"})):
                refused = await client.call(tool, session_id="s1", namespace="", **args)
                assert refused.is_error and refused.text.startswith(f"error: {SAYS}"), refused.text
            found = await client.ok("session_rehydrate", session_id="s1")
            assert [t["content"] for t in found["recent"]] == ["hello"]

    asyncio.run(scenario())


def test_a_turns_role_is_checked_by_the_schema_as_by_the_core(http_server: Running) -> None:
    """/openapi.json let any role through while the core refused "Big Boss" (a schema-valid
    request answered 422 with an empty loc); the schema now says what the core takes."""
    http = http_server.http()
    schema = http.get("/openapi.json").json()["components"]["schemas"]["TurnRequest"]["properties"]["role"]
    assert "pattern" in schema
    refused = http.post("/api/v1/sessions/s1/turns", json={"content": "hi", "role": "Big Boss"})
    assert refused.status_code == 422 and refused.json()["error"]["details"]["errors"][0]["loc"] == ["body", "role"], refused.text
    assert http.post("/api/v1/sessions/s1/turns", json={"content": "hi", "role": "Assistant"}).status_code == 201
