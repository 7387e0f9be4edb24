"""Words in scripts written without spaces (Chinese, Japanese, Thai, …) for keyword search.

FTS5's ``unicode61`` tokenizer splits on spaces and punctuation, so a Japanese sentence is
one long token and ``東京`` cannot find "東京オフィスのWi-Fiパスワードは毎月変わります". No
dictionary segmenter ships offline for every such language, so memmesh indexes what a
segmenter would agree on anyway: every character (unigram) and every pair of adjacent
characters (bigram) of each unsegmented run. A query run becomes its bigrams, OR-ed like
the words of an English query (``東京`` does not match ``京東``; "東京のパスワード" ranks
the memories sharing most of its pairs first); a one-character query matches the
unigram. This is the CJK bigram indexing of Lucene's ``CJKAnalyzer`` and Elasticsearch's
``cjk_bigram`` filter.

Pure functions: the SQLite store registers :func:`unigrams` and :func:`bigrams` as SQL
functions that its triggers call, and asks :func:`match_expression` for the query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Han (CJK unified ideographs, extensions, compatibility), Hiragana, Katakana (with the
# half-width forms and the prolonged sound mark), Hangul, Thai, Lao, Khmer, Myanmar.
_RANGES = (
    "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
    "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
    "\u0e00-\u0e7f\u0e80-\u0eff\u1780-\u17ff\u1000-\u109f"
    "\U00020000-\U0002ffff"
)
RUN = re.compile(f"[{_RANGES}]+")


def runs(text: str | None) -> list[str]:
    """The maximal runs of unsegmented-script characters in ``text``."""
    return RUN.findall(text) if text else []


_WORD = re.compile(r"\w+", re.UNICODE)


def unigrams(*texts: str | None) -> str:
    """Every unsegmented-script character of the texts, space-separated ('' when none),
    then the other pieces of words glued to such a run (``Wi`` in ``東京オフィスのWi-Fi``,
    which the word index only holds as part of the token ``東京オフィスのwi``)."""
    chars = [ch for text in texts for run in runs(text) for ch in run]
    if not chars:
        return ""
    glued = [
        piece.lower() for text in texts for word in _WORD.findall(text or "") if RUN.search(word) for piece in RUN.split(word) if piece
    ]
    return " ".join(chars + glued)


def bigrams(*texts: str | None) -> str:
    """Every pair of adjacent characters within each run, space-separated, in text order.

    Runs are separated by a gap token (``x``) so that the text stays a faithful sequence
    of pairs (FTS5 phrase and NEAR queries over it never span two runs).
    """
    parts: list[str] = []
    for text in texts:
        for run in runs(text):
            if parts:
                parts.append("x")
            parts += [run[i : i + 2] for i in range(len(run) - 1)]
    return " ".join(parts)


def match_expression(terms: Sequence[str]) -> str | None:
    """An FTS5 expression over the ``uni``/``bi`` columns for the query terms, OR-ed: each
    unsegmented run as a character or its bigrams, other terms as glued pieces."""
    return " OR ".join(match_clauses(terms)) or None


def match_clauses(terms: Sequence[str]) -> list[str]:
    """The phrases of :func:`match_expression`, each once (scoped BM25 scores them one by one)."""
    clauses = []
    for term in terms:
        if not RUN.search(term):  # may be glued to a run in the text, see unigrams()
            clauses.append('uni : "' + term.replace('"', '""') + '"')
            continue
        for run in runs(term):
            if len(run) == 1:
                clauses.append(f'uni : "{run}"')
            else:
                clauses += [f'bi : "{run[i : i + 2]}"' for i in range(len(run) - 1)]
    return list(dict.fromkeys(clauses))


MAX_LEXEME_BYTES = 2047
"""PostgreSQL's limit for one text-search word."""


def tsquery_lexemes(terms: Sequence[str]) -> list[str]:
    """The PostgreSQL twin of :func:`match_expression`: the ``memories.cjk`` lexemes (schema
    16, ``memmesh_ngrams``) a query's terms look up: ``u`` + a one-character run or a glued
    piece, ``b`` + each bigram of a longer run."""
    lexemes: list[str] = []
    for term in terms:
        if not RUN.search(term):
            lexemes.append("u" + term.lower())
            continue
        for run in runs(term):
            lexemes += ["u" + run] if len(run) == 1 else ["b" + run[i : i + 2] for i in range(len(run) - 1)]
    # PostgreSQL refuses a tsquery word of 2 KB or more (and never indexes one): leave it out.
    return [lexeme for lexeme in dict.fromkeys(lexemes) if len(lexeme.encode()) < MAX_LEXEME_BYTES]


def tsquery_text(terms: Sequence[str]) -> str | None:
    """A ``tsquery`` literal ORing :func:`tsquery_lexemes` (each quoted, so any character is
    literal), or None when there is nothing to look up."""
    quoted = ["'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'" for lexeme in tsquery_lexemes(terms)]
    return " | ".join(quoted) or None
