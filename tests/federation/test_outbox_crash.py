"""The outbox under crashes (issue 24): SIGKILL the sending node mid-push again and again;
every acknowledged write arrives, and none is applied twice on the receiver."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from tests.federation.mesh_support import Node, mesh, wait_for

CYCLES = 20
SETTLE_S = 120


@pytest.mark.slow  # long: started first (tests/conftest.py)
def test_killing_the_sender_mid_push_again_and_again_applies_every_write_once(tmp_path: Path) -> None:
    nodes = mesh(tmp_path, 2)
    a, b = nodes
    rng = random.Random(7)
    acknowledged: dict[str, str] = {}
    try:
        for cycle in range(CYCLES):
            batch = [{"content": f"cycle {cycle} fact {i}", "namespace": "crash"} for i in range(25)]
            written = a.call("POST", "/api/v1/memories/batch", json={"items": batch})
            assert written.status_code == 201, written.text
            for memory in written.json():
                acknowledged[memory["id"]] = memory["content"]
            if acknowledged and cycle % 2:
                target = rng.choice(sorted(acknowledged))
                updated = a.call("PATCH", f"/api/v1/memories/{target}", json={"content": f"updated in cycle {cycle}"})
                assert updated.status_code == 200, updated.text
                acknowledged[target] = f"updated in cycle {cycle}"
            time.sleep(rng.uniform(0, 0.15))  # the pusher is somewhere in its page
            a.kill()
            a.start()
        wait_for(lambda: {k: v[0] for k, v in b.state().items()} == acknowledged, SETTLE_S, "b holds every acknowledged write")
        assert {k: v[0] for k, v in a.state().items()} == acknowledged

        # no version applied twice: b's history names each origin version at most once
        applied: Counter[tuple[str, str]] = Counter()
        for memory_id in acknowledged:
            history = b.call("GET", f"/api/v1/memories/{memory_id}/history")
            assert history.status_code == 200
            for entry in history.json():
                origin = (entry.get("new") or {}).get("origin")
                if entry["event"] in ("add", "update") and origin:
                    assert origin["node"] == "node-a"
                    applied[(memory_id, origin["hlc"])] += 1
        assert applied, "b's history shows the origin's versions"
        assert max(applied.values()) == 1, [key for key, n in applied.items() if n > 1]
        assert {memory_id for memory_id, _ in applied} == set(acknowledged)
    finally:
        for node in nodes:
            node.stop()


class _Busy(BaseHTTPRequestHandler):
    """A peer that says hello and then answers every push with 503, timing each attempt."""

    attempts: ClassVar[list[float]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        if self.path.startswith("/api/v1/sync/hello"):
            self._answer(200, {"node": "busy-node", "hlc": "0000000000000:0000", "seq": 0, "schema_version": 7})
        else:
            self._answer(503, {"error": {"code": "unavailable", "message": "busy"}})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).attempts.append(time.monotonic())
        self._answer(503, {"error": {"code": "unavailable", "message": "busy, try later"}})


def test_a_peer_answering_503_is_retried_with_backoff_to_a_cap_and_nothing_is_rolled_back(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    node = Node(tmp_path, "node-a")
    node.start("--peers", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        written = node.call("POST", "/api/v1/memories", json={"content": "kept whatever the peer says", "namespace": "p"})
        assert written.status_code == 201
        wait_for(lambda: len(_Busy.attempts) >= 9, 60, "nine push attempts")
        gaps = [b - a for a, b in zip(_Busy.attempts, _Busy.attempts[1:], strict=False)]
        # backing off: 50 ms, 100 ms, 200 ms, … 3.2 s; against the least of the first three gaps, so
        # one pause of a loaded machine early on (gaps[0] alone, ~50 ms, against 0.8 s) cannot fail it
        assert gaps[6] > min(gaps[:3]) * 2, gaps
        assert max(gaps) < 5 + 3, gaps  # capped at 5 s (plus the machine's slack)
        assert node.call("GET", f"/api/v1/memories/{written.json()['id']}").status_code == 200  # a 503 is not a rollback
        peer = next(p for p in node.status()["peers"] if p["node_id"] == "busy-node")
        assert peer["outbox_changes"] >= 1 and "503" in (peer["last_error"] or "")
    finally:
        node.stop()
        server.shutdown()
