"""Fusion of keyword and semantic relevance, then small adjustments (pure functions).

Relevance is a weighted sum of the two normalised signals (a convex combination, which
beats equal-weight reciprocal-rank fusion on conversational memory): BM25 divided by the
best BM25 among the candidates, and cosine similarity rescaled from ``[vector_floor, 1]``
to ``[0, 1]``. Priority, confidence, recency and tier then nudge the relevance by a few
per cent each, so they order near-ties without overriding what the query asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from memmesh.model import Hit, Memory, Tier


@dataclass
class Candidate:
    """A memory found by either half of the search, with the raw score of each half."""

    memory: Memory
    keyword: float | None = None
    vector: float | None = None


@dataclass(frozen=True)
class RankWeights:
    keyword: float = 1.0
    vector: float = 1.0
    vector_floor: float = 0.1
    priority: float = 0.04
    confidence: float = 0.04
    recency: float = 0.02
    recency_half_life_days: float = 30.0
    tier: dict[Tier, float] = field(default_factory=lambda: {Tier.long: 0.01, Tier.mid: 0.0, Tier.short: 0.0})


def rank(candidates: list[Candidate], weights: RankWeights, now: datetime, explain: bool = False) -> list[Hit]:
    """Score and sort candidates, best first; ``explain`` attaches every part of the score."""
    best_keyword = max((c.keyword for c in candidates if c.keyword is not None), default=0.0)
    hits = []
    for cand in candidates:
        parts = _score(cand, weights, best_keyword, now)
        hits.append(Hit(memory=cand.memory, score=parts["score"], explain=parts if explain else None))
    hits.sort(key=lambda h: (-h.score, h.memory.id))
    return hits


def _score(cand: Candidate, w: RankWeights, best_keyword: float, now: datetime) -> dict[str, float]:
    keyword_norm = (cand.keyword / best_keyword) if cand.keyword and best_keyword > 0 else 0.0
    vector_norm = max(0.0, (cand.vector - w.vector_floor) / (1.0 - w.vector_floor)) if cand.vector is not None else 0.0
    relevance = (w.keyword * keyword_norm + w.vector * vector_norm) / ((w.keyword + w.vector) or 1.0)
    mem = cand.memory
    age_days = max(0.0, (now - mem.updated_at).total_seconds() / 86400)
    recency = math.exp(-math.log(2) * age_days / w.recency_half_life_days)
    boost = (
        1.0
        + w.priority * (mem.priority - 5) / 5
        + w.confidence * (mem.confidence - 1.0)
        + w.recency * recency
        + w.tier.get(mem.tier, 0.0)
    )
    return {
        "keyword": cand.keyword or 0.0,
        "keyword_norm": keyword_norm,
        "vector": cand.vector if cand.vector is not None else 0.0,
        "vector_norm": vector_norm,
        "relevance": relevance,
        "recency": recency,
        "boost": boost,
        "score": relevance * boost,
    }


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
