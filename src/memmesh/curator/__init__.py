"""The curator (issue 16): reversible housekeeping runs over the store, on demand or on a
schedule in ``serve``, and the text tools behind ``memory_detect_contradiction``,
``memory_auto_tag`` and ``memory_expand_query``. See docs/curator.md."""

from memmesh.curator.core import (
    CURATOR_PRINCIPAL,
    NO_LLM,
    AutoTagReport,
    ContradictionReport,
    Curator,
    CuratorPolicy,
    CuratorReport,
    CuratorRun,
    QueryExpansion,
    RollbackReport,
)

# The curator's public names: the one list (core.py defines them but does not repeat it).
__all__ = [
    "CURATOR_PRINCIPAL",
    "NO_LLM",
    "AutoTagReport",
    "ContradictionReport",
    "Curator",
    "CuratorPolicy",
    "CuratorReport",
    "CuratorRun",
    "QueryExpansion",
    "RollbackReport",
]
