"""A bug inside a tool, a resource read or the prompt (an exception that is no MemmeshError)
is memmesh's ``internal_error`` over MCP, as it is a 500 ``internal_error`` over HTTP: the
answer says it is the server's bug and names the incident under which the server's log has
the traceback (logged once, by memmesh), and the session goes on. The SDK answered only
"Error executing tool memory_get" ("Error creating resource from template …", "Error
rendering prompt …" with code 0). And ``tools/call`` (or ``prompts/get``) arguments that are
not a JSON object are an error saying so, naming the tool; the SDK answered a bare -32602
"Invalid request parameters". Real ``mcp`` client, over stdio and streamable HTTP."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mcp.types as types
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from tests.mcp.conftest import Client, reply
from tests.mcp.test_http_mcp import served, session  # noqa: F401 (served: a fixture)

from memmesh import Memory

if TYPE_CHECKING:
    from tests.mcp.conftest import McpEnv

INJECTED = "injected_bug"

LAUNCHER = f"""
from memmesh.service import Service
from memmesh.survey import Survey

def broken(self, *args, **kwargs):
    raise KeyError({INJECTED!r})

Service.get = broken  # memory_get and the memory:// resource read through it
Survey.session_start = broken  # the memory_context prompt
from memmesh.interfaces.cli.app import main
main()
"""
"""``memmesh mcp`` with a bug put into the core methods that ``memory_get``, the
``memory://{{id}}`` resource and the ``memory_context`` prompt call."""


def _incident(text: str) -> str:
    """The incident id an internal error's message names (the server's log has it too)."""
    assert text.startswith("internal server error: a bug in memmesh, not a fault in your request"), text
    assert "the server's log has its traceback" in text and INJECTED not in text, text  # no internals to the client
    found = re.search(r"with incident ([0-9a-f]{8});", text)
    assert found, text
    return found.group(1)


async def _crashes_and_goes_on(client: Client) -> list[str]:
    """A tool, a resource and the prompt hit the bug; each answers the internal error, and the
    same session then stores and lists. Returns the incident ids."""
    crash = await client.call("memory_get", id="0190a1b2-0000-7000-8000-000000000000")
    assert crash.is_error, crash.text
    assert crash.structured is not None and crash.structured["error"]["code"] == "internal_error", crash.structured
    assert crash.text == f"error: {crash.structured['error']['message']}"
    incidents = [_incident(crash.structured["error"]["message"])]

    stored = await client.ok("memory_store", content="stored after the crash", namespace="after/bug")
    listed = await client.ok("memory_list", namespace="after/bug")
    assert [m["id"] for m in listed["items"]] == [stored["id"]]

    with pytest.raises(MCPError) as resource:
        await client.session.read_resource(f"memory://{stored['id']}")
    assert resource.value.code == types.INTERNAL_ERROR and resource.value.message.startswith("error: "), resource.value.error
    incidents.append(_incident(resource.value.message.removeprefix("error: ")))

    with pytest.raises(MCPError) as prompt:
        await client.session.get_prompt("memory_context", {"task": "plan the release"})
    assert prompt.value.code == types.INTERNAL_ERROR and prompt.value.data["code"] == "internal_error", prompt.value.error
    incidents.append(_incident(prompt.value.data["message"]))

    assert (await client.ok("memory_list", namespace="after/bug"))["items"][0]["content"] == "stored after the crash"
    assert len(set(incidents)) == 3
    return incidents


def test_a_bug_is_the_internal_error_logged_once_and_the_session_goes_on_stdio(mcp_env: McpEnv, tmp_path: Path) -> None:
    errlog = tmp_path / "server-stderr.txt"
    params = StdioServerParameters(command=sys.executable, args=["-c", LAUNCHER, "mcp"], env=mcp_env.env, cwd=str(mcp_env.tmp))

    async def scenario() -> list[str]:
        with errlog.open("w") as err:
            async with stdio_client(params, errlog=err) as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                return await _crashes_and_goes_on(Client(s))

    incidents = asyncio.run(scenario())
    log = errlog.read_text()
    for incident in incidents:
        assert log.count(incident) == 1, log  # one log entry per crash, naming its incident
    assert log.count(f"KeyError: '{INJECTED}'") == 3, log  # its traceback, once each
    assert "raised an unexpected exception" not in log and "Error executing tool" not in log, log  # not the SDK's own


def test_a_bug_is_the_internal_error_logged_once_and_the_session_goes_on_http(
    served: tuple[str, Memory],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, mem = served

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError(INJECTED)

    monkeypatch.setattr(mem.service, "get", broken)
    monkeypatch.setattr(mem.service.survey, "session_start", broken)

    async def scenario() -> list[str]:
        async with session(url) as s:
            return await _crashes_and_goes_on(Client(s))

    with caplog.at_level(logging.ERROR):
        incidents = asyncio.run(scenario())
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in crashes] == ["memmesh.mcp"] * 3, [(r.name, r.getMessage()) for r in crashes]
    for record, incident in zip(crashes, incidents, strict=True):
        assert incident in record.getMessage()
        assert record.exc_info is not None and record.exc_info[1] is not None
        assert isinstance(record.exc_info[1], KeyError) and record.exc_info[1].args == (INJECTED,)


UNCHECKED = pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
"""(pydantic warns when it serialises the unchecked arguments)"""

NOT_OBJECTS: list[tuple[Any, str]] = [(["content", "x"], "a list"), ("content=x", "a string"), (5, "a number"), (True, "a boolean")]


async def _refuses_arguments_that_are_not_an_object(s: ClientSession) -> None:
    for arguments, kind in NOT_OBJECTS:
        # the client's models would refuse such arguments: built unchecked, sent as they are
        params = types.CallToolRequestParams.model_construct(name="memory_store", arguments=arguments)
        result = reply(await s.send_request(types.CallToolRequest(params=params), types.CallToolResult))
        assert result.is_error, result.text
        expected = f"memory_store: arguments must be a JSON object of argument names and values ({{}} for none), not {kind}"
        assert result.text == f"error: {expected}"
        assert result.structured == {"error": {"code": "invalid_input", "message": expected, "details": {}}}
    prompt = types.GetPromptRequestParams.model_construct(name="memory_context", arguments=["task"])
    with pytest.raises(MCPError) as refused:
        await s.send_request(types.GetPromptRequest(params=prompt), types.GetPromptResult)
    assert refused.value.code == types.INVALID_PARAMS
    expected = "memory_context: arguments must be a JSON object of argument names and values ({} for none), not a list"
    assert refused.value.message == f"error: {expected}"
    assert refused.value.data == {"code": "invalid_input", "message": expected, "details": {}}
    assert not (await s.call_tool("memory_store", {"content": "an object is fine", "namespace": "args"})).is_error


@UNCHECKED
def test_arguments_that_are_not_an_object_are_refused_naming_the_tool_stdio(mcp_env: McpEnv) -> None:
    async def scenario() -> None:
        async with mcp_env.client() as client:
            await _refuses_arguments_that_are_not_an_object(client.session)

    asyncio.run(scenario())


@UNCHECKED
def test_arguments_that_are_not_an_object_are_refused_naming_the_tool_http(served: tuple[str, Memory]) -> None:  # noqa: F811
    url, mem = served

    async def scenario() -> None:
        async with session(url) as s:
            await _refuses_arguments_that_are_not_an_object(s)

    asyncio.run(scenario())
    assert [m.content for m in mem.get_all()] == ["an object is fine"]
