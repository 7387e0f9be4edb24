"""SQL-side vector search on PostgreSQL (real pgvector): HNSW with iterative scan and the
recall filter in SQL, checked against exact results computed here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest
from tests.conformance.conftest import settings_for

from memmesh import Memory
from memmesh.model import Memory as MemoryRecord
from memmesh.store.base import Filter
from memmesh.store.open import open_store

pytestmark = pytest.mark.postgres

DIM = 32
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def filled_db(pg_server, tmp_path_factory: pytest.TempPathFactory):
    """3,000 memories in two namespaces (5 % in the rare one), each with a random unit vector
    (made once for the module: the tests only read)."""
    name = pg_server.create_database("vs")
    url = pg_server.dsn_for(name)
    rng = np.random.default_rng(7)
    vectors = _unit(rng, 3000)
    with Memory(url, settings_for(tmp_path_factory.mktemp("vs"))) as mem:
        records = mem.add_many(
            [{"content": f"note {i}", "namespace": "rare" if i % 20 == 0 else "common", "tags": ["t"]} for i in range(3000)]
        )
    store = open_store(url, ann_index=True)
    with store.write() as tx:
        for record, vector in zip(records, vectors, strict=True):
            tx.put_vector(record.id, "model-x", vector, tx.next_seq())
    yield url, store, records, vectors
    store.close()
    pg_server.drop_database(name)


@pytest.fixture
def filled(filled_db):
    return filled_db[1:]


def _exact(records: list[MemoryRecord], vectors: np.ndarray, query: np.ndarray, k: int, namespace: str | None) -> list[tuple[str, float]]:
    keep = [i for i, r in enumerate(records) if namespace is None or r.namespace == namespace]
    scores = vectors[keep] @ query
    order = np.argsort(-scores)[:k]
    return [(records[keep[i]].id, float(scores[i])) for i in order]


@pytest.mark.parametrize("namespace", [None, "common", "rare"])
def test_pgvector_search_matches_exact_results(filled, namespace: str | None) -> None:
    store, records, vectors = filled
    rng = np.random.default_rng(11)
    k = 10
    found_total = 0
    for query in _unit(rng, 20):
        exact = _exact(records, vectors, query, k, namespace)
        got = store.vector_search("model-x", query, k, Filter(now=NOW, namespace=namespace))
        assert len(got) == k  # iterative scan fills k even when 95 % of the rows fail the filter
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        exact_ids = {mid for mid, _ in exact}
        found_total += len(exact_ids & {mid for mid, _ in got})
        by_id = dict(exact)
        for mid, score in got:  # every score is the true cosine, and only rows passing the filter come back
            assert mid in {r.id for r in records if namespace is None or r.namespace == namespace}
            if mid in by_id:
                assert score == pytest.approx(by_id[mid], abs=1e-3)  # stored as halfvec (schema 16): float16's 2^-11
    assert found_total / (20 * k) >= 0.95  # HNSW recall against the exact answer


def test_pgvector_search_uses_the_hnsw_index_with_iterative_scan(filled_db) -> None:
    """A broad filter goes through the HNSW index (a very selective one may be planned as an
    exact scan of the few rows that pass it: also correct, see the exact-results test)."""
    pg_database = filled_db[0]
    query = "[" + ",".join(["0.1"] * DIM) + "]"
    with psycopg.connect(pg_database) as conn:
        conn.execute("ANALYZE vectors; ANALYZE memories")  # what autovacuum does once a table has grown
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'vectors'")}
        assert f"vectors_hnsw_{DIM}" in indexes
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                f"EXPLAIN SELECT v.memory_id FROM vectors v JOIN memories m ON m.id = v.memory_id WHERE v.model = 'model-x' "
                f"AND v.dim = {DIM} AND m.namespace = 'common' ORDER BY v.embedding::halfvec({DIM}) <=> '{query}'::halfvec({DIM}) LIMIT 10"
            )
        )
    assert f"vectors_hnsw_{DIM}" in plan


def test_pgvector_search_filters_in_sql_on_tags_and_ids(filled) -> None:
    store, records, vectors = filled
    query = _unit(np.random.default_rng(3), 1)[0]
    chosen = tuple(r.id for r in records[:50])
    got = store.vector_search("model-x", query, 5, Filter(now=NOW, ids=chosen, tags=("t",)))
    exact = sorted(((r.id, float(v @ query)) for r, v in zip(records[:50], vectors[:50], strict=True)), key=lambda p: -p[1])[:5]
    assert [mid for mid, _ in got] == [mid for mid, _ in exact]
    assert store.vector_search("model-x", query, 5, Filter(now=NOW, tags=("absent",))) == []
    assert store.vector_search("other-model", query, 5, Filter(now=NOW)) == []


@pytest.mark.slow
def test_pgvector_search_drives_recall_above_the_threshold(pg_database: str, open_memory: Callable[..., Memory]) -> None:
    """Recall on a store past storage.pg_vector_search_min searches in SQL and answers like
    the in-process index does on the same data."""
    texts = [f"{topic} note {i}" for i in range(12) for topic in ("database backups", "coffee brewing", "kubernetes upgrades")]
    in_sql = open_memory(pg_database, embeddings={"provider": "minilm"}, storage={"pg_vector_search_min": 10})
    for text in texts:
        in_sql.add(text, namespace="ops" if "kubernetes" in text else "misc")
    in_process = open_memory(pg_database, embeddings={"provider": "minilm"}, storage={"pg_vector_search_min": 0})
    for query, namespace in (("how do we restore the database", None), ("cluster version bump", "ops")):
        a = in_sql.recall(query, mode="vector", top_k=5, namespace=namespace)
        b = in_process.recall(query, mode="vector", top_k=5, namespace=namespace)
        assert [h.memory.id for h in a.hits] == [h.memory.id for h in b.hits]
        assert [h.score for h in a.hits] == pytest.approx([h.score for h in b.hits], abs=1e-4)
    assert in_sql.service.engine.index.in_sql is True
    assert in_process.service.engine.index.in_sql is False
