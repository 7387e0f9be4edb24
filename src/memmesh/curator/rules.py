"""The one rule set that decides how a statement relates to one already stored (issue 23).

The curator (a pair found in the store) and extraction (a fact met on write) both ask
:func:`judge` and act on its :class:`Verdict`, so the two can never disagree about a pair:

- ``duplicate``: the same statement again (the same value of one slot, or near-identical by
  meaning and words): keep one, merge the tags (the curator links the kept one
  ``supersedes`` the rest; extraction keeps the stored one and links it to the new turns);
- ``update``: a new value replaces the old one — the same single-valued slot with another
  value ("Ana lives in Paris" → "Ana moved to Berlin"), or the opposite stance said as a
  change ("Ana loves coffee" → "Ana doesn't drink coffee anymore"): the newer statement is
  linked ``supersedes`` the older;
- ``contradiction``: the two disagree and neither says it replaced the other (the opposite
  stance, a negation or other numbers on the same subject): linked ``contradicts``;
- ``unsure``: the same subject and nothing above decides (only an LLM could tell);
- ``new``: nothing to do with each other.

Nothing is ever deleted: every verdict is a link or a tag merge. Pure functions over text,
so a verdict reads the same in a dry run, a real run and on write. Thresholds come from
:class:`memmesh.curator.plan.PlanRules` (the ``[curator]`` settings), in one place.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from memmesh.curator.text import Statement, conflict, jaccard

CLOSE_COSINE = 0.05
CLOSE_OVERLAP = 0.2
"""A pair a little under ``duplicate_cosine`` is still a duplicate when its subject words
overlap this much more than ``duplicate_overlap`` (0.85 cosine with 0.7 overlap by default):
rephrasings that reorder a sentence lose some cosine but keep their words."""


class Rules(Protocol):
    """The thresholds a verdict needs (``PlanRules`` / ``CuratorPolicy`` carry them)."""

    @property
    def duplicate_cosine(self) -> float: ...
    @property
    def duplicate_overlap(self) -> float: ...
    @property
    def duplicate_jaccard(self) -> float: ...
    @property
    def contradiction_overlap(self) -> float: ...


class Verdict(StrEnum):
    duplicate = "duplicate"
    update = "update"
    contradiction = "contradiction"
    unsure = "unsure"
    new = "new"


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str = ""


HOLDER = r"(?P<h>\b[A-Z][\w'’-]*)"
"""Who a statement is about: a capitalised name ("Ana", "User"): extraction writes the
speaker's name in place of "I", so both sides of a pair name their holder the same way."""

POSSESSIVE = HOLDER + r"['’]s "
VALUE = r"(?P<v>[^,.;!?\n]+)"
SLOTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            HOLDER + r" (?:now |recently |just |finally |has |have )*(?:lives?|is living|are living|moved|relocated|is moving|"
            r"moves) (?:back )?(?:in|to) " + VALUE
        ),
        "lives in",
    ),
    (
        re.compile(
            HOLDER + r" (?:now |recently |just |has |have )*(?:works?|is working|started working|is now working) (?:at|for) " + VALUE
        ),
        "works at",
    ),
    (re.compile(POSSESSIVE + r"name is " + VALUE), "name"),
    (re.compile(HOLDER + r" is (?P<v>\d{1,3}) years old"), "age"),
    (re.compile(POSSESSIVE + r"(?P<a>(?i:favou?rite) [a-z]+(?: [a-z]+)?) (?:is|are) (?:now )?" + VALUE), ""),
    (
        re.compile(
            POSSESSIVE + r"(?P<a>job|role|title|email|phone(?: number)?|address|birthday|age|boss|manager|partner|editor|shell|os|"
            r"laptop|car) (?:is|are) (?:now )?" + VALUE
        ),
        "",
    ),
)
"""Statements that hold one value at a time: "<holder> lives in <value>" and the like."""

SLOT_HINT = re.compile(
    r"\b(?:lives?|living|moved|moves|moving|relocated|works?|working|name|years old|favou?rite|job|role|title|"
    r"email|phone|address|birthday|age|boss|manager|partner|editor|shell|os|laptop|car)\b",
    re.I,
)
"""A cheap first look: only a text with one of these words can fill a slot."""

