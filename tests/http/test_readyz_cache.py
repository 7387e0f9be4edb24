"""``/readyz`` on a real uvicorn: one probe run answers every request of its window (1 s),
whatever the rate; anonymous callers see statuses only (no reasons: they may name internal
hosts or paths), a store admin's key sees the reason of each component that is not ok."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import memmesh.health as health
from memmesh.model import LOCAL_PRINCIPAL


def test_one_probe_run_per_window_whatever_the_request_rate(serve: Any, monkeypatch: Any) -> None:
    running = serve()
    runs: list[float] = []
    name, probe = health.PROBES[0]

    def counted(service: Any) -> Any:
        runs.append(time.monotonic())
        time.sleep(0.05)  # a slow probe: callers arriving meanwhile must share its run
        return probe(service)

    monkeypatch.setattr(health, "PROBES", ((name, counted), *health.PROBES[1:]))
    answers: list[int] = []

    def poll() -> None:
        with running.http() as http:
            for _ in range(5):
                answers.append(http.get("/readyz").status_code)

    started = time.monotonic()
    threads = [threading.Thread(target=poll) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert answers == [200] * 40
    assert 1 <= len(runs) <= int(elapsed / health.READY_CACHE_S) + 1, f"{len(runs)} probe runs for 40 requests in {elapsed:.2f} s"
    before = len(runs)
    time.sleep(health.READY_CACHE_S + 0.1)
    assert running.http().get("/readyz").status_code == 200
    assert len(runs) == before + 1, "a request after the window runs the probes again"


def test_anonymous_callers_see_statuses_only_and_an_admin_sees_reasons(serve: Any, tmp_path: Path) -> None:
    status_file = tmp_path / "internal-secret-dir" / "workers.json"
    running = serve(bus={"workers_status_file": str(status_file)})
    svc = running.service
    admin = svc.create_key("ops", role="admin", namespaces=["*"], principal=LOCAL_PRINCIPAL).key
    scoped = svc.create_key("team-admin", role="admin", namespaces=["team/*"], principal=LOCAL_PRINCIPAL).key

    for key in (None, scoped, "mm_" + "x" * 40):
        body = running.http(key).get("/readyz")
        assert body.status_code == 200 and body.json()["status"] == "degraded"
        assert body.json()["components"]["workers"] == {"status": "degraded"}
        assert all(set(part) == {"status"} for part in body.json()["components"].values()), body.text
        assert "internal-secret-dir" not in body.text

    full = running.http(admin).get("/readyz").json()
    assert full["components"]["workers"]["status"] == "degraded"
    assert full["components"]["workers"]["reason"], full
    assert full["components"]["store"] == {"status": "ok"}
