"""In-memory vector index over the store's embeddings: exact numpy search, HNSW above a size.

The store is the source of truth. The index loads every vector of the active model at
open and then follows the store's change counter (``vector_changes(since_seq)``), so writes
made by other processes on the same database are seen at the next search.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import numpy as np

from memmesh.store.base import Store


class VectorIndex:
    """Cosine search over L2-normalised vectors of one embedding model."""

    def __init__(self, store: Store, model_id: str, dim: int | None = None, *, ann_threshold: int = 50_000) -> None:
        self.store = store
        self.model_id = model_id
        self.dim = dim
        self.ann_threshold = ann_threshold
        self._lock = threading.Lock()
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._matrix = np.zeros((0, dim or 0), dtype=np.float32)
        self._count = 0
        self._seq = 0
        self._ann = None
        self._ann_dirty = True

    def __len__(self) -> int:
        return self._count

    def refresh(self) -> None:
        """Apply the store's vector changes since the last refresh (cheap when there are none)."""
        if self.store.change_counter() == self._seq:
            return
        with self._lock:
            changes = self.store.vector_changes(self._seq)
            for memory_id in changes.removed:
                self._remove(memory_id)
            for row in changes.upserts:
                if self.dim is None and row.model == self.model_id:
                    self.dim = row.vector.shape[0]
                    self._matrix = np.zeros((0, self.dim), dtype=np.float32)
                if row.model == self.model_id and row.vector.shape[0] == self.dim:
                    self._upsert(row.memory_id, row.vector)
                else:
                    self._remove(row.memory_id)
            self._seq = changes.seq

    def _upsert(self, memory_id: str, vector: np.ndarray) -> None:
        pos = self._pos.get(memory_id)
        if pos is None:
            if self._count == self._matrix.shape[0]:
                grown = np.zeros((max(1024, self._count * 2), self._matrix.shape[1]), dtype=np.float32)
                grown[: self._count] = self._matrix[: self._count]
                self._matrix = grown
            pos = self._count
            self._count += 1
            self._ids.append(memory_id)
            self._pos[memory_id] = pos
        self._matrix[pos] = vector
        self._ann_dirty = True

    def _remove(self, memory_id: str) -> None:
        pos = self._pos.pop(memory_id, None)
        if pos is None:
            return
        last = self._count - 1
        if pos != last:
            moved = self._ids[last]
            self._matrix[pos] = self._matrix[last]
            self._ids[pos] = moved
            self._pos[moved] = pos
        self._ids.pop()
        self._count -= 1
        self._ann_dirty = True

    def similarity(self, query: np.ndarray, ids: list[str]) -> list[float]:
        """Cosine of ``query`` with each id's vector (0.0 for ids without one)."""
        with self._lock:
            out = []
            for memory_id in ids:
                pos = self._pos.get(memory_id)
                out.append(float(self._matrix[pos] @ query) if pos is not None else 0.0)
            return out

    def search(
        self,
        query: np.ndarray,
        k: int,
        accept: Callable[[list[str]], set[str]] | None = None,
        allowed: Iterable[str] | None = None,
        fallback: Callable[[], Iterable[str]] | None = None,
        widen_limit: int = 4096,
    ) -> list[tuple[str, float]]:
        """The ``k`` most similar ids with cosine scores.

        ``allowed`` restricts the search to those ids exactly (a selective filter);
        ``accept`` filters candidate batches (a broad filter), widening until ``k`` pass.
        When widening passes ``widen_limit`` candidates the filter is selective: ``fallback``
        then lists every id that passes it and the search is exact over those.
        """
        self.refresh()
        with self._lock:
            if self._count == 0:
                return []
            if allowed is not None:
                positions = np.fromiter((self._pos[i] for i in allowed if i in self._pos), dtype=np.int64)
                if positions.size == 0:
                    return []
                scores = self._matrix[positions] @ query
                return [(self._ids[positions[i]], float(scores[i])) for i in _top(scores, k)]
            scores = self._matrix[: self._count] @ query
            want = k
            while True:
                candidates = [(self._ids[i], float(scores[i])) for i in _top(scores, want)]
                if accept is None:
                    return candidates[:k]
                passed = accept([c for c, _ in candidates])
                kept = [c for c in candidates if c[0] in passed]
                if len(kept) >= k or want >= len(scores):
                    return kept[:k]
                want *= 4
                if fallback is not None and want > widen_limit:
                    break
        assert fallback is not None
        return self.search(query, k, allowed=list(fallback()))


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first."""
    if k >= scores.shape[0]:
        return np.argsort(-scores)
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part])]

