"""What a curator run would change, decided from a snapshot of memories (no writes here).

The plan is pure: memories, their vectors and the links that already exist go in; the
clusters to consolidate, the contradictions to link, the tags to add, the memories to
forget and the priorities to adjust come out. :mod:`memmesh.curator.core` applies it
through the kernel. Keeping the decisions pure keeps dry runs honest: a dry run reports
exactly the plan a real run would apply.
"""

from __future__ import annotations

import gc
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain, combinations

import numpy as np

from memmesh.curator.rules import Claim, Verdict, judge, keys
from memmesh.curator.text import Statement, jaccard, keywords, tag_words, words
from memmesh.model import Kind, Memory, Tier, turn_words

BLOCK = 512
"""Rows of the similarity matrix computed at once: bounds memory to BLOCK x n floats."""

NEIGHBOURS = 8
"""Candidate neighbours kept per memory from the vector pass (the nearest ones)."""

RARE_WORDS = 4
"""Rarest subject words per memory that pair it with others in the keyword pass."""

MAX_POSTING = 64
"""A word shared by more memories than this pairs none of them (too common to mean a duplicate)."""


@dataclass(frozen=True)
class PlanRules:
    """The thresholds a plan uses (from ``[curator]``, see config.py for their meaning)."""

    duplicate_cosine: float = 0.9
    duplicate_overlap: float = 0.5
    duplicate_jaccard: float = 0.8
    candidate_cosine: float = 0.7
    contradiction_overlap: float = 0.6
    auto_tag: bool = True
    max_auto_tags: int = 3
    forget_expired: bool = True
    forget_max_priority: int = 0
    forget_idle_days: float = 90.0
    boost_accesses: int = 10
    decay_idle_days: float = 0.0


@dataclass
class Cluster:
    """Near-duplicates: ``keep`` stays the one to find; the others are linked keep → other
    ``supersedes`` and their tags are merged into ``keep``."""

    keep: Memory
    others: list[Memory]
    tags: list[str]


@dataclass
class Contradiction:
    """Two memories on the same subject that disagree, to be linked ``contradicts``."""

    a: Memory
    b: Memory
    reason: str
    similarity: float


@dataclass
class Update:
    """A newer statement that replaces an older one (:data:`Verdict.update`): linked
    ``new`` → ``old`` ``supersedes``; the old one stays, findable in history and links."""

    new: Memory
    old: Memory
    reason: str
    similarity: float


@dataclass
class Plan:
    """Everything one run would change, in the order it is applied."""

    expired: list[Memory] = field(default_factory=list)
    low_value: list[Memory] = field(default_factory=list)
    clusters: list[Cluster] = field(default_factory=list)
    contradictions: list[Contradiction] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    tags: list[tuple[Memory, list[str]]] = field(default_factory=list)
    priorities: list[tuple[Memory, int]] = field(default_factory=list)
    unsure: list[Contradiction] = field(default_factory=list)
    """Pairs on one subject that neither a negation nor a number sets apart and that are not
    duplicates either: only an LLM can tell whether they disagree (``reason`` is empty)."""


def candidate_pairs(
    memories: Sequence[Memory],
    vectors: Mapping[str, np.ndarray],
    statements: Mapping[str, Statement],
    min_cosine: float,
    claims: Mapping[str, Claim] | None = None,
) -> dict[tuple[int, int], float]:
    """Pairs (i < j, same namespace) worth a closer look, with their cosine (0.0 when only
    the keyword pass found them): nearest vector neighbours above ``min_cosine``, memories
    sharing one of their rarest subject words, and memories filling the same slot or taking
    a stance on the same topic (``claims``: :func:`memmesh.curator.rules.keys`, what
    extraction's slot index finds on write). Never all pairs: per memory at most
    :data:`NEIGHBOURS` from vectors and a bounded posting list from words and keys."""
    by_ns: dict[str, list[int]] = defaultdict(list)
    for i, memory in enumerate(memories):
        by_ns[memory.namespace].append(i)
    pairs: dict[tuple[int, int], float] = {}
    for members in by_ns.values():
        _vector_pairs(memories, members, vectors, min_cosine, pairs)
        _word_pairs(memories, members, statements, pairs)
        if claims is not None:
            _key_pairs(memories, members, claims, pairs)
    return pairs


