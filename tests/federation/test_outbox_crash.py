"""The outbox under crashes (issue 24): SIGKILL the sending node mid-push again and again;
every acknowledged write arrives, and none is applied twice on the receiver."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

from tests.federation.mesh_support import mesh, wait_for

CYCLES = 20
SETTLE_S = 120


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
