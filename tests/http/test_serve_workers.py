"""``memmesh serve --workers 2``: what one worker starts, another finishes.

uvicorn hands each new connection to whichever worker accepts it first, so a browser whose
keep-alive connection was closed (uvicorn closes an idle one after 5 s), or an MCP client
that opens a connection per call, lands on any worker. The web inspector's login and CSRF
token, and every /mcp call, must work wherever they land: here every request is a new TCP
connection, 20 times in a row.
"""

from __future__ import annotations

import json
import re
import stat

import httpx

ROUNDS = 20
FRESH_CONNECTIONS = httpx.Limits(max_keepalive_connections=0)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
MCP_ACCEPT = "application/json, text/event-stream"


def fresh_client(url: str, **options: object) -> httpx.Client:
    """A client that opens a new connection for every request (any worker may take it)."""
    return httpx.Client(base_url=url, limits=FRESH_CONNECTIONS, timeout=30, **options)  # type: ignore[arg-type]


def mcp_answer(response: httpx.Response) -> dict[str, object]:
    """The JSON-RPC answer of a streamable-HTTP POST (a JSON body or one SSE event)."""
    assert response.status_code == 200, (response.status_code, response.text)
    if response.headers["content-type"].startswith("application/json"):
        return json.loads(response.text)  # type: ignore[no-any-return]
    data = [line[len("data:") :].strip() for line in response.text.splitlines() if line.startswith("data:")]
    assert data, response.text
    return json.loads(data[-1])  # type: ignore[no-any-return]


def test_web_logins_and_mcp_calls_work_whichever_worker_answers(cli, spawn, db_path, tmp_path):
    created = cli("keys", "create", "--agent", "w1", "--role", "admin", "--json")
    assert created.code == 0, created.err
    key = json.loads(created.out)["key"]
    server = spawn(db_path, "--workers", "2")  # one server for both: a start costs seconds
    web_logins(server.url, key)
    shared = tmp_path / "data" / "web_sessions.db"  # where the workers keep the sessions
    assert stat.S_IMODE(shared.stat().st_mode) == 0o600
    kept = b"".join(p.read_bytes() for p in shared.parent.glob("web_sessions.db*"))
    assert key.encode() not in kept and key.partition("_")[2][-20:].encode() not in kept  # never the key
    mcp_calls(server.url, key)


def web_logins(url: str, key: str) -> None:
    """Log in, open a page and log out, each on a new connection: never a CSRF 403 or a
    bounce to the login form, and a logout holds on every worker."""
    for attempt in range(ROUNDS):
        with fresh_client(url) as browser:
            form = browser.get("/ui/login")
            assert form.status_code == 200
            token = CSRF.search(form.text)
            assert token is not None
            login = browser.post("/ui/login", data={"csrf": token.group(1), "key": key})
            assert login.status_code == 303 and login.headers["location"] == "/ui/memories", (attempt, login.status_code, login.text[:300])
            page = browser.get("/ui/memories")
            assert page.status_code == 200, (attempt, page.status_code, page.headers.get("location"))
            assert "w1" in page.text  # logged in as the key's agent
            token = CSRF.search(page.text)
            assert token is not None
            out = browser.post("/ui/logout", data={"csrf": token.group(1)})
            assert out.status_code == 303 and out.headers["location"] == "/ui/login", (attempt, out.status_code)
            assert browser.get("/ui/memories").status_code == 303  # logged out on every worker


def mcp_calls(url: str, key: str) -> None:
    """An MCP client's calls after one initialize, each on a new connection: never a 404
    "Session not found", and a memory stored through one worker is found through any."""
    headers = {"Authorization": "Bearer " + key, "Accept": MCP_ACCEPT}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    with fresh_client(url, headers=headers) as mcp:
        opened = mcp.post("/mcp", json=initialize)
        assert mcp_answer(opened)["result"]
        session = opened.headers.get("mcp-session-id")  # a client sends it back when it gets one
        if session is not None:
            mcp.headers["mcp-session-id"] = session
        mcp.headers["mcp-protocol-version"] = "2025-03-26"
        assert mcp.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202
        for i in range(ROUNDS):
            listed = mcp_answer(mcp.post("/mcp", json={"jsonrpc": "2.0", "id": 100 + i, "method": "tools/list"}))
            assert "memory_store" in {t["name"] for t in listed["result"]["tools"]}  # type: ignore[index]
        stored = mcp_answer(
            mcp.post(
                "/mcp",
                json={
                    "jsonrpc": "2.0",
                    "id": 2,
                    "method": "tools/call",
                    "params": {"name": "memory_store", "arguments": {"content": "noted by a worker", "namespace": "w"}},
                },
            )
        )
        assert not stored["result"]["isError"], stored  # type: ignore[index]
        keyless = {k: v for k, v in mcp.headers.items() if k.lower() != "authorization"}
        anonymous = httpx.post(url + "/mcp", headers=keyless, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, timeout=30)
        assert anonymous.status_code == 401  # every request is checked on its own: no session lets one through
        for i in range(ROUNDS):
            found = mcp_answer(
                mcp.post(
                    "/mcp",
                    json={
                        "jsonrpc": "2.0",
                        "id": 200 + i,
                        "method": "tools/call",
                        "params": {"name": "memory_search", "arguments": {"query": "noted", "namespace": "w"}},
                    },
                )
            )
            assert "noted by a worker" in json.dumps(found), (i, found)