NEGATORS = r"(?:doesn['’]t|does not|don['’]t|do not|didn['’]t|did not|no longer|never|won['’]t|will not|isn['’]t)"
STANCE = re.compile(
    HOLDER + r" (?P<n>" + NEGATORS + r" )?(?:really |still |now |also |absolutely |truly |totally |just |kind of )*"
    r"(?P<verb>likes?|loves?|enjoys?|prefers?|adores?|hates?|dislikes?|drinks?|eats?|plays?|smokes?|watches|watch|reads?|"
    r"can['’]t stand|cannot stand|is allergic to|is a fan of|is not a fan of|is into|is vegan|avoids?)"
    r"(?: to| of)? (?P<t>[^,.;!?\n]+)"
)
"""A stance on a topic: "<holder> [doesn't] loves/hates/drinks <topic>"."""

STANCE_HINT = re.compile(
    r"\b(?:lik|lov|enjoy|prefer|ador|hat|dislik|drink|eat|play|smok|watch|read|stand|allergic|fan|into|vegan|avoid)", re.I
)

NEGATIVE_VERBS = frozenset(("hate", "hates", "dislike", "dislikes", "can't stand", "can’t stand", "cannot stand", "is allergic to"))
NEGATIVE_VERBS |= frozenset(("is not a fan of", "avoid", "avoids"))

CHANGE = re.compile(
    r"\b(anymore|any more|no longer|now|nowadays|these days|stopped|quit|gave up|switched|moved|changed|recently|since then|"
    r"not any more|used to)\b",
    re.I,
)
"""Words that say a statement replaces an earlier one rather than disputing it."""

TRAILING = ("now", "anymore", "too", "either", "again", "lately", "though", "much", "lot", "a", "so", "very", "any", "more")


@dataclass(frozen=True)
class Claim:
    """What :func:`judge` needs of one statement: its words (:class:`Statement`), the slot it
    fills, the stance it takes, and whether it says something changed."""

    statement: Statement
    slot: str | None = None
    """"<holder>|<attribute>" for a statement that holds one value at a time."""
    value: str | None = None
    topic: str | None = None
    """"<holder>|<topic>" for a stance (likes, hates, drinks …)."""
    polarity: bool | None = None
    change: bool = False
    normal: str = ""

    @classmethod
    def of(cls, text: str, metadata: Mapping[str, Any] | None = None, *, transcript: bool = False) -> Claim:
        """The claim of ``text``; a structured slot in ``metadata`` (an LLM extraction's
        ``slot``/``value``) wins over the one read from the words. A ``transcript`` (a raw
        conversation turn) gets words only: its "I" is whoever spoke, so two speakers' turns
        must not fill one slot; the facts extracted from it name the speaker instead.
        Cached: a stored fact is judged against many new ones."""
        meta = metadata or {}
        slot, value = meta.get("slot"), meta.get("value")
        if not (isinstance(slot, str) and isinstance(value, str) and "|" in slot):
            slot = value = None
        return _claim(text, slot, value, transcript)


@functools.lru_cache(maxsize=32_768)
def _claim(text: str, slot: str | None, value: str | None, transcript: bool) -> Claim:
    normal = " ".join(text.lower().split()).rstrip(".!")
    if transcript:
        return Claim(statement=Statement.of(text), normal=normal)
    read = Reading.of(text)
    if slot is not None:
        read = Reading(slot=slot, value=value)
    return Claim(
        statement=Statement.of(text),
        slot=read.slot,
        value=read.value,
        topic=read.topic,
        polarity=read.polarity,
        change=CHANGE.search(text) is not None,
        normal=normal,
    )


@dataclass(frozen=True)
class Reading:
    """The slot or the stance a statement's words name (what the extractor records too)."""

    slot: str | None = None
    value: str | None = None
    topic: str | None = None
    polarity: bool | None = None

    @classmethod
    def of(cls, text: str) -> Reading:
        slot, value = _slot(text) if SLOT_HINT.search(text) else (None, None)
        if slot is not None:
            return cls(slot=slot, value=value)
        topic, polarity = _stance(text) if STANCE_HINT.search(text) else (None, None)
        return cls(topic=topic, polarity=polarity)


