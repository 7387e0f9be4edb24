"""An optional second-stage reranker: a model that reads the query and each hit together.

memmesh ships none by default: a cross-encoder good enough to beat the fused ranking costs
tens of milliseconds per hit on a CPU, which would break recall's latency budget, and the
fused ranking already clears the quality bar (docs/recall.md). Plug one in by passing any
object with a ``score`` method to :class:`memmesh.recall.engine.RecallEngine`
(``memory.service.engine.reranker = MyReranker()``): the engine hands it the top
``rerank_depth`` hits and orders them by its scores, the rest keep their order below.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from memmesh.errors import EmbedderError
from memmesh.model import Hit


@runtime_checkable
class Reranker(Protocol):
    """Scores how well each text answers the query; higher is better, any scale."""

    def score(self, query: str, texts: Sequence[str]) -> Sequence[float]: ...


def apply_reranker(reranker: Reranker, query: str, hits: list[Hit], depth: int, explain: bool) -> list[Hit]:
    """Reorder the first ``depth`` hits by the reranker's scores (ties keep the fused order).

    A reranker returning the wrong number of scores is a bug in it, reported as an
    :class:`EmbedderError` (a model failure) rather than a silent misalignment.
    """
    head, tail = hits[:depth], hits[depth:]
    if not head:
        return hits
    scores = [float(s) for s in reranker.score(query, [h.memory.content for h in head])]
    if len(scores) != len(head):
        raise EmbedderError(f"reranker returned {len(scores)} scores for {len(head)} texts")
    order = sorted(range(len(head)), key=lambda i: (-scores[i], i))
    reranked = []
    for i in order:
        hit = head[i]
        if explain and hit.explain is not None:
            hit = hit.model_copy(update={"explain": {**hit.explain, "rerank": scores[i]}})
        reranked.append(hit)
    return reranked + tail
