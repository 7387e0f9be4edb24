"""Fusion of keyword and semantic relevance, context, then small adjustments (pure functions).

Relevance is a convex combination of the two normalised signals (it beats equal-weight
reciprocal-rank fusion on conversational memory by several points of recall@10): BM25
divided by the best BM25 among the candidates, and cosine similarity rescaled from
``[vector_floor, 1]`` to ``[0, 1]``.

Context: memories that form a sequence (the turns of a conversation, the episodes of a
session: kinds in ``context_kinds``) explain each other; the answer to "what did Tim
recommend?" is usually the turn *after* the one that mentions the recommendation. So each
such memory also inherits ``context`` times the best relevance among its neighbours in
write order (up to ``context_span`` positions away, each further position discounted by
``context_decay``). Independent facts stored together are not a sequence and never pull
each other in. The neighbours are found by the engine; here they are just ids and distances.

Relevance floor: a hit is returned only when it has real relevance of its own (a query
term matches it, or its cosine reaches ``min_cosine``) or inherits context from a
neighbour that does. Nothing is padded in to fill ``top_k`` (docs/recall.md, "Relevance
floor").

Priority, confidence, recency and tier then nudge the score by a few per cent each, so
they order near-ties without overriding what the query asked for. docs/recall.md gives the
measurements behind every constant.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from memmesh.model import Hit, Kind, Memory, Tier

Neighbours = Mapping[str, Sequence[tuple[str, int]]]
"""memory id → [(neighbour id, distance in write order)], as the store reports them."""


@dataclass
class Candidate:
    """A memory found by either half of the search (or as a neighbour), with its raw scores."""

    memory: Memory
    keyword: float | None = None
    vector: float | None = None


@dataclass(frozen=True)
class RankWeights:
    """The ranking's constants; the defaults are the tuned values (see docs/recall.md).

    These defaults are the only copy: ``[recall]`` settings in :mod:`memmesh.config` read
    theirs from here.
    """

    keyword: float = 1.0
    vector: float = 1.0
    vector_floor: float = 0.1
    context: float = 0.6
    context_decay: float = 0.8
    context_span: int = 2
    context_window_s: float = 3600.0
    context_kinds: frozenset[Kind] = frozenset({Kind.message, Kind.episode})
    min_cosine: float = 0.3
    priority: float = 0.04
    confidence: float = 0.04
    recency: float = 0.02
    recency_half_life_days: float = 30.0
    coverage: float = 1.0
    """Weight of query-term coverage over the write-order window (:mod:`memmesh.recall.coverage`)."""
    date: float = 2.0
    """Boost of memories whose time falls in the day/month/year a query names (:mod:`memmesh.recall.dated`)."""
    tier: dict[Tier, float] = field(default_factory=lambda: {Tier.long: 0.01, Tier.mid: 0.0, Tier.short: 0.0})


def relevances(candidates: Sequence[Candidate], weights: RankWeights) -> dict[str, dict[str, float]]:
    """The normalised signals and their fusion for each candidate, by memory id."""
    best_keyword = max((c.keyword for c in candidates if c.keyword is not None), default=0.0)
    return {c.memory.id: _relevance(c, weights, best_keyword) for c in candidates}


def _relevance(cand: Candidate, w: RankWeights, best_keyword: float) -> dict[str, float]:
    keyword_norm = (cand.keyword / best_keyword) if cand.keyword and best_keyword > 0 else 0.0
    vector_norm = max(0.0, (cand.vector - w.vector_floor) / (1.0 - w.vector_floor)) if cand.vector is not None else 0.0
    relevance = (w.keyword * keyword_norm + w.vector * vector_norm) / ((w.keyword + w.vector) or 1.0)
    return {
        "keyword": cand.keyword or 0.0,
        "keyword_norm": keyword_norm,
        "vector": cand.vector if cand.vector is not None else 0.0,
        "vector_norm": vector_norm,
        "relevance": relevance,
    }


def is_relevant(cand: Candidate, w: RankWeights) -> bool:
    """Real relevance of its own: a query term matched (any BM25 score) or the meaning is close.

    The cosine bar is ``min_cosine``, above ``vector_floor``: MiniLM gives unrelated English
    sentences cosines up to about 0.25, so a hit that only clears the floor is noise that
    would otherwise pad ``top_k`` and be counted as an access.
    """
    return bool(cand.keyword and cand.keyword > 0) or (cand.vector is not None and cand.vector >= w.min_cosine)


def context_scores(
    relevance: Mapping[str, float], neighbours: Neighbours, w: RankWeights, sources: set[str] | None = None
) -> dict[str, float]:
    """For each memory, the best neighbour relevance discounted by distance (0 without neighbours).

    Neighbourhood is symmetric: if b is a's neighbour, a is b's, even when only a's
    neighbours were looked up. Only memories in ``sources`` (all when None) pass context
    on: a neighbour without real relevance of its own has none to give.
    """
    out = dict.fromkeys(relevance, 0.0)

    def gives(memory_id: str) -> bool:
        return sources is None or memory_id in sources

    for memory_id, pairs in neighbours.items():
        for other, distance in pairs:
            steps = abs(distance)
            if memory_id not in relevance or other not in relevance or not 1 <= steps <= w.context_span:
                continue
            factor = w.context_decay ** (steps - 1)
            if gives(other):
                out[memory_id] = max(out[memory_id], relevance[other] * factor)
            if gives(memory_id):
                out[other] = max(out[other], relevance[memory_id] * factor)
    return out


def rank(
    candidates: Sequence[Candidate],
    weights: RankWeights,
    now: datetime,
    explain: bool = False,
    neighbours: Neighbours | None = None,
    coverage: Mapping[str, float] | None = None,
) -> list[Hit]:
    """Score and sort the candidates with real relevance, best first (see :func:`is_relevant`;
    a candidate without it is kept only when it inherits context); ``explain`` attaches
    every part of the score. ``coverage`` (memory id → share of the query's terms in its
    write-order window) scales each score by ``(1 + w·coverage) / (1 + w)``."""
    parts = relevances(candidates, weights)
    relevant = {c.memory.id for c in candidates if is_relevant(c, weights)}
    context = context_scores({k: v["relevance"] for k, v in parts.items()}, neighbours or {}, weights, relevant)
    hits = []
    for cand in candidates:
        if cand.memory.id not in relevant and context[cand.memory.id] <= 0:
            continue
        scored = parts[cand.memory.id]
        scored["context"] = context[cand.memory.id]
        scored.update(_adjust(cand.memory, scored["relevance"], scored["context"], weights, now))
        if coverage is not None and weights.coverage > 0:
            scored["coverage"] = coverage.get(cand.memory.id, 0.0)
            scored["score"] *= (1.0 + weights.coverage * scored["coverage"]) / (1.0 + weights.coverage)
        hits.append(Hit(memory=cand.memory, score=scored["score"], explain=scored if explain else None))
    hits.sort(key=lambda h: (-h.score, h.memory.id))
    return hits


def _adjust(mem: Memory, relevance: float, context: float, w: RankWeights, now: datetime) -> dict[str, float]:
    age_days = max(0.0, (now - mem.updated_at).total_seconds() / 86400)
    recency = math.exp(-math.log(2) * age_days / w.recency_half_life_days)
    boost = (
        1.0 + w.priority * (mem.priority - 5) / 5 + w.confidence * (mem.confidence - 1.0) + w.recency * recency + w.tier.get(mem.tier, 0.0)
    )
    # Dividing by 1 + context keeps a perfect, context-free match at about 1.0.
    combined = (relevance + w.context * context) / (1.0 + w.context)
    return {"recency": recency, "boost": boost, "score": combined * boost}


# -- near-duplicate collapse ----------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)


def word_set(text: str) -> frozenset[str]:
    return frozenset(t.lower() for t in _WORD.findall(text))


def is_near_duplicate(a: Memory, b: Memory, vectors: Mapping[str, np.ndarray], *, cosine: float = 0.95, jaccard: float = 0.9) -> bool:
    """Same meaning in other words (vectors at least ``cosine`` apart) or nearly the same words."""
    va, vb = vectors.get(a.id), vectors.get(b.id)
    if va is not None and vb is not None and float(va @ vb) >= cosine:
        return True
    wa, wb = word_set(a.content), word_set(b.content)
    return bool(wa or wb) and len(wa & wb) / len(wa | wb) >= jaccard


def collapse_duplicates(hits: Sequence[Hit], vectors: Mapping[str, np.ndarray]) -> tuple[list[Hit], int]:
    """Drop every hit that nearly repeats a better-ranked one; returns (kept, how many dropped)."""
    kept: list[Hit] = []
    for hit in hits:
        if not any(is_near_duplicate(hit.memory, k.memory, vectors) for k in kept):
            kept.append(hit)
    return kept, len(hits) - len(kept)


# -- token budget ---------------------------------------------------------------------------


def fill_budget(hits: list[Hit], budget_tokens: int | None) -> tuple[list[Hit], int]:
    """Keep hits in order while their estimated tokens fit the budget (always at least one)."""
    if budget_tokens is None:
        return hits, 0
    kept: list[Hit] = []
    used = 0
    for hit in hits:
        cost = estimate_tokens(hit.memory.content)
        if kept and used + cost > budget_tokens:
            continue
        kept.append(hit)
        used += cost
    return kept, len(hits) - len(kept)


def estimate_tokens(text: str) -> int:
    """About four characters a token for English text: enough to fill a context budget."""
    return max(1, math.ceil(len(text) / 4))
