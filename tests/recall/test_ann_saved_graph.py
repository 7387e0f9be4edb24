"""The HNSW graph saved beside a SQLite file: reloaded by the next process with the same hits,
brought up to date with the writes made since, and rebuilt when it does not belong to the store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.recall.test_index import QUERIES, TEXTS, assert_same, brute_force, index_answer

from memmesh import Memory
from memmesh.compose import ann_graph_path
from memmesh.recall.index import VectorIndex


def graph_files(mem: Memory) -> tuple[Path, Path]:
    embedder = mem.service.embedder
    assert embedder is not None
    base = ann_graph_path(mem.service.store, embedder.model_id)
    assert base is not None
    return base.with_name(base.name + ".usearch"), base.with_name(base.name + ".json")


def saved_ids(mem: Memory) -> set[str]:
    return set(json.loads(graph_files(mem)[1].read_text())["ids"])


def live_ids(mem: Memory) -> set[str]:
    return {m.id for m in mem.list(limit=1000).items}


def graph_in_use(mem: Memory) -> bool:
    index = mem.service.engine.index
    assert index is not None
    index.refresh()
    return index.wait_for_ann(60)


def fill(mem: Memory, copies: int = 3) -> None:
    mem.add_many([{"content": f"{t} (note {i})", "namespace": "bulk"} for i in range(copies) for t in TEXTS], wait=True)


def test_saved_graph_is_reloaded_with_the_same_hits(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(ann_threshold=1)
    fill(mem)
    assert mem.service.engine.index is not None and len(mem.service.engine.index) == 3 * len(TEXTS)
    assert graph_in_use(mem)
    before = {q: index_answer(mem, q, 5) for q in QUERIES}
    graph, _meta = graph_files(mem)
    assert graph.exists() and saved_ids(mem) == live_ids(mem)
    stamp = graph.stat().st_mtime_ns
    mem.close()

    again = open_memory(ann_threshold=1)
    index = again.service.engine.index
    assert index is not None and len(index) == 3 * len(TEXTS) and graph_in_use(again)
    for query, hits in before.items():
        assert_same(index_answer(again, query, 5), hits)
    assert graph.stat().st_mtime_ns == stamp  # loaded, not built and saved again


def test_saved_graph_catches_up_with_writes_made_since(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(ann_threshold=1)
    fill(mem)
    assert graph_in_use(mem)
    mem.close()

    writer = open_memory()  # exact search (threshold 50k): adds and deletes while the graph is not loaded
    gone = [m.id for m in writer.list(limit=6).items]
    for memory_id in gone:
        writer.delete(memory_id)
    fresh = writer.add("Gina keeps bees on her rooftop in Oslo", namespace="bulk", wait=True)
    writer.update(writer.list(limit=100).items[-1].id, content="Hank repairs vintage motorcycles on weekends", wait=True)
    writer.close()

    again = open_memory(ann_threshold=1)
    index = again.service.engine.index
    assert index is not None and len(index) == 3 * len(TEXTS) - len(gone) + 1 and graph_in_use(again)
    allowed = live_ids(again)
    for query in [*QUERIES, "who keeps bees?", "motorcycle repair"]:
        assert_same(index_answer(again, query, 5), brute_force(again, query, allowed, 5))
    assert index_answer(again, "who keeps bees?", 1)[0][0] == fresh.id
    assert not {i for q in QUERIES for i, _ in index_answer(again, q, 10)} & set(gone)


def test_graph_of_another_store_is_rebuilt(open_memory: Callable[..., Memory]) -> None:
    other = open_memory("other.db", ann_threshold=1)
    fill(other, copies=2)
    assert graph_in_use(other)
    foreign = graph_files(other)
    other.close()

    mem = open_memory(ann_threshold=50_000)  # no graph yet
    fill(mem)
    mine = graph_files(mem)
    ids = live_ids(mem)
    mem.close()
    for src, dst in zip(foreign, mine, strict=True):
        dst.write_bytes(src.read_bytes())  # a graph copied from another database (or a restored old file)

    again = open_memory(ann_threshold=1)
    index = again.service.engine.index
    assert index is not None and len(index) == len(ids) and graph_in_use(again)
    assert saved_ids(again) == ids  # refused and built again for this store
    for query in QUERIES:
        assert_same(index_answer(again, query, 5), brute_force(again, query, ids, 5))


def test_torn_graph_file_is_rebuilt(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(ann_threshold=1)
    fill(mem)
    assert graph_in_use(mem)
    graph, _meta = graph_files(mem)
    ids = live_ids(mem)
    mem.close()
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])  # a crash while copying it

    again = open_memory(ann_threshold=1)
    index = again.service.engine.index
    assert index is not None and len(index) == len(ids) and graph_in_use(again)
    assert graph.stat().st_size > 0 and saved_ids(again) == ids
    for query in QUERIES:
        assert_same(index_answer(again, query, 5), brute_force(again, query, ids, 5))


def test_background_build_keeps_exact_search_until_ready_and_applies_writes_made_meanwhile(
    open_memory: Callable[..., Memory], tmp_path: Path
) -> None:
    mem = open_memory()
    fill(mem, copies=4)
    embedder = mem.service.embedder
    assert embedder is not None
    index = VectorIndex(mem.service.store, embedder.model_id, ann_threshold=1, ann_path=tmp_path / "bg.hnsw", background_min=1)
    index.refresh()  # starts the build in a thread; searches meanwhile are exact
    gone = [m.id for m in mem.list(limit=5).items]
    for memory_id in gone:
        mem.delete(memory_id)
    fresh = mem.add("Gina keeps bees on her rooftop in Oslo", namespace="bulk", wait=True)
    query = embedder.embed(["who keeps bees?"])[0]
    assert index.search(query, 1)[0][0] == fresh.id  # answered while the graph may still be building
    deadline = time.monotonic() + 60
    while not index.wait_for_ann(1) and time.monotonic() < deadline:
        index.refresh()
    assert index.uses_ann
    allowed = live_ids(mem)
    for text in [*QUERIES, "who keeps bees?"]:
        q = embedder.embed([text])[0]
        got = index.search(q, 5)
        assert_same(got, brute_force(mem, text, allowed, 5))
    assert (tmp_path / "bg.hnsw.usearch").exists()


def test_graph_is_rebuilt_and_saved_again_once_a_tenth_has_changed(open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(ann_threshold=1)
    fill(mem)
    assert graph_in_use(mem)
    first = set(saved_ids(mem))
    for memory in mem.list(limit=2).items:  # 2 of 36: searched beside the saved graph, no rebuild
        mem.delete(memory.id)
    assert graph_in_use(mem) and saved_ids(mem) == first
    index = mem.service.engine.index
    assert index is not None
    for text in ["Gina keeps bees on her rooftop in Oslo", "Hank repairs vintage motorcycles", "Ivy sails to Crete"]:
        mem.add(text, namespace="bulk", wait=True)  # now 5 of 36 changed: more than a tenth
    index.refresh()
    assert index.wait_for_ann(60)
    assert saved_ids(mem) == live_ids(mem)  # a new graph of the current vectors was saved
    allowed = live_ids(mem)
    for query in [*QUERIES, "who keeps bees?"]:
        assert_same(index_answer(mem, query, 5), brute_force(mem, query, allowed, 5))


CHILD = """
import sys
from pathlib import Path

