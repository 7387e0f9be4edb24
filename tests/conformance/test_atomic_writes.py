"""Multi-part writes commit all or nothing, on both backends (issue 17, atomic writes).

The failure is a real one, not a mock: a trigger installed in the test's database aborts the
insert of one chosen row (the Nth memory of a batch, one link of a memory, the last turn of
a session batch), exactly as a constraint, a full disk or a lost connection would fail the
statement half-way through the transaction. Afterwards the public API must find nothing of
the failed write: no memory, no link, no session, no turn number used up.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import pytest

from memmesh import Memory
from memmesh.errors import MemmeshError, NotFoundError
from memmesh.model import LOCAL_PRINCIPAL as P

MARK = "FAULT-INJECTED-HERE"


def inject_fault(mem: Memory, url: str, table: str, condition: str) -> None:
    """A trigger that aborts any insert into ``table`` whose row matches ``condition`` (SQL
    over ``NEW``), installed straight in the store's database."""
    if url.startswith("sqlite:///"):
        from memmesh.store.sqlite import register_functions

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        register_functions(conn)
        conn.execute(
            f"CREATE TRIGGER test_fault_{table} BEFORE INSERT ON {table} WHEN {condition} BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        )
        conn.commit()
        conn.close()
        return
    import psycopg

    with psycopg.connect(mem.service.store.conninfo, autocommit=True) as conn:  # type: ignore[attr-defined]
        conn.execute(
            f"CREATE FUNCTION test_fault_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF {condition} THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$"
        )
        conn.execute(f"CREATE TRIGGER test_fault_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION test_fault_{table}()")


def contents(mem: Memory, namespace: str) -> list[str]:
    return sorted(m.content for m in mem.service.list(namespace=namespace, limit=1000, principal=P).items)


@pytest.fixture
def faulty(backend_url: str, open_memory: Callable[..., Memory]) -> Callable[[str, str], Memory]:
    """A Memory on the backend under test, once the fault trigger is in place."""

    def make(table: str, condition: str) -> Memory:
        mem = open_memory(backend_url)  # creates the schema first
        inject_fault(mem, backend_url, table, condition)
        return mem

    return make


def test_add_many_fails_on_the_fourth_row_and_stores_none(faulty: Callable[[str, str], Memory]) -> None:
    mem = faulty("memories", f"NEW.content LIKE '%{MARK}%'")
    mem.add("kept before", namespace="other")
    items = [{"content": f"note {i}", "namespace": "batch"} for i in range(6)]
    items[3]["content"] = f"note 3 {MARK}"
    with pytest.raises(MemmeshError):
        mem.add_many(items)
    assert contents(mem, "batch") == []
    assert mem.search("note", namespace="batch") == []
    assert contents(mem, "other") == ["kept before"]
    # the same batch without the bad row is stored whole afterwards: nothing was left locked or used up
    items[3]["content"] = "note 3"
    assert len(mem.add_many(items)) == 6
    assert contents(mem, "batch") == sorted(f"note {i}" for i in range(6))


def test_a_memory_and_its_links_commit_together(faulty: Callable[[str, str], Memory]) -> None:
    mem = faulty("links", "NEW.relation = 'contradicts'")
    a = mem.add("target a", namespace="graph")
    b = mem.add("target b", namespace="graph")
    links = [{"target_id": a.id, "relation": "derived_from"}, {"target_id": b.id, "relation": "contradicts"}]
    with pytest.raises(MemmeshError):
        mem.add("the new memory", namespace="graph", links=links)
    assert contents(mem, "graph") == ["target a", "target b"]
    assert mem.links(a.id) == [] and mem.links(b.id) == []

    # a missing target is refused the same way, naming it, and stores nothing either
    with pytest.raises(NotFoundError, match="no-such-id"):
        mem.add("the new memory", namespace="graph", links=[{"target_id": a.id}, {"target_id": "no-such-id"}])
    assert contents(mem, "graph") == ["target a", "target b"]

    new = mem.add("the new memory", namespace="graph", links=[{"target_id": a.id, "relation": "derived_from"}, {"target_id": b.id}])
    got = {(link.source_id, link.target_id, link.relation.value) for link in mem.links(new.id)}
    assert got == {(new.id, a.id, "derived_from"), (new.id, b.id, "related_to")}


def test_a_failed_session_batch_leaves_no_turns_no_gap_and_no_session(faulty: Callable[[str, str], Memory]) -> None:
    mem = faulty("memories", f"NEW.content LIKE '%{MARK}%'")
    sessions = mem.service.sessions
    bad = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "second"}, {"role": "user", "content": MARK}]

    # a brand-new session whose first batch fails does not exist afterwards (no phantom session)
    with pytest.raises(MemmeshError):
        sessions.append_many("fresh", bad, principal=P)
    assert [s.session_id for s in mem.session_list()] == []
    with pytest.raises(NotFoundError):
        mem.session_rehydrate("fresh")
    assert contents(mem, "sessions/fresh") == []

    # an existing session keeps its turns, and the next append continues without a gap
    mem.session_append("going", role="user", content="one")
    mem.session_append("going", role="assistant", content="two")
    with pytest.raises(MemmeshError):
        sessions.append_many("going", bad, principal=P)
    assert [t.turn for t in sessions.turns("going", principal=P)] == [1, 2]
    assert mem.session_append("going", role="user", content="three").turn == 3
    assert [s.turns for s in mem.session_list()] == [3]
    assert [(t.turn, t.content) for t in sessions.turns("going", principal=P)] == [(1, "one"), (2, "two"), (3, "three")]


def test_concurrent_appenders_get_every_number_once_and_no_gap(mem_on: Memory) -> None:
    """The counter moves in the turns' own transaction (compare-and-set): appenders racing
    for the same numbers number again, so 4 threads × 25 appends give turns 1..100."""
    import threading

    errors: list[BaseException] = []

    def append(worker: int) -> None:
        try:
            for i in range(25):
                mem_on.session_append("busy", role="user", content=f"worker {worker} says {i}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    turns = mem_on.service.sessions.turns("busy", principal=P)
    assert [t.turn for t in turns] == list(range(1, 101))
    assert sorted(t.content for t in turns) == sorted(f"worker {w} says {i}" for w in range(4) for i in range(25))
    assert [s.turns for s in mem_on.session_list()] == [100]
