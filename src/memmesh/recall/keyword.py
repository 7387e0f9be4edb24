"""Turning a free-text query into keyword terms for BM25 (pure)."""

from __future__ import annotations

import re

TOKEN = re.compile(r"\w+", re.UNICODE)

# A standard English stop list (the NLTK/Lucene core): words that carry no topic and only
# add noise to BM25 when a question is searched word by word.
_STOP_TEXT = """
    a about above after again against all am an and any are aren't as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me more
    most my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves s t d ll m o re ve y done also ever yet
"""
STOPWORDS = frozenset(_STOP_TEXT.split())


def query_terms(query: str, *, max_terms: int = 64) -> list[str]:
    """Lower-cased word tokens without stopwords (all tokens if every one is a stopword).

    De-duplicated in order; capped so a pasted paragraph cannot build a huge FTS query.
    """
    tokens = [t.lower() for t in TOKEN.findall(query)]
    kept = [t for t in tokens if t not in STOPWORDS] or tokens
    return list(dict.fromkeys(kept))[:max_terms]
