"""The vector index against brute force over the store's own vectors: add, update, delete,
filters, the HNSW path, and writes from another process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import FakeClock

from memmesh import Memory

TEXTS = [
    "Alice moved to Berlin last spring with her dog",
    "Bob drinks his coffee black without sugar",
    "The quarterly report is due on Friday",
    "Our Postgres cluster runs on three nodes",
    "Carol is allergic to peanuts and shellfish",
    "The team offsite will be in Lisbon in June",
    "Dave plays the cello in a string quartet",
    "Backups run nightly at two in the morning",
    "Eve prefers dark mode in every editor",
    "The release of version two needs a database migration",
    "Frank is learning Japanese for his trip to Kyoto",
    "The office plants need watering on Mondays",
]
QUERIES = ["where does Alice live now?", "database operations", "music hobbies", "food allergies", "travel plans"]


def brute_force(mem: Memory, query: str, allowed: set[str], k: int) -> list[tuple[str, float]]:
    """The expected answer, from the vectors the store holds (not from the index)."""
    store, embedder = mem.service.store, mem.service.embedder
    assert embedder is not None
    q = embedder.embed([query])[0]
    rows = [r for r in store.get_vectors(sorted(allowed)) if r.model == embedder.model_id]
    scored = sorted(((r.memory_id, float(r.vector @ q)) for r in rows), key=lambda p: (-p[1], p[0]))
    return scored[:k]


def index_answer(mem: Memory, query: str, k: int) -> list[tuple[str, float]]:
    index, embedder = mem.service.engine.index, mem.service.embedder
    assert index is not None and embedder is not None
    return index.search(embedder.embed([query])[0], k)


def assert_same(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


@pytest.mark.parametrize("ann_threshold", [50_000, 1], ids=["exact", "hnsw"])
def test_index_matches_brute_force_through_add_update_delete(open_memory: Callable[..., Memory], ann_threshold: int) -> None:
    mem = open_memory(ann_threshold=ann_threshold)
    ids = [m.id for m in mem.add_many([{"content": t, "namespace": "kb"} for t in TEXTS], wait=True)]
    index = mem.service.engine.index
    assert index is not None and len(index) == len(TEXTS) and index.uses_ann == (ann_threshold == 1)
    for query in QUERIES:
        assert_same(index_answer(mem, query, 5), brute_force(mem, query, set(ids), 5))

    mem.update(ids[0], content="Alice now lives in Munich and works as a nurse", wait=True)
    mem.delete(ids[3])
    mem.delete(ids[7])
    live = set(ids) - {ids[3], ids[7]}
    assert len(index) == len(live)
    for query in [*QUERIES, "Munich nurse"]:
        got = index_answer(mem, query, 5)
        assert not {ids[3], ids[7]} & {i for i, _ in got}
        assert_same(got, brute_force(mem, query, live, 5))
    assert index_answer(mem, "Munich nurse", 1)[0][0] == ids[0]


@pytest.mark.parametrize("ann_threshold", [50_000, 1], ids=["exact", "hnsw"])
def test_vector_recall_filters_match_brute_force(open_memory: Callable[..., Memory], ann_threshold: int) -> None:
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC))
    mem = open_memory(ann_threshold=ann_threshold, clock=clock, context_weight=0.0)  # pure cosine order
    stored = []
    for i, text in enumerate(TEXTS):
        stored.append(
            mem.add(
                text,
                namespace=["team/a", "team/a/sub", "team/b"][i % 3],
                tags=["even"] if i % 2 == 0 else ["odd"],
                tier=["mid", "long"][i % 2 if i < 6 else 0],
                kind="preference" if i % 4 == 0 else "fact",
                agent_id="agent-x" if i < 6 else "agent-y",
                valid_from="2025-01-01T00:00:00Z" if i < 8 else "2026-06-01T00:00:00Z",
            )
        )
        clock.advance(hours=2)  # distinct created_at, for since/until
    by_id = {m.id: m for m in stored}
    cases: list[tuple[dict, Callable]] = [
        ({"namespace": "team/a"}, lambda m: m.namespace.startswith("team/a")),
        ({"namespace": "team/a/sub"}, lambda m: m.namespace == "team/a/sub"),
        ({"tags": ["even"]}, lambda m: "even" in m.tags),
        ({"tier": "long"}, lambda m: m.tier == "long"),
        ({"kind": "preference"}, lambda m: m.kind == "preference"),
        ({"agent_id": "agent-y"}, lambda m: m.agent_id == "agent-y"),
        (
            {"since": stored[4].created_at, "until": stored[9].created_at},
            lambda m: stored[4].created_at <= m.created_at < stored[9].created_at,
        ),
        ({"as_of": "2025-06-01T00:00:00Z"}, lambda m: m.valid_from < datetime(2025, 6, 2, tzinfo=UTC)),
    ]
    compared = 0
    for filters, keep in cases:
        allowed = {m.id for m in stored if keep(m)}
        assert allowed and len(allowed) < len(stored), filters
        for query in QUERIES[:3]:
            hits = mem.recall(query, mode="vector", top_k=4, touch=False, explain=True, **filters).hits
            got = [(h.memory.id, h.explain["vector"]) for h in hits]
            assert {i for i, _ in got} <= allowed, (filters, [by_id[i].content for i, _ in got if i not in allowed])
            # Vector recall returns exactly the brute-force neighbours at or above the relevance
            # floor (min_cosine 0.3), in cosine order; nothing below it pads the answer.
            above = [pair for pair in brute_force(mem, query, allowed, 4) if pair[1] >= 0.3]
            assert_same(got, above)
            compared += len(above)
    assert compared >= 10  # the check above really ran


def test_selective_filter_falls_back_to_exact_search(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(ann_threshold=1)
    mem.add_many([{"content": f"{t} (note {i})", "namespace": "bulk"} for i in range(4) for t in TEXTS], wait=True)
    rare = mem.add("Gina keeps bees on her rooftop in Oslo", namespace="rare", tags=["bees"], wait=True)
    index, embedder = mem.service.engine.index, mem.service.embedder
    assert index is not None and embedder is not None
    query = embedder.embed(["which cellist plays in a quartet?"])[0]
    # The only memory passing the filter is far from the query: widening gives up, exact answers.
    got = index.search(query, 3, accept=lambda ids: {i for i in ids if i == rare.id}, fallback=lambda: [rare.id], widen_limit=8)
    assert [i for i, _ in got] == [rare.id]
    # the index scores the stored vector: 8-bit codes with a scale since schema 16, ~1e-3 from the fresh embedding
    assert got[0][1] == pytest.approx(float(query @ embedder.embed([rare.content])[0]), abs=5e-3)


def test_index_follows_writes_from_another_process(open_memory: Callable[..., Memory], tmp_path: Path, shared_data_dir: Path) -> None:
    mem = open_memory()
    first = mem.add("The coffee machine on floor two is broken", namespace="office")
    assert [h.memory.id for h in mem.recall("coffee machine", mode="vector", touch=False).hits] == [first.id]
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from memmesh import Memory
        from tests.recall.conftest import recall_settings
        from pathlib import Path
        with Memory({f"sqlite:///{tmp_path / 'memmesh.db'}"!r}, recall_settings(Path({str(shared_data_dir)!r}))) as m:
            new = m.add("An espresso maker was installed in the kitchen", namespace="office")
            m.delete({first.id!r})
            print(new.id)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")},
    )
    assert proc.returncode == 0, proc.stderr
    new_id = proc.stdout.strip()
    hits = mem.recall("coffee machine", mode="vector", touch=False).hits
    assert [h.memory.id for h in hits] == [new_id]
    assert_same(index_answer(mem, "coffee machine", 5), brute_force(mem, "coffee machine", {new_id}, 5))
