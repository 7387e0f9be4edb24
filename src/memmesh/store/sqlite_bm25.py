"""BM25 with the word statistics of the memories a request may see (SQLite).

Why: FTS5's ``bm25()`` weighs each query word by its IDF over the *whole* index (the number
of rows N and of rows holding the word, n). A key scoped to ``b/*`` could read from its own
scores (``explain``, or just the order of its own hits) how many memories of *other*
namespaces hold a word: "is hunter2 stored somewhere?" (the same weakness as
Elasticsearch's document-level security). So when a filter limits namespaces (a scoped key,
or a namespace asked for), BM25's statistics (N, each word's n, the average length) are
counted over the memories in those namespaces only, and the ranking itself is done on those
scores: they are the scores of a store holding only those memories.

How: for one phrase t, FTS5 scores ``bm25_t(D) = −IDF(t) · T`` (sqlite's ``fts5_aux.c``)
with ``IDF(N, n) = max(1e-6, ln((N − n + 0.5) / (n + 0.5)))`` over N rows, n of them holding
t, and ``T = F·(k1 + 1) / (F + K)``, ``K = k1·(1 − b + b·|D| / avgdl)``: F the weighted count
of t in D, |D| its words, avgdl the average of |D|; a query of OR-ed phrases sums them. So
each phrase is matched alone, F taken back out of its ``bm25`` with the store-wide IDF and K
(``F = T·K_g / (k1 + 1 − T)``, rounded to the multiple of ½ it is: the field weights are 2, 1
and 1.5, so not one bit of the store-wide numbers stays in it), and scored again with N, n
and avgdl counted over the visible memories only: ``IDF_v · F·(k1 + 1) / (F + K_v)``,
summed over the phrases. |D| and the visible total of words come from the index's own
``_docsize`` table (:func:`doc_tokens`). The visible set is every memory under the filter's namespace and scopes (expired ones
included; the other filters — tags, tier, time — choose among the visible memories and do
not change the statistics). The visible totals are cached per change number (``meta.seq``),
as summing them reads every visible memory's sizes.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memmesh.recall import segment
from memmesh.store.base import Filter
from memmesh.store.sql.dialect import SQLITE
from memmesh.store.sql.filters import filter_sql

RANKS = {"memories_fts": "bm25(memories_fts, 2.0, 1.0, 1.5)", "memories_cjk": "bm25(memories_cjk)"}
"""The rank function of each full-text index, as the unscoped queries call it. Every field
weight must stay a multiple of ½: the weighted count F is recovered by rounding to one."""

MIN_IDF = 1e-6
"""FTS5's floor for a word in more than half the rows (its IDF would be ≤ 0)."""

K1 = 1.2
B = 0.75
"""FTS5's BM25 constants (compiled into ``fts5_aux.c``)."""

CACHED_TOTALS = 256
"""Visible totals kept per store (scopes × change numbers) before the cache starts afresh."""


@dataclass(frozen=True)
class Totals:
    """Rows of a full-text index and the words in them (over a set of memories)."""

    rows: int
    words: int

    def length_factor(self) -> float:
        """``k1·b / avgdl``: K's growth per word of a memory."""
        return K1 * B * self.rows / self.words if self.words else 0.0


TotalsCache = dict[tuple[Any, ...], Totals]


def limits_namespaces(flt: Filter) -> bool:
    """Whether the filter keeps the request to some namespaces: then its scores must come from
    their statistics only. A scoped key asking for a namespace arrives as that namespace alone."""
    return bool(flt.namespace) or flt.scopes is not None


def phrase_expression(term: str) -> str:
    """One query term as an FTS5 phrase (quoted, so any token is literal)."""
    return '"' + term.replace('"', '""') + '"'


def idf(rows: int, hits: int) -> float:
    """FTS5's BM25 IDF of a phrase found in ``hits`` of ``rows`` rows."""
    return max(MIN_IDF, math.log((rows - hits + 0.5) / (hits + 0.5))) if rows > 0 else MIN_IDF


