"""Questions that name a date prefer memories from that date (``recall.date_weight``).

"What did Gina find for her store on 1 February, 2023?" names *when* the thing was said or
happened; a memory's time (its world time ``valid_from`` when it has one, else when it was
written) says when it holds. When a recall's query names a day, a month or a year:

- the memories from that period among the ``DATED_DEPTH`` nearest by meaning join the
  candidates (the named day's turns often share few words with the question, and the
  best 20 by each signal come from every session), and
- every hit from that period has its score multiplied by ``1 + w`` (then all divided by
  the same, so a perfect in-period match stays about 1).

Nothing is filtered out: a question whose date is the event's and not the memory's still
finds the memory by its words and meaning, and a memory without relevance of its own is
still never returned (the floor is applied before). ``search`` (BM25 only) is untouched.

English date forms only ("13 October 2023", "October 13th, 2023", "2023-10-13", "October
2023", "in October", "in 2023"); a query without one ranks exactly as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from memmesh.model import Hit, Memory

DATED_DEPTH = 100
"""How many nearest memories by meaning are looked at for ones from the named period (5×
the default candidates per signal; on LoCoMo dev it adds +0.1 R@10 at weight 1 and +0.3 at
0.3, docs/recall.md)."""

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = (
    r"(?P<month>January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?"
)
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>(?:19|20)\d\d)"
# Most specific first; each pattern is tried over the whole query and the first that matches wins.
_PATTERNS = [
    re.compile(rf"\b{_YEAR}-(?P<mnum>[01]\d)-(?P<day>[0-3]\d)\b"),
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b"),
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b"),
    re.compile(rf"\b{_MONTH},?\s+{_YEAR}\b"),
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}\b"),
    # "May 5" but not "May 5 people": one ``\s*`` before the word (two in a row, "\s*(?:st)?\s*",
    # split a long run of spaces every possible way: quadratic CPU per query, tests/http/test_probe8.py).
    re.compile(rf"\b{_MONTH}\s+{_DAY}\b(?!\s*(?:(?:st|nd|rd|th)\s*)?\w)"),
    re.compile(rf"\b(?:in|during|since|by|last|this|early|late|mid|of)\s+{_MONTH}\b"),
    re.compile(rf"\b(?:in|during|of)\s+{_YEAR}\b"),
]


@dataclass(frozen=True)
class Period:
    """A day, a month or a year named by a query; ``None`` parts are unconstrained."""

    year: int | None
    month: int | None
    day: int | None

    def contains(self, when: date) -> bool:
        return (
            (self.year is None or when.year == self.year)
            and (self.month is None or when.month == self.month)
            and (self.day is None or when.day == self.day)
        )


def named_period(query: str) -> Period | None:
    """The first day / month / year the query names, or None. Month names are matched with
    a capital (a lower-case "may" is a verb)."""
    for pattern in _PATTERNS:
        for match in pattern.finditer(query):
            found = match.groupdict()
            month: int | None = None
            if found.get("mnum"):
                month = int(found["mnum"])
            elif found.get("month"):
                month = _MONTHS[found["month"].rstrip(".").lower()]
            year = int(found["year"]) if found.get("year") else None
            day = int(found["day"]) if found.get("day") else None
            if (day is not None and not 1 <= day <= 31) or (month is not None and not 1 <= month <= 12):
                continue
            return Period(year=year, month=month, day=day)
    return None


def memory_time(memory: Memory) -> datetime:
    """When a memory holds: its world time when it has one, else when it was written."""
    return memory.valid_from or memory.created_at


def date_boost(query: str, hits: list[Hit], weight: float) -> list[Hit]:
    """Scale the hits whose time falls in the period the query names by ``1 + weight`` (all
    divided by the same, so the best stays about 1); re-sorted. ``explain`` gains ``date``
    (1 in the period, 0 outside) when the query names one."""
    if weight <= 0 or not hits:
        return hits
    period = named_period(query)
    if period is None:
        return hits
    out = []
    for hit in hits:
        inside = period.contains(memory_time(hit.memory).date())
        factor = (1.0 + weight if inside else 1.0) / (1.0 + weight)
        explain = dict(hit.explain, date=float(inside)) if hit.explain is not None else None
        out.append(Hit(memory=hit.memory, score=hit.score * factor, explain=explain))
    out.sort(key=lambda h: (-h.score, h.memory.id))
    return out


def in_period(memories: list[Memory], period: Period) -> list[Memory]:
    """The memories whose time falls in ``period``."""
    return [m for m in memories if period.contains(memory_time(m).date())]
