"""``memmesh serve`` re-drives, as it starts, an approved action a crash left unapplied (it
used to wait for the next approve or the hourly gc). A real process approves and is killed
(SIGKILL at ``MEMMESH_TEST_FAULT=governance.after_claim``) between the decision and the write;
a server (real uvicorn on 127.0.0.1) started on the store applies it once: at once when the
dead applier's lease has run out, and after it runs out when it was still live at start.
SQLite and PostgreSQL (scripts/pg_test_server.py: fails, never skips)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import keyword_settings
from tests.governance.test_approve_crash_redrive import approve_and_die, outcomes, pg_url, queued, url
from tests.http.http_support import ThreadServer, http_settings

from memmesh import Memory
from memmesh.governance.recovery import lease_name
from memmesh.model import LOCAL_PRINCIPAL

__all__ = ["pg_url", "queued", "url"]


def _lease_runs_out_in(url: str, tmp_path: Path, pending_id: str, seconds: float) -> float:
    """Move the dead applier's lease expiry (as time passing would), through the store's own
    connection; the wall-clock time it now runs out at (the service clock is the wall clock)."""
    expires_at = time.time() + seconds
    with Memory(url, keyword_settings(tmp_path)) as memory:
        store = memory.service.store
        with store.write() as tx:
            sql = store.dialect.q("UPDATE leases SET expires_at = ? WHERE name = ?")  # type: ignore[attr-defined]
            tx.conn.execute(sql, (expires_at, lease_name(pending_id)))
    return expires_at


def _status_over_http(url: str, tmp_path: Path, pending_id: str, within: float) -> tuple[str, float]:
    """The action's status once it left ``approved`` (or ``within`` seconds passed), and the
    wall-clock time it was seen so."""
    server = ThreadServer(http_settings(tmp_path / "serve", storage={"url": url}))
    started = time.monotonic()
    running = server.start()
    try:
        http = running.http()
        status = ""
        while time.monotonic() - started < within:
            answer = http.get(f"/api/v1/pending/{pending_id}")
            assert answer.status_code == 200, answer.text
            status = answer.json()["status"]
            if status != "approved":
                break
            time.sleep(0.1)
        return status, time.time()
    finally:
        running.close_clients()
        server.stop()


def test_serve_applies_an_expired_crashed_approval_at_start(url: str, tmp_path: Path, queued: str) -> None:
    approve_and_die(url, tmp_path, queued, "governance.after_claim")
    _lease_runs_out_in(url, tmp_path, queued, -1)
    status, _seen_at = _status_over_http(url, tmp_path, queued, within=15)
    assert status == "applied"
    with Memory(url, keyword_settings(tmp_path)) as memory:
        assert [m.content for m in memory.get_all()] == ["The supplier contract renews in March."]
        assert outcomes(memory, queued) == [("pending.apply", "system:recovery agent:local")]
        memory.gc()  # nothing left to drive: still one memory, one outcome
        assert len(memory.get_all()) == 1 and len(outcomes(memory, queued)) == 1
        assert memory.service.audit.verify(principal=LOCAL_PRINCIPAL).problems == []


def test_serve_applies_it_once_the_live_lease_it_found_runs_out(url: str, tmp_path: Path, queued: str) -> None:
    approve_and_die(url, tmp_path, queued, "governance.after_claim")
    runs_out_at = _lease_runs_out_in(url, tmp_path, queued, 2.0)  # the dead applier's lease is still live at start
    status, seen_at = _status_over_http(url, tmp_path, queued, within=20)
    # applied, and not before the live lease ran out (measured from the expiry itself: a slow
    # start of the server on a loaded machine must not make an early apply look late)
    assert status == "applied" and seen_at >= runs_out_at, (status, seen_at - runs_out_at)
    with Memory(url, keyword_settings(tmp_path)) as memory:
        assert len(memory.get_all()) == 1 and len(outcomes(memory, queued)) == 1
