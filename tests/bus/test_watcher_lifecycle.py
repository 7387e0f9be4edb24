"""The SQLite watcher (one thread per process reading the writer's commit counter while
anyone waits) must not outlive its store: a watcher that paused after its last waiter left
never read the store again, so it never learnt the store had closed, and each closed
``Memory`` that had ever long-polled left a thread behind holding its whole service."""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
import weakref
from pathlib import Path

from memmesh import Memory
from memmesh.bus import notify
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.store.sqlite import register_functions


def _settings(tmp_path: Path) -> object:
    return load_settings(None, overrides={"data_dir": str(tmp_path), "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})


def _watchers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "memmesh-bus-watch"]


def _until(done: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return bool(done())  # type: ignore[operator]


def test_no_watcher_outlives_a_closed_store(tmp_path: Path, monkeypatch: object) -> None:
    monkeypatch.setattr(notify, "WATCH_LINGER_S", 0.1)  # type: ignore[attr-defined]
    before = set(_watchers())
    services = []
    for url in (f"sqlite:///{tmp_path / 'a.db'}", "sqlite:///:memory:"):
        mem = Memory(url, _settings(tmp_path))  # type: ignore[arg-type]
        bus = mem.service.bus
        q = bus.open(["boss", "w"], kind="queue", principal=P)
        assert bus.claim(q.id, worker="w", token=q.token, wait_s=0.05, principal=P) is None
        time.sleep(0.4)  # past the linger: the watcher stopped watching
        services.append(weakref.ref(mem.service))
        mem.close()
        del mem, bus, q
    assert _until(lambda: not set(_watchers()) - before), "a watcher thread outlived its closed store"
    gc.collect()
    assert [s for s in services if s() is not None] == [], "a closed store's service is still held"


def test_a_waiter_after_the_watcher_ended_is_woken_by_another_process(tmp_path: Path, monkeypatch: object) -> None:
    """The watcher ends after its linger; the next waiter starts one, and another
    connection's commit still wakes it at once (not at the 1 s re-check)."""
    monkeypatch.setattr(notify, "WATCH_LINGER_S", 0.1)  # type: ignore[attr-defined]
    db = tmp_path / "b.db"
    with Memory(f"sqlite:///{db}", _settings(tmp_path)) as mem:  # type: ignore[arg-type]
        bus = mem.service.bus
        conv = bus.open(["a", "b"], principal=P)
        other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)  # another process's connection, in effect
        register_functions(other)
        before = set(_watchers())
        for _ in range(3):  # each round: the watcher has ended, a new wait starts one
            assert bus.notifier.wait_for(lambda: False, 0.05) is False
            assert _until(lambda: not set(_watchers()) - before, 2.0), "the watcher did not end after its linger"
            looks: list[float] = []

            def check(looks: list[float] = looks) -> bool:
                looks.append(time.monotonic())
                return len(looks) > 2

            def commit_soon() -> None:
                time.sleep(0.2)
                other.execute("UPDATE bus_conversations SET last_activity = last_activity WHERE id = ?", (conv.id,))

            committer = threading.Thread(target=commit_soon)
            started = time.monotonic()
            committer.start()
            assert bus.notifier.wait_for(check, 5.0) is True
            committer.join()
            # the first look, the watcher's first reading, then the commit: three looks well inside the 1 s re-check
            assert time.monotonic() - started < 0.8, "another connection's commit did not wake the waiter"
        other.close()
