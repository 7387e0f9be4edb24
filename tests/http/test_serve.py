"""``memmesh serve`` as a subprocess: graceful SIGTERM, bind safety, keys and agents CLI,
JSON logs with request ids, several workers."""

from __future__ import annotations

import json
import re
import threading
import time

import httpx

from memmesh import Client


def test_sigterm_during_a_burst_of_writes_loses_no_acknowledged_write(spawn, tmp_path):
    db = tmp_path / "burst.db"
    server = spawn(db)
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for i in range(5000):
                if stop.is_set():
                    return
                memory_id = f"burst-{n}-{i}"
                try:
                    response = http.post("/api/v1/memories", json={"id": memory_id, "content": f"write {n}/{i}", "namespace": f"burst/{n}"})
                except httpx.HTTPError:
                    return  # the server has closed its doors: stop writing
                if response.status_code == 201:
                    with lock:
                        acknowledged.append(memory_id)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(acknowledged) < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.terminate()  # SIGTERM while writes are in flight
    assert server.stopped_gracefully()
    stop.set()
    for thread in threads:
        thread.join(15)
    assert len(acknowledged) >= 100

    restarted = spawn(db)
    with Client(restarted.url) as m:
        stored: set[str] = set()
        cursor = None
        while True:
            page = m.list(limit=1000, cursor=cursor)
            stored |= {item.id for item in page.items}
            cursor = page.next_cursor
            if cursor is None:
                break
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:3]}"


def test_non_loopback_bind_without_keys_refuses_to_start(cli, tmp_path):
    result = cli("serve", "--host", "0.0.0.0", "--port", "9")
    assert result.code == 1
    assert "refusing to listen on 0.0.0.0" in result.err and "--insecure" in result.err


def test_keys_cli_and_a_server_that_requires_them(cli, spawn, db_path):
    created = cli("keys", "create", "--agent", "planner", "--role", "writer", "--namespace", "team/*", "--json")
    assert created.code == 0, created.err
    key = json.loads(created.out)
    assert set(key) == {"key", "id", "agent_id", "role", "namespaces"}
    assert key["key"].startswith("mm_") and key["namespaces"] == ["team/*"] and key["role"] == "writer"

    listed = json.loads(cli("keys", "list", "--json").out)
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    assert [a["agent_id"] for a in json.loads(cli("agents", "list", "--json").out)] == ["planner"]
    bad_role = cli("keys", "create", "--agent", "x", "--role", "emperor")
    assert bad_role.code == 2 and "--role 'emperor' is unknown" in bad_role.err  # not one of the roles: a usage error

    server = spawn(db_path)
    assert httpx.get(server.url + "/api/v1/memories").status_code == 401
    with Client(server.url, api_key=key["key"]) as m:
        assert m.add("planned", namespace="team/q3").agent_id == "planner"
    revoked = cli("keys", "revoke", key["id"], "--json")
    assert revoked.code == 0 and json.loads(revoked.out)["revoked_at"]
    response = httpx.get(server.url + "/api/v1/memories", headers={"Authorization": f"Bearer {key['key']}"})
    assert response.status_code == 401
    assert cli("keys", "revoke", "no-such-key").code == 1


def test_agents_register_and_list(cli):
    registered = cli("agents", "register", "curator", "--name", "Curator bot", "--role", "admin", "--json")
    assert registered.code == 0, registered.err
    assert json.loads(registered.out)["display_name"] == "Curator bot"
    assert cli("agents", "register", "bad id!").code == 1
    listed = json.loads(cli("agents", "list", "--json").out)
    assert [(a["agent_id"], a["role"], a["namespaces"]) for a in listed] == [("curator", "admin", ["*"])]


def test_require_auth_json_logs_and_request_ids(spawn, db_path):
    server = spawn(db_path, "--require-auth", "--log-json")
    response = httpx.get(server.url + "/api/v1/stats", headers={"X-Request-ID": "trace-42"})
    assert response.status_code == 401 and response.headers["x-request-id"] == "trace-42"
    server.terminate()
    assert server.stopped_gracefully()
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry.get("request_id") == "trace-42"]
    assert access and access[0]["path"] == "/api/v1/stats" and access[0]["status"] == 401
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
    assert "\\u001b" not in server.log.read_text() and not any("color_message" in entry for entry in lines)  # uvicorn's coloured copy


def test_several_workers_share_one_store(spawn, db_path):
    server = spawn(db_path, "--workers", "2")
    with Client(server.url) as m:
        ids = [m.add(f"worker write {i}", namespace="w").id for i in range(20)]
        assert {x.id for x in m.get_all(namespace="w", limit=100)} == set(ids)
        assert m.stats().total == 20
    server.terminate()
    assert server.stopped_gracefully()


def test_port_0_announces_the_port_really_bound(spawn, db_path):
    for workers in ("1", "2"):
        server = spawn(db_path, "--port", "0", "--workers", workers, ready=False)  # the last --port wins
        deadline = time.monotonic() + 60
        found = None
        while found is None and time.monotonic() < deadline and server.proc.poll() is None:
            found = re.search(r"memmesh serving .* at http://127\.0\.0\.1:(\d+);", server.log.read_text())
            time.sleep(0.05)
        assert found is not None, server.log.read_text()
        port = int(found.group(1))
        assert port != 0
        while time.monotonic() < deadline:  # the workers may still be starting
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        server.terminate()
        assert server.stopped_gracefully(), server.log.read_text()


def test_a_start_up_error_under_log_json_is_one_json_line(cli):
    """A log shipper reading ``serve --log-json`` parses every line as JSON: the error that
    stops the start (a port in use, a bad setting) is one JSON record too,
    with its code and exit status; without --log-json it stays the plain ``error:`` line."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        cases = [
            (["--port", port], "already in use"),
            (["--port", "0", "--quorum-writes", "3"], "no --peers"),
        ]
        for flags, words in cases:
            result = cli("serve", "--log-json", *flags)
            lines = result.err.splitlines()
            assert result.code == 1 and len(lines) == 1, result.err
            record = json.loads(lines[0])
            assert record["level"] == "error" and words in record["message"], record
            assert record["code"] == "config_error" and record["exit_status"] == 1, record
        plain = cli("serve", "--port", port)
    assert plain.code == 1 and plain.err.startswith("error: ") and "already in use" in plain.err, plain.err
