"""Regression: a commit from another connection that lands between a long-poll's check and
its wait must wake it (before the fix the commit counter was read after the check, so such a
message waited out the whole timeout: a 10 s p99 in bench/bus_bench.py)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from memmesh import Memory
from memmesh.bus import notify
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.store.sqlite import register_functions


def test_a_send_committed_during_the_first_check_wakes_the_poll(tmp_path: Path, monkeypatch: object) -> None:
    # the waiter's own re-check put 60 s off: a missed commit is then seen only there, never
    # within the bound below, however loaded the machine (against the 1 s re-check, a 1.0 s
    # bound told a miss from a hit by a few milliseconds)
    monkeypatch.setattr(notify, "RECHECK_S", 60.0)  # type: ignore[attr-defined]
    db = tmp_path / "race.db"
    settings = load_settings(None, overrides={"data_dir": str(tmp_path), "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    with Memory(f"sqlite:///{db}", settings) as mem:
        bus = mem.service.bus
        conv = bus.open(["a", "b"], principal=P)
        other = sqlite3.connect(db, isolation_level=None)  # another process's connection, in effect
        register_functions(other)
        calls = []

        def check() -> bool:
            calls.append(time.monotonic())
            if len(calls) == 1:  # the race: another writer commits right after our first look
                other.execute("UPDATE bus_conversations SET last_activity = last_activity WHERE id = ?", (conv.id,))
                return False
            return True

        started = time.monotonic()
        assert bus.notifier.wait_for(check, 60.0) is True
        assert time.monotonic() - started < 20, "the commit during the first check was missed until the timeout"
        other.close()
