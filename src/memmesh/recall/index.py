"""In-memory vector index over the store's embeddings: exact numpy search, HNSW above a size.

The store is the source of truth. The index loads every vector of the active model at
first use and then follows the store's change counter (``vector_changes(since_seq)``), so
writes made by other processes on the same database are seen at the next search. Vectors
of any other model are never loaded: after a model change they are simply absent until
``memmesh reindex`` re-embeds them.

Exact search (one matrix-vector product) is the default and is fast enough for tens of
thousands of vectors. At ``ann_threshold`` vectors and above, a usearch HNSW graph (cosine)
answers instead; it is built from the matrix, kept in step with every upsert and removal,
and its hits are rescored exactly from the matrix so scores never depend on the graph.

The graph is built in a background thread when the index holds ``background_min`` vectors
or more (100k vectors: ~40 s of one core), searches staying exact until it is ready, and
saved beside a SQLite file (``ann_path``: ``<db>.hnsw.usearch`` with a ``.json`` of its ids,
model and change counter), so the next process loads it in a fraction of a second and only
applies the vector changes made since. A saved graph of another model or size, or whose ids
do not match the store's vectors after those changes (a restored or replaced file, a
removal whose record was collected), is dropped and built again. See :mod:`memmesh.recall.ann_file`.

Filters: ``accept`` checks batches of nearest ids against the caller's filter, widening
the batch until ``k`` pass; a filter that rejects nearly everything (widening past
``widen_limit``) is selective, so ``fallback`` lists the ids that pass it and the search is
exact over those. Both paths therefore return exactly the filtered top ``k`` (the HNSW path
up to the graph's own recall).
"""

from __future__ import annotations

import atexit
import functools
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memmesh.errors import EmbedderError
from memmesh.recall import ann_file
from memmesh.store.base import Store, VectorRow

if TYPE_CHECKING:
    from usearch.index import Index as UsearchIndex

Accept = Callable[[list[str]], set[str]]

SAVED_GRAPH_CHECKS = 256
"""Entries of a saved graph compared with the store's vectors when it is loaded (a few ms)."""
SAVED_GRAPH_MIN_COSINE = 0.99
"""An entry is the id's vector when their cosine is above this (the graph keeps half precision)."""


def _sample_keys(size: int) -> list[int]:
    """Up to :data:`SAVED_GRAPH_CHECKS` keys spread over ``0..size-1`` (random, so no fixed
    subset of positions is ever the only one looked at)."""
    if size <= SAVED_GRAPH_CHECKS:
        return list(range(size))
    return sorted(int(k) for k in np.random.default_rng().choice(size, SAVED_GRAPH_CHECKS, replace=False))


EXPANSION_SEARCH = 256
"""HNSW search breadth: at 100k synthetic vectors with many near-duplicates, 95.2 % / 97.2 % /
99.1 % of the exact top 20 at 128 / 256 / 512, for 0.7 / 1.4 / 2.5 ms of CPU against ~7 ms
for the exact product (docs/recall.md, latency)."""

_BUILDS: set[threading.Thread] = set()
"""Graph builds running in background threads (joined at exit, see :func:`_stop_builds`)."""
_EXITING = threading.Event()
BUILD_BATCH = 1024
"""Vectors added to a graph per call in a background build: between calls it checks
whether the build is still wanted, so the process can stop it within one batch."""

_PINNED = threading.local()
"""The index a thread's current recall has refreshed already (see :meth:`VectorIndex.pinned`)."""