def _key_pairs(memories: Sequence[Memory], members: list[int], claims: Mapping[str, Claim], pairs: dict[tuple[int, int], float]) -> None:
    postings: dict[str, list[int]] = defaultdict(list)
    for i in members:
        for key in keys(claims[memories[i].id]):
            postings[key].append(i)
    for posting in postings.values():
        # members ascend, so each posting does too and every pair comes out as (i < j)
        for pair in combinations(posting[:MAX_POSTING], 2):
            pairs.setdefault(pair, 0.0)


def _vector_pairs(
    memories: Sequence[Memory],
    members: list[int],
    vectors: Mapping[str, np.ndarray],
    min_cosine: float,
    pairs: dict[tuple[int, int], float],
) -> None:
    rows = [i for i in members if memories[i].id in vectors]
    if len(rows) < 2:
        return
    matrix = np.stack([vectors[memories[i].id] for i in rows]).astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix /= np.where(norms == 0, 1, norms)
    index = np.asarray(rows)
    for start in range(0, len(rows), BLOCK):
        # the matrix is symmetric: each block meets only the columns from its own rows on,
        # and within its own square only the pairs above the diagonal (half the products)
        scores = matrix[start : start + BLOCK] @ matrix[start:].T
        # a flat search of the few scores above the threshold is several times cheaper than
        # a 2-d one; it finds them in the same (row-major) order
        r_idx, c_idx = np.divmod(np.flatnonzero(scores >= min_cosine), scores.shape[1])
        above = c_idx > r_idx  # the diagonal and below: each pair once, never a memory with itself
        r_idx, c_idx = r_idx[above], c_idx[above]
        if not len(r_idx):
            continue
        values = scores[r_idx, c_idx]
        order = np.lexsort((-values, r_idx))  # by row, nearest first
        r_idx, c_idx, values = r_idx[order], c_idx[order], values[order]
        first = np.searchsorted(r_idx, r_idx, side="left")
        keep = (np.arange(len(r_idx)) - first) < NEIGHBOURS  # at most NEIGHBOURS per memory
        # rows ascend and every column lies right of its row: each pair comes out as (i < j)
        a, b = index[start + r_idx[keep]].tolist(), index[start + c_idx[keep]].tolist()
        pairs.update(zip(zip(a, b, strict=True), values[keep].tolist(), strict=True))


def _word_pairs(
    memories: Sequence[Memory], members: list[int], statements: Mapping[str, Statement], pairs: dict[tuple[int, int], float]
) -> None:
    subjects = [statements[memories[i].id].subject for i in members]
    df = Counter(chain.from_iterable(subjects))
    postings: dict[str, list[int]] = defaultdict(list)
    few: set[int] = set()  # memories with fewer than two rare words: one shared word pairs them
    for i, subject in zip(members, subjects, strict=True):
        rare = sorted((df[w], w) for w in subject if df[w] > 1)[:RARE_WORDS]
        if len(rare) < 2:
            few.add(i)
        for _n, w in rare:
            postings[w].append(i)
    shared: Counter[tuple[int, int]] = Counter()
    for posting in postings.values():
        if len(posting) <= MAX_POSTING:
            shared.update(combinations(posting, 2))  # ascending postings: (i < j)
    # two statements of one subject share most words, so most of their rarest ones too:
    # two of them, or the one a memory has
    for pair, n in shared.items():
        if n >= 2 or pair[0] in few or pair[1] in few:
            pairs.setdefault(pair, 0.0)


