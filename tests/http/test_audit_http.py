"""GET /api/v1/audit (store-wide admin keys only) and the server's background checkpointer."""

from __future__ import annotations

import json
import time
from pathlib import Path

from http_support import http_settings

from memmesh.audit.notes import LOG_FILE, init_key, parse_note
from memmesh.model import LOCAL_PRINCIPAL


def _error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def _audited_settings(tmp_path: Path, folder: str):
    keys = tmp_path / f"{folder}-keys"
    keys.mkdir()
    init_key(keys / "signing.key", "http-audit")
    data = tmp_path / folder
    data.mkdir()
    return http_settings(data, audit={"signing_key_file": str(keys / "signing.key"), "checkpoint_interval_s": 0.1})


def test_audit_route_is_for_store_wide_admins_only(serve, tmp_path):
    server = serve(_audited_settings(tmp_path, "s1"))
    svc = server.service
    admin = svc.create_key("root", role="admin", principal=LOCAL_PRINCIPAL)
    scoped = svc.create_key("lead", role="admin", namespaces=["team/*"], principal=LOCAL_PRINCIPAL)
    writer = svc.create_key("bot", role="writer", principal=LOCAL_PRINCIPAL)
    gone = svc.create_key("old-root", role="admin", principal=LOCAL_PRINCIPAL)
    svc.revoke_key(gone.id, principal=LOCAL_PRINCIPAL)
    assert server.http(writer.key).post("/api/v1/memories", json={"content": "hello", "namespace": "team/x"}).status_code == 201

    _error(server.http(scoped.key).get("/api/v1/audit"), 403, "forbidden")
    _error(server.http(writer.key).get("/api/v1/audit"), 403, "forbidden")
    _error(server.http(gone.key).get("/api/v1/audit"), 401, "unauthorized")
    _error(server.http().get("/api/v1/audit"), 401, "unauthorized")
    _error(server.http(admin.key).get("/api/v1/audit", params={"limit": 0}), 422, "invalid_input")
    _error(server.http(admin.key).get("/api/v1/audit", params={"since": -1}), 422, "invalid_input")

    http = server.http(admin.key)
    page = http.get("/api/v1/audit", params={"limit": 3}).json()
    assert [e["index"] for e in page["entries"]] == [0, 1, 2] and page["next_since"] == 3
    rest = http.get("/api/v1/audit", params={"since": page["next_since"], "limit": 100}).json()
    everything = page["entries"] + rest["entries"]
    assert rest["next_since"] is None
    assert [e["action"] for e in everything][-2:] == ["key.revoke", "memory.add"]
    write = everything[-1]
    assert write["actor"] == f"key:{writer.id} agent:bot" and write["namespace"] == "team/x"
    assert all(k.key not in json.dumps(everything) for k in (admin, scoped, writer, gone))


def test_server_signs_checkpoints_while_serving(serve, tmp_path):
    settings = _audited_settings(tmp_path, "s2")
    server = serve(settings)
    http = server.http()
    for i in range(3):
        assert http.post("/api/v1/memories", json={"content": f"note {i}"}).status_code == 201
    log = settings.data_dir / "audit" / LOG_FILE
    deadline = time.monotonic() + 10
    sizes: list[int] = []
    while time.monotonic() < deadline:
        if log.exists():
            sizes = [parse_note(json.loads(line)["note"])[0].size for line in log.read_text().splitlines()]
            if sizes and sizes[-1] == 3:
                break
        time.sleep(0.05)
    assert sizes and sizes[-1] == 3, sizes  # signed within the interval, without any request asking
    assert server.service.audit.verify(principal=LOCAL_PRINCIPAL).ok


def test_a_clean_shutdown_signs_what_is_committed(tmp_path):
    from http_support import ThreadServer

    settings = _audited_settings(tmp_path, "s3")
    settings.audit.checkpoint_interval_s = 600.0  # only the shutdown can sign within this test
    server = ThreadServer(settings)
    running = server.start()
    http = running.http()
    for i in range(2):
        assert http.post("/api/v1/memories", json={"content": f"note {i}"}).status_code == 201
    running.close_clients()
    log = settings.data_dir / "audit" / LOG_FILE
    assert not log.exists()
    server.stop()
    sizes = [parse_note(json.loads(line)["note"])[0].size for line in log.read_text().splitlines()]
    assert sizes == [2]
