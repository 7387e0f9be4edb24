"""The one recall pipeline: keyword and vector candidates, context, fused and ranked.

Every face (Python, CLI, HTTP, MCP) reaches this through the service. Modes: ``hybrid``
(default when an embedder works), ``keyword`` (BM25 only) and ``vector`` (cosine only).
Embedding a query can fail (a remote embedder is down); hybrid recall then answers from
keywords alone and says so in a notice rather than failing the call.

Steps: the best ``candidates`` by BM25 and by cosine; each candidate gets its exact score
on the other signal too (a memory that matches both must be seen to match both); for
recall (not ``search``), the neighbours in write order of the best few conversation turns
or episodes are added with their exact scores (context, see :mod:`memmesh.recall.ranking`);
the pure ranking drops what has no real relevance and orders the rest; then optional
near-duplicate collapse and an optional reranker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime

import numpy as np

from memmesh.errors import EmbedderError, InvalidInputError
from memmesh.model import Hit
from memmesh.recall.background import BackgroundEmbedder
from memmesh.recall.coverage import coverages, windows_from
from memmesh.recall.dated import DATED_DEPTH, date_boost, in_period, named_period
from memmesh.recall.embedders import Embedder
from memmesh.recall.index import VectorIndex
from memmesh.recall.keyword import query_terms
from memmesh.recall.ranking import Candidate, RankWeights, collapse_duplicates, is_relevant, rank, relevances
from memmesh.recall.rerank import Reranker, apply_reranker
from memmesh.store.base import Filter, Store
from memmesh.wording import agree, count

MODES = ("hybrid", "keyword", "vector")


class RecallEngine:
    """Finds candidates in the store (BM25) and the vector index, then ranks them."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder | None,
        index: VectorIndex | None,
        weights: RankWeights,
        candidates: int = 20,
        *,
        collapse_duplicates: bool = False,
        reranker: Reranker | None = None,
        rerank_depth: int = 50,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.index = index
        self.weights = weights
        self.candidates = candidates
        self.collapse_duplicates = collapse_duplicates
        self.reranker = reranker
        self.rerank_depth = rerank_depth
        self.background: BackgroundEmbedder | None = None
        """Set when writes embed after commit: a recall first waits (up to
        ``background_wait_s``) for what this process queued before it."""
        self.background_wait_s = 10.0
        self._missing_lock = threading.Lock()
        self._missing: tuple[int, list[str]] | None = None

    @property
    def semantic(self) -> bool:
        return self.embedder is not None and self.index is not None

    def default_mode(self) -> str:
        return "hybrid" if self.semantic else "keyword"

    def run(
        self, query: str, flt: Filter, top_k: int, mode: str | None, explain: bool, now: datetime, *, context: bool = True
    ) -> tuple[str, list[Hit], list[str]]:
        """Rank memories for ``query``; returns (mode used, hits, notices).

        ``context=False`` is plain ranking without write-order neighbours (what ``search``
        promises); recall keeps it in every mode, so a store without an embedder still
        gets it.
        """
        mode = mode or "hybrid"
        if mode not in MODES:
            raise InvalidInputError(f"unknown recall mode {mode!r}: use one of {', '.join(MODES)}", usage=True)
        notices: list[str] = []
        if mode != "keyword" and not self.semantic:
            if mode == "vector":
                raise InvalidInputError("vector recall needs an embedder; none is configured (embeddings.provider = none)")
            notices.append("no embedder available: keyword-only recall")
            mode = "keyword"
        with ExitStack() as pinned:
            pool = max(self.candidates, top_k)
            terms = query_terms(query)
            found: dict[str, Candidate] = {}
            if mode in ("hybrid", "keyword"):
                for memory, score in self.store.keyword_search(terms, flt, pool):
                    found[memory.id] = Candidate(memory=memory, keyword=score)
            vector: np.ndarray | None = None
            if mode in ("hybrid", "vector"):
                try:
                    vector = self._query_vector(query)
                except EmbedderError as exc:
                    if mode == "vector":
                        raise
                    notices.append(f"semantic half unavailable ({exc.message}); keyword-only results")
                    mode = "keyword"
                else:
                    notices += self._await_background()
                    assert self.index is not None
                    seq = pinned.enter_context(self.index.pinned())  # one look at the change counter per recall
                    self._vector_candidates(vector, flt, pool, found)
                    if context and self.weights.date > 0:
                        self._dated_candidates(query, vector, flt, found)
                    notices += self._missing_vectors_notice(flt, seq)
            weights = self.weights
            if mode == "keyword":
                weights = replace(weights, vector=0.0)
            elif mode == "vector":
                weights = replace(weights, keyword=0.0)
            if mode == "hybrid":
                self._complete_keyword(terms, flt, list(found.values()))
            seeds = min(pool, max(10, top_k))
            neighbours = self._add_context(found, terms if mode != "vector" else [], vector, flt, weights, seeds) if context else {}
            cover = self._coverage(terms, found, neighbours, weights) if context and mode != "vector" else None
            hits = rank(list(found.values()), weights, now, explain, neighbours, cover)
            if context:
                hits = date_boost(query, hits, weights.date)
            if self.collapse_duplicates:
                hits, collapsed = self._collapse(hits, top_k)
                if collapsed:
                    notices.append(f"collapsed {count(collapsed, 'near-duplicate hit')}")
            if self.reranker is not None:
                hits = apply_reranker(self.reranker, query, hits, self.rerank_depth, explain)
            return mode, hits[:top_k], notices

    def warm_up(self) -> None:
        """Start loading the vector index in the background, for a process that will answer
        recalls: its first recall then costs what the others do. On SQLite, the full-text
        index's segments are merged in the background too (``merge_keyword_index``).
        (Not the embedder's model:
        onnxruntime's threads abort the process if it exits while a session is being made
        in a daemon thread, as a short-lived ``memmesh mcp`` would.)"""
        if self.index is not None:
            self.index.warm_up()
        merge = getattr(self.store, "merge_keyword_index", None)  # SQLite: fewer full-text segments to probe
        if merge is not None:
            threading.Thread(target=_quietly, args=(merge,), name="memmesh-fts-merge", daemon=True).start()

    def _await_background(self) -> list[str]:
        """Read-your-writes by meaning: wait until the writes queued before this recall are
        embedded; past the bound, answer without them and say how many are still queued."""
        if self.background is None:
            return []
        if self.background.wait_for(self.background.ticket(), self.background_wait_s):
            return []
        left = self.background.pending()
        return [
            f"{count(left, 'memory')} written just now {agree(left, 'is', 'are')} still being embedded; found by keyword only until then"
        ]

    @staticmethod
    def _coverage(
        terms: list[str], found: dict[str, Candidate], neighbours: dict[str, list[tuple[str, int]]], weights: RankWeights
    ) -> dict[str, float] | None:
        """Share of the query's terms in each candidate's write-order window (recall only)."""
        if not terms or weights.coverage <= 0:
            return None
        texts = {mid: " ".join([c.memory.title or "", c.memory.content, *c.memory.tags]) for mid, c in found.items()}
        return coverages(terms, texts, windows_from(neighbours, weights.context_span))

    def _query_vector(self, query: str) -> np.ndarray:
        assert self.embedder is not None
        vector: np.ndarray = self.embedder.embed([query])[0]
        return vector

    def _vector_candidates(self, vector: np.ndarray, flt: Filter, pool: int, found: dict[str, Candidate]) -> None:
        """The ``pool`` nearest memories that pass the filter; every candidate gets its cosine."""
        assert self.index is not None

        def accept(ids: list[str]) -> set[str]:
            return self.store.matching_ids(replace(flt, ids=tuple(ids)))

        in_store = getattr(self.index, "search_filtered", None)  # SqlBackedIndex: search in the database, filter in SQL
        scored = in_store(vector, pool, flt) if in_store is not None else None
        if scored is None:
            scored = self.index.search(vector, pool, accept=accept, fallback=lambda: self.store.matching_ids(flt))
        missing = [mid for mid, _ in scored if mid not in found]
        memories = {m.id: m for m in self.store.get_many(missing)}
        for memory_id, cosine in scored:
            if memory_id in found:
                found[memory_id].vector = cosine
            elif memory_id in memories:
                found[memory_id] = Candidate(memory=memories[memory_id], vector=cosine)
        self._complete_vector(vector, [c for c in found.values() if c.vector is None])

    def _dated_candidates(self, query: str, vector: np.ndarray, flt: Filter, found: dict[str, Candidate]) -> None:
        """When the query names a day, month or year: the memories from then among the
        ``DATED_DEPTH`` nearest by meaning join the candidates (:mod:`memmesh.recall.dated`)."""
        period = named_period(query)
        if period is None:
            return
        assert self.index is not None

        def accept(ids: list[str]) -> set[str]:
            return self.store.matching_ids(replace(flt, ids=tuple(ids)))

        in_store = getattr(self.index, "search_filtered", None)  # as in _vector_candidates
        scored = in_store(vector, DATED_DEPTH, flt) if in_store is not None else None
        if scored is None:
            scored = self.index.search(vector, DATED_DEPTH, accept=accept, fallback=lambda: self.store.matching_ids(flt))
        todo = [mid for mid, _ in scored if mid not in found]
        added = [Candidate(memory=m) for m in in_period(self.store.get_many(todo), period)]
        for cand in added:
            found[cand.memory.id] = cand
        self._complete_vector(vector, added)

    def _complete_vector(self, vector: np.ndarray | None, cands: list[Candidate]) -> None:
        """Give candidates found another way their true cosine (0 when they have no vector)."""
        if vector is None or self.index is None or not cands:
            return
        for cand, cosine in zip(cands, self.index.similarity(vector, [c.memory.id for c in cands]), strict=True):
            cand.vector = cosine

    def _complete_keyword(self, terms: list[str], flt: Filter, cands: list[Candidate]) -> None:
        """Give candidates found another way their true BM25 (stays unset when no term matches)."""
        todo = [c for c in cands if c.keyword is None]
        if not terms or not todo:
            return
        scores = self.store.keyword_scores(terms, replace(flt, ids=tuple(c.memory.id for c in todo)), len(todo))
        for cand in todo:
            cand.keyword = scores.get(cand.memory.id)

    def _add_context(
        self, found: dict[str, Candidate], terms: list[str], vector: np.ndarray | None, flt: Filter, weights: RankWeights, seeds: int
    ) -> dict[str, list[tuple[str, int]]]:
        """Neighbours in write order of the ``seeds`` most relevant candidates, added to ``found``
        with their exact scores when they pass the filter.

        Only memories of a sequence kind (``weights.context_kinds``: conversation turns,
        episodes) are seeds or neighbours: independent facts written together do not
        explain each other.
        """
        kinds = weights.context_kinds
        if weights.context <= 0 or weights.context_span < 1 or not kinds:
            return {}
        sequence = [c for c in found.values() if c.memory.kind in kinds and is_relevant(c, weights)]
        if not sequence:
            return {}
        relevance = relevances(list(found.values()), weights)
        best = sorted((c.memory.id for c in sequence), key=lambda mid: (-relevance[mid]["relevance"], mid))[:seeds]
        neighbours = self.store.neighbours(best, weights.context_span, weights.context_window_s)
        new_ids = {other for pairs in neighbours.values() for other, _ in pairs} - found.keys()
        if new_ids:
            visible = self.store.matching_ids(replace(flt, ids=tuple(sorted(new_ids))))
            added = [Candidate(memory=m) for m in self.store.get_many(sorted(visible)) if m.kind in kinds]
            for cand in added:
                found[cand.memory.id] = cand
            self._complete_keyword(terms, flt, added)
            self._complete_vector(vector, added)
        return {
            mid: [(other, d) for other, d in pairs if other in found and found[other].memory.kind in kinds]
            for mid, pairs in neighbours.items()
        }

    def _collapse(self, hits: list[Hit], top_k: int) -> tuple[list[Hit], int]:
        window = hits[: top_k * 3]
        vectors = self.index.vectors([h.memory.id for h in window]) if self.index is not None else {}
        kept, dropped = collapse_duplicates(window, vectors)
        return kept + hits[len(window) :], dropped

    def _missing_vectors_notice(self, flt: Filter, seq: int) -> list[str]:
        """Say how many memories this recall could only find by keyword (no vector from the
        current model) and how to fix it. The store-wide list is cached per change number."""
        assert self.embedder is not None
        with self._missing_lock:
            if self._missing is None or self._missing[0] != seq:
                complete = getattr(self.store, "vectors_complete", None)  # two counts instead of an anti-join
                model = self.embedder.model_id
                self._missing = (seq, [] if complete is not None and complete(model) else self.store.ids_missing_vectors(model))
            missing = self._missing[1]
        if missing and self.background is not None:
            queued = self.background.queued_ids()  # being embedded now: not a reason to reindex
            missing = [mid for mid in missing if mid not in queued]
        if not missing:
            return []
        unembedded = len(self.store.matching_ids(replace(flt, ids=tuple(missing))))
        if not unembedded:
            return []
        return [
            f"{count(unembedded, 'memory')} in scope {agree(unembedded, 'has', 'have')} no vector from "
            f"{self.embedder.model_id} (stored with another embedding model, or while the embedder was failing); "
            "they are found by keyword only until you run `memmesh reindex`"
        ]


def _quietly(action: Callable[[], object]) -> None:
    """Run a background upkeep step; a failure (a read-only file, a store closed under it)
    only means the upkeep waits for the next process."""
    try:
        action()
    except Exception:  # upkeep must never take the process down
        return