def judge(new: Claim, old: Claim, *, cosine: float, rules: Rules) -> Judgement:
    """How ``new`` (the later statement) relates to ``old``; ``cosine`` is their embedding
    similarity (0.0 when there are no vectors). The first rule that applies decides."""
    if new.normal == old.normal:
        return Judgement(Verdict.duplicate, "the same statement")
    if new.slot is not None and new.slot == old.slot:
        if new.value == old.value:
            return Judgement(Verdict.duplicate, f"the same value of {new.slot}")
        return Judgement(Verdict.update, f"a new value of {new.slot}: {old.value} -> {new.value}")
    if new.topic is not None and new.topic == old.topic and new.polarity is not old.polarity:
        if new.change:
            return Judgement(Verdict.update, f"a changed stance on {new.topic.split('|', 1)[1]}")
        return Judgement(Verdict.contradiction, f"opposite stances on {new.topic.split('|', 1)[1]}")
    reason = conflict(new.statement, old.statement, min_overlap=rules.contradiction_overlap)
    if reason is not None:
        return Judgement(Verdict.contradiction, reason)
    if duplicates(cosine, new.statement, old.statement, rules):
        return Judgement(Verdict.duplicate, "near-duplicates")
    if (new.slot is not None and old.slot is not None) or (new.topic is not None and old.topic is not None):
        return Judgement(Verdict.new, "different slots or topics")
    return Judgement(Verdict.unsure)


def duplicates(cosine: float, a: Statement, b: Statement, rules: Rules) -> bool:
    """Near-duplicates by meaning and by content: the embeddings agree and the subjects
    overlap, or (without vectors, or whatever the vectors say) the subject words nearly match."""
    overlap = jaccard(a.subject, b.subject)
    if cosine >= rules.duplicate_cosine and overlap >= rules.duplicate_overlap:
        return True
    if cosine >= rules.duplicate_cosine - CLOSE_COSINE and overlap >= rules.duplicate_overlap + CLOSE_OVERLAP:
        return True
    return overlap >= rules.duplicate_jaccard and a.numbers == b.numbers


def keys(claim: Claim) -> list[str]:
    """Where a claim may meet the claims it updates or contradicts (extraction's slot index)."""
    found = [f"slot:{claim.slot}"] if claim.slot else []
    if claim.topic:
        found.append(f"topic:{claim.topic}")
    return found


def _slot(text: str) -> tuple[str | None, str | None]:
    for pattern, attribute in SLOTS:
        match = pattern.search(text)
        if match is None:
            continue
        value = _norm(match.group("v"))
        if not value:
            continue
        name = attribute or match.group("a").lower().replace("favorite", "favourite")
        return f"{match.group('h').lower()}|{name}", value
    return None, None


def _stance(text: str) -> tuple[str | None, bool | None]:
    match = STANCE.search(text)
    if match is None:
        return None, None
    topic = _norm(match.group("t"))
    if not topic:
        return None, None
    positive = match.group("verb").lower() not in NEGATIVE_VERBS
    if match.group("n"):
        positive = not positive
    return f"{match.group('h').lower()}|{topic}", positive


CUT = re.compile(
    r"(?<!\s)\s+(?:last|next|this|in|on|since|ago|yesterday|today|for|with|because|and|but|after|before|when|a few)\b.*$", re.I
)
"""Where a value ends: "Berlin last year" is the value Berlin, said at a time. A match starts
where a run of spaces starts (the lookbehind): tried from inside the run as well, the spaces made
each value's scan quadratic in the run's length (12,000 spaces: 20 s of a curator run)."""


def _norm(value: str) -> str:
    words = CUT.sub("", value.strip()).lower().replace("’", "'").split()
    while words and words[0] in ("the", "a", "an", "to", "my", "our", "now", "his", "her", "their"):
        words.pop(0)
    while words and words[-1] in TRAILING:
        words.pop()
    return " ".join(words[:6])


__all__ = ["Claim", "Judgement", "Reading", "Rules", "Verdict", "duplicates", "judge", "keys"]