def best_first(memories: Sequence[Memory], kept: set[str] | None = None) -> list[Memory]:
    """The order in which a cluster's member is the one to keep: the one an earlier run kept
    (``kept``: it supersedes others already, so runs never flip-flop), then higher priority,
    more used, more confident, longer (more detail), newer, then the id (a stable tie-break)."""
    return sorted(
        memories,
        key=lambda m: (
            m.id not in (kept or set()),
            -m.priority,
            -m.access_count,
            -m.confidence,
            -len(m.content),
            -m.created_at.timestamp(),
            m.id,
        ),
    )


def plan(
    memories: Sequence[Memory],
    vectors: Mapping[str, np.ndarray],
    links: set[tuple[str, str, str]],
    rules: PlanRules,
    now: datetime,
) -> Plan:
    """The plan for ``memories`` (live and expired, in the run's scope).

    ``links`` holds (source, target, relation) of the links that exist already, so a second
    run over the same store plans nothing new."""
    with _collector_paused():
        return _plan(memories, vectors, links, rules, now)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector paused for the block. A plan makes hundreds of thousands of
    small acyclic objects (word sets, claims, pairs) while the scan's memories are alive:
    each full collection walks all of them again for nothing to free, about a sixth of a
    plan's time at 10k memories. Reference counting still frees everything; the collector
    runs again right after (left off if someone else had turned it off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _plan(
    memories: Sequence[Memory],
    vectors: Mapping[str, np.ndarray],
    links: set[tuple[str, str, str]],
    rules: PlanRules,
    now: datetime,
) -> Plan:
    result = Plan()
    live = [m for m in memories if m.expires_at is None or m.expires_at > now]
    if rules.forget_expired:
        result.expired = [m for m in memories if m.expires_at is not None and m.expires_at <= now]
    result.low_value = [m for m in live if _low_value(m, rules, now)]
    gone = {m.id for m in result.low_value}
    live = [m for m in live if m.id not in gone]
    claims = {m.id: Claim.of(plan_text(m), m.metadata, transcript=m.kind == Kind.message) for m in live}
    statements = {key: claim.statement for key, claim in claims.items()}
    pairs = candidate_pairs(live, vectors, statements, rules.candidate_cosine, claims)
    edges: list[tuple[int, int]] = []
    for (i, j), cosine in sorted(pairs.items()):
        a, b = live[i], live[j]
        newer, older = (a, b) if later(a, b) else (b, a)
        found = judge(claims[newer.id], claims[older.id], cosine=cosine, rules=rules)
        similarity = round(cosine or jaccard(statements[a.id].subject, statements[b.id].subject), 4)
        if found.verdict is Verdict.duplicate:
            edges.append((i, j))
        elif found.verdict is Verdict.update:
            if not _linked(links, newer.id, older.id, "supersedes"):
                result.updates.append(Update(new=newer, old=older, reason=found.reason, similarity=similarity))
        elif found.verdict is Verdict.contradiction:
            if not _linked(links, a.id, b.id, "contradicts"):
                result.contradictions.append(Contradiction(a=a, b=b, reason=found.reason, similarity=similarity))
        elif found.verdict is Verdict.unsure and not _linked(links, a.id, b.id, "contradicts"):
            result.unsure.append(Contradiction(a=a, b=b, reason="", similarity=similarity))
    result.clusters = _clusters(live, edges, links)
    if rules.auto_tag:
        # a keep that gets its cluster's tags needs no keywords; a superseded memory is not
        # tagged (its words live on in the memory that supersedes it)
        skip = {c.keep.id for c in result.clusters if c.tags} | {o.id for c in result.clusters for o in c.others}
        skip |= {target for _source, target, relation in links if relation == "supersedes"}
        result.tags = [(m, t) for m, t in _tags(live, rules.max_auto_tags) if m.id not in skip]
    result.priorities = [(m, p) for m in live if (p := _priority(m, rules, now)) != m.priority]
    return result


def plan_text(memory: Memory) -> str:
    """The text a memory is judged by: its title and content (the MCP contradiction tool too).
    A session turn is judged by its words: its ``[turn N] role:`` prefix numbered two turns
    that said the same thing differently, and "2 vs 1" made them a contradiction."""
    content = turn_words(memory.content) if memory.kind == Kind.message else memory.content
    return f"{memory.title}\n{content}" if memory.title else content


def later(a: Memory, b: Memory) -> bool:
    """True when ``a`` was stored after ``b`` (the id breaks a tie): the newer statement is
    the one that may update the older."""
    return (a.created_at, a.id) > (b.created_at, b.id)


def _linked(links: set[tuple[str, str, str]], a: str, b: str, relation: str) -> bool:
    return (a, b, relation) in links or (b, a, relation) in links


def _clusters(live: Sequence[Memory], edges: list[tuple[int, int]], links: set[tuple[str, str, str]]) -> list[Cluster]:
    parent = list(range(len(live)))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in edges:
        parent[root(i)] = root(j)
    groups: dict[int, list[Memory]] = defaultdict(list)
    for i, _j in edges:
        groups.setdefault(root(i), [])
    for i, memory in enumerate(live):
        if root(i) in groups:
            groups[root(i)].append(memory)
    kept = {source for source, _target, relation in links if relation == "supersedes"}
    clusters = []
    for members in groups.values():
        keep, *others = best_first(members, kept)
        tags = list(dict.fromkeys([*keep.tags, *(t for o in others for t in o.tags)]))[:32]
        todo = [o for o in others if (keep.id, o.id, "supersedes") not in links]
        if todo or tags != keep.tags:
            clusters.append(Cluster(keep=keep, others=todo, tags=tags))
    clusters.sort(key=lambda c: c.keep.id)
    return clusters


def _tags(live: Sequence[Memory], limit: int) -> list[tuple[Memory, list[str]]]:
    """Tags for untagged memories: their most telling words across the memories scanned."""
    untagged = [m for m in live if not m.tags]
    if not untagged:
        return []
    df: Counter[str] = Counter()
    tokens: dict[str, list[str]] = {}  # each text split once: for the frequencies and for its own tags
    for m in live:
        tokens[m.id] = words(plan_text(m))
        df.update(tag_words("", tokens[m.id]))
    found = []
    for m in untagged:
        tags = keywords(plan_text(m), df, len(live), limit=limit, found=tokens[m.id])
        if tags:
            found.append((m, tags))
    return found


def _idle_since(memory: Memory) -> datetime:
    return memory.last_accessed_at or memory.updated_at


def _low_value(memory: Memory, rules: PlanRules, now: datetime) -> bool:
    """Forgotten by policy: priority at most ``forget_max_priority`` (0 = never), never
    recalled, not long-term, untouched for ``forget_idle_days``."""
    if rules.forget_max_priority < 1 or memory.tier == Tier.long:
        return False
    idle = now - _idle_since(memory)
    return memory.priority <= rules.forget_max_priority and memory.access_count == 0 and idle >= timedelta(days=rules.forget_idle_days)


def _priority(memory: Memory, rules: PlanRules, now: datetime) -> int:
    """Priority by use: one step up per ``boost_accesses`` recalls (up to 10, counted from
    the use the curator last rewarded), one step down when unused for ``decay_idle_days``
    (0 = never) since the last change, never below 1."""
    rewarded = int(memory.metadata.get("curator_rewarded_accesses", 0) or 0) if isinstance(memory.metadata, dict) else 0
    if rules.boost_accesses > 0 and memory.access_count - rewarded >= rules.boost_accesses and memory.priority < 10:
        return memory.priority + 1
    idle = now - memory.updated_at
    if rules.decay_idle_days > 0 and memory.priority > 1 and memory.access_count == 0 and idle >= timedelta(days=rules.decay_idle_days):
        return memory.priority - 1
    return memory.priority


__all__ = ["Cluster", "Contradiction", "Plan", "PlanRules", "Update", "best_first", "candidate_pairs", "plan"]
