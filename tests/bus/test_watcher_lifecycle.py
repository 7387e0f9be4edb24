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
    # the re-check put far off: only the watcher can wake the waiter in time, and a loaded
    # machine's slack cannot pass for a missed commit (a 0.8 s bound did, against a 1 s re-check)
    monkeypatch.setattr(notify, "RECHECK_S", 60.0)  # type: ignore[attr-defined]
    db = tmp_path / "b.db"
    with Memory(f"sqlite:///{db}", _settings(tmp_path)) as mem:  # type: ignore[arg-type]
        bus = mem.service.bus
        conv = bus.open(["a", "b"], principal=P)
        other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)  # another process's connection, in effect
        register_functions(other)
        before = set(_watchers())
        for _ in range(3):  # each round: the watcher has ended, a new wait starts one
            assert bus.notifier.wait_for(lambda: False, 0.05) is False
            assert _until(lambda: not set(_watchers()) - before, 30.0), "the watcher did not end after its linger"
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
            assert bus.notifier.wait_for(check, 60.0) is True
            committer.join()
            # the first look, the watcher's first reading, then the commit: three looks long before the 60 s re-check
            assert time.monotonic() - started < 20, "another connection's commit did not wake the waiter"
        other.close()


def test_a_send_is_seen_at_once_while_this_process_waits_for_the_file_lock(tmp_path: Path, monkeypatch: object) -> None:
    """The watcher reads the writer connection's counter, but this process's writer may wait
    up to busy_timeout for another process's lock, exactly while other processes commit: the
    watcher then reads a reader connection's counter instead (found by review: the send was
    seen only at the 1 s re-check, ~400 ms late)."""
    # the re-check put far off, and the third process holds the lock for 5 s: a blind watcher
    # sees the send only when that lock goes, 5 s late, far beyond a loaded machine's slack
    monkeypatch.setattr(notify, "RECHECK_S", 60.0)  # type: ignore[attr-defined]
    url = f"sqlite:///{tmp_path / 'blind.db'}"
    mine = Memory(url, _settings(tmp_path))  # type: ignore[arg-type]
    other = Memory(url, _settings(tmp_path))  # type: ignore[arg-type]  # another process, as far as SQLite knows
    try:
        conv = other.service.bus.open(["a", "b"], principal=P)
        notifier = mine.service.bus.notifier
        seen: dict[str, float] = {}
        real_wait_for = notifier.wait_for

        def timed_wait_for(*args: object, **kwargs: object) -> object:
            found = real_wait_for(*args, **kwargs)  # type: ignore[arg-type]
            seen["at"] = time.monotonic()  # before the delivery mark, itself a write that must wait
            return found

        notifier.wait_for = timed_wait_for  # type: ignore[method-assign]
        got: dict[str, int] = {}
        bus = mine.service.bus

        def wait_for_unread() -> None:
            got["n"] = len(bus.unread(conv.id, agent="a", token=conv.token, wait_s=60, principal=P).messages)

        waiter = threading.Thread(target=wait_for_unread)
        waiter.start()
        time.sleep(0.95)  # the waiter waits
        with other.service.store.write():  # another process holds the file's write lock
            adder = threading.Thread(target=lambda: mine.add("a note of this process"))
            adder.start()  # this process's writer queues for the lock
            time.sleep(0.3)
            other.service.bus.send(conv.id, "hello", sender="b", token=conv.token, principal=P)
        sent = time.monotonic()
        third = sqlite3.connect(tmp_path / "blind.db", isolation_level=None)
        register_functions(third)
        third.execute("BEGIN IMMEDIATE")  # a third process writes next, for 5 s: our writer keeps waiting
        time.sleep(5)
        third.execute("ROLLBACK")
        third.close()
        waiter.join(60)
        adder.join(60)
        assert got.get("n") == 1
        assert seen["at"] - sent < 2.5, f"the send was seen {seen['at'] - sent:.3f} s late"
    finally:
        mine.close()
        other.close()
