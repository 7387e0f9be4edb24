"""When-questions prefer memories that say when (EXPERIMENT, knobs from the environment)."""

from __future__ import annotations

import os
import re

from memmesh.model import Hit

_WHEN_QUERY = re.compile(
    r"\b(when|what (year|month|date|day|time|week)|which (year|month|day|week)|how long ago|since when)\b", re.IGNORECASE
)
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_TIME_EXPR = re.compile(
    rf"\b(yesterday|today|tonight|tomorrow|ago|recently|lately|weekend|"
    rf"(last|next|this|past|coming|few|couple of|other) (week|month|year|weekend|night|summer|winter|spring|fall|autumn|days?|weeks|months|years)|"
    rf"{_MONTHS}|{_DAYS}|(19|20)\d\d|\d{{1,2}}(st|nd|rd|th))\b",
    re.IGNORECASE,
)


def is_when_query(query: str) -> bool:
    return bool(_WHEN_QUERY.search(query))


def says_when(text: str) -> bool:
    return bool(_TIME_EXPR.search(text))


def when_boost(query: str, hits: list[Hit]) -> list[Hit]:
    """For a when-question, scale hits whose text carries a time expression by ``1 + w``
    (relative: the others by 1)."""
    weight = float(os.environ.get("MEMMESH_EXP_WHEN_W", 0.0))
    if weight <= 0 or not hits or not is_when_query(query):
        return hits
    out = []
    for hit in hits:
        dated = says_when(hit.memory.content)
        factor = (1.0 + weight) if dated else 1.0
        out.append(Hit(memory=hit.memory, score=hit.score * factor / (1.0 + weight), explain=hit.explain))
    out.sort(key=lambda h: (-h.score, h.memory.id))
    return out
