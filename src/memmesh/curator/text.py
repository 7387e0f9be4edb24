"""The curator's text heuristics: words, subjects, negations, numbers, keywords.

Pure functions over strings, no store and no model, so every rule the curator applies to
text can be tested on its own and reads the same in a dry run, a real run and the MCP tools.
Why heuristics and no LLM: the curator must run offline on every install; an LLM, when one
is configured elsewhere, can only add to what these find.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from memmesh.recall.keyword import STOPWORDS

WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
"""A word: letters (with one inner apostrophe, so "isn't" stays one word)."""

NUMBER = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?|\d+(?:[.,:]\d+)*")
"""A number, a date (2024-05-01) or a time: what differs when two statements disagree on a value."""

NEGATIONS = frozenset(
    (
        "not", "no", "never", "none", "nothing", "nobody", "neither", "nor", "cannot", "without",
        "isn't", "aren't", "wasn't", "weren't", "don't", "doesn't", "didn't", "won't", "wouldn't",
        "can't", "couldn't", "shouldn't", "hasn't", "haven't", "hadn't", "mustn't",
    )
)  # fmt: skip
"""Words that turn a statement into its opposite."""

EXTRA_STOP = frozenset(
    ("use", "uses", "used", "using", "get", "gets", "got", "make", "makes", "made", "one", "two", "also", "like", "via", "per")
)
"""Words too general to name a subject or make a tag, beyond recall's stopwords."""


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` in order (numbers are not words; see :func:`numbers`)."""
    return [w.lower() for w in WORD.findall(text.replace("\u2019", "'"))]


def subject(text: str, found: list[str] | None = None) -> frozenset[str]:
    """What a statement is about: its words without stopwords, negations and numbers
    (``found``: its :func:`words`, when the caller has them already).

    Two statements with the same subject but opposite polarity or other numbers contradict
    each other; with the same subject and nothing in conflict they are candidates for
    duplicates."""
    return frozenset(map(stem, [w for w in (words(text) if found is None else found) if len(w) > 1 and w not in _NOT_SUBJECT]))


_NOT_SUBJECT = STOPWORDS | NEGATIONS | EXTRA_STOP
"""Words that never name a subject nor make a tag (one set: one look-up per word)."""

SUFFIXES = (("able", 7), ("ing", 6), ("ly", 6), ("ed", 5))
"""Endings folded away (with the shortest word they are taken from): "reachable" → "reach",
"monthly" → "month", "owned" → "own"."""


@functools.lru_cache(maxsize=65_536)
def stem(word: str) -> str:
    """A crude suffix fold ("deploys" → "deploy", "alice's" → "alice", "monthly" → "month"):
    enough for two phrasings of one subject to share their words, no dictionary needed. It
    only has to fold both sides the same way, not produce real words."""
    word = word.removesuffix("'s")
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    for suffix, shortest in SUFFIXES:
        if len(word) >= shortest and word.endswith(suffix):
            return word[: -len(suffix)]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def negated(text: str, found: list[str] | None = None) -> bool:
    """True when the statement carries a negation (an odd count would be subtler; one suffices
    for the polarity test, since double negatives are rare in stored facts)."""
    return any(w in NEGATIONS or w.endswith("n't") for w in (words(text) if found is None else found))


def numbers(text: str) -> frozenset[str]:
    """The numbers, dates and times a statement names, normalised (``100.0`` = ``100``)."""
    found = set()
    for raw in NUMBER.findall(text):
        value = raw.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+", raw) else raw
        try:
            number = float(value)
            found.add(f"{number:g}")
        except ValueError:
            found.add(value)
    return frozenset(found)


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """Shared share of two word sets (1.0 for two empty sets is avoided: 0.0)."""
    sa, sb = set(a), set(b)
    union = sa | sb
    return len(sa & sb) / len(union) if union else 0.0


@dataclass(frozen=True)
class Statement:
    """What the heuristics need of one memory's text, computed once per run."""

    subject: frozenset[str]
    negated: bool
    numbers: frozenset[str]

    @classmethod
    def of(cls, text: str) -> Statement:
        found = words(text)
        return cls(subject=subject(text, found), negated=negated(text, found), numbers=numbers(text))


def conflict(a: Statement, b: Statement, *, min_overlap: float) -> str | None:
    """Why two statements contradict each other, or None.

    Same subject (subject-word overlap at least ``min_overlap``) and either opposite polarity
    (one negated, the other not) or different numbers/dates where both name some."""
    if jaccard(a.subject, b.subject) < min_overlap:
        return None
    if a.negated != b.negated:
        return "negation: one says the opposite of the other"
    if a.numbers and b.numbers and a.numbers != b.numbers:
        mine, theirs = sorted(a.numbers - b.numbers), sorted(b.numbers - a.numbers)
        return f"different values for the same subject: {', '.join(mine) or '-'} vs {', '.join(theirs) or '-'}"
    return None


def keywords(text: str, df: Mapping[str, int], total: int, *, limit: int, found: list[str] | None = None) -> list[str]:
    """The ``limit`` most telling words of ``text`` for tags: term frequency times inverse
    document frequency over the memories scanned with it (``df``: in how many memories a
    word occurs, ``total``: how many; ``found``: the text's :func:`words`, when the caller
    has them already). Ties go to the word that comes first."""
    found = words(text) if found is None else found
    counts = Counter(w for w in found if _taggable(w))
    first = {w: i for i, w in reversed(list(enumerate(found)))}
    scored = sorted(counts, key=lambda w: (-counts[w] * math.log((total + 1) / (df.get(w, 0) + 1) + 1), first.get(w, 0)))
    return scored[:limit]


def _taggable(word: str) -> bool:
    return len(word) >= 3 and word not in _NOT_SUBJECT and "'" not in word


def tag_words(text: str, found: list[str] | None = None) -> set[str]:
    """The distinct words of ``text`` that could become tags (for document frequencies;
    ``found``: its :func:`words`, when the caller has them already)."""
    return {w for w in (words(text) if found is None else found) if _taggable(w)}


__all__ = ["NEGATIONS", "Statement", "conflict", "jaccard", "keywords", "negated", "numbers", "stem", "subject", "tag_words", "words"]
