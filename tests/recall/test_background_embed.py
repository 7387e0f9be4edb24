"""Writes that never wait for the embedder (issue 19): commit first, embed in the background.

A write commits with a pending-vector mark and returns; the memory is found by keyword at
once; the background worker embeds it in a micro-batch; a recall in the same process waits
for what was queued before it; ``wait=True`` embeds before returning; a text changed while
its old text was being embedded gets the new vector; a process killed before embedding
leaves the mark, and the next process to open the store embeds it.

The embedder here is the real MiniLM behind a gate (a test double that blocks until the test
opens it), so "the write returned while the embedder had not run" is observed, not timed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tests.recall.conftest import FailingEmbedder

from memmesh import Memory
from memmesh.recall.embedder_api import Embedder

STORED_STEP = 2e-3
"""How far a stored vector may be from the embedder's: SQLite keeps 8 bits a dimension
(max|x| / 127 per step, half a step of rounding), PostgreSQL float16."""

GATE_TIMEOUT_S = 60.0


class GatedEmbedder:
    """The real embedder, but every call waits until :attr:`gate` is set."""

    def __init__(self, real: Embedder) -> None:
        self.real = real
        self.model_id = real.model_id
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[int] = []

    @property
    def dim(self) -> int:
        return self.real.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.entered.set()
        assert self.gate.wait(GATE_TIMEOUT_S), "the test never opened the gate"
        self.calls.append(len(texts))
        return self.real.embed(texts)

    def health(self) -> dict[str, Any]:
        return self.real.health()


def gated(mem: Memory) -> GatedEmbedder:
    real = mem.service.embedder
    assert real is not None and mem.service.background is not None
    gate = GatedEmbedder(real)
    mem.service.embedder = gate  # the worker reads the service's embedder per batch
    return gate


def pending(mem: Memory) -> list[str]:
    with mem.service.store.write() as tx:
        return tx.pending_vector_ids(1000)


def vector_of(mem: Memory, memory_id: str) -> np.ndarray | None:
    rows = mem.service.store.get_vectors([memory_id])
    return rows[0].vector if rows else None


def test_a_write_commits_before_the_embedder_runs_and_is_found_by_keyword_at_once(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    gate = gated(mem)
    stored = mem.add("The staging database password rotates every Friday", namespace="ops")
    # add returned while the embedder was still closed: the write did not wait for it
    assert not gate.gate.is_set() and gate.calls == []
    assert vector_of(mem, stored.id) is None and pending(mem) == [stored.id]
    assert [h.memory.id for h in mem.search("staging password")] == [stored.id]
    assert [h.memory.id for h in mem.recall("staging password", mode="keyword", touch=False).hits] == [stored.id]

    gate.gate.set()
    hits = mem.recall("when do credentials change?", mode="vector", touch=False).hits  # by meaning: no shared word
    assert [h.memory.id for h in hits] == [stored.id]
    assert pending(mem) == []
    vector = vector_of(mem, stored.id)
    assert vector is not None and np.allclose(vector, gate.real.embed([stored.content])[0], atol=STORED_STEP)


def test_recall_waits_for_queued_writes_only_up_to_its_bound_and_says_so(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    gate = gated(mem)
    mem.service.engine.background_wait_s = 0.2
    stored = mem.add("Our office plants are watered on Mondays", namespace="office")
    result = mem.recall("office plants", touch=False)
    assert [h.memory.id for h in result.hits] == [stored.id]  # found by keyword
    assert any("1 memory written just now is still being embedded" in n for n in result.notices), result.notices
    assert not any("reindex" in n for n in result.notices)  # not a reason to reindex: it is queued
    gate.gate.set()
    assert mem.service.background is not None and mem.service.background.drain(GATE_TIMEOUT_S)
    assert mem.recall("office plants", touch=False).notices == []


def test_wait_true_stores_the_vector_before_returning(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    stored = mem.add("The cafeteria closes at three on Fridays", wait=True)
    assert vector_of(mem, stored.id) is not None and pending(mem) == []
    many = mem.add_many(["Parking passes renew in January", "The fire drill is on the first Tuesday"], wait=True)
    assert all(vector_of(mem, m.id) is not None for m in many)
    updated = mem.update(stored.id, content="The cafeteria now closes at four on Fridays", wait=True)
    vector = vector_of(mem, updated.id)
    assert vector is not None and pending(mem) == []
    embedder = mem.service.embedder
    assert embedder is not None and np.allclose(vector, embedder.embed([updated.content])[0], atol=STORED_STEP)


def test_a_text_changed_while_its_old_text_is_embedded_gets_the_new_vector(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    gate = gated(mem)
    stored = mem.add("Alice moved to Berlin last spring", namespace="people")
    assert gate.entered.wait(GATE_TIMEOUT_S)  # the worker holds the old text now
    mem.update(stored.id, content="Alice moved to Lisbon this winter")
    assert pending(mem) == [stored.id]
    gate.gate.set()
    background = mem.service.background
    assert background is not None and background.drain(GATE_TIMEOUT_S)
    vector = vector_of(mem, stored.id)
    assert vector is not None and np.allclose(vector, gate.real.embed(["Alice moved to Lisbon this winter"])[0], atol=STORED_STEP)
    assert background.stats.skipped >= 1 and pending(mem) == []


def test_a_memory_deleted_before_it_was_embedded_leaves_nothing_owed(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    gate = gated(mem)
    first = mem.add("A memory deleted before its vector was computed")
    mem.delete(first.id)
    assert pending(mem) == []
    gate.gate.set()
    assert mem.service.background is not None and mem.service.background.drain(GATE_TIMEOUT_S)
    assert vector_of(mem, first.id) is None and mem.service.store.vector_models() == {}


def test_a_burst_of_writes_is_embedded_in_few_batches(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    gate = gated(mem)
    ids = [mem.add(f"Ticket {i}: the printer on floor {i % 5} is out of toner").id for i in range(40)]
    gate.gate.set()
    background = mem.service.background
    assert background is not None and background.drain(GATE_TIMEOUT_S)
    assert sum(gate.calls) == 40 and len(gate.calls) <= 3, gate.calls  # micro-batches, not one call per write
    assert all(vector_of(mem, i) is not None for i in ids) and pending(mem) == []


def test_an_embedder_failure_leaves_the_mark_and_reindex_clears_it(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    real = mem.service.embedder
    mem.service.embedder = FailingEmbedder()
    stored = mem.add("The VPN certificate expires in March")
    background = mem.service.background
    assert background is not None and background.drain(GATE_TIMEOUT_S)
    assert background.last_error is not None and "unreachable" in background.last_error
    assert pending(mem) == [stored.id] and vector_of(mem, stored.id) is None
    mem.service.embedder = real
    assert any("1 memory in scope has no vector" in n for n in mem.recall("VPN certificate", touch=False).notices)
    assert mem.reindex() == 1
    assert pending(mem) == [] and vector_of(mem, stored.id) is not None


def test_a_reopened_store_loads_its_vectors_before_the_first_recall(open_memory: Callable[..., Memory]) -> None:
    first = open_memory()
    stored = first.add_many(["The boiler is serviced in October", "Snow tyres go on in November"], wait=True)
    first.close()

    mem = open_memory()  # Memory starts loading the index in the background at once
    loaders = [t for t in threading.enumerate() if t.name == "memmesh-index-load"]
    for thread in loaders:
        thread.join(60)
    index = mem.service.engine.index
    assert index is not None
    store = index.store  # the store the index reads its vectors from
    calls: list[int] = []
    real_changes = store.vector_changes

    def counted(since: int) -> Any:
        calls.append(since)
        return real_changes(since)

    store.vector_changes = counted  # type: ignore[method-assign]
    try:
        hits = mem.recall("when is the heating checked?", mode="vector", touch=False).hits
    finally:
        store.vector_changes = real_changes  # type: ignore[method-assign]
    assert hits and hits[0].memory.id == stored[0].id
    assert 0 not in calls  # the first recall did not load the vectors itself


def test_a_recall_after_writes_skips_the_missing_vector_scan_when_every_memory_has_one(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory()
    store = mem.service.engine.store
    scans: list[str] = []
    real_scan = store.ids_missing_vectors

    def counted(model: str) -> list[str]:
        scans.append(model)
        return real_scan(model)

    store.ids_missing_vectors = counted  # type: ignore[method-assign]
    try:
        for text in ["The gym opens at seven", "The pool closes for cleaning on Mondays"]:
            mem.add(text)
            assert mem.recall("when can I swim?", touch=False).notices == []
        assert scans == []  # every memory had its vector: two counts said so, no anti-join
        mem.service.embedder = FailingEmbedder()
        mem.add("The sauna is out of order", wait=True)  # stored without a vector
        mem.service.embedder = mem.service.engine.embedder
        notices = mem.recall("sauna", touch=False).notices
        assert scans and any("1 memory in scope has no vector" in n for n in notices)
    finally:
        store.ids_missing_vectors = real_scan  # type: ignore[method-assign]
