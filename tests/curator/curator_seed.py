"""A seeded store with known near-duplicate clusters and contradictions (ground truth).

Every memory lives in namespace ``kb``; ``DUPLICATES`` lists clusters of paraphrases,
``CONTRADICTIONS`` pairs that disagree on one subject (a negation or another number or date),
and ``DISTRACTORS`` facts that must be left alone, some deliberately close to the others
(same words, other subject; same subject, no conflict).
"""

from __future__ import annotations

from itertools import combinations

from memmesh import Memory

NS = "kb"

DUPLICATES: list[list[str]] = [
    ["The deploy window is Tuesday afternoon.", "Our deploy window is on Tuesday afternoon.", "Deploy window: Tuesday afternoons."],
    ["The billing service is owned by team Atlas.", "Team Atlas owns the billing service."],
    ["Backups run nightly at 02:00 UTC.", "Nightly backups run at 02:00 UTC."],
    ["Alice prefers tea over coffee.", "Alice prefers tea to coffee."],
    ["The office wifi password rotates every month.", "The office wifi password changes monthly."],
    ["Customer support is reachable by email at support@example.com.", "Reach customer support by email at support@example.com."],
    ["The mobile app is written in Kotlin and Swift.", "The mobile app is built with Kotlin and Swift."],
    ["Incident reviews happen every Friday morning.", "Every Friday morning we hold incident reviews."],
]

CONTRADICTIONS: list[tuple[str, str]] = [
    ("The API rate limit is 100 requests per minute.", "The API rate limit is 500 requests per minute."),
    ("Bob likes working remotely.", "Bob does not like working remotely."),
    ("The project deadline is 2026-03-15.", "The project deadline is 2026-04-01."),
    ("The build server has 16 GB of memory.", "The build server has 64 GB of memory."),
    ("Carol is on the security team.", "Carol is not on the security team."),
    ("The conference room holds 12 people.", "The conference room holds 20 people."),
]

DISTRACTORS: list[str] = [
    "The staging database runs PostgreSQL 15.",
    "The production database runs PostgreSQL 15.",
    "The API rate limit applies per API key, not per user.",
    "Dave maintains the search indexer written in Rust.",
    "The marketing site is hosted on a static CDN.",
    "Quarterly planning starts in the first week of January.",
    "The on-call rotation changes every Monday at 09:00.",
    "Eve reviews all database schema migrations.",
    "Our logo uses the colour teal.",
    "The data warehouse refreshes every six hours.",
    "New hires get a laptop on their first day.",
    "The VPN requires two-factor authentication.",
    "Frank is learning Japanese in the evenings.",
    "The payments team uses Stripe for card processing.",
    "Release notes are published on the engineering blog.",
    "The coffee machine on floor three is broken.",
    "Grace leads the design system working group.",
    "Error budgets are reviewed at the monthly SRE meeting.",
    "The Android build takes about twelve minutes.",
    "The customer churn dashboard lives in Looker.",
]


def seed(mem: Memory) -> dict[str, str]:
    """Store every seeded memory; their ids by text."""
    texts = [t for cluster in DUPLICATES for t in cluster] + [t for pair in CONTRADICTIONS for t in pair] + DISTRACTORS
    return {t: mem.add(t, namespace=NS).id for t in texts}


def duplicate_pairs(ids: dict[str, str]) -> set[frozenset[str]]:
    return {frozenset((ids[a], ids[b])) for cluster in DUPLICATES for a, b in combinations(cluster, 2)}


def contradiction_pairs(ids: dict[str, str]) -> set[frozenset[str]]:
    return {frozenset((ids[a], ids[b])) for a, b in CONTRADICTIONS}


def precision_recall(found: set[frozenset[str]], truth: set[frozenset[str]]) -> tuple[float, float]:
    hit = len(found & truth)
    return (hit / len(found) if found else 1.0), (hit / len(truth) if truth else 1.0)
