"""MCP tools of the curator family: ``memory_detect_contradiction``, ``memory_auto_tag`` and
``memory_expand_query`` (names from the ai-memory server, seeds 000/001).

Each is one ``service.curator`` call; the methods are attached to :class:`MemoryTools` so
they are registered, filtered by profile and guarded exactly like every other tool.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from memmesh.interfaces.mcp.tools import MemoryTools, tool

OptionalId = Annotated[str | None, Field(description="A stored memory's id (give this or content).")]


@tool("curator", "Detect contradictions", read_only=True, idempotent=True)
def memory_detect_contradiction(
    self: MemoryTools,
    id: OptionalId = None,
    content: Annotated[str | None, Field(description="A text to check before storing it (give this or id).")] = None,
    namespace: Annotated[str | None, Field(description="Where to look when checking content (default 'default').")] = None,
    top_k: Annotated[int, Field(description="At most this many contradicting memories.")] = 10,
) -> Any:
    """Find memories that contradict a stored memory or a statement, by the rules the curator
    links contradicts with: same subject, but one negates the other, names other numbers or
    dates (e.g. "limit is 100" vs "limit is 500") or takes the opposite stance; a newer value
    said as a change is an update, not a contradiction. Reads only; each hit says why and
    whether a contradicts link exists already. Use it to surface drift between agents or
    nodes before trusting a fact."""
    return self.service.curator.detect_contradiction(memory_id=id, content=content, namespace=namespace, top_k=top_k, principal=self.who())


@tool("curator", "Suggest or add tags", idempotent=True)
def memory_auto_tag(
    self: MemoryTools,
    id: Annotated[str, Field(description="The memory to tag.")],
    apply: Annotated[bool, Field(description="Add the suggested tags to the memory (default: only suggest).")] = False,
    max_tags: Annotated[int | None, Field(description="At most this many new tags (1-32; default from [curator] max_auto_tags).")] = None,
) -> Any:
    """Tags for a memory from its own most telling words (weighed against the other memories
    of its namespace; no LLM). With apply=true they are added, keeping its existing tags."""
    return self.service.curator.auto_tag(id, apply=apply, max_tags=max_tags, principal=self.who())


@tool("curator", "Expand a query", read_only=True, idempotent=True)
def memory_expand_query(
    self: MemoryTools,
    query: Annotated[str, Field(description="The query to widen.")],
    namespace: Annotated[str | None, Field(description="Draw words only from this namespace and below.")] = None,
    max_terms: Annotated[int, Field(description="At most this many added words (1-50).")] = 8,
) -> Any:
    """More words for a query, from this store's own vocabulary: the tags and telling words
    of the memories that answer it best. Use the expanded_query with memory_search when a
    keyword search finds too little. Reads only (not counted as an access)."""
    return self.service.curator.expand_query(query, namespace=namespace, max_terms=max_terms, principal=self.who())


for _fn in (memory_detect_contradiction, memory_auto_tag, memory_expand_query):
    setattr(MemoryTools, _fn.__name__, _fn)
