"""Issue 16: the group-commit writer opens a SAVEPOINT only for callers that join a group.

A savepoint exists so that one caller's failure undoes only its own changes, not those of
the callers it shares a COMMIT with. The first caller of a group has nobody's changes beside
its own in the transaction, so it needs none (its failure rolls the whole transaction back),
and a savepoint costs two statements and an undo copy of every page the write changes. Counted
with a trace callback on the writer connection (statement counts, never timings).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memmesh import Memory
from memmesh.audit.capture import unwrap
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.store.sqlite import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(f"sqlite:///{tmp_path / 'w.db'}")
    opened._writer.execute("CREATE TABLE IF NOT EXISTS t (v TEXT NOT NULL)")
    try:
        yield opened
    finally:
        opened.close()


def _traced(store: SQLiteStore) -> list[str]:
    seen: list[str] = []
    store._writer.set_trace_callback(seen.append)
    return seen


def _values(store: SQLiteStore) -> list[str]:
    with store.reading() as conn:
        return [row[0] for row in conn.execute("SELECT v FROM t ORDER BY rowid")]


def test_a_lone_write_runs_without_a_savepoint(store: SQLiteStore) -> None:
    seen = _traced(store)
    for value in ("a", "b", "c"):
        with store.write() as tx:
            tx.conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
    assert [s for s in seen if s.split()[0] in ("BEGIN", "SAVEPOINT", "RELEASE", "COMMIT", "ROLLBACK")] == ["BEGIN IMMEDIATE", "COMMIT"] * 3
    assert _values(store) == ["a", "b", "c"]


def test_a_lone_write_that_fails_is_undone_whole_and_the_next_one_commits(store: SQLiteStore) -> None:
    seen = _traced(store)
    with pytest.raises(RuntimeError), store.write() as tx:
        tx.conn.execute("INSERT INTO t (v) VALUES ('lost')")
        raise RuntimeError("the caller fails after writing")
    assert not store._writer.in_transaction
    assert "ROLLBACK" in seen and not any(s.startswith("SAVEPOINT") for s in seen)
    with store.write() as tx:
        tx.conn.execute("INSERT INTO t (v) VALUES ('kept')")
    assert _values(store) == ["kept"]


def test_a_nested_write_still_gets_its_own_savepoint(store: SQLiteStore) -> None:
    seen = _traced(store)
    with store.write() as tx:
        tx.conn.execute("INSERT INTO t (v) VALUES ('outer')")
        with pytest.raises(RuntimeError), store.write() as inner:
            inner.conn.execute("INSERT INTO t (v) VALUES ('inner')")
            raise RuntimeError("inner fails")
    assert sum(s.startswith("SAVEPOINT") for s in seen) == 1 and "ROLLBACK TO unit" in seen
    assert _values(store) == ["outer"]


def _group_of_two(store: SQLiteStore, second_fails: bool) -> BaseException | None:
    """The first caller holds the transaction until the second is queued behind it, so both
    share one group (one COMMIT): the second runs under a savepoint."""
    failure: list[BaseException] = []

    def second() -> None:
        try:
            with store.write() as tx:
                tx.conn.execute("INSERT INTO t (v) VALUES ('second')")
                if second_fails:
                    raise RuntimeError("the second caller fails")
        except BaseException as exc:
            failure.append(exc)

    joiner = threading.Thread(target=second)
    with store.write() as tx:
        tx.conn.execute("INSERT INTO t (v) VALUES ('first')")
        joiner.start()
        deadline = time.monotonic() + 10
        while store._queued == 0:  # the second caller waits for the write lock: it joins this group
            assert time.monotonic() < deadline, "the second writer never queued"
            time.sleep(0.001)
    joiner.join(10)
    return failure[0] if failure else None


def test_a_caller_joining_a_group_runs_under_a_savepoint_and_both_commit_once(store: SQLiteStore) -> None:
    seen = _traced(store)
    assert _group_of_two(store, second_fails=False) is None
    shape = [s for s in seen if s.split()[0] in ("BEGIN", "SAVEPOINT", "RELEASE", "COMMIT", "ROLLBACK")]
    assert shape == ["BEGIN IMMEDIATE", "SAVEPOINT unit", "RELEASE unit", "COMMIT"]
    assert _values(store) == ["first", "second"]


def test_a_failing_caller_in_a_group_undoes_only_its_own_changes(store: SQLiteStore) -> None:
    failure = _group_of_two(store, second_fails=True)
    assert isinstance(failure, RuntimeError)
    assert _values(store) == ["first"]


def test_an_audited_write_is_one_transaction_without_savepoints_and_still_verifies(tmp_path: Path) -> None:
    settings = load_settings(None, overrides={"data_dir": str(tmp_path), "embeddings": {"provider": "none"}}, env={})
    memory = Memory(f"sqlite:///{tmp_path / 'a.db'}", settings)
    try:
        memory.add("first", namespace="n")
        seen = _traced(unwrap(memory.service.store))
        memory.add("second note", namespace="n")
        assert not any(s.startswith(("SAVEPOINT", "RELEASE")) for s in seen)
        assert sum(s.startswith("INSERT INTO audit_log") for s in seen) == 1
        assert memory.service.audit.verify(principal=LOCAL_PRINCIPAL).ok
    finally:
        memory.close()


def test_an_interrupt_while_a_lone_write_opens_leaves_the_writer_free(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C (or any error) between taking the writer and handing out the transaction used
    to be possible without the writer's release: every later write of the process hung."""
    real = store._new_tx

    def interrupted(conn: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "_new_tx", interrupted)
    with pytest.raises(KeyboardInterrupt), store.write():
        pass
    monkeypatch.setattr(store, "_new_tx", real)
    done = threading.Event()

    def write() -> None:
        with store.write() as tx:
            tx.conn.execute("INSERT INTO t VALUES ('after')")
        done.set()

    threading.Thread(target=write, daemon=True).start()
    assert done.wait(10), "the writer stayed held after the interrupted write"
    assert store._writer.execute("SELECT v FROM t").fetchall() == [("after",)]
