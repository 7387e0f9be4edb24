"""The vector index for stores that can search vectors themselves (PostgreSQL + pgvector).

Below ``sql_min`` vectors of the active model it is the ordinary in-process index
(:class:`~memmesh.recall.index.VectorIndex`): exact numpy search over vectors loaded once and
followed through the change feed, which beats a database round trip at that size. At and
above it, every node holding a full copy of every vector costs memory and a long first
load, so searches go to the database instead (``store.vector_search``: pgvector's HNSW index
with ``hnsw.iterative_scan``, the recall filter evaluated in SQL) and the in-process copy is
dropped. The size is re-checked every ``recheck_s`` seconds, so a store that grows or
shrinks past the threshold switches on its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from memmesh.recall.index import VectorIndex
from memmesh.store.base import Filter, Store


class SqlBackedIndex(VectorIndex):
    """In-process below ``sql_min`` vectors, the store's own vector search at and above it."""

    def __init__(
        self,
        store: Store,
        model_id: str,
        dim: int | None = None,
        *,
        ann_threshold: int = 50_000,
        sql_min: int = 100_000,
        recheck_s: float = 30.0,
    ) -> None:
        super().__init__(store, model_id, dim, ann_threshold=ann_threshold)
        self.sql_min = sql_min
        self.recheck_s = recheck_s
        self._size_lock = threading.Lock()
        self._size: tuple[float, int] | None = None  # (checked at, vectors of this model)
        self._in_sql = False

    @property
    def in_sql(self) -> bool:
        """True while searches run in the database."""
        return self._use_sql()

    def _model_count(self) -> int:
        now = time.monotonic()
        with self._size_lock:
            if self._size is None or now - self._size[0] >= self.recheck_s:
                self._size = (now, int(self.store.vector_models().get(self.model_id, 0)))
            return self._size[1]

    def _use_sql(self) -> bool:
        if self.sql_min <= 0:
            return False
        in_sql = self._model_count() >= self.sql_min
        if in_sql and not self._in_sql:
            self._drop_copy()
        self._in_sql = in_sql
        return in_sql

    def _drop_copy(self) -> None:
        """Free the in-process vectors; a later switch back reloads them from the store."""
        with self._lock:
            self._ids, self._pos, self._count, self._seq = [], {}, 0, 0
            self._matrix = np.zeros((0, self.dim or 0), dtype=np.float32)
            self._ann, self._key, self._key_ids = None, {}, {}
            self._build_gen += 1  # a graph being built in the background is not wanted any more
            self._build, self._dirty = None, None

    def __len__(self) -> int:
        return self._model_count() if self._use_sql() else super().__len__()

    def refresh(self, seq: int | None = None) -> None:
        if not self._use_sql():
            super().refresh(seq)

    def warm_up(self) -> threading.Thread:
        """Load the in-process copy in the background when the store is below ``sql_min``;
        the size seen at startup is not kept (a store filled right after opening must
        switch to SQL search at its first recall, not ``recheck_s`` later)."""
        inner = super().warm_up()

        def forget_size() -> None:
            inner.join()
            with self._size_lock:
                self._size = None

        thread = threading.Thread(target=forget_size, name="memmesh-index-load", daemon=True)
        thread.start()
        return thread

    def search_filtered(self, query: np.ndarray, k: int, flt: Filter) -> list[tuple[str, float]] | None:
        """The filtered top ``k`` from the database, or None when the in-process path applies."""
        if not self._use_sql():
            return None
        search: Any = self.store.vector_search  # type: ignore[attr-defined]
        return list(search(self.model_id, query, k, flt))

    def _stored(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        return {row.memory_id: row.vector for row in self.store.get_vectors(list(ids)) if row.model == self.model_id}

    def similarity(self, query: np.ndarray, ids: list[str]) -> list[float]:
        if not self._use_sql():
            return super().similarity(query, ids)
        found = self._stored(ids)
        return [float(found[i] @ query) if i in found else 0.0 for i in ids]

    def vectors(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        if not self._use_sql():
            return super().vectors(ids)
        return self._stored(ids)