import numpy as np
from memmesh import Memory
from memmesh.config import load_settings

data = Path(sys.argv[1])
(data / "empty.toml").write_text("")
overrides = {"data_dir": str(data), "embeddings": {"provider": "minilm"}, "recall": {"ann_threshold": 1}}
mem = Memory(f"sqlite:///{data / 'big.db'}", load_settings(data / "empty.toml", overrides=overrides, env={}))
model_id = mem.service.embedder.model_id

class RandomUnit:
    def __init__(self):
        self.model_id, self.dim, self.rng = model_id, 384, np.random.default_rng(5)

    def embed(self, texts):
        v = self.rng.normal(size=(len(texts), 384)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def health(self):
        return {"ok": True, "model_id": self.model_id, "detail": "test"}

real = mem.service.embedder
mem.service.embedder = RandomUnit()
mem.add_many([{"content": f"memory number {i}", "namespace": "bulk"} for i in range(20_000)], wait=True)
mem.service.embedder = real
index = mem.service.engine.index
index.background_min = 1
assert mem.recall("memory number five", touch=False).hits  # exact while the graph builds
assert index._build is not None, "the graph build should be running in the background"
mem.close()
print("leaving while the graph is being built", flush=True)
"""


def test_process_exits_cleanly_while_a_graph_builds_in_the_background(tmp_path: Path) -> None:
    """Regression: a daemon thread inside usearch's C++ at interpreter exit aborted the process
    (exit 134, "terminate called without an active exception")."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "leaving while the graph is being built" in proc.stdout
