"""CSRF and DNS rebinding on a loopback server (security probe, issue 12 follow-up).

Any web page can send text/plain or form bodies to 127.0.0.1 without a CORS preflight, and a
rebound DNS name reaches it with a foreign Host; /api/v1 and /mcp refuse both, in one error shape.
"""

from __future__ import annotations

import json
import socket

import pytest

from memmesh.model import LOCAL_PRINCIPAL

BODY = b'{"content": "written by a web page"}'


def _stored(running) -> int:
    return running.service.stats(principal=LOCAL_PRINCIPAL).total


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None])
def test_a_body_that_is_not_declared_json_is_415_and_stores_nothing(server, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = server.http().post("/api/v1/memories", content=BODY, headers=headers)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in error["message"]
    assert _stored(server) == 0


def test_a_page_cannot_mint_an_admin_key_with_a_simple_request(server):
    response = server.http().post("/api/v1/keys", content=b'{"name": "evil", "admin": true}', headers={"Content-Type": "text/plain"})
    assert response.status_code == 415, response.text
    assert not server.service.keys_required()


def test_json_with_a_charset_is_accepted(server):
    response = server.http().post("/api/v1/memories", content=BODY, headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("host", ["evil.example", "evil.example:9077", "127.0.0.1.nip.io"])
def test_a_foreign_host_on_a_loopback_server_is_421(server, host):
    response = server.http().post("/api/v1/memories", content=BODY, headers={"Content-Type": "application/json", "Host": host})
    assert response.status_code == 421, response.text
    assert "server.allowed_hosts" in response.json()["error"]["message"]
    assert server.http().get("/api/v1/memories", headers={"Host": host}).status_code == 421
    assert _stored(server) == 0


@pytest.mark.parametrize("host", ["localhost:1", "127.0.0.1", "[::1]:9077", "LOCALHOST"])
def test_loopback_hosts_on_any_port_are_answered(server, host):
    assert server.http().get("/api/v1/memories", headers={"Host": host}).status_code == 200


def test_allowed_hosts_extends_the_loopback_names(serve):
    running = serve(server={"allowed_hosts": ["memory.lan"]})
    assert running.http().get("/api/v1/memories", headers={"Host": "memory.lan:9077"}).status_code == 200
    assert running.http().get("/api/v1/memories", headers={"Host": "other.lan"}).status_code == 421


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost:1"])
def test_a_foreign_origin_is_403_and_stores_nothing(server, origin):
    response = server.http().post("/api/v1/memories", content=BODY, headers={"Content-Type": "application/json", "Origin": origin})
    assert response.status_code == 403, response.text
    assert "server.allowed_origins" in response.json()["error"]["message"]
    assert _stored(server) == 0


def test_the_servers_own_origin_and_listed_origins_are_allowed(serve):
    running = serve(server={"allowed_origins": ["https://app.example"]})
    own = running.url.rstrip("/")
    headers = {"Content-Type": "application/json"}
    assert running.http().post("/api/v1/memories", content=BODY, headers={**headers, "Origin": own}).status_code == 201
    listed = running.http().post("/api/v1/memories", content=BODY, headers={**headers, "Origin": "https://app.example"})
    assert listed.status_code == 200 and listed.json()["existed"] is True  # allowed: the same content, already stored


def test_two_host_headers_are_refused_whichever_comes_first(server):
    """The check read the first Host; a proxy in front may route by the last."""
    port = int(server.url.rsplit(":", 1)[1])
    for hosts in ((b"127.0.0.1", b"evil.example"), (b"evil.example", b"127.0.0.1"), (b"127.0.0.1", b"127.0.0.1")):
        request = b"GET /api/v1/memories HTTP/1.1\r\n" + b"".join(b"Host: %s\r\n" % h for h in hosts) + b"Connection: close\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 421 "), answer[:200]
        assert b"2 Host headers" in answer


INITIALIZE = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "p", "version": "1"}},
    }
).encode()
MCP_ACCEPT = "application/json, text/event-stream"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ({"Content-Type": "application/json", "Host": "evil.example"}, 421, "misdirected_request"),
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403, "forbidden"),
    ],
    ids=["text-plain", "foreign-host", "foreign-origin"],
)
def test_mcp_refuses_a_page_in_the_one_error_shape(server, headers, status, code):
    """/mcp refuses what /api/v1 refuses, with the same status and JSON error (the MCP SDK
    alone answered 400/421/403 in plain text: "Invalid Origin header")."""
    response = server.http().post("/mcp", content=INITIALIZE, headers={"Accept": MCP_ACCEPT, **headers})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code, response.text


def test_mcp_answers_its_own_client_as_before(server):
    response = server.http().post("/mcp", content=INITIALIZE, headers={"Accept": MCP_ACCEPT, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
