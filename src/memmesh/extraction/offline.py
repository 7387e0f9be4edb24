"""Fact extraction without an LLM: rules over sentences, fast enough to run on every write.

One turn becomes zero or more :class:`Fact` values. The rules, in order:

1. split the text into sentences (``.``, ``!``, ``?``, line breaks; abbreviations such as
   "Dr." and decimals such as "3.5" do not end a sentence);
2. drop questions, greetings and fillers ("thanks!", "haha, sure"), and sentences under
   four words: they state nothing to remember;
3. keep a sentence that is a first-person statement ("I", "my", "we"), a preference
   ("I love…", "my favourite…", "I can't stand…"), a decision or plan ("we decided…",
   "I'm going to…"), or that carries a date, a quantity or a named entity;
4. rewrite the first person to the speaker ("I moved to Paris" said by Ana becomes "Ana
   moved to Paris"), so the fact reads correctly out of its conversation and is found
   by the speaker's name;
5. assign a kind (``preference``, ``episode`` for things that happened, ``fact`` else) and
   tags (``preference``, ``decision``, ``plan``, ``event``, ``date``, ``quantity``), and
   record dates, quantities and entities in the metadata;
6. name a *slot* for statements that hold one value at a time ("Ana lives in", "Ana's
   favourite colour is") and a stance (polarity and topic) for preferences, read by the
   rules the curator shares (:mod:`memmesh.curator.rules`) from the fact as stored.

Pure functions over strings: no store, no model, no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from memmesh.curator.rules import Reading
from memmesh.model import Kind

ABBREVIATIONS = r"(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)(?<!\bvs)(?<!\betc)(?<!\be\.g)(?<!\bi\.e)(?<!\bJr)(?<!\bSr)"
SENTENCE_END = re.compile(ABBREVIATIONS + r"(?<!\d\.\d)([.!?]+)[\"')\]]*\s+|\n+")
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’-]*")
QUESTION_START = re.compile(
    r"^(what|who|whom|whose|when|where|why|how|which|do|does|did|is|are|was|were|can|could|would|will|should|have|has|shall)\b", re.I
)
FILLER = re.compile(
    r"^(hi|hey|hello|thanks|thank you|thx|ok|okay|sure|yes|yeah|yep|no|nope|haha|lol|wow|cool|great|nice|awesome|bye|"
    r"good (morning|night|evening|afternoon)|see you|take care|no problem|sounds good|you too|me too)\b[\s!.,]*",
    re.I,
)
FIRST_PERSON = re.compile(r"\b(I|I'm|I’m|I've|I’ve|I'll|I’ll|I'd|I’d|me|my|mine|myself|we|we're|we've|we'll|our|ours|us)\b")
PREFERENCE = re.compile(
    r"\b(like|likes|liked|love|loves|loved|enjoy|enjoys|enjoyed|prefer|prefers|preferred|adore|fan of|into|favou?rite|"
    r"hate|hates|hated|dislike|dislikes|disliked|can't stand|cannot stand|can’t stand|allergic to|don't like|do not like|"
    r"don’t like|not a fan of)\b",
    re.I,
)
DECISION = re.compile(
    r"\b(decided|decide|chose|choose|agreed|we'll go with|going with|settled on|opted|picked|committed to|signed up)\b", re.I
)
PLAN = re.compile(
    r"\b(going to|gonna|plan to|planning to|plans to|will|intend to|hoping to|want to|wants to|about to|next (week|month|year))\b", re.I
)
EVENT = re.compile(
    r"\b(went|visited|moved|started|finished|joined|met|bought|got|won|lost|attended|graduated|adopted|painted|ran|took|made|"
    r"saw|traveled|travelled|received|married|born|quit|launched|shipped|released|created|wrote|read|learned|learnt|tried|"
    r"yesterday|last (week|month|year|night|weekend)|ago)\b",
    re.I,
)
MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|"
    r"nov(?:ember)?|dec(?:ember)?)"
)
WEEKDAYS = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
DATE = re.compile(
    r"\b(\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}|\d{1,2}(?:st|nd|rd|th)? (?:of )?"
    + MONTHS
    + r"(?:,? \d{4})?|"
    + MONTHS
    + r" \d{1,2}(?:st|nd|rd|th)?(?:,? \d{4})?|(?:19|20)\d{2}|yesterday|today|tonight|tomorrow|"
    + r"last (?:week|month|year|night|weekend|"
    + WEEKDAYS
    + r")|next (?:week|month|year|weekend|"
    + WEEKDAYS
    + r")|(?:on )?"
    + WEEKDAYS
    + r"|\d+ (?:days?|weeks?|months?|years?) ago)\b",
    re.I,
)
QUANTITY = re.compile(
    r"(?:[$€£]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)?\s?(?:%|percent|kg|g|km|miles?|m|cm|hours?|hrs?|minutes?|mins?|"
    r"days?|weeks?|months?|years?|dollars|euros|pounds|people|kids|children|times|items|gb|mb|tb|ms|s)\b|\b\d[\d,]*(?:\.\d+)?\b)",
    re.I,
)
ENTITY = re.compile(r"\b([A-Z][a-zA-Z'’&-]+(?:\s+(?:of|the|de|van|von|for|and)?\s*[A-Z][a-zA-Z'’&-]+)*)")
COMMON_CAPITALS = frozenset(
    " ".join(
        [
            "I I'm I've I'll I'd The A An And But Or So If When What Who Where Why How This That These Those It It's My Our We",
            "You Your He She They His Her Their Yes No Oh Hey Hi Hello Thanks Thank Well Also Just Really Wow Sure Okay Ok Great",
            "Cool Nice Haha Monday Tuesday Wednesday Thursday Friday Saturday Sunday Today Tomorrow Yesterday Last Next Then There",
            "Here Maybe Anyway Let's Let Do Did Does Is Are Was Were Have Has Had Can Could Would Will Should Not Sounds",
            "Definitely Absolutely Totally Of In On At For With By From To As Since After Before During Even Still Yeah Aw Awww",
            "Glad Congrats Congratulations Love Good Hope Sorry Please Right Exactly True Lol Omg Dr Mr Mrs Ms January February",
            "March April May June July August September October November December",
        ]
    ).split()
)
SUBSTITUTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bI['’]m\b"), "{s} is"),
    (re.compile(r"\bI['’]ve\b"), "{s} has"),
    (re.compile(r"\bI['’]ll\b"), "{s} will"),
    (re.compile(r"\bI['’]d\b"), "{s} would"),
    (re.compile(r"\bI am\b"), "{s} is"),
    (re.compile(r"\bI was\b"), "{s} was"),
    (re.compile(r"\bI have\b"), "{s} has"),
    (re.compile(r"\bI (?:don['’]t|dont)\b"), "{s} doesn't"),
    (re.compile(r"\bI do not\b"), "{s} does not"),
    (re.compile(r"\bI (have|do|go)\b"), "{s} \\1es"),
    (
        re.compile(
            r"\bI (love|like|hate|want|need|think|feel|work|live|prefer|enjoy|know|play|paint|run|plan|hope|own|use|miss|volunteer|"
            r"read|write|cook|study|teach|make|keep)\b"
        ),
        "{s} \\1s",
    ),
    (re.compile(r"\bI\b"), "{s}"),
    (re.compile(r"\b[Mm]y\b"), "{s}'s"),
    (re.compile(r"\b[Mm]ine\b"), "{s}'s"),
    (re.compile(r"\b[Mm]yself\b"), "{s}"),
    (re.compile(r"(?<![A-Za-z])me\b"), "{s}"),
)
MIN_WORDS = 4
MAX_FACT_CHARS = 600


@dataclass
class Fact:
    """One statement worth remembering, taken from one turn (or several, for the LLM)."""

    content: str
    kind: Kind = Kind.fact
    tags: list[str] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    """Indexes (0-based, into the call's messages) of the turns it came from."""
    slot: str | None = None
    """"<subject>|<attribute>" when the statement holds one value at a time (a newer value supersedes)."""
    value: str | None = None
    polarity: bool | None = None
    """For preferences: True likes, False dislikes (opposite polarity on the same object contradicts)."""
    topic: str | None = None
    """The preference's object, lowercased ("green tea"), compared for contradictions."""
    entities: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    quantities: list[str] = field(default_factory=list)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, stripped, in order (a line break always ends one)."""
    parts: list[str] = []
    start = 0
    for match in SENTENCE_END.finditer(text):
        end = match.start() + len(match.group(1) or "")
        piece = text[start:end].strip()
        if piece:
            parts.append(piece)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return parts


def speaker_name(role: str, name: str | None) -> str:
    """Who "I" is in a turn: the message's ``name`` when given, else its role capitalised."""
    if name and name.strip():
        return name.strip()
    return {"user": "User", "assistant": "Assistant"}.get(role, role.capitalize())


def extract_turn(text: str, *, role: str = "user", name: str | None = None, index: int = 0, limit: int = 8) -> list[Fact]:
    """The facts of one turn (at most ``limit``, the most informative first kept in order)."""
    speaker = speaker_name(role, name)
    facts: list[Fact] = []
    for sentence in split_sentences(text):
        fact = _fact(sentence, speaker, index)
        if fact is not None:
            facts.append(fact)
    if len(facts) > limit:
        ranked = sorted(range(len(facts)), key=lambda i: -_weight(facts[i]))[:limit]
        facts = [facts[i] for i in sorted(ranked)]
    return facts


def _weight(fact: Fact) -> int:
    return len(fact.tags) + len(fact.entities) + (2 if fact.slot else 0) + (1 if fact.polarity is not None else 0)


def _fact(sentence: str, speaker: str, index: int) -> Fact | None:
    sentence = sentence.strip().strip("\"'“”")
    if not sentence or sentence.endswith("?"):
        return None
    words = WORD.findall(sentence)
    if len(words) < MIN_WORDS:
        return None
    rest = FILLER.sub("", sentence, count=1).strip()
    if rest != sentence and len(WORD.findall(rest)) < MIN_WORDS:
        return None
    if QUESTION_START.match(rest) and not FIRST_PERSON.search(rest[:40]):
        return None  # an unmarked question ("do you think so") states nothing
    first_person = FIRST_PERSON.search(rest) is not None
    preference = PREFERENCE.search(rest) is not None
    decision = DECISION.search(rest) is not None
    plan = PLAN.search(rest) is not None and first_person
    event = EVENT.search(rest) is not None
    dates = [m.group(0) for m in DATE.finditer(rest)]
    quantities = [m.group(0).strip() for m in QUANTITY.finditer(rest) if not any(m.group(0).strip() in d for d in dates)]
    entities = _entities(rest)
    if not (first_person or preference or decision or dates or quantities or entities):
        return None
    tags: list[str] = []
    if preference and first_person:
        tags.append("preference")
    if decision:
        tags.append("decision")
    if plan and not decision:
        tags.append("plan")
    if event:
        tags.append("event")
    if dates:
        tags.append("date")
    if quantities:
        tags.append("quantity")
    kind = Kind.preference if "preference" in tags else Kind.episode if event and not plan else Kind.fact
    fact = Fact(
        content=_third_person(rest, speaker)[:MAX_FACT_CHARS],
        kind=kind,
        tags=tags,
        turns=[index],
        entities=entities[:8],
        dates=dates[:4],
        quantities=quantities[:4],
    )
    _slot(fact)
    return fact


def _entities(sentence: str) -> list[str]:
    found: list[str] = []
    for match in ENTITY.finditer(sentence):
        name = match.group(1).strip()
        words = name.split()
        while words and words[0] in COMMON_CAPITALS:
            words.pop(0)
        if not words:
            continue
        name = " ".join(words)
        if name not in found:
            found.append(name)
    return found


def _third_person(sentence: str, speaker: str) -> str:
    """The sentence with the speaker's first person replaced by the speaker's name."""
    out = sentence
    for pattern, template in SUBSTITUTIONS:
        out = pattern.sub(template.replace("{s}", speaker), out)
    if out == sentence and speaker.lower() not in sentence.lower():
        return f"{speaker}: {sentence}"
    return out[0].upper() + out[1:] if out else out


def _slot(fact: Fact) -> None:
    """Fill the fact's slot/value and stance (polarity/topic) from the shared rules
    (:mod:`memmesh.curator.rules`), read from the fact as stored, so the curator reading the
    same text later finds the same slot."""
    read = Reading.of(fact.content)
    fact.slot, fact.value = read.slot, read.value
    if read.topic is not None:
        fact.polarity, fact.topic = read.polarity, read.topic.split("|", 1)[1]


__all__ = ["Fact", "extract_turn", "speaker_name", "split_sentences"]
