"""Probe of session 18 (probe18): a new user's scoped key and an attacker's keys against a real
uvicorn; what the answers say and what the store holds afterwards."""

from __future__ import annotations

from typing import Any

from memmesh.model import LOCAL_PRINCIPAL

JSON = {"Content-Type": "application/json"}


def test_a_scoped_key_that_leaves_the_namespace_out_is_told_to_give_one_of_its_own(server: Any) -> None:
    """A key limited to ``a/*`` storing without a namespace was refused with "namespace
    'default' is outside this key's namespaces (a/*)": a namespace the caller never named,
    and no word that leaving it out is what chose it. The 403 now says so and names one the
    key may use; nothing is stored, and the same body with that namespace is stored."""
    key = server.service.create_key("alice", role="writer", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key
    http = server.http(key)
    refused = http.post("/api/v1/memories", json={"content": "Shipped v2 on Tuesday"}, headers=JSON)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["message"] == (
        "namespace 'default' is outside this key's namespaces (a/*); 'default' is what a call without a namespace "
        "uses: give one inside them, e.g. 'a'"
    )
    assert server.service.stats(principal=LOCAL_PRINCIPAL).total == 0
    stored = http.post("/api/v1/memories", json={"content": "Shipped v2 on Tuesday", "namespace": "a"}, headers=JSON)
    assert stored.status_code == 201, stored.text
    # a namespace the key named itself reads as before
    other = http.post("/api/v1/memories", json={"content": "x", "namespace": "b/x"}, headers=JSON)
    assert other.json()["error"]["message"] == "namespace 'b/x' is outside this key's namespaces (a/*)"


def test_an_admin_of_some_namespaces_is_refused_the_store_wide_sync_reads_in_plain_words(server: Any) -> None:
    """An admin key limited to ``a/*`` asking for the content digests or for replicated items
    got "the content digests covers every namespace" / "replicated items covers …"; the 403s
    now read as sentences, and say what key would do."""
    key = server.service.create_key("adma", role="admin", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key
    http = server.http(key)
    tail = "covers every namespace; it needs an admin key not limited to some namespaces"
    for answer, what in (
        (http.get("/api/v1/sync/digest"), "reading the content digests"),
        (http.get("/api/v1/sync/digest", params={"namespace": "b"}), "reading the content digests"),
        (http.post("/api/v1/sync/items", json={"ids": ["x"]}, headers=JSON), "reading replicated items"),
    ):
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["message"] == f"{what} {tail}"


def test_an_mcp_session_answers_only_the_key_that_opened_it(server: Any) -> None:
    """``/mcp`` checked each request's key but not whose session it named: a second key that
    learned a session id (a log, a proxy) could post into that session and DELETE it, ending
    the first key's session. A session id named with another key now answers as an unknown
    session (404 "Session not found"), and the owner's session goes on."""
    svc = server.service
    alice = svc.create_key("alice", role="writer", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key
    bob = svc.create_key("bob", role="writer", namespaces=["b/*"], principal=LOCAL_PRINCIPAL).key
    accept = {"Accept": "application/json, text/event-stream", **JSON}

    def post(key: str, body: dict[str, Any], session: str | None = None) -> Any:
        headers = {**accept, "Authorization": f"Bearer {key}"}
        if session:
            headers |= {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-06-18"}
        return server.http().post("/mcp", json=body, headers=headers)

    hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}}
    opened = post(alice, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})
    assert opened.status_code == 200, opened.text
    session = opened.headers["mcp-session-id"]
    assert post(alice, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session).status_code == 202
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "memory_list", "arguments": {}}}

    unknown = post(bob, listing, "0" * 32)
    foreign = post(bob, listing, session)
    assert foreign.status_code == unknown.status_code == 404, foreign.text
    assert foreign.json() == unknown.json()
    ended = server.http().delete("/mcp", headers={"Authorization": f"Bearer {bob}", "Mcp-Session-Id": session})
    assert ended.status_code == 404, ended.text
    mine = post(alice, listing, session)
    assert mine.status_code == 200 and '"isError":false' in mine.text, mine.text


def test_an_inspector_error_page_points_to_a_page_not_a_python_call(server: Any) -> None:
    """The web inspector's error pages showed the Python spelling of a fix: rolling back an
    unknown curator run said "use curator_runs() to see the run ids", approving an unknown
    pending action "use pending(status='all') …". They now name the inspector's page."""
    import html
    import re

    key = server.service.create_key("adma", role="admin", namespaces=["a/*"], principal=LOCAL_PRINCIPAL).key
    browser = server.http()
    page = browser.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    assert browser.post("/ui/login", data={"csrf": csrf, "key": key}).status_code in (200, 303)
    csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/ui/curator").text).group(1)  # type: ignore[union-attr]

    def shown(path: str) -> str:
        answer = browser.post(path, data={"csrf": csrf})
        assert answer.status_code == 404, answer.text
        return html.unescape(re.search(r'id="error-message">([^<]*)<', answer.text).group(1))  # type: ignore[union-attr]

    assert shown("/ui/curator/no-such-run/rollback") == (
        "no curator run with id no-such-run; use the Curator page (/ui/curator) to see the run ids"
    )
    pending = shown("/ui/pending/01a23709-0000-7000-8000-000000000000/approve")
    assert "pending(status=" not in pending and "the Pending page with status all (/ui/pending?status=all)" in pending