def ranked_in_scope(
    conn: sqlite3.Connection, terms: Sequence[str], flt: Filter, limit: int, grams: bool, cache: TotalsCache
) -> list[tuple[Any, ...]]:
    """(rowid, rank) of the best ``limit`` memories passing ``flt`` that a term matches, best
    first, ranked by BM25 with the visible memories' statistics (rank = −score, as
    ``bm25()``). ``grams``: the n-gram index of unsegmented scripts takes part.

    The counts and the ranking read one snapshot: a write landing between them would make
    ``bm25()``'s store-wide statistics differ from the ones taken out, and the other
    namespaces' words would show through again."""
    if conn.in_transaction:  # the caller's own transaction, maybe with writes of its own
        return _ranked(conn, terms, flt, limit, grams, None)
    conn.execute("BEGIN")
    try:
        return _ranked(conn, terms, flt, limit, grams, cache)
    finally:
        conn.execute("COMMIT")


def _ranked(
    conn: sqlite3.Connection, terms: Sequence[str], flt: Filter, limit: int, grams: bool, cache: TotalsCache | None
) -> list[tuple[Any, ...]]:
    """:func:`ranked_in_scope` in its snapshot; ``cache`` None: the connection has writes of
    its own not yet in the averages record, and the totals are counted, not cached."""
    phrases = [("memories_fts", phrase_expression(term)) for term in terms]
    if grams:
        phrases += [("memories_cjk", clause) for clause in segment.match_clauses(terms)]
    scope = filter_sql(Filter(now=flt.now, namespace=flt.namespace, scopes=flt.scopes, include_expired=True), SQLITE)
    where, params = filter_sql(flt, SQLITE)
    totals: dict[str, tuple[Totals, Totals]] = {}
    ctes: list[str] = []
    scores: list[str] = []
    cte_args: list[Any] = []
    score_args: list[Any] = []
    for index, phrase in phrases:
        seen = _visible_hits(conn, index, phrase, *scope)
        if not seen:
            continue  # adds nothing to any visible memory
        if index not in totals:
            totals[index] = (_index_totals(conn, index, cache is None), _visible_totals(conn, index, *scope, cache))
        store, visible = totals[index]
        hits = int(conn.execute(f"SELECT count(*) FROM {index} WHERE {index} MATCH ?", (phrase,)).fetchone()[0])
        cte, score = _phrase_sql(index, f"p{len(ctes)}", flt, where)
        ctes.append(cte)
        scores.append(score)
        cte_args += [-1.0 / idf(store.rows, hits), phrase, *params]
        base = K1 * (1 - B)
        score_args += [idf(visible.rows, seen) * (K1 + 1), base, visible.length_factor(), base, store.length_factor()]
    if not ctes:
        return []
    # Each phrase in its own materialised CTE: flattened into the sum, bm25() would lose its MATCH.
    return conn.execute(
        f"WITH {', '.join(ctes)} SELECT rowid, sum(rank) AS rank FROM ({' UNION ALL '.join(scores)}) "
        "GROUP BY rowid ORDER BY rank, rowid LIMIT ?",
        [*cte_args, *score_args, limit],
    ).fetchall()


def _phrase_sql(index: str, name: str, flt: Filter, where: str) -> tuple[str, str]:
    """One phrase's CTE (its visible matches passing the filter: T = −bm25 / IDF_g, and
    |D|; parameters −1/IDF_g, the phrase, the filter's) and its score query (parameters
    IDF_v·(k1 + 1), k1·(1 − b), k1·b / avgdl_v, k1·(1 − b), k1·b / avgdl_g).

    F = T·K_g / (k1 + 1 − T) is rounded to the half it is (field weights 2, 1, 1.5): exact,
    so no rounding error of the store-wide numbers is left in it; the score is
    IDF_v·F·(k1 + 1) / (F + K_v), negated as ``bm25()``."""
    cte = (
        f"{name} AS MATERIALIZED (SELECT {index}.rowid AS rowid, {RANKS[index]} * ? AS t, memmesh_doc_tokens(d.sz) AS size "
        f"FROM {_joined(index, flt)} CROSS JOIN {index}_docsize d ON d.id = {index}.rowid WHERE {index} MATCH ? AND {where})"
    )
    score = (
        f"SELECT rowid, -? * f / (f + ? + ? * size) AS rank FROM "
        f"(SELECT rowid, round(2 * t * (? + ? * size) / ({K1 + 1} - t)) / 2 AS f, size FROM {name})"
    )
    return cte, score


