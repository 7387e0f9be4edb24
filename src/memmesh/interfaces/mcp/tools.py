"""The MCP tools: one method per tool, each one service call and a rendering.

A method's typed parameters become the tool's JSON schema (descriptions from
``Annotated[..., Field(description=...)]``), its docstring the description a model reads,
and :func:`tool` attaches the family and the read-only / destructive / idempotent hints.
No rule lives here: validation, scope and limits are the service's, so a tool error says
exactly what the CLI or HTTP would.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field

from memmesh.errors import InvalidInputError
from memmesh.interfaces.mcp.catalog import FAMILIES, FAMILY_DESCRIPTIONS
from memmesh.interfaces.mcp.render import memory_view
from memmesh.model import Kind, Principal, Relation, Tier
from memmesh.service import Service
from memmesh.transfer import ImportOptions, read_import_file
from memmesh.waits import Abandoned

F = TypeVar("F", bound=Callable[..., Any])
MAX_INLINE_EXPORT_BYTES = 1_000_000

current_principal: ContextVar[Principal | None] = ContextVar("memmesh_mcp_principal", default=None)
"""Set per request by the HTTP transport; stdio servers use their fixed principal."""
current_abandoned: ContextVar[Abandoned | None] = ContextVar("memmesh_mcp_abandoned", default=None)
"""Set per call of a tool marked ``waits`` (server._guarded): set when the client cancels the
request (``notifications/cancelled``), so the tool's wait ends and frees its long-poll slot."""


@dataclass(frozen=True)
class ToolInfo:
    family: str
    title: str
    read_only: bool
    destructive: bool
    idempotent: bool
    waits: bool = False


def tool(
    family: str, title: str, *, read_only: bool = False, destructive: bool = False, idempotent: bool = False, waits: bool = False
) -> Callable[[F], F]:
    """Mark a method as an MCP tool of ``family`` with its behaviour hints. ``waits``: it may
    long-poll, and passes :data:`current_abandoned` to the service so a cancel ends the wait."""

    def mark(fn: F) -> F:
        fn.__mcp_tool__ = ToolInfo(family, title, read_only, destructive, idempotent, waits)  # type: ignore[attr-defined]
        return fn

    return mark


# -- parameter types (their descriptions are what a model reads) ----------------------------

MemoryId = Annotated[str, Field(description="The memory's id, as returned by memory_store, memory_recall or memory_list.")]
NsFilter = Annotated[str | None, Field(description="Only this namespace and everything below it, e.g. 'team/project'.")]
Namespace = Annotated[str, Field(description="'/'-separated namespace to write into, e.g. 'user/prefs' or 'team/project'.")]
TagsFilter = Annotated[list[str] | None, Field(description="Only memories carrying all of these tags.")]
TierFilter = Annotated[Tier | None, Field(description="Only this tier: short (hours), mid (a week), long (kept).")]
KindFilter = Annotated[Kind | None, Field(description="Only this kind of memory.")]
AgentFilter = Annotated[str | None, Field(description="Only memories written by this agent id.")]
When = Annotated[str | None, Field(description="RFC 3339 time, e.g. 2026-01-31T12:00:00Z.")]
Since = Annotated[str | None, Field(description="Only memories created at or after this RFC 3339 time.")]
Until = Annotated[str | None, Field(description="Only memories created before this RFC 3339 time.")]
AsOf = Annotated[str | None, Field(description="World time to evaluate validity at (RFC 3339); default now.")]
Relations = Annotated[list[Relation] | None, Field(description="Only links of these relations (default: all).")]
Direction = Annotated[Literal["out", "in", "both"], Field(description="Follow links out of, into, or both ways.")]


def _given(**values: Any) -> dict[str, Any]:
    """The arguments a caller actually gave (None = not given), so service defaults apply."""
    return {k: v for k, v in values.items() if v is not None}


