"""Episode-level (hierarchical) scoring: turns written together as one session count together.

EXPERIMENT (knobs from the environment while measuring; see docs/recall.md).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence

from memmesh.model import Hit, Kind, Memory

EpisodeKey = tuple[str, str]


def _knob(name: str, default: float) -> float:
    return float(os.environ.get(f"MEMMESH_EXP_{name}", default))


def episode_key(memory: Memory, kinds: Collection[Kind]) -> EpisodeKey | None:
    """Memories of a sequence kind that share their world time (``valid_from``) in one
    namespace: the turns of one session stored with the session's date."""
    if memory.kind not in kinds or memory.valid_from is None:
        return None
    return (memory.namespace, memory.valid_from.isoformat())


def episode_strength(hits: Sequence[Hit], kinds: Collection[Kind], depth: int) -> dict[EpisodeKey, float]:
    """Each episode's share of the best ``depth`` hits' score, normalised by the best episode."""
    agg = os.environ.get("MEMMESH_EXP_EP_AGG", "sum")
    groups: dict[EpisodeKey, list[float]] = defaultdict(list)
    for hit in hits[:depth]:
        key = episode_key(hit.memory, kinds)
        if key is not None:
            groups[key].append(hit.score)
    if not groups:
        return {}
    if agg == "max":
        raw = {k: max(v) for k, v in groups.items()}
    elif agg == "top2":
        raw = {k: sum(sorted(v, reverse=True)[:2]) for k, v in groups.items()}
    else:
        raw = {k: sum(v) for k, v in groups.items()}
    best = max(raw.values()) or 1.0
    return {k: v / best for k, v in raw.items()}


def episode_boost(hits: list[Hit], kinds: Collection[Kind]) -> list[Hit]:
    """Scale each hit by its episode's strength: ``(1 + w·strength) / (1 + w)``."""
    weight = _knob("EP_W", 0.0)
    if weight <= 0 or not hits:
        return hits
    strength = episode_strength(hits, kinds, int(_knob("EP_DEPTH", 30)))
    out = []
    for hit in hits:
        key = episode_key(hit.memory, kinds)
        s = strength.get(key, 0.0) if key is not None else 0.0
        factor = (1.0 + weight * s) / (1.0 + weight)
        explain = dict(hit.explain, episode=s) if hit.explain is not None else None
        out.append(Hit(memory=hit.memory, score=hit.score * factor, explain=explain))
    out.sort(key=lambda h: (-h.score, h.memory.id))
    return out


def episode_diversity(hits: list[Hit], kinds: Collection[Kind]) -> list[Hit]:
    """Greedy: a hit competes with score / (1 + p·n), n = hits of its episode already placed."""
    p = _knob("EP_DIV", 0.0)
    if p <= 0 or not hits:
        return hits
    depth = int(_knob("EP_DEPTH", 30))
    pool = list(hits[:depth])
    placed: dict[EpisodeKey | None, int] = defaultdict(int)
    out: list[Hit] = []
    while pool:
        def eff(h: Hit) -> float:
            key = episode_key(h.memory, kinds)
            return h.score / (1.0 + p * placed[key]) if key is not None else h.score
        best = max(pool, key=lambda h: (eff(h), h.memory.id))
        pool.remove(best)
        out.append(best)
        placed[episode_key(best.memory, kinds)] += 1
    return out + hits[depth:]
