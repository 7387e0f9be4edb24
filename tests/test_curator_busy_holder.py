"""A curator run refused because another run holds the store's lease: the holder (node id and
process id) is operators' information, shown to admin callers only. A writer key gets the
same 409 and a message that says what to do, without the holder."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from memmesh import Memory
from permission_server import matrix_server

HOLDER = "node-elsewhere:4242:run-1"


def _hold(service: Any) -> None:
    assert service.curator.lease.acquire(HOLDER, time.time(), 60) is None


def _release(service: Any) -> None:
    service.curator.lease.release(HOLDER)


def test_http_shows_the_lease_holder_to_admin_keys_only(tmp_path: Path) -> None:
    with matrix_server(tmp_path) as server:
        admin = {"Authorization": f"Bearer {server.keys[('admin', False)]}"}
        writer = {"Authorization": f"Bearer {server.keys[('writer', False)]}"}
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            for text in ("The build server has 16 GB of memory.", "The build server has 64 GB of memory."):
                added = http.post("/api/v1/memories", json={"content": text, "namespace": "infra"}, headers=admin)
                assert added.status_code == 201, added.text
            run = http.post("/api/v1/curator/run", json={"namespace": "infra"}, headers=admin)
            assert run.status_code == 200, run.text
            run_id = run.json()["run_id"]
            _hold(server.service)
            try:
                calls = [("/api/v1/curator/run", {"namespace": "infra"}), (f"/api/v1/curator/runs/{run_id}/rollback", None)]
                for path, body in calls:
                    as_writer = http.post(path, json=body, headers=writer)
                    assert as_writer.status_code == 409, as_writer.text
                    error = as_writer.json()["error"]
                    assert "a curator run is" in error["message"] and "going on this store" in error["message"]
                    assert HOLDER not in as_writer.text and "node-elsewhere" not in as_writer.text, as_writer.text
                    assert "holder" not in (error.get("details") or {})
                    as_admin = http.post(path, json=body, headers=admin)
                    assert as_admin.status_code == 409, as_admin.text
                    assert f"held by {HOLDER}" in as_admin.json()["error"]["message"]
                    assert as_admin.json()["error"]["details"]["holder"] == HOLDER
            finally:
                _release(server.service)
            assert http.post(f"/api/v1/curator/runs/{run_id}/rollback", headers=writer).status_code == 200  # free again


def test_python_api_writer_and_cli_admin(tmp_path: Path, db_path: Path, cli_in_process: Any) -> None:
    """The Python API with a writer principal gets no holder; the CLI (the local admin) does."""
    from tests.conftest import keyword_settings

    from memmesh.errors import ConflictError
    from memmesh.model import Principal

    with Memory(f"sqlite:///{db_path}", keyword_settings(tmp_path)) as mem:
        mem.add("The API rate limit is 100 requests per minute.", namespace="ops")
        _hold(mem.service)
        try:
            writer = Principal(agent_id="w", role="writer", namespaces=["*"])
            try:
                mem.service.curator.run(principal=writer)
                raise AssertionError("the run went ahead while another held the lease")
            except ConflictError as exc:
                assert HOLDER not in exc.message and "holder" not in exc.details, (exc.message, exc.details)
                assert "wait for it to finish, or do a dry run" in exc.message
            cli = cli_in_process("curator", "run", "--json")
            assert cli.code == 1, cli
            assert f"held by {HOLDER}" in cli.err, cli.err
            dry = cli_in_process("curator", "run", "--dry-run", "--json")
            assert dry.code == 0 and json.loads(dry.out)["dry_run"] is True  # a dry run takes no lease
        finally:
            _release(mem.service)
