"""The one recall pipeline: keyword and vector candidates, fused and ranked.

Every face (Python, CLI, HTTP, MCP) reaches this through the service. Modes: ``hybrid``
(default when an embedder works), ``keyword`` (BM25 only) and ``vector`` (cosine only).
Embedding a query can fail (a remote embedder is down); hybrid recall then answers from
keywords alone and says so in a notice rather than failing the call.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from memmesh.errors import EmbedderError, InvalidInputError
from memmesh.model import Hit
from memmesh.recall.embedders import Embedder
from memmesh.recall.index import VectorIndex
from memmesh.recall.keyword import query_terms
from memmesh.recall.ranking import Candidate, RankWeights, rank
from memmesh.store.base import Filter, Store

MODES = ("hybrid", "keyword", "vector")


class RecallEngine:
    """Finds candidates in the store (BM25) and the vector index, then ranks them."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder | None,
        index: VectorIndex | None,
        weights: RankWeights,
        candidates: int = 50,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.index = index
        self.weights = weights
        self.candidates = candidates

    @property
    def semantic(self) -> bool:
        return self.embedder is not None and self.index is not None

    def default_mode(self) -> str:
        return "hybrid" if self.semantic else "keyword"

    def run(self, query: str, flt: Filter, top_k: int, mode: str | None, explain: bool, now: datetime) -> tuple[str, list[Hit], list[str]]:
        """Rank memories for ``query``; returns (mode used, hits, notices)."""
        mode = mode or "hybrid"
        if mode not in MODES:
            raise InvalidInputError(f"unknown recall mode {mode!r}: use one of {', '.join(MODES)}")
        notices: list[str] = []
        if mode != "keyword" and not self.semantic:
            if mode == "vector":
                raise InvalidInputError("vector recall needs an embedder; none is configured (embeddings.provider = none)")
            notices.append("no embedder available: keyword-only recall")
            mode = "keyword"
        pool = max(self.candidates, top_k * 3)
        found: dict[str, Candidate] = {}
        if mode in ("hybrid", "keyword"):
            for memory, score in self.store.keyword_search(query_terms(query), flt, pool):
                found[memory.id] = Candidate(memory=memory, keyword=score)
        if mode in ("hybrid", "vector"):
            try:
                self._vector_candidates(query, flt, pool, found)
            except EmbedderError as exc:
                if mode == "vector":
                    raise
                notices.append(f"semantic half unavailable ({exc.message}); keyword-only results")
                mode = "keyword"
        weights = self.weights
        if mode == "keyword":
            weights = replace(weights, vector=0.0)
        elif mode == "vector":
            weights = replace(weights, keyword=0.0)
        return mode, rank(list(found.values()), weights, now, explain)[:top_k], notices

    def _vector_candidates(self, query: str, flt: Filter, pool: int, found: dict[str, Candidate]) -> None:
        assert self.embedder is not None and self.index is not None
        vector = self.embedder.embed([query])[0]

        def accept(ids: list[str]) -> set[str]:
            return self.store.matching_ids(replace(flt, ids=tuple(ids)))

        scored = self.index.search(vector, pool, accept=accept, fallback=lambda: self.store.matching_ids(flt))
        missing = [mid for mid, _ in scored if mid not in found]
        memories = {m.id: m for m in self.store.get_many(missing)}
        for memory_id, cosine in scored:
            if memory_id in found:
                found[memory_id].vector = cosine
            elif memory_id in memories:
                found[memory_id] = Candidate(memory=memories[memory_id], vector=cosine)
        # Keyword candidates the vector search did not reach still get their true cosine.
        unscored = [c for c in found.values() if c.vector is None]
        if unscored:
            for cand, cosine in zip(unscored, self.index.similarity(vector, [c.memory.id for c in unscored]), strict=True):
                cand.vector = cosine
