"""Group commit: many threads writing through one store share commits and lose nothing."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.conftest import keyword_settings

from memmesh import ConflictError, Memory


def test_threads_writing_at_once_all_land_and_failures_stay_their_own(tmp_path: Path) -> None:
    db = tmp_path / "threads.db"
    mem = Memory(f"sqlite:///{db}", keyword_settings(tmp_path))
    mem.add("taken", id="fixed-id")
    errors: list[BaseException] = []
    conflicts: list[int] = []
    acknowledged: list[str] = []
    lock = threading.Lock()

    def writer(worker: int) -> None:
        for i in range(150):
            try:
                if i % 25 == 0:  # every 25th write collides with an existing id: refused alone
                    try:
                        mem.add(f"other content {worker} {i}", id="fixed-id")
                    except ConflictError:
                        with lock:
                            conflicts.append(worker)
                    continue
                stored = mem.add(f"worker {worker} note {i}", namespace=f"w{worker}")
                with lock:
                    acknowledged.append(stored.id)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(conflicts) == 12 * 6
    mem.close()
    reopened = Memory(f"sqlite:///{db}", keyword_settings(tmp_path))
    stored = {m.id for m in reopened.service.store.iter_memories()}
    assert set(acknowledged) <= stored
    assert len(stored) == 12 * 144 + 1
    assert reopened.get("fixed-id").content == "taken"
    assert reopened.service.store.integrity_check() == "ok"
    history_adds = [e for e in reopened.service.store.iter_history() if e.event.value == "add"]
    assert len(history_adds) == 12 * 144 + 1
    reopened.close()


def test_a_lone_writer_commits_at_once(tmp_path: Path) -> None:
    db = tmp_path / "lone.db"
    mem = Memory(f"sqlite:///{db}", keyword_settings(tmp_path))
    mem.add("first")
    other = Memory(f"sqlite:///{db}", keyword_settings(tmp_path))  # another connection sees it at once
    assert [m.content for m in other.get_all()] == ["first"]
    mem.close()
    other.close()