class MemoryTools:
    """Every memmesh MCP tool, bound to one service and a default caller."""

    def __init__(self, service: Service, principal: Principal | None, *, allow_paths: bool, enabled: list[str]) -> None:
        self.service = service
        self.principal = principal
        self.allow_paths = allow_paths
        self.enabled = enabled

    def who(self) -> Principal:
        """The caller of this request: the HTTP request's key, else the stdio server's own.

        Never defaulted to an admin here: with neither, the service refuses the call."""
        return current_principal.get() or self.principal  # type: ignore[return-value]

    # -- core ----------------------------------------------------------------------------------

    @tool("core", "Store a memory", idempotent=True)
    def memory_store(
        self,
        content: Annotated[
            str | None, Field(description="The text to remember, self-contained (read later without this chat); or give messages.")
        ] = None,
        namespace: Namespace = "default",
        title: Annotated[str | None, Field(description="Optional name, unique within the namespace (see on_conflict).")] = None,
        tier: Annotated[Tier | None, Field(description="short: hours; mid (default): a week, more if used; long: kept.")] = None,
        kind: Annotated[Kind, Field(description="fact, episode, preference, procedure, summary or message.")] = Kind.fact,
        tags: Annotated[list[str] | None, Field(description="Keywords to filter by later (lower-cased).")] = None,
        priority: Annotated[int | None, Field(description="Importance 1-10 (default 5); raises the recall rank.")] = None,
        confidence: Annotated[float | None, Field(description="How sure you are, 0-1 (default 1).")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(description="Any JSON object (≤ 16 KiB), e.g. a source URL.")] = None,
        ttl_seconds: Annotated[int | None, Field(description="Expire after this many seconds (not the tier's TTL).")] = None,
        valid_from: Annotated[str | None, Field(description="World time the fact started to hold (RFC 3339).")] = None,
        valid_to: Annotated[str | None, Field(description="World time the fact stopped holding (RFC 3339).")] = None,
        on_conflict: Annotated[
            Literal["error", "update", "version"],
            Field(description="Title already used in the namespace: error, update it, or keep both (new supersedes)."),
        ] = "error",
        id: Annotated[str | None, Field(description="Your own id, making retries idempotent.")] = None,
        messages: Annotated[
            list[dict[str, Any]] | None,
            Field(
                description='Instead of content: a conversation to remember, [{"role": "user", "content": "...", "name": "Ana"}, ...]. '
                "The turns are stored at once; facts are extracted from them in the background."
            ),
        ] = None,
        session_id: Annotated[str | None, Field(description="With messages: the session to append them to (default: a new one).")] = None,
        infer: Annotated[bool, Field(description="With messages: extract facts (false: store the turns only).")] = True,
        links: Annotated[
            list[dict[str, Any]] | None,
            Field(
                description='With content: links from the new memory, [{"target_id": "<memory id>", "relation": "related_to"}]; '
                "stored with it or, if a target is missing, nothing is stored."
            ),
        ] = None,
    ) -> Any:
        """Save something worth remembering across sessions: a fact, preference, decision or procedure.

        Use it when the user tells you something lasting or you learn something you will need
        later. Identical content in the same namespace is stored once (the existing memory comes
        back with ``existed: true``). Returns the stored memory: id, namespace, tier, expires_at,
        existed, … and, with ``links``, the links stored with it.
        With ``messages`` instead of ``content``, stores the conversation's turns and returns
        them with a ``job_id`` for the fact extraction running in the background (its status:
        memory_extraction_status).
        """
        if messages is not None:
            if content is not None:
                raise InvalidInputError("give content or messages, not both")
            if links is not None:
                raise InvalidInputError("links go with content (one memory), not with messages")
            result = self.service.extraction.remember(
                messages,
                session_id=session_id,
                namespace=None if namespace == "default" else namespace,
                infer=infer,
                background=True,
                principal=self.who(),
            )
            return result.model_dump(mode="json")
        if content is None:
            raise InvalidInputError('give content (the text to remember) or messages ([{"role": ..., "content": ...}])')
        if session_id is not None:
            raise InvalidInputError("session_id goes with messages; to store one memory give content without it")
        memory, made, created = self.service.add_linked_outcome(
            _given(
                content=content,
                namespace=namespace,
                title=title,
                tier=tier,
                kind=kind,
                tags=tags,
                priority=priority,
                confidence=confidence,
                metadata=metadata,
                ttl_seconds=ttl_seconds,
                valid_from=valid_from,
                valid_to=valid_to,
                on_conflict=on_conflict,
                id=id,
                source="agent",
            ),
            links or [],
            principal=self.who(),
        )
        stored = memory_view(memory) | {"existed": not created}
        if links is not None:
            stored["links"] = [link.model_dump(mode="json") for link in made]
        return stored

    @tool("core", "Recall memories", idempotent=False)
    def memory_recall(
        self,
        query: Annotated[str, Field(description="What you want to know, in words or as a question.")],
        namespace: NsFilter = None,
        tags: TagsFilter = None,
        tier: TierFilter = None,
        kind: KindFilter = None,
        agent_id: AgentFilter = None,
        since: Since = None,
        until: Until = None,
        as_of: Annotated[str | None, Field(description="Only facts valid at this world time (RFC 3339).")] = None,
        top_k: Annotated[int | None, Field(description="How many hits at most (default 10).")] = None,
        budget_tokens: Annotated[int | None, Field(description="Fill the answer up to about this many tokens.")] = None,
        explain: Annotated[bool, Field(description="Include the parts of each score.")] = False,
    ) -> Any:
        """Find the memories most relevant to a question, by meaning and by keywords (hybrid).

        Use it before answering anything that may depend on what was learned earlier. Hits come
        best first with a score; long content is cut (memory_get gives the whole text). Counts
        as a use of each hit: often-recalled memories are kept longer.
        """
        result = self.service.recall(
            query,
            principal=self.who(),
            top_k=top_k,
            budget_tokens=budget_tokens,
            explain=explain,
            **_given(namespace=namespace, tags=tags, tier=tier, kind=kind, agent_id=agent_id, since=since, until=until, as_of=as_of),
        )
        return _recall_view(result)

    @tool("core", "Keyword search", read_only=True, idempotent=True)
    def memory_search(
        self,
        query: Annotated[str, Field(description="Words to look for (BM25 keyword match).")],
        namespace: NsFilter = None,
        tags: TagsFilter = None,
        tier: TierFilter = None,
        kind: KindFilter = None,
        top_k: Annotated[int | None, Field(description="How many hits at most (default 10).")] = None,
    ) -> Any:
        """Look memories up by exact words (names, ids, error codes) without counting it as a use.

        Prefer memory_recall for questions; use this to check what is stored. Returns hits with
        scores, best first.
        """
        result = self.service.search(
            query,
            top_k=top_k,
            principal=self.who(),
            **_given(namespace=namespace, tags=tags, tier=tier, kind=kind),
        )
        return _recall_view(result)

    @tool("core", "List memories", read_only=True, idempotent=True)
    def memory_list(
        self,
        namespace: NsFilter = None,
        tags: TagsFilter = None,
        tier: TierFilter = None,
        kind: KindFilter = None,
        agent_id: AgentFilter = None,
        since: Since = None,
        until: Until = None,
        limit: Annotated[int, Field(description="Page size (default 20).")] = 20,
        cursor: Annotated[str | None, Field(description="next_cursor from the previous page.")] = None,
    ) -> Any:
        """Browse memories newest first, with filters; pass next_cursor back for the next page."""
        page = self.service.list(
            limit=limit,
            cursor=cursor,
            principal=self.who(),
            **_given(namespace=namespace, tags=tags, tier=tier, kind=kind, agent_id=agent_id, since=since, until=until),
        )
        return {"items": page.items, "next_cursor": page.next_cursor}

    @tool("core", "Read a memory", idempotent=True)
    def memory_get(self, id: MemoryId) -> Any:
        """Read one memory in full (whole content, metadata, validity, version)."""
        return memory_view(self.service.get(id, principal=self.who(), touch=True), full=True)

    @tool("core", "Update a memory", idempotent=True)
    def memory_update(
        self,
        id: MemoryId,
        content: Annotated[str | None, Field(description="New text.")] = None,
        title: Annotated[str | None, Field(description="New title.")] = None,
        namespace: Annotated[str | None, Field(description="Move to this namespace.")] = None,
        tier: Annotated[Tier | None, Field(description="New tier (resets the expiry to the tier's TTL).")] = None,
        kind: Annotated[Kind | None, Field(description="New kind.")] = None,
        tags: Annotated[list[str] | None, Field(description="Replace the tags with these.")] = None,
        priority: Annotated[int | None, Field(description="New importance 1-10.")] = None,
        confidence: Annotated[float | None, Field(description="New confidence 0-1.")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(description="Replace the metadata object.")] = None,
        valid_from: When = None,
        valid_to: When = None,
    ) -> Any:
        """Correct or refine a memory; fields you leave out stay as they are. The old values
        are kept in its history (memory_history)."""
        return self.service.update(
            id,
            _given(
                content=content,
                title=title,
                namespace=namespace,
                tier=tier,
                kind=kind,
                tags=tags,
                priority=priority,
                confidence=confidence,
                metadata=metadata,
                valid_from=valid_from,
                valid_to=valid_to,
            ),
            principal=self.who(),
        )

    @tool("core", "Delete a memory", destructive=True, idempotent=False)
    def memory_delete(self, id: MemoryId) -> Any:
        """Delete one memory (and its links) when it is wrong or no longer wanted. A tombstone
        and the history remain, so memory_restore can undo it."""
        return self.service.delete(id, principal=self.who())

    @tool("core", "What this memory server can do", read_only=True, idempotent=True)
    def memory_capabilities(self) -> Any:
        """List the tool families (enabled or not), their tools, and what works right now
        (semantic recall needs a working embedding model). Restart the server with
        --profile full, or a comma list of families, to enable more."""
        return self._capabilities()

    # -- graph ---------------------------------------------------------------------------------

    @tool("graph", "Link two memories", idempotent=True)
    def memory_link(
        self,
        source_id: MemoryId,
        target_id: MemoryId,
        relation: Annotated[Relation, Field(description="How source relates to target.")] = Relation.related_to,
        valid_from: When = None,
        valid_until: When = None,
    ) -> Any:
        """Record a typed, directed relation between two memories (e.g. A supersedes B, A part_of B).
        Linking again refreshes the link. Returns the link."""
        return self.service.link(source_id, target_id, relation, valid_from=valid_from, valid_until=valid_until, principal=self.who())

    @tool("graph", "Links of a memory", read_only=True, idempotent=True)
    def memory_get_links(self, id: MemoryId) -> Any:
        """Every link from and to a memory, with relation and validity."""
        return self.service.links(id, principal=self.who())

    @tool("graph", "Graph neighbourhood", read_only=True, idempotent=True)
    def memory_kg_query(
        self,
        id: MemoryId,
        relations: Relations = None,
        depth: Annotated[int, Field(description="How many links away to go (1-6).")] = 1,
        direction: Direction = "both",
        as_of: AsOf = None,
        limit: Annotated[int, Field(description="At most this many memories.")] = 50,
    ) -> Any:
        """Memories connected to one memory within a number of links, using only links valid at
        as_of (default now): 'what do we know around X?'. Nearest first, each with its depth and
        the link that reached it."""
        result = self.service.graph.query(
            id, relations=_relations(relations), depth=depth, direction=direction, as_of=as_of, limit=limit, principal=self.who()
        )
        return {
            "root": result.root,
            "as_of": result.as_of,
            "truncated": result.truncated,
            "nodes": [
                {
                    "depth": n.depth,
                    "relation": n.via.relation if n.via else None,
                    "direction": "out" if n.via and n.via.source_id != n.memory.id else "in",
                    "memory": n.memory,
                }
                for n in result.nodes
            ],
        }

    @tool("graph", "Timeline of a memory's links", read_only=True, idempotent=True)
    def memory_kg_timeline(self, id: MemoryId, relations: Relations = None) -> Any:
        """The links of a memory (an entity or fact) in world-time order, including invalidated
        ones; 'current' tells which still hold. Use it for 'how did X change over time?'."""
        entries = self.service.graph.timeline(id, relations=_relations(relations), principal=self.who())
        return [
            {
                "at": e.at,
                "current": e.current,
                "direction": e.direction,
                "relation": e.link.relation,
                "valid_until": e.link.valid_until,
                "other": e.other,
            }
            for e in entries
        ]

    @tool("graph", "Invalidate a link", destructive=True, idempotent=True)
    def memory_kg_invalidate(
        self,
        source_id: MemoryId,
        target_id: MemoryId,
        relation: Annotated[Relation, Field(description="The relation of the link to end.")],
        at: Annotated[str | None, Field(description="When it stopped holding (RFC 3339); default now.")] = None,
    ) -> Any:
        """Mark a relation as no longer true from a time on, without deleting it: queries as of
        earlier times still see it. Returns the link with its valid_until."""
        return self.service.lifecycle.invalidate_link(source_id, target_id, relation, at=at, principal=self.who())

    @tool("graph", "Paths between memories", read_only=True, idempotent=True)
    def memory_find_paths(
        self,
        source_id: MemoryId,
        target_id: MemoryId,
        max_depth: Annotated[int, Field(description="Longest path, in links (1-6).")] = 4,
        relations: Relations = None,
        direction: Direction = "both",
        as_of: AsOf = None,
        limit: Annotated[int, Field(description="At most this many paths.")] = 5,
    ) -> Any:
        """How two memories are connected: chains of valid links between them, shortest first."""
        paths = self.service.graph.find_paths(
            source_id,
            target_id,
            max_depth=max_depth,
            relations=_relations(relations),
            direction=direction,
            as_of=as_of,
            limit=limit,
            principal=self.who(),
        )
        return [{"ids": p.ids, "relations": [lk.relation for lk in p.links]} for p in paths]

    @tool("graph", "Namespace tree", read_only=True, idempotent=True)
    def memory_get_taxonomy(self, namespace: NsFilter = None) -> Any:
        """The namespace tree with memory counts (own and whole subtree): where things are kept."""
        return self.service.survey.taxonomy(namespace=namespace, principal=self.who())

    # -- entities ------------------------------------------------------------------------------

    @tool("entities", "Register an entity", idempotent=True)
    def memory_entity_register(
        self,
        name: Annotated[str, Field(description="The entity's canonical name, e.g. 'Alice Smith'.")],
        aliases: Annotated[list[str] | None, Field(description="Other names it goes by.")] = None,
        namespace: Namespace = "default",
        description: Annotated[str | None, Field(description="What the entity is (stored as the memory's text).")] = None,
    ) -> Any:
        """Create a named entity (person, project, system …) or add aliases to a known one, so
        memory_entity_get_by_alias finds it under any of its names. Link facts to its id."""
        return self.service.entities.register(
            name, aliases=aliases or [], namespace=namespace, description=description, principal=self.who()
        )

    @tool("entities", "Find an entity by alias", read_only=True, idempotent=True)
    def memory_entity_get_by_alias(
        self,
        alias: Annotated[str, Field(description="Any name of the entity (case-insensitive).")],
        namespace: NsFilter = None,
    ) -> Any:
        """Resolve a name to the entities registered under it (with their ids and aliases)."""
        return self.service.entities.lookup(alias, namespace=namespace, principal=self.who())

    # -- lifecycle ---------------------------------------------------------------------------------

    @tool("lifecycle", "Promote to long-term", idempotent=True)
    def memory_promote(self, id: MemoryId) -> Any:
        """Keep a memory for good: tier long, no expiry. Use for facts that proved lasting."""
        return self.service.lifecycle.promote(id, principal=self.who())

    @tool("lifecycle", "Forget by filter", destructive=True)
    def memory_forget(
        self,
        namespace: NsFilter = None,
        tags: TagsFilter = None,
        tier: TierFilter = None,
        kind: KindFilter = None,
        agent_id: AgentFilter = None,
        since: Since = None,
        until: Until = None,
        dry_run: Annotated[bool, Field(description="Only report what would be deleted.")] = False,
    ) -> Any:
        """Delete every memory matching the filters (at least one filter). Run with dry_run=true
        first to see the count and ids; each deletion can be undone with memory_restore."""
        return self.service.lifecycle.forget(
            dry_run=dry_run,
            principal=self.who(),
            **_given(namespace=namespace, tags=tags, tier=tier, kind=kind, agent_id=agent_id, since=since, until=until),
        )

    @tool("lifecycle", "Consolidate memories")
    def memory_consolidate(
        self,
        ids: Annotated[list[str], Field(description="The memories to merge (2-100).")],
        content: Annotated[str, Field(description="The summary you wrote of them.")],
        title: Annotated[str | None, Field(description="Title of the summary.")] = None,
        namespace: Annotated[str | None, Field(description="Where to store it (default: the first memory's).")] = None,
        tags: Annotated[list[str] | None, Field(description="Extra tags (the sources' tags are kept).")] = None,
        keep_sources: Annotated[bool, Field(description="Keep the originals, linked as superseded.")] = False,
    ) -> Any:
        """Replace several overlapping memories with one summary you wrote (kind summary, tier long);
        the originals are deleted (restorable) or kept and marked superseded. Returns the summary."""
        return self.service.lifecycle.consolidate(
            ids, content, namespace=namespace, title=title, tags=tags, keep_sources=keep_sources, principal=self.who()
        )

    @tool("lifecycle", "History of a memory", read_only=True, idempotent=True)
    def memory_history(self, id: MemoryId) -> Any:
        """Every change of a memory, oldest first: what it was, what it became, who changed it and when
        (also for deleted memories)."""
        return self.service.history(id, principal=self.who())

    @tool("lifecycle", "Undelete a memory")
    def memory_restore(self, id: MemoryId) -> Any:
        """Bring back a deleted (or expired and archived) memory from its history, same id and
        content, with a fresh expiry. Its old links are not restored."""
        return self.service.lifecycle.restore(id, principal=self.who())

    @tool("lifecycle", "Garbage collection", destructive=True, idempotent=True)
    def memory_gc(self) -> Any:
        """Move expired memories to the archive and purge old tombstones. Returns the counts."""
        return self.service.gc(principal=self.who())

    # -- archive -------------------------------------------------------------------------------

    @tool("archive", "List the archive", read_only=True, idempotent=True)
    def memory_archive_list(
        self,
        namespace: NsFilter = None,
        limit: Annotated[int, Field(description="At most this many.")] = 20,
    ) -> Any:
        """Expired memories that gc moved to the archive, most recent first (restorable)."""
        return [
            {"archived_at": a.archived_at, "reason": a.reason, "memory": a.memory}
            for a in self.service.lifecycle.archive_list(namespace=namespace, limit=limit, principal=self.who())
        ]

    @tool("archive", "Restore from the archive")
    def memory_archive_restore(self, id: MemoryId) -> Any:
        """Move an archived memory back among the live ones, with a fresh expiry."""
        return self.service.lifecycle.archive_restore(id, principal=self.who())

    @tool("archive", "Purge the archive", destructive=True, idempotent=True)
    def memory_archive_purge(
        self,
        ids: Annotated[list[str] | None, Field(description="These archived memories.")] = None,
        namespace: NsFilter = None,
        older_than_days: Annotated[float | None, Field(description="Archived more than this many days ago.")] = None,
        everything: Annotated[bool, Field(description="The whole archive (when no other selector).")] = False,
    ) -> Any:
        """Delete archived memories for good (cannot be undone). Returns how many went."""
        purged = self.service.lifecycle.archive_purge(
            memory_ids=ids, namespace=namespace, older_than_days=older_than_days, everything=everything, principal=self.who()
        )
        return {"purged": purged}

    @tool("archive", "Archive statistics", read_only=True, idempotent=True)
    def memory_archive_stats(self, namespace: NsFilter = None) -> Any:
        """How many memories the archive holds, per namespace, and their archive dates."""
        return self.service.lifecycle.archive_stats(namespace=namespace, principal=self.who())

    # -- agents --------------------------------------------------------------------------------

    @tool("agents", "Register an agent", idempotent=True)
    def memory_agent_register(
        self,
        agent_id: Annotated[str, Field(description="Stable id, e.g. 'claude-desktop' or 'ci-bot'.")],
        display_name: Annotated[str | None, Field(description="Human-readable name.")] = None,
        role: Annotated[Literal["reader", "writer", "admin"], Field(description="What it may do.")] = "writer",
        namespaces: Annotated[list[str] | None, Field(description="Patterns it may touch: '*', 'team', 'team/*'.")] = None,
    ) -> Any:
        """Register (or update) an agent identity with a role and namespaces (admin only)."""
        return self.service.register_agent(agent_id, display_name=display_name, role=role, namespaces=namespaces, principal=self.who())

    @tool("agents", "List agents", read_only=True, idempotent=True)
    def memory_agent_list(self) -> Any:
        """Registered agents with their roles and namespaces (admin only)."""
        return self.service.agents(principal=self.who())

    # -- session -------------------------------------------------------------------------------

    @tool("session", "Start a session with context")
    def memory_session_start(
        self,
        task: Annotated[str | None, Field(description="What this session is about; recalls memories relevant to it.")] = None,
        namespace: NsFilter = None,
        recent: Annotated[int, Field(description="How many newest memories to include.")] = 10,
        relevant: Annotated[int, Field(description="How many relevant memories to include.")] = 10,
        budget_tokens: Annotated[int | None, Field(description="Cap the relevant part at about this many tokens.")] = None,
    ) -> Any:
        """Call once at the start of a conversation: returns the newest memories in the namespace
        and those most relevant to the task, so you begin with what was learned before."""
        brief = self.service.survey.session_start(
            task=task, namespace=namespace, recent=recent, relevant=relevant, budget_tokens=budget_tokens, principal=self.who()
        )
        return {
            "namespace": brief.namespace,
            "task": brief.task,
            "total_memories": brief.total_memories,
            "mode": brief.mode,
            "notices": brief.notices,
            "recent": brief.recent,
            "relevant": [_hit_view(h) for h in brief.relevant],
        }

    @tool("session", "Check for duplicates", read_only=True, idempotent=True)
    def memory_check_duplicate(
        self,
        content: Annotated[str, Field(description="The text you are about to store.")],
        namespace: Namespace = "default",
        threshold: Annotated[float, Field(description="Similarity (0-1] from which a memory counts as a near duplicate.")] = 0.85,
    ) -> Any:
        """Before storing, check whether the same or nearly the same thing is already remembered
        (exact: same namespace and text; near: similar meaning or wording)."""
        return self.service.survey.check_duplicate(content, namespace=namespace, threshold=threshold, principal=self.who())

    # -- ops -------------------------------------------------------------------------------------

    @tool("ops", "Statistics", read_only=True, idempotent=True)
    def memory_stats(self) -> Any:
        """Counts by tier and namespace, links, memories expiring within a day, database size."""
        return self.service.stats(principal=self.who())

    @tool("ops", "Quota status", read_only=True, idempotent=True)
    def memory_quota_status(self, namespace: NsFilter = None) -> Any:
        """Writes used today against the daily write quota per namespace, and the size limits."""
        return self.service.survey.quota_status(namespace=namespace, principal=self.who())

    @tool("ops", "Health", read_only=True, idempotent=True)
    def memory_health(self) -> Any:
        """Every component's health: store, writes (a full disk), vector index, embedder, peers,
        outbox, workers, bus, audit chain. ``status`` is ok, degraded (a component named in
        ``components`` is not ok, with the reason) or down (the store cannot be reached)."""
        from memmesh import __version__
        from memmesh.health import health_for

        return {"version": __version__, **health_for(self.service, principal=self.who())}

    @tool("ops", "Back up now", idempotent=False)
    def memory_backup(
        self,
        retain: Annotated[int | None, Field(description="Keep only the newest N snapshots.", ge=1)] = None,
    ) -> Any:
        """Take an online snapshot of the whole store (with a checksummed manifest) into the
        server's backup folder; admin only. Returns the snapshot path and its manifest."""
        return self.service.backup_now(retain=retain, principal=self.who())

    @tool("ops", "Export as JSONL", read_only=True, idempotent=True)
    def memory_export(
        self,
        namespace: NsFilter = None,
        path: Annotated[str | None, Field(description="Write to this file on the server's machine instead.")] = None,
    ) -> Any:
        """A lossless JSON Lines copy of memories (with history) and links (admin only); small
        exports come back inline, large ones need a path."""
        if path is not None:
            return asdict(self.service.transfer.export_file(self._path(path), namespace, principal=self.who()))
        text = "\n".join(self.service.transfer.export_lines(namespace, principal=self.who())) + "\n"
        if len(text.encode()) > MAX_INLINE_EXPORT_BYTES:
            raise InvalidInputError(f"the export is over {MAX_INLINE_EXPORT_BYTES} bytes: give a namespace or a path")
        return {"jsonl": text}

    @tool("ops", "Import JSONL")
    def memory_import(
        self,
        jsonl: Annotated[
            str | None, Field(description="The source text: memmesh JSON Lines (from memory_export), memory.jsonl or mem0's export.")
        ] = None,
        path: Annotated[str | None, Field(description="A file on the server's machine (local transports only).")] = None,
        dry_run: Annotated[bool, Field(description="Validate and count; write nothing.")] = False,
        format: Annotated[
            Literal["auto", "jsonl", "mcp-memory", "mem0"], Field(description="Source format; auto tells it from the text.")
        ] = "auto",
        namespace: Annotated[str | None, Field(description="Target namespace (mcp-memory, mem0; not jsonl).")] = None,
        tier: Annotated[Literal["short", "mid", "long"], Field(description="Tier of imported memories (not jsonl).")] = "long",
    ) -> Any:
        """Import memmesh's JSONL export, the MCP memory server's memory.jsonl or mem0's export,
        idempotently (a second run writes nothing). Runs as your key: a writer imports into its
        own namespaces and each record outside them is counted as failed; a memmesh JSONL
        restore needs an admin and is checked whole before anything is written."""
        if (jsonl is None) == (path is None):
            raise InvalidInputError("give exactly one of jsonl (the text) or path (a file)")
        if path is not None:
            jsonl = read_import_file(self._path(path), path)
        options = ImportOptions(format=format, namespace=namespace, tier=tier, dry_run=dry_run)
        return self.service.transfer.import_text(jsonl or "", options, source=path or "jsonl", principal=self.who())

    # -- helpers -------------------------------------------------------------------------------

    def _path(self, path: str) -> Path:
        if not self.allow_paths:
            raise InvalidInputError("file paths are not accepted over this transport; pass the JSONL text instead")
        return Path(path).expanduser()

    def _capabilities(self) -> dict[str, Any]:
        embedder = self.service.embedder
        if embedder is None:
            semantic: dict[str, Any] = {"status": "not available", "detail": "no embedder configured (embeddings.provider = none)"}
        else:
            health = embedder.health()
            semantic = {
                "status": "active" if health.get("ok") else "unavailable",
                "model": health.get("model_id"),
                "detail": health.get("detail"),
            }
        return {
            "families": [
                {"name": f, "enabled": f in self.enabled, "description": FAMILY_DESCRIPTIONS[f], "tools": list(FAMILIES[f])}
                for f in FAMILIES
            ],
            "recall": {"keyword": {"status": "active"}, "semantic": semantic},
            "federation": {"status": "not available"},
            "llm": {"status": "not available", "detail": "no LLM is used: consolidation summaries are written by you"},
            "enable_more": "restart with --profile full (or e.g. --profile core,graph,archive; env MEMMESH_MCP_PROFILE)",
        }


def _relations(values: list[Relation] | None) -> list[str] | None:
    return [r.value for r in values] if values else None


def _hit_view(hit: Any) -> dict[str, Any]:
    view = {"score": round(hit.score, 4), **memory_view(hit.memory)}
    if hit.explain:
        view["explain"] = {k: round(v, 4) for k, v in hit.explain.items()}
    return view


def _recall_view(result: Any) -> dict[str, Any]:
    return {"mode": result.mode, "hits": [_hit_view(h) for h in result.hits], "dropped": result.dropped, "notices": result.notices}
