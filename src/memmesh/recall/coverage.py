"""Query-term coverage over a memory's write-order window (a ranking lever of issue 19).

BM25 scores each memory alone, and the fused relevance of a turn's neighbours only passes
on as context. A question often spreads its words over consecutive turns ("What did Mel
and her kids make during the pottery workshop?": one turn mentions the workshop, the next
what they made), so the share of the query's distinct terms that a memory *or its
write-order neighbours* contain says how completely that passage answers the question.
Each term counts by its rarity among the recall's candidates (a speaker's name most turns
share counts little). The score is multiplied by ``(1 + w · coverage) / (1 + w)``: a passage holding every term
keeps its score, one holding none keeps ``1 / (1 + w)`` of it. Coverage only reorders hits
that already pass the relevance floor; it never adds one.

Terms are compared after a light suffix strip (``-s``, ``-es``, ``-ed``, ``-ing``; the
full-text index's porter stemmer is not available outside SQL); a term in a script written
without spaces counts when it occurs as a substring (such text has no word boundaries).
On LoCoMo dev R@10 73.3 → 76.4 (docs/recall.md, levers table).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence

from memmesh.recall.segment import RUN

_WORD = re.compile(r"\w+", re.UNICODE)
_SUFFIXES = ("ing", "ed", "es", "s")


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """``word`` without one common English inflection (keeping at least three letters).

    Cached: a recall stems every word of ~40 candidates, and the same few thousand words
    recur across memories (at 10k memories this was 13 % of a recall's time uncached)."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def text_terms(*texts: str | None) -> frozenset[str]:
    """The stemmed, lower-cased words of the texts."""
    if len(texts) == 1:
        return _one_text_terms(texts[0] or "")
    return frozenset().union(*(_one_text_terms(text) for text in texts if text))


@functools.lru_cache(maxsize=4096)
def _one_text_terms(text: str) -> frozenset[str]:
    """One text's stemmed words, each distinct word stemmed once; cached by text, since the
    same memories come back as candidates of related queries."""
    return frozenset(map(stem, {w.lower() for w in _WORD.findall(text)}))


def matched(terms: Sequence[str], words: frozenset[str], raw: str) -> set[int]:
    """Indices of the query ``terms`` a memory holds (``words`` from :func:`text_terms`,
    ``raw`` its lower-cased text for unsegmented scripts)."""
    return {i for i, term in enumerate(terms) if (term in raw if RUN.search(term) else stem(term) in words)}


def coverages(terms: Sequence[str], texts: Mapping[str, str], windows: Mapping[str, Iterable[str]]) -> dict[str, float]:
    """Per memory id in ``texts``: the share of distinct query ``terms`` found in the memory
    or in any of its ``windows`` neighbours (ids that are also in ``texts``), each term
    weighted by its rarity among these candidates (:func:`_rarity`)."""
    distinct = list(dict.fromkeys(t.lower() for t in terms if t))
    if not distinct:
        return dict.fromkeys(texts, 0.0)
    own = {mid: matched(distinct, text_terms(text), text.lower()) for mid, text in texts.items()}
    weight = _rarity(distinct, own)
    total = sum(weight)
    out = {}
    for mid, found in own.items():
        union = set(found)
        for other in windows.get(mid, ()):
            union |= own.get(other, set())
        out[mid] = sum(weight[i] for i in union) / total
    return out


def _rarity(terms: Sequence[str], own: Mapping[str, set[int]]) -> list[float]:
    """Each term's weight: its inverse document frequency among the candidates,
    ``max(0.05, ln((n + 1) / (df + 0.5)))``, so a word most candidates share (a speaker's
    name in a chat) counts less than the rare word that makes the question specific."""
    n = len(own)
    df = [sum(1 for found in own.values() if i in found) for i in range(len(terms))]
    return [max(0.05, math.log((n + 1) / (d + 0.5))) for d in df]


def windows_from(neighbours: Mapping[str, Sequence[tuple[str, int]]], span: int) -> dict[str, set[str]]:
    """Symmetric write-order windows (up to ``span`` positions) from the store's neighbour lists."""
    out: dict[str, set[str]] = {}
    for mid, pairs in neighbours.items():
        for other, distance in pairs:
            if 1 <= abs(distance) <= span:
                out.setdefault(mid, set()).add(other)
                out.setdefault(other, set()).add(mid)
    return out


__all__ = ["coverages", "matched", "stem", "text_terms", "windows_from"]
