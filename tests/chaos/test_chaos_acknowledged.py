"""The chaos runner and the ship-gate count a write as acknowledged when the node says it is
stored: 201, or 200 with ``existed: true`` for the id sent (a resent write that had landed),
against a real uvicorn on 127.0.0.1; anything else is not acknowledged."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import httpx
from tests.http.http_support import ThreadServer, http_settings

from memmesh.chaos.runner import ChaosConfig, CycleCounts, Run, acknowledged
from memmesh.clock import new_id


def test_a_resent_write_answered_200_existed_is_acknowledged(tmp_path: Path) -> None:
    server = ThreadServer(http_settings(tmp_path))
    running = server.start()
    try:
        run = Run(ChaosConfig(faults=["slow_peer"], workdir=tmp_path / "chaos"), "slow_peer", lambda _line: None, None, "auto")
        node = SimpleNamespace(name="node-a", url=running.url)
        counts = CycleCounts()
        memory_id = new_id()
        with httpx.Client(timeout=10) as http:
            assert run.write_one(http, node, memory_id, 0, 1, counts)  # type: ignore[arg-type]
            assert run.write_one(http, node, memory_id, 0, 1, counts)  # type: ignore[arg-type]  # the same write sent again
            again = http.post(
                running.url + "/api/v1/memories",
                json={"id": memory_id, "content": run.ledger.acked[memory_id], "namespace": f"{run.prefix}/1"},
            )
            assert again.status_code == 200 and again.json()["existed"] is True
            other = http.post(running.url + "/api/v1/memories", json={"content": "something else"})
            sent = new_id()
            twin = http.post(running.url + "/api/v1/memories", json={"content": "something else", "id": sent})
            refused = http.post(running.url + "/api/v1/memories", json={"content": ""})
        assert counts.writes_attempted == 2 and counts.writes_acked == 2 and counts.write_errors == 0, counts.as_dict()
        assert counts.acked_by == {"node-a": 2} and list(run.ledger.acked) == [memory_id]
        assert acknowledged(again, memory_id) and acknowledged(again) and acknowledged(other)
        if twin.status_code == 200:  # the same content under another id: the node holds that one, not the write sent
            assert twin.json()["id"] != sent and not acknowledged(twin, sent)
        else:
            assert twin.status_code == 201 and acknowledged(twin, sent)
        assert refused.status_code == 422 and not acknowledged(refused)
    finally:
        running.close_clients()
        server.stop()