def _joined(index: str, flt: Filter) -> str:
    """The index joined to its memories: known ids drive from ``memories`` (each looked up by
    rowid in the index); otherwise the index's matches drive (:func:`_from_matches`)."""
    if flt.ids is not None:
        return f"memories m CROSS JOIN {index} ON {index}.rowid = m.rowid"
    return _from_matches(index)


def _from_matches(index: str) -> str:
    """The index's matches, each joined to its memory. CROSS JOIN keeps that order: left to
    itself SQLite may walk a large namespace and probe the index once per memory (2 s instead
    of 0.3 ms for a word in 600 of 100k memories)."""
    return f"{index} CROSS JOIN memories m ON m.rowid = {index}.rowid"


def _visible_hits(conn: sqlite3.Connection, index: str, phrase: str, scope_where: str, scope_params: list[Any]) -> int:
    """n_v: the visible memories the phrase matches."""
    sql = f"SELECT count(*) FROM {_from_matches(index)} WHERE {index} MATCH ? AND {scope_where}"
    return int(conn.execute(sql, [phrase, *scope_params]).fetchone()[0])


def _visible_totals(conn: sqlite3.Connection, index: str, scope_where: str, scope_params: list[Any], cache: TotalsCache | None) -> Totals:
    """N_v and the words of the visible memories in the index (every memory is in the word
    index; the n-gram index holds only those with text in unsegmented scripts). Summing the
    sizes reads each visible memory's row of ``_docsize``: cached per change number."""
    key = None
    if cache is not None:
        key = (index, scope_where, *scope_params, conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()[0])
        cached = cache.get(key)  # one look-up: another thread may clear the cache meanwhile
        if cached is not None:
            return cached
    row = conn.execute(
        f"SELECT count(*), coalesce(sum(memmesh_doc_tokens(d.sz)), 0) FROM memories m CROSS JOIN {index}_docsize d "
        f"ON d.id = m.rowid WHERE {scope_where}",
        scope_params,
    ).fetchone()
    found = Totals(int(row[0]), int(row[1]))
    if cache is not None and key is not None:
        if len(cache) >= CACHED_TOTALS:
            cache.clear()
        cache[key] = found
    return found


def _index_totals(conn: sqlite3.Connection, index: str, own_writes: bool) -> Totals:
    """N and the words of the whole index as ``bm25()`` itself counts them: its averages
    record (rows, then words per column). A connection inside its own write transaction may
    hold rows not yet in that record (FTS5 writes it at commit): sum ``_docsize`` then."""
    if own_writes:
        row = conn.execute(f"SELECT count(*), coalesce(sum(memmesh_doc_tokens(sz)), 0) FROM {index}_docsize").fetchone()
        return Totals(int(row[0]), int(row[1]))
    found = conn.execute(f"SELECT block FROM {index}_data WHERE id = 1").fetchone()
    numbers = _varints(bytes(found[0])) if found is not None and found[0] else [0]
    return Totals(numbers[0], sum(numbers[1:]))


def doc_tokens(sizes: bytes | None) -> int:
    """The words of one memory in a full-text index: the sum of its ``_docsize`` row (one
    varint per column), as FTS5's ``xColumnSize(-1)``. SQL function ``memmesh_doc_tokens``."""
    return sum(_varints(sizes)) if sizes else 0


def _varints(data: bytes) -> list[int]:
    """The SQLite variable-length integers in ``data`` (big-endian 7-bit groups; a ninth
    byte carries 8 bits)."""
    numbers: list[int] = []
    value = length = 0
    for byte in data:
        length += 1
        if length == 9:
            numbers.append((value << 8) | byte)
            value = length = 0
            continue
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            numbers.append(value)
            value = length = 0
    return numbers
