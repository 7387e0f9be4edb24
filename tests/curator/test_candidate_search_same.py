"""The faster candidate search finds exactly the pairs the plain one found (session 6).

``candidate_pairs`` was rewritten for speed (a flat threshold search over the similarity
blocks, pairs counted in C, no per-pair min/max). A verdict can only change if the pairs
(or their cosines) change, so the plain version it replaced is kept here as the oracle and
both run on seeded stores built to hit every edge: several namespaces, a namespace larger
than three similarity blocks, rows with more neighbours than are kept, tied cosines
(identical vectors), memories without a vector or with a zero vector, words too common to
pair, memories with a single rare word, and slot and stance keys with more members than are
paired. The whole plan is compared too, with the oracle's pairs patched in.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

import memmesh.curator.plan as plan_module
from memmesh.curator.plan import BLOCK, MAX_POSTING, NEIGHBOURS, RARE_WORDS, PlanRules, candidate_pairs, plan
from memmesh.curator.rules import Claim, keys
from memmesh.curator.text import Statement
from memmesh.model import Kind, Memory, Tier

DIM = 32
NOW = datetime(2026, 6, 1, tzinfo=UTC)


# -- the oracle: the candidate search as it was before the speed-up ---------------------------


def reference_pairs(
    memories: Sequence[Memory],
    vectors: Mapping[str, np.ndarray],
    statements: Mapping[str, Statement],
    min_cosine: float,
    claims: Mapping[str, Claim] | None = None,
) -> dict[tuple[int, int], float]:
    by_ns: dict[str, list[int]] = defaultdict(list)
    for i, memory in enumerate(memories):
        by_ns[memory.namespace].append(i)
    pairs: dict[tuple[int, int], float] = {}
    for members in by_ns.values():
        _ref_vector_pairs(memories, members, vectors, min_cosine, pairs)
        _ref_word_pairs(memories, members, statements, pairs)
        if claims is not None:
            postings: dict[str, list[int]] = defaultdict(list)
            for i in members:
                for key in keys(claims[memories[i].id]):
                    postings[key].append(i)
            for posting in postings.values():
                for x, a in enumerate(posting[:MAX_POSTING]):
                    for b in posting[x + 1 : MAX_POSTING]:
                        pairs.setdefault((min(a, b), max(a, b)), 0.0)
    return pairs


def _ref_vector_pairs(
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
    for start in range(0, len(rows), BLOCK):
        scores = matrix[start : start + BLOCK] @ matrix[start:].T
        size = min(BLOCK, len(rows) - start)
        scores[:, :size][np.tril_indices(size)] = -1.0
        r_idx, c_idx = np.nonzero(scores >= min_cosine)
        if not len(r_idx):
            continue
        values = scores[r_idx, c_idx]
        order = np.lexsort((-values, r_idx))
        r_idx, c_idx, values = r_idx[order], c_idx[order], values[order]
        first = np.searchsorted(r_idx, r_idx, side="left")
        keep = (np.arange(len(r_idx)) - first) < NEIGHBOURS
        for r, c, cosine in zip(r_idx[keep].tolist(), c_idx[keep].tolist(), values[keep].tolist(), strict=True):
            a, b = rows[start + r], rows[start + c]
            pairs[(min(a, b), max(a, b))] = cosine


def _ref_word_pairs(
    memories: Sequence[Memory], members: list[int], statements: Mapping[str, Statement], pairs: dict[tuple[int, int], float]
) -> None:
    df = Counter(w for i in members for w in statements[memories[i].id].subject)
    postings: dict[str, list[int]] = defaultdict(list)
    rare_count: dict[int, int] = {}
    for i in members:
        rare = sorted((w for w in statements[memories[i].id].subject if df[w] > 1), key=lambda w: (df[w], w))[:RARE_WORDS]
        rare_count[i] = len(rare)
        for w in rare:
            postings[w].append(i)
    shared: Counter[tuple[int, int]] = Counter()
    for posting in postings.values():
        if len(posting) > MAX_POSTING:
            continue
        for x, a in enumerate(posting):
            for b in posting[x + 1 :]:
                shared[(min(a, b), max(a, b))] += 1
    for (a, b), n in shared.items():
        if n >= min(2, rare_count[a], rare_count[b]):
            pairs.setdefault((a, b), 0.0)


# -- a seeded store ---------------------------------------------------------------------------

HOLDERS = ["User", "Ana", "Bob", "Carol"]
CITIES = ["Paris", "Berlin", "Lisbon", "Oslo", "Rome"]
TOPICS = ["coffee", "jazz", "chess", "tea"]


def _memory(i: int, content: str, namespace: str, rng: random.Random, **extra: Any) -> Memory:
    created = NOW - timedelta(days=30, seconds=rng.randrange(86_400 * 20))
    return Memory(
        id=f"m{i:05d}",
        namespace=namespace,
        content=content,
        tier=Tier.long,
        kind=extra.pop("kind", Kind.fact),
        tags=extra.pop("tags", []),
        priority=rng.randint(1, 9),
        confidence=1.0,
        source="test",
        created_at=created,
        updated_at=created,
        content_hash=f"h{i}",
        **extra,
    )


def seeded(seed: int) -> tuple[list[Memory], dict[str, np.ndarray]]:
    """About 1,900 memories in three namespaces, the largest spanning more than three blocks."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    vocab = [f"w{n}" + "abcdefgh"[n % 8] * 2 for n in range(400)]
    common = vocab[:5]  # in nearly every memory: postings far above MAX_POSTING
    memories: list[Memory] = []
    vectors: dict[str, np.ndarray] = {}
    hubs = [np_rng.normal(0, 1, DIM) for _ in range(6)]  # dense neighbourhoods: more than NEIGHBOURS above the threshold
    sizes = {"big": 3 * BLOCK + 137, "mid": 300, "small": 40}
    for namespace, size in sizes.items():
        for _ in range(size):
            i = len(memories)
            roll = rng.random()
            if roll < 0.15 and i:
                base = memories[rng.randrange(len(memories))]
                words = base.content.rstrip(".").split(" ")
                words[rng.randrange(len(words))] = rng.choice(vocab)
                content, namespace_of = " ".join(words) + ".", base.namespace
            elif roll < 0.25:
                holder = "User" if rng.random() < 0.7 else rng.choice(HOLDERS)
                template = rng.choice(["{h} lives in {c}.", "{h} moved to {c}.", "{h} loves {t}.", "{h} doesn't like {t} anymore."])
                content, namespace_of = template.format(h=holder, c=rng.choice(CITIES), t=rng.choice(TOPICS)), namespace
            elif roll < 0.3:
                content, namespace_of = rng.choice(vocab[5:]), namespace  # a single word: at most one rare word
            else:
                picked = rng.sample(vocab[5:], rng.randint(3, 9)) + rng.sample(common, 2)
                content, namespace_of = " ".join(picked) + f" {rng.randint(1, 40)}.", namespace
            memory = _memory(i, content, namespace_of, rng, kind=Kind.message if rng.random() < 0.03 else Kind.fact)
            memories.append(memory)
            vroll = rng.random()
            if vroll < 0.05:
                continue  # no vector
            if vroll < 0.07:
                vectors[memory.id] = np.zeros(DIM, dtype=np.float32)
            elif vroll < 0.3:
                vectors[memory.id] = (rng.choice(hubs) + np_rng.normal(0, 0.25, DIM)).astype(np.float32)
            elif vroll < 0.35 and vectors:
                vectors[memory.id] = next(iter(vectors.values())).copy()  # identical vectors: tied cosines
            else:
                vectors[memory.id] = np_rng.normal(0, 1, DIM).astype(np.float32)
    return memories, vectors


