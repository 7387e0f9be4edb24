"""Over stdio, a line the MCP SDK cannot read as a JSON-RPC message (a lone UTF-16 surrogate
escape such as "\\ud800" in an argument, or a cut-off line) still gets an answer: a JSON-RPC
error naming what to fix, for the request's id when the line shows one (id null when it does
not, as JSON-RPC says for a parse error). Before, such a request was dropped without a word
and the client waited for an answer that never came. Raw JSON-RPC to a real ``memmesh mcp``
process, since the SDK client cannot send such lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.mcp.conftest import McpEnv

INIT = (
    '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},'
    '"clientInfo":{"name":"t","version":"0"}}}\n{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
)


def _call(call_id: int, tool: str, arguments: str) -> str:
    return f'{{"jsonrpc":"2.0","id":{call_id},"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}\n'


def test_unreadable_lines_are_answered_with_an_error_and_the_server_goes_on(mcp_env: McpEnv, tmp_path: Path) -> None:
    lines = (
        INIT
        + _call(2, "memory_store", '{"content":"lone \\ud800 surrogate","namespace":"probe"}')
        + '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":\n'  # cut off: no id can be trusted
        + '{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"\\udfff"}}\n'  # a notification: no answer
        + _call(4, "memory_store", '{"content":"a fact stored after them","namespace":"probe"}')
    )
    proc = subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "mcp", "--db", str(tmp_path / "m.db")],
        input=lines.encode(),
        capture_output=True,
        env=mcp_env.env,
        cwd=mcp_env.tmp,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    answers = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    by_id = {a["id"]: a for a in answers}
    assert sorted(by_id, key=str) == sorted([1, 2, None, 4], key=str), answers

    surrogate = by_id[2]["error"]
    assert surrogate["code"] == -32700
    assert "not valid Unicode text" in surrogate["message"] and "UTF-8" in surrogate["message"], surrogate
    cut = by_id[None]["error"]
    assert cut["code"] == -32700 and "not valid JSON" in cut["message"] and "one JSON-RPC message per line" in cut["message"], cut
    assert not by_id[4]["result"].get("isError"), by_id[4]

    from memmesh import Memory

    with Memory(f"sqlite:///{tmp_path / 'm.db'}", config=str(tmp_path / "absent.toml")) as mem:
        assert [m.content for m in mem.list(namespace="probe", limit=10).items] == ["a fact stored after them"]