class VectorIndex:
    """Cosine search over L2-normalised vectors of one embedding model."""

    def __init__(
        self,
        store: Store,
        model_id: str,
        dim: int | None = None,
        *,
        ann_threshold: int = 50_000,
        ann_path: Path | None = None,
        background_min: int = 5_000,
    ) -> None:
        self.store = store
        self.model_id = model_id
        self.dim = dim
        self.ann_threshold = ann_threshold
        self.ann_path = ann_path
        """Where the HNSW graph is saved between processes (None: kept in memory only)."""
        self.background_min = background_min
        """Graphs of this many vectors or more are built in a background thread."""
        self._build: threading.Thread | None = None
        self._build_gen = 0
        self._dirty: set[str] | None = None  # ids changed while a graph builds in the background
        self._frozen = False  # the graph is the saved file, memory-mapped read-only
        self._delta: set[str] = set()  # ids written since a frozen graph: searched exactly beside it
        self._lock = threading.RLock()
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._matrix = np.zeros((0, dim or 0), dtype=np.float32)
        self._count = 0
        self._seq = 0
        # HNSW: stable integer keys (positions move on removal, keys never do).
        self._ann: UsearchIndex | None = None
        self._key: dict[str, int] = {}
        self._key_ids: dict[int, str] = {}
        self._next_key = 0

    def __len__(self) -> int:
        self.refresh()
        return self._count

    @property
    def uses_ann(self) -> bool:
        """True when searches go through the HNSW graph."""
        return self._ann is not None

    def wait_for_ann(self, timeout: float | None = None) -> bool:
        """Wait for a graph being loaded or built in another thread; True when searches use a graph."""
        build = self._build
        if build is not None:
            build.join(timeout)
        if self._lock.acquire(timeout=-1 if timeout is None else timeout):  # a load under way in another thread
            self._lock.release()
        return self._ann is not None

    # -- keeping in step with the store ---------------------------------------------------

    @contextmanager
    def pinned(self) -> Iterator[int]:
        """Refresh once and skip the refreshes of every read inside the block (in this thread):
        one recall asks the store for its change counter once, not once per index read.
        Yields the change counter seen."""
        seq = self.store.change_counter()
        self.refresh(seq)
        outer = getattr(_PINNED, "index", None)
        _PINNED.index = self
        try:
            yield seq
        finally:
            _PINNED.index = outer

    def refresh(self, seq: int | None = None) -> None:
        """Apply the store's vector changes since the last refresh (cheap when there are none).

        ``seq``: the change counter the caller just read (saves reading it again)."""
        if getattr(_PINNED, "index", None) is self:
            return
        if (self.store.change_counter() if seq is None else seq) == self._seq:
            return
        with self._lock:
            if self._seq == 0 and self._count == 0 and self._load_snapshot() and self.store.change_counter() == self._seq:
                self._sync_ann()
                return
            changes = self.store.vector_changes(self._seq)
            if self._count == 0 and self._load_all(changes.upserts):
                self._seq = changes.seq
                self._sync_ann()
                return
            for memory_id in changes.removed:
                self._remove(memory_id)
            for row in changes.upserts:
                if row.model != self.model_id:
                    self._remove(row.memory_id)  # replaced by another model's vector
                    continue
                if self.dim is None or self._matrix.shape[1] != self.dim:
                    self.dim = self.dim or row.vector.shape[0]
                    self._matrix = np.zeros((0, self.dim), dtype=np.float32)
                if row.vector.shape[0] == self.dim:
                    self._upsert(row.memory_id, row.vector)
                else:
                    self._remove(row.memory_id)
            self._seq = changes.seq
            self._sync_ann()

    def _load_snapshot(self) -> bool:
        """The first load straight into one exactly-sized matrix, where the store can
        (SQLite's ``vector_snapshot``); False when it cannot or holds no such vectors."""
        snapshot = getattr(self.store, "vector_snapshot", None)
        if snapshot is None:
            return False
        seq, ids, matrix = snapshot(self.model_id, self.dim)
        if not ids:
            return False
        self.dim = int(matrix.shape[1])
        self._matrix, self._ids, self._count, self._seq = matrix, list(ids), len(ids), int(seq)
        self._pos = {memory_id: pos for pos, memory_id in enumerate(self._ids)}
        release_free_heap()
        return True

    def warm_up(self) -> threading.Thread:
        """Load the vectors now, in a background thread, so the first recall of a long-lived
        process does not pay for it (100k vectors: about a second). A recall that comes
        first simply waits on the same lock; errors are left for that recall to raise."""

        def load() -> None:
            try:
                self.refresh()
            except Exception:  # the recall that needs the index reports it
                return

        thread = threading.Thread(target=load, name="memmesh-index-load", daemon=True)
        thread.start()
        return thread

    def _load_all(self, rows: list[VectorRow]) -> bool:
        """First load into an empty index: one ``np.stack`` instead of a Python upsert per row
        (100k vectors: most of a process's first-recall time). False when there is nothing
        to load this way (the row-by-row path then applies what is there)."""
        if self.dim is None:
            self.dim = next((row.vector.shape[0] for row in rows if row.model == self.model_id), None)
        keep = [row for row in rows if row.model == self.model_id and row.vector.shape[0] == self.dim]
        if not keep:
            return False
        if len(keep) != len(rows):
            return False  # other models' or odd rows among them: let the general path sort them out
        last: dict[str, int] = {}
        for i, row in enumerate(keep):
            last[row.memory_id] = i  # a memory listed twice keeps its newest vector
        order = sorted(last.values())
        matrix = np.zeros((max(1024, len(order)), self.dim or 0), dtype=np.float32)
        matrix[: len(order)] = np.stack([keep[i].vector for i in order]).astype(np.float32, copy=False)
        self._matrix = matrix
        self._ids = [keep[i].memory_id for i in order]
        self._pos = {memory_id: pos for pos, memory_id in enumerate(self._ids)}
        self._count = len(order)
        return True

    def _upsert(self, memory_id: str, vector: np.ndarray) -> None:
        pos = self._pos.get(memory_id)
        if pos is None:
            if self._count == self._matrix.shape[0]:
                # Grow by a quarter (amortised O(1) still): doubling left up to half of a
                # 100k-vector matrix (77 MB) allocated and unused after one more write.
                grown = np.zeros((self._count + max(1024, self._count // 4), self._matrix.shape[1]), dtype=np.float32)
                grown[: self._count] = self._matrix[: self._count]
                self._matrix = grown
            pos = self._count
            self._count += 1
            self._ids.append(memory_id)
            self._pos[memory_id] = pos
        self._matrix[pos] = vector
        if self._ann is not None:
            self._ann_put(memory_id, vector)
        if self._dirty is not None:
            self._dirty.add(memory_id)

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
        if self._ann is not None:
            self._ann_drop(memory_id)
        if self._dirty is not None:
            self._dirty.add(memory_id)

    # -- HNSW -------------------------------------------------------------------------------

    def _sync_ann(self) -> None:
        """Have a graph when the index reaches the threshold (the saved one, brought up to
        date, or a new one: built here when small, in the background when large); drop it
        when the index shrinks below."""
        if self._count >= self.ann_threshold > 0 and self._ann is not None:
            if self._frozen and self._build is None and self._delta_share() > 0.1:
                self._start_background_build()  # a fresh graph (and file) once a tenth has changed
        elif self._count >= self.ann_threshold > 0:
            if self._build is not None or self._load_saved_ann():
                return
            if self._count < self.background_min:
                ids = list(self._ids)
                built = self._new_graph(self._matrix[: self._count], ids)
                assert built is not None
                graph = self._saved_view(built, ids, self._seq)
                self._install_ann(graph, ids, set(), frozen=graph is not None and self.ann_path is not None)
            else:
                self._start_background_build()
        elif self._count < self.ann_threshold and (self._ann is not None or self._build is not None):
            self._ann, self._key, self._key_ids = None, {}, {}
            self._build_gen += 1  # a build under way is no longer wanted
            self._build, self._dirty = None, None
            self._frozen, self._delta = False, set()

    def _delta_share(self) -> float:
        """Share of a frozen graph's entries that no longer answer (changed or removed since)."""
        assert self._ann is not None
        stale = len(self._ann) - len(self._key)
        return (len(self._delta) + stale) / max(1, len(self._ann))

    def _new_graph(self, vectors: np.ndarray, ids: list[str], stop: Callable[[], bool] | None = None) -> UsearchIndex | None:
        """A graph of ``vectors`` keyed 0..n-1 (the positions in ``ids``); None when ``stop``
        said so between batches. Half precision in the graph: its scores only pick
        candidates, which the float32 matrix rescores."""
        try:
            Index = ann_file.usearch_index()  # a class; onnxruntime imported first (see there)
        except ImportError as exc:  # pragma: no cover - usearch is a dependency
            raise EmbedderError(f"the usearch package is needed above recall.ann_threshold vectors: {exc}") from exc
        graph = Index(ndim=self.dim or 0, metric="cos", dtype="f16", connectivity=16, expansion_add=64, expansion_search=EXPANSION_SEARCH)
        keys = np.arange(len(ids), dtype=np.uint64)
        if stop is None:
            if ids:
                graph.add(keys, vectors, threads=1)
            return graph
        for start in range(0, len(ids), BUILD_BATCH):
            if stop():
                return None
            graph.add(keys[start : start + BUILD_BATCH], vectors[start : start + BUILD_BATCH], threads=1)
        return graph

    def _install_ann(self, graph: UsearchIndex, ids: list[str], changed: set[str], *, frozen: bool = False) -> None:
        """Make ``graph`` (keys = positions in ``ids``) the live one, then re-put every id in
        ``changed`` from the matrix (or drop it when the index no longer holds it). A
        ``frozen`` graph (the saved file, memory-mapped) is never modified: changes go to the
        exact delta. Caller holds the lock."""
        self._ann, self._frozen, self._delta = graph, frozen, set()
        self._key = {memory_id: key for key, memory_id in enumerate(ids)}
        self._key_ids = dict(enumerate(ids))
        self._next_key = max(self._next_key, len(ids))
        for memory_id in sorted(changed):
            pos = self._pos.get(memory_id)
            if pos is None:
                self._ann_drop(memory_id)
            else:
                self._ann_put(memory_id, self._matrix[pos])

    def _start_background_build(self) -> None:
        """Build the graph from a half-precision copy of the matrix in a thread; searches stay
        exact until it is installed with the changes made meanwhile. Caller holds the lock."""
        vectors = self._matrix[: self._count].astype(np.float16)
        ids, seq = list(self._ids), self._seq
        self._build_gen += 1
        gen = self._build_gen
        self._dirty = set()

        def build() -> None:
            try:
                finish(build_graph())
            finally:
                _BUILDS.discard(threading.current_thread())

        def build_graph() -> UsearchIndex | None:
            try:
                return self._new_graph(vectors, ids, stop=lambda: _EXITING.is_set() or gen != self._build_gen)
            except Exception:  # a failed build leaves exact search in place
                return None

        def finish(graph: UsearchIndex | None) -> None:
            frozen = False
            if graph is not None:
                viewed = self._saved_view(graph, ids, seq)
                frozen = viewed is not graph
                graph = viewed
            with self._lock:
                if gen != self._build_gen:
                    return
                if graph is not None:
                    self._install_ann(graph, ids, self._dirty or set(), frozen=frozen)
                self._build, self._dirty = None, None

        self._build = threading.Thread(target=build, name="memmesh-hnsw-build", daemon=True)
        _BUILDS.add(self._build)
        self._build.start()

    def _saved_view(self, graph: UsearchIndex, ids: list[str], seq: int) -> UsearchIndex:
        """Save a fresh graph for the next process and answer from the saved file, mapped
        read-only (its pages are shared with the OS's cache and only those a search touches
        count in the process's memory: issue 21's footprint); the graph itself when there is
        no file or the folder cannot be written (the next process then builds its own)."""
        if self.ann_path is None:
            return graph
        try:
            ann_file.save(self.ann_path, graph, ann_file.Meta(self.model_id, self.dim or 0, seq, ids))
            viewed = ann_file.view(self.ann_path)
        except (OSError, RuntimeError, ValueError):
            return graph
        if viewed is None or len(viewed) != len(ids):
            return graph
        del graph
        release_free_heap()
        viewed.expansion_search = EXPANSION_SEARCH  # type: ignore[misc]  # usearch declares the setter after the getter
        return viewed

    def _load_saved_ann(self) -> bool:
        """Load the saved graph and apply the vector changes since it was saved; False (and
        the saved files removed) when there is none, it is of another model or size, or its
        ids do not then match the index's. Caller holds the lock."""
        if self.ann_path is None:
            return False
        loaded = ann_file.load(self.ann_path, self.model_id, self.dim or 0, self._seq, view=True)
        if loaded is None:
            return False
        graph, meta = loaded
        graph.expansion_search = EXPANSION_SEARCH  # type: ignore[misc]  # usearch declares the setter after the getter
        changes = self.store.vector_changes(meta.seq)
        changed = set(changes.removed) | {row.memory_id for row in changes.upserts}
        self._install_ann(graph, meta.ids, changed, frozen=True)
        if self._key.keys() | self._delta == self._pos.keys() and self._graph_holds_its_ids(graph, meta.ids, changed):
            return True
        self._ann, self._key, self._key_ids = None, {}, {}
        self._frozen, self._delta = False, set()
        ann_file.remove(self.ann_path)
        return False

    def _graph_holds_its_ids(self, graph: UsearchIndex, ids: list[str], changed: set[str]) -> bool:
        """True when a sample of the saved graph's entries holds the vectors the store has for
        the ids its description names. The description is a plain file beside the database:
        one whose id list was edited, shuffled or written for another graph of the same ids
        would otherwise steer every search to the wrong memories until the next rebuild."""
        keys = [k for k in _sample_keys(len(ids)) if ids[k] not in changed and ids[k] in self._pos]
        if not keys:
            return True
        try:
            got = graph.get(np.asarray(keys, dtype=np.uint64), dtype="f32")
            stored = np.stack([np.asarray(v, dtype=np.float32) for v in got]) if isinstance(got, tuple) else np.asarray(got)
        except (TypeError, ValueError, RuntimeError):  # a missing key (None) or a graph usearch cannot read back
            return False
        want = self._matrix[[self._pos[ids[k]] for k in keys]]
        norms = np.linalg.norm(stored, axis=1) * np.linalg.norm(want, axis=1)
        cosine = np.einsum("ij,ij->i", stored, want) / np.maximum(norms, 1e-12)
        return bool((cosine > SAVED_GRAPH_MIN_COSINE).all())

    def _ann_put(self, memory_id: str, vector: np.ndarray) -> None:
        assert self._ann is not None
        self._ann_drop(memory_id)
        if self._frozen:
            self._delta.add(memory_id)  # its vector is read from the matrix at search time
            return
        key = self._next_key
        self._next_key += 1
        self._key[memory_id] = key
        self._key_ids[key] = memory_id
        self._ann.add(key, vector)

    def _ann_drop(self, memory_id: str) -> None:
        assert self._ann is not None
        key = self._key.pop(memory_id, None)
        if self._frozen:
            self._delta.discard(memory_id)
        if key is not None:
            del self._key_ids[key]
            if not self._frozen:  # a frozen graph keeps the entry; hits without a key are skipped
                self._ann.remove(key)

    def _ann_nearest(self, query: np.ndarray, want: int) -> list[str]:
        assert self._ann is not None
        size, ask = len(self._ann), want
        while True:  # entries of a frozen graph removed or replaced since do not count towards ``want``
            matches: Any = self._ann.search(query, min(ask, size))
            found = [self._key_ids[int(k)] for k in matches.keys if int(k) in self._key_ids]
            if len(found) >= want or ask >= size:
                break
            ask *= 2
        found = found[:want]
        if not self._delta:
            return found
        # Written since the frozen graph: scored exactly and merged in by cosine.
        merged = self._rescore(query, [*found, *sorted(self._delta)])
        return [memory_id for memory_id, _ in merged[:want]]

    # -- reads ------------------------------------------------------------------------------

    def similarity(self, query: np.ndarray, ids: list[str]) -> list[float]:
        """Cosine of ``query`` with each id's vector (0.0 for ids without one)."""
        self.refresh()
        with self._lock:
            out = []
            for memory_id in ids:
                pos = self._pos.get(memory_id)
                out.append(float(self._matrix[pos] @ query) if pos is not None else 0.0)
            return out

    def vectors(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        """The current-model vectors of those ids that have one (copies)."""
        self.refresh()
        with self._lock:
            return {i: self._matrix[self._pos[i]].copy() for i in ids if i in self._pos}

    def search(
        self,
        query: np.ndarray,
        k: int,
        accept: Accept | None = None,
        allowed: Iterable[str] | None = None,
        fallback: Callable[[], Iterable[str]] | None = None,
        widen_limit: int = 4096,
    ) -> list[tuple[str, float]]:
        """The ``k`` most similar ids with cosine scores, best first.

        ``allowed`` restricts the search to those ids exactly (a selective filter);
        ``accept`` filters candidate batches (a broad filter), widening until ``k`` pass.
        When widening passes ``widen_limit`` candidates the filter is selective: ``fallback``
        then lists every id that passes it and the search is exact over those.
        """
        self.refresh()
        if allowed is not None:
            return self._exact_among(query, k, allowed)
        with self._lock:
            if self._count == 0:
                return []
            if self._ann is not None:
                nearest = functools.partial(self._ann_nearest, query)
            else:
                nearest = functools.partial(self._exact_nearest, _dot(self._matrix[: self._count], query))
            want = k
            while True:
                batch = nearest(want)
                passed = set(batch) if accept is None else accept(batch)
                kept = [i for i in batch if i in passed]
                if len(kept) >= k or want >= self._count:
                    return self._rescore(query, kept[:k])
                want *= 4
                if fallback is not None and want > widen_limit:
                    break
        assert fallback is not None
        return self._exact_among(query, k, fallback())

    def _exact_nearest(self, scores: np.ndarray, want: int) -> list[str]:
        return [self._ids[i] for i in _top(scores, want)]

    def _exact_among(self, query: np.ndarray, k: int, ids: Iterable[str]) -> list[tuple[str, float]]:
        with self._lock:
            positions = np.fromiter((self._pos[i] for i in ids if i in self._pos), dtype=np.int64)
            if positions.size == 0:
                return []
            scores = _dot(self._matrix[positions], query)
            return [(self._ids[positions[i]], float(scores[i])) for i in _top(scores, k)]

    def _rescore(self, query: np.ndarray, ids: list[str]) -> list[tuple[str, float]]:
        """Exact cosines for ids, best first (the HNSW distances are approximate)."""
        scored = [(i, float(self._matrix[self._pos[i]] @ query)) for i in ids]
        scored.sort(key=lambda pair: (-pair[1], pair[0]))
        return scored


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        import ctypes

        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to give back this way
        return None
    return trim


def release_free_heap() -> None:
    """Give the heap freed by a large load back to the OS (glibc's ``malloc_trim``).

    Why: the first recall of a server loads the ONNX model and the vector index from a
    worker thread; glibc keeps what those loads freed in that thread's arena, so ``memmesh
    serve`` sat at 485 MB after its first recall over 100k vectors against 368 MB for the
    same recall in the main thread (bench/footprint.py). Trimming once after the index load
    returns it. A no-op where the C library is not glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _dot(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``matrix @ query`` without BLAS: a matrix-vector product is memory-bound, and BLAS's
    worker threads cost 10-30x more than the product itself on a busy 2-core machine."""
    product: np.ndarray = np.einsum("ij,j->i", matrix, np.asarray(query, dtype=np.float32))
    return product


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first."""
    if k >= scores.shape[0]:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


@atexit.register
def _stop_builds() -> None:
    """Stop graph builds before the interpreter goes: a daemon thread still inside usearch's
    C++ at exit aborted the process ("terminate called without an active exception", exit
    134) when a short-lived process opened a large store and left. The build stops within
    one batch; the next process starts it again (or loads a saved graph)."""
    _EXITING.set()
    for thread in list(_BUILDS):
        thread.join(10)