def _claims(memories: Sequence[Memory]) -> dict[str, Claim]:
    return {m.id: Claim.of(m.content, m.metadata, transcript=m.kind == Kind.message) for m in memories}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_candidate_pairs_match_the_plain_search(seed: int) -> None:
    memories, vectors = seeded(seed)
    claims = _claims(memories)
    statements = {k: c.statement for k, c in claims.items()}
    expected = reference_pairs(memories, vectors, statements, 0.7, claims)
    found = candidate_pairs(memories, vectors, statements, 0.7, claims)
    assert found == expected
    # the seeded store does reach the edges it was built for
    assert sum(1 for cosine in found.values() if cosine > 0) > 500, "vector pairs"
    assert sum(1 for cosine in found.values() if cosine == 0) > 500, "word and key pairs"
    by_row = Counter(a for (a, _b), cosine in found.items() if cosine > 0)
    assert max(by_row.values()) == NEIGHBOURS, "some memory has more neighbours than are kept"
    assert Counter(m.namespace for m in memories)["big"] > 3 * BLOCK


@pytest.mark.parametrize("min_cosine", [0.3, 0.7, 0.95])
def test_candidate_pairs_match_at_other_thresholds(min_cosine: float) -> None:
    memories, vectors = seeded(4)
    claims = _claims(memories)
    statements = {k: c.statement for k, c in claims.items()}
    assert candidate_pairs(memories, vectors, statements, min_cosine, claims) == reference_pairs(
        memories, vectors, statements, min_cosine, claims
    )


def _digest(found: plan_module.Plan) -> dict[str, Any]:
    return {
        "clusters": [(c.keep.id, [o.id for o in c.others], c.tags) for c in found.clusters],
        "contradictions": [(c.a.id, c.b.id, c.reason, c.similarity) for c in found.contradictions],
        "updates": [(u.new.id, u.old.id, u.reason, u.similarity) for u in found.updates],
        "unsure": [(c.a.id, c.b.id, c.similarity) for c in found.unsure],
        "tags": [(m.id, tags) for m, tags in found.tags],
        "priorities": [(m.id, p) for m, p in found.priorities],
    }


def test_the_whole_plan_is_the_one_the_plain_search_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    memories, vectors = seeded(5)
    memories = [m.model_copy(update={"tags": ["kept"]}) if i % 3 == 0 else m for i, m in enumerate(memories)]
    rules = PlanRules()
    fast = _digest(plan(memories, vectors, set(), rules, NOW))
    monkeypatch.setattr(plan_module, "candidate_pairs", reference_pairs)
    plain = _digest(plan(memories, vectors, set(), rules, NOW))
    assert fast == plain
    assert fast["clusters"] and fast["contradictions"] and fast["updates"] and fast["unsure"] and fast["tags"]
