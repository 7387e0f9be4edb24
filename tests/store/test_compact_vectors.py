"""Vectors are stored compactly (schema 16, issue 21): 8-bit codes with a per-vector scale on
SQLite, float16 (``halfvec``) on PostgreSQL; a store written with float32 vectors is
converted by the migration and ranks the same top results."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest

from memmesh import Memory
from memmesh.errors import InvalidInputError
from memmesh.store.base import Filter, VectorRow
from memmesh.store.open import open_store
from memmesh.store.sqlite import register_functions
from schema_rewind import rewind

DIM = 64
FACTS = [f"fact number {i} about topic {i % 7}" for i in range(60)]


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    matrix = rng.standard_normal((n, DIM)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def _fill(url: str, open_memory: Callable[..., Memory]) -> tuple[list[str], np.ndarray]:
    """Memories with known unit vectors (model "test-model") written through the store."""
    mem = open_memory(url)
    ids = [m.id for m in mem.add_many(FACTS)]
    vectors = _unit(np.random.default_rng(16), len(ids))
    store = mem.service.store
    with store.write() as tx:
        tx.put_vectors([VectorRow(i, "test-model", v) for i, v in zip(ids, vectors, strict=True)], tx.next_seq())
    mem.close()
    return ids, vectors


def _stored_bytes(url: str, tmp_path: Path) -> list[int]:
    if url.startswith("sqlite"):
        with sqlite3.connect(tmp_path / "conformance.db") as conn:
            return [row[0] for row in conn.execute("SELECT length(vector) FROM vectors")]
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT pg_column_size(embedding) FROM vectors")]


def _max_bytes(url: str) -> int:
    """A vector's stored size: scale + one byte a dimension (SQLite), or 2 bytes a dimension
    plus pgvector's 8-byte header (PostgreSQL); float32 was 4 bytes a dimension."""
    return 4 + DIM if url.startswith("sqlite") else 2 * DIM + 8


def test_vectors_are_stored_compactly_and_read_back_within_the_step(
    backend_url: str, open_memory: Callable[..., Memory], tmp_path: Path
) -> None:
    ids, vectors = _fill(backend_url, open_memory)
    sizes = _stored_bytes(backend_url, tmp_path)
    assert len(sizes) == len(ids)
    assert max(sizes) <= _max_bytes(backend_url)
    store = open_store(backend_url)
    try:
        got = {r.memory_id: r.vector for r in store.get_vectors(ids)}
        assert all(got[i].dtype == np.float32 for i in ids)
        assert max(float(np.max(np.abs(got[i] - v))) for i, v in zip(ids, vectors, strict=True)) < 5e-3
        assert all(abs(float(got[i] @ v) - 1.0) < 5e-3 for i, v in zip(ids, vectors, strict=True))  # cosine with itself
        large = np.array([0.5, -0.25, 0.125, 300.0] + [0.0] * (DIM - 4), dtype=np.float32)  # any scale, not only unit vectors
        with store.write() as tx:
            tx.put_vector(ids[0], "test-model", large, tx.next_seq())
        back = store.get_vectors([ids[0]])[0].vector
        assert back[3] == pytest.approx(300.0, rel=1e-3) and np.allclose(back, large, atol=300.0 / 254 + 1e-6)
    finally:
        store.close()


def test_a_vector_float16_cannot_hold_is_refused_and_nothing_is_written(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    ids, vectors = _fill(backend_url, open_memory)
    store = open_store(backend_url)
    try:
        for bad in (np.full(DIM, 1e6, dtype=np.float32), np.array([np.nan] * DIM, dtype=np.float32)):
            with pytest.raises(InvalidInputError, match="float16"), store.write() as tx:
                tx.put_vector(ids[0], "test-model", bad, tx.next_seq())
        assert np.allclose(store.get_vectors([ids[0]])[0].vector, vectors[0], atol=5e-3)
    finally:
        store.close()


def _downgrade_sqlite(path: Path, ids: list[str], vectors: np.ndarray) -> None:
    """Make the file what schema 15 wrote: float32 vector blobs, schema_version 15."""
    with sqlite3.connect(path) as conn:
        register_functions(conn)
        for memory_id, vector in zip(ids, vectors, strict=True):
            conn.execute("UPDATE vectors SET vector = ? WHERE memory_id = ?", (vector.astype("<f4").tobytes(), memory_id))
        rewind(conn, 15, "sqlite")


def _downgrade_postgres(url: str, ids: list[str], vectors: np.ndarray) -> None:
    """Make the database what schema 15 wrote: a float32 ``vector`` column and its old HNSW index."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP INDEX IF EXISTS vectors_hnsw_64")
        conn.execute("ALTER TABLE vectors ALTER COLUMN embedding TYPE vector USING embedding::vector")
        for memory_id, vector in zip(ids, vectors, strict=True):
            text = "[" + ",".join(repr(float(x)) for x in vector) + "]"
            conn.execute("UPDATE vectors SET embedding = %s::vector WHERE memory_id = %s", (text, memory_id))
        conn.execute("CREATE INDEX vectors_hnsw_64 ON vectors USING hnsw ((embedding::vector(64)) vector_cosine_ops) WHERE dim = 64")
        rewind(conn, 15, "postgres")


def test_a_store_with_float32_vectors_is_converted_and_ranks_the_same(
    backend_url: str, open_memory: Callable[..., Memory], tmp_path: Path
) -> None:
    ids, vectors = _fill(backend_url, open_memory)
    if backend_url.startswith("sqlite"):
        _downgrade_sqlite(tmp_path / "conformance.db", ids, vectors)
        assert set(_stored_bytes(backend_url, tmp_path)) == {4 * DIM}
    else:
        _downgrade_postgres(backend_url, ids, vectors)
    queries = _unit(np.random.default_rng(99), 5)
    before = [[ids[j] for j in np.argsort(-(vectors @ q), kind="stable")[:10]] for q in queries]

    store = open_store(backend_url)  # opening migrates
    try:
        assert store.schema_version >= 16
        assert max(_stored_bytes(backend_url, tmp_path)) <= _max_bytes(backend_url)
        converted = {r.memory_id: r.vector for r in store.get_vectors(ids)}
        assert max(float(np.max(np.abs(converted[i] - v))) for i, v in zip(ids, vectors, strict=True)) < 5e-3
        exact = dict(zip(ids, vectors, strict=True))
        for q, want in zip(queries, before, strict=True):
            got = sorted(ids, key=lambda i: (-float(converted[i] @ q), i))[:10]
            assert got[:3] == want[:3]
            # Further down only near-ties (true cosines within 0.01) may trade places.
            true = {i: float(exact[i] @ q) for i in ids}
            assert all(true[b] - true[a] < 0.01 for n, a in enumerate(got) for b in got[n + 1 :])
            assert all(true[i] > true[want[-1]] - 0.01 for i in got)
        if not backend_url.startswith("sqlite"):
            with psycopg.connect(backend_url) as conn:
                index = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'vectors_hnsw_64'").fetchone()
            assert index is not None and "halfvec_cosine_ops" in index[0]
            found = store.vector_search("test-model", queries[0], 10, _everything())  # type: ignore[attr-defined]
            assert [i for i, _ in found][:5] == before[0][:5]
    finally:
        store.close()


def _everything() -> Filter:
    return Filter(now=datetime(2026, 1, 1, 12, tzinfo=UTC))  # the FakeClock of the fixtures
