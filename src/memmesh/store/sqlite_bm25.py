"""BM25 with the word statistics of the memories a request may see (SQLite).

Why: FTS5's ``bm25()`` weighs each query word by its IDF over the *whole* index (the number
of rows N and of rows holding the word, n). A key scoped to ``b/*`` could read from its own
scores (``explain``, or just the order of its own hits) how many memories of *other*
namespaces hold a word: "is hunter2 stored somewhere?" (the same weakness as
Elasticsearch's document-level security). So when a filter limits namespaces (a scoped key,
or a namespace asked for), each word's IDF is recomputed from the memories in those
namespaces only, and the ranking itself is done on those scores.

How: for one phrase t, FTS5 scores ``bm25_t(D) = −IDF_g(t) · TF_t(D)`` with
``IDF(N, n) = max(1e-6, ln((N − n + 0.5) / (n + 0.5)))`` (sqlite's ``fts5_aux.c``), and a
query of OR-ed phrases sums its phrases. Each phrase is therefore matched alone and its
``bm25`` multiplied by ``IDF_v(t) / IDF_g(t)``, with N_v and n_v(t) counted over the visible
memories: ``IDF_v(t) · TF_t(D)``, summed over the phrases. The visible set is every memory
under the filter's namespace and scopes (expired ones included; the other filters — tags,
tier, time — choose among the visible memories and do not change the statistics).

Residual: TF's length normalisation still divides by the average memory length over the
whole index (an aggregate of how much text the store holds, not which words it holds).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from typing import Any

from memmesh.recall import segment
from memmesh.store.base import Filter
from memmesh.store.sql.dialect import SQLITE
from memmesh.store.sql.filters import filter_sql

RANKS = {"memories_fts": "bm25(memories_fts, 2.0, 1.0, 1.5)", "memories_cjk": "bm25(memories_cjk)"}
"""The rank function of each full-text index, as the unscoped queries call it."""

MIN_IDF = 1e-6
"""FTS5's floor for a word in more than half the rows (its IDF would be ≤ 0)."""


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


def ranked_in_scope(conn: sqlite3.Connection, terms: Sequence[str], flt: Filter, limit: int, grams: bool) -> list[tuple[Any, ...]]:
    """(rowid, rank) of the best ``limit`` memories passing ``flt`` that a term matches, best
    first, ranked by BM25 with the visible memories' statistics (rank = −score, as
    ``bm25()``). ``grams``: the n-gram index of unsegmented scripts takes part.

    The counts and the ranking read one snapshot: a write landing between them would make
    ``bm25()``'s store-wide IDF differ from the one divided out, and the other namespace's
    words would show through again."""
    if conn.in_transaction:  # the caller's own transaction, maybe with writes of its own
        return _ranked(conn, terms, flt, limit, grams, own_writes=True)
    conn.execute("BEGIN")
    try:
        return _ranked(conn, terms, flt, limit, grams, own_writes=False)
    finally:
        conn.execute("COMMIT")


def _ranked(
    conn: sqlite3.Connection, terms: Sequence[str], flt: Filter, limit: int, grams: bool, *, own_writes: bool
) -> list[tuple[Any, ...]]:
    phrases = [("memories_fts", phrase_expression(term)) for term in terms]
    if grams:
        phrases += [("memories_cjk", clause) for clause in segment.match_clauses(terms)]
    scope_where, scope_params = filter_sql(Filter(now=flt.now, namespace=flt.namespace, scopes=flt.scopes, include_expired=True), SQLITE)
    where, params = filter_sql(flt, SQLITE)
    visible: dict[str, int] = {}
    parts: list[str] = []
    arguments: list[Any] = []
    for index, phrase in phrases:
        if index not in visible:
            visible[index] = _visible_rows(conn, index, scope_where, scope_params)
        factor = _idf_ratio(conn, index, phrase, visible[index], scope_where, scope_params, own_writes)
        if factor is None:
            continue
        parts.append(
            f"p{len(parts)} AS MATERIALIZED (SELECT {index}.rowid AS rowid, {RANKS[index]} * ? AS rank "
            f"FROM {_joined(index, flt)} WHERE {index} MATCH ? AND {where})"
        )
        arguments += [factor, phrase, *params]
    if not parts:
        return []
    # Each phrase in its own materialised CTE: flattened into the sum, bm25() would lose its MATCH.
    union = " UNION ALL ".join(f"SELECT rowid, rank FROM p{i}" for i in range(len(parts)))
    return conn.execute(
        f"WITH {', '.join(parts)} SELECT rowid, sum(rank) AS rank FROM ({union}) GROUP BY rowid ORDER BY rank, rowid LIMIT ?",
        [*arguments, limit],
    ).fetchall()


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


def _idf_ratio(
    conn: sqlite3.Connection, index: str, phrase: str, visible: int, scope_where: str, scope_params: list[Any], own_writes: bool
) -> float | None:
    """IDF_v / IDF_g of one phrase: what turns its store-wide ``bm25`` into the visible one.
    None when no visible memory holds it (it then adds nothing to any visible score)."""
    seen = int(
        conn.execute(
            f"SELECT count(*) FROM {_from_matches(index)} WHERE {index} MATCH ? AND {scope_where}",
            [phrase, *scope_params],
        ).fetchone()[0]
    )
    if not seen:
        return None
    hits = int(conn.execute(f"SELECT count(*) FROM {index} WHERE {index} MATCH ?", (phrase,)).fetchone()[0])
    return idf(visible, seen) / idf(_index_rows(conn, index, own_writes), hits)


def _visible_rows(conn: sqlite3.Connection, index: str, scope_where: str, scope_params: list[Any]) -> int:
    """N_v: the visible memories the index holds (every memory is in the word index; the
    n-gram index holds only those with text in unsegmented scripts)."""
    if index == "memories_fts":
        sql = f"SELECT count(*) FROM memories m WHERE {scope_where}"
    else:
        sql = f"SELECT count(*) FROM memories m WHERE {scope_where} AND EXISTS (SELECT 1 FROM {index}_docsize d WHERE d.id = m.rowid)"
    return int(conn.execute(sql, scope_params).fetchone()[0])


def _index_rows(conn: sqlite3.Connection, index: str, own_writes: bool) -> int:
    """N_g, the row count ``bm25()`` itself uses: the first varint of the index's averages
    record. A connection inside its own write transaction may hold rows not yet in that
    record (FTS5 writes it at commit): count them then."""
    if own_writes:
        return int(conn.execute(f"SELECT count(*) FROM {index}_docsize").fetchone()[0])
    row = conn.execute(f"SELECT block FROM {index}_data WHERE id = 1").fetchone()
    return _varint(bytes(row[0])) if row is not None and row[0] else 0


def _varint(data: bytes) -> int:
    """SQLite's variable-length integer at the start of ``data`` (big-endian 7-bit groups; a
    ninth byte carries 8 bits)."""
    value = 0
    for position, byte in enumerate(data[:9]):
        if position == 8:
            return (value << 8) | byte
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value
    return value
