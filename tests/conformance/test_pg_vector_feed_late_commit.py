"""PostgreSQL's vector feed and a writer that is the newest transaction in flight.

A snapshot's xmin equals its xmax when the only running transaction's xid is at or above
xmax (no newer transaction has completed). The feed used to read that as "nothing running",
so its cursor became the change counter; once the writer committed, the counter had not
moved, the next refresh thought nothing was new, and the memory stayed out of recall by
meaning until some other write happened."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg

from memmesh import Memory

MINILM = {"embeddings": {"provider": "minilm"}}


class _Gated:
    """The writer's embedder, held until the test opens the gate (so its vector write starts
    only once the test holds the vectors table)."""

    def __init__(self, real: object, gate: threading.Event) -> None:
        self.real, self.gate = real, gate
        self.model_id, self.dim = real.model_id, real.dim  # type: ignore[attr-defined]

    def embed(self, texts: list[str]) -> object:
        assert self.gate.wait(60)
        return self.real.embed(texts)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_vector_committed_by_the_newest_writer_reaches_another_nodes_recall(pg_database: str, open_memory: Callable[..., Memory]) -> None:
    reader = open_memory(pg_database, **MINILM)
    writer = open_memory(pg_database, **MINILM)
    reader.add("The cat sleeps on the warm windowsill all afternoon", wait=True)
    assert reader.recall("where does the cat nap?", mode="vector", touch=False).hits  # the reader's index is loaded

    gate = threading.Event()
    writer.service.embedder = _Gated(writer.service.embedder, gate)
    late = writer.add("Shipment of oranges arrives at the harbour on Tuesday")  # committed; its vector is owed
    with psycopg.connect(pg_database, autocommit=False) as holder:
        holder.execute("LOCK TABLE vectors IN SHARE MODE")  # reads go on; the vector insert waits (after its change number)
        gate.set()
        with psycopg.connect(pg_database, autocommit=True) as look:
            _wait_for(
                lambda: bool(look.execute("SELECT 1 FROM pg_locks WHERE relation = 'vectors'::regclass AND NOT granted").fetchone()),
                "the writer's vector insert to wait on the table lock",
            )
        # The writer holds its change number, uncommitted, and is the newest transaction.
        during = reader.recall("when does the citrus delivery come in?", mode="vector", touch=False).hits
        assert late.id not in [h.memory.id for h in during]
        holder.rollback()  # the writer's insert goes through and commits
    _wait_for(lambda: not _owed(writer), "the writer's vector to commit")
    after = reader.recall("when does the citrus delivery come in?", mode="vector", touch=False).hits
    assert late.id in [h.memory.id for h in after], "a vector committed late never reached the other node's recall"


def _owed(mem: Memory) -> list[str]:
    with mem.service.store.write() as tx:
        return tx.pending_vector_ids(100)
