"""Commands on memories: store, get, list, recall, search, update, delete, link, links, history."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.markup import escape

from memmesh.interfaces.cli import render
from memmesh.interfaces.cli.context import JSON_OPTION, app, console, parse_json_object, parse_options, print_json, split_tags, state
from memmesh.model import LOCAL_PRINCIPAL, MemoryPatch, NewMemory, RecallResult
from memmesh.wording import count

NS = typer.Option(None, "--namespace", "-n", help="Namespace (matches it and everything below it when filtering).")
TAGS = typer.Option(None, "--tags", "-t", help="Comma-separated tags.")
TIER = typer.Option(None, "--tier", help="short | mid | long")
KIND = typer.Option(None, "--kind", help="fact | episode | preference | procedure | summary | message")
AGENT = typer.Option(None, "--agent-id", help="The agent that wrote it.")
SINCE = typer.Option(None, "--since", help="Created at or after (RFC 3339).")
UNTIL = typer.Option(None, "--until", help="Created before (RFC 3339).")
TOP_K = typer.Option(10, "--top-k", "-k", help="How many hits.")
EXPLAIN = typer.Option(False, "--explain", help="Show the parts of each score.")


def _filters(
    namespace: str | None,
    tags: str | None,
    tier: str | None,
    kind: str | None,
    agent_id: str | None,
    since: str | None,
    until: str | None,
    **more: Any,
) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "tags": split_tags(tags),
        "tier": tier,
        "kind": kind,
        "agent_id": agent_id,
        "since": since,
        "until": until,
        **more,
    }


@app.command("store")
def store(
    ctx: typer.Context,
    content: str = typer.Argument(..., help="What to remember; '-' reads it from stdin."),
    namespace: str = typer.Option("default", "--namespace", "-n", help="Namespace, e.g. team/project."),
    title: str = typer.Option(None, "--title", help="Names the memory within its namespace."),
    tier: str = TIER,
    kind: str = typer.Option("fact", "--kind", help="fact | episode | preference | procedure | summary | message"),
    tags: str = TAGS,
    priority: int = typer.Option(5, "--priority", "-p", help="1 (low) to 10 (high)."),
    confidence: float = typer.Option(1.0, "--confidence", help="0 to 1."),
    source: str = typer.Option("user", "--source", help="Who wrote it: user, agent, import, …"),
    agent_id: str = AGENT,
    metadata: str = typer.Option(None, "--metadata", "-m", help="A JSON object."),
    memory_id: str = typer.Option(None, "--id", help="Client-supplied id (idempotent retries)."),
    ttl: int = typer.Option(None, "--ttl", help="Seconds until it expires (overrides the tier default)."),
    valid_from: str = typer.Option(None, "--valid-from", help="World time the fact starts to hold."),
    valid_to: str = typer.Option(None, "--valid-to", help="World time the fact stops holding."),
    on_conflict: str = typer.Option("error", "--on-conflict", help="Same title exists: error | update | version."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Store a memory (an identical one in the same namespace is not stored twice: it gains the new tags)."""
    text = sys.stdin.read() if content == "-" else content
    data = {
        "content": text,
        "namespace": namespace,
        "title": title,
        "tier": tier,
        "kind": kind,
        "tags": split_tags(tags) or [],
        "priority": priority,
        "confidence": confidence,
        "source": source,
        "agent_id": agent_id,
        "metadata": parse_json_object(metadata, "--metadata") or {},
        "id": memory_id,
        "ttl_seconds": ttl,
        "valid_from": valid_from,
        "valid_to": valid_to,
        "on_conflict": on_conflict,
    }
    new = parse_options(NewMemory, data, ctx, renamed={"ttl_seconds": "ttl", "id": "memory_id"})
    service = state.writing_service(rehearse=lambda stand_in: stand_in.check_new(new, principal=LOCAL_PRINCIPAL))
    memory, created = service.add_outcome(new, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(memory)
    elif created:
        console.print(f"stored [bold]{memory.id}[/] in {memory.namespace} ({memory.tier.value})")
    else:
        tags = f"; tags now {escape(', '.join(memory.tags))}" if memory.tags else ""
        console.print(f"already stored as [bold]{memory.id}[/] in {memory.namespace}: nothing new stored{tags}")


@app.command("get")
def get(memory_id: str = typer.Argument(..., help="The memory's id."), as_json: bool = JSON_OPTION) -> None:
    """Show one memory."""
    memory = state.service().get(memory_id, principal=LOCAL_PRINCIPAL)
    print_json(memory) if as_json else render.memory_detail(memory)


@app.command("list")
def list_memories(
    namespace: str = NS,
    tags: str = TAGS,
    tier: str = TIER,
    kind: str = KIND,
    agent_id: str = AGENT,
    since: str = SINCE,
    until: str = UNTIL,
    limit: int = typer.Option(50, "--limit", "-l", help="Page size."),
    cursor: str = typer.Option(None, "--cursor", help="next_cursor from the previous page."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List memories, newest first."""
    page = state.service().list(
        limit=limit, cursor=cursor, **_filters(namespace, tags, tier, kind, agent_id, since, until), principal=LOCAL_PRINCIPAL
    )
    if as_json:
        print_json(page)
        return
    render.memory_table(page.items)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


def _show(result: RecallResult, explain: bool, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    for notice in result.notices:
        console.print(f"[yellow]note:[/] {escape(notice)}")
    if not result.hits:
        console.print("no memories match")
        return
    render.hit_table(result.hits, explain)
    if result.dropped:
        console.print(f"{count(result.dropped, 'more hit')} left out by the token budget")


@app.command("recall")
def recall(
    query: str = typer.Argument(..., help="Words or a question."),
    namespace: str = NS,
    tags: str = TAGS,
    tier: str = TIER,
    kind: str = KIND,
    agent_id: str = AGENT,
    since: str = SINCE,
    until: str = UNTIL,
    as_of: str = typer.Option(None, "--as-of", help="Only facts valid at this world time."),
    top_k: int = TOP_K,
    mode: str = typer.Option(None, "--mode", help="hybrid (default) | keyword | vector"),
    explain: bool = EXPLAIN,
    budget_tokens: int = typer.Option(None, "--budget-tokens", help="Fill the answer up to this many tokens."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Find memories by meaning and keywords (counts as an access)."""
    filters = _filters(namespace, tags, tier, kind, agent_id, since, until, as_of=as_of)
    result = state.service().recall(
        query, top_k=top_k, mode=mode, explain=explain, budget_tokens=budget_tokens, **filters, principal=LOCAL_PRINCIPAL
    )
    _show(result, explain, as_json)


@app.command("search")
def search(
    query: str = typer.Argument(..., help="Keywords."),
    namespace: str = NS,
    tags: str = TAGS,
    tier: str = TIER,
    kind: str = KIND,
    agent_id: str = AGENT,
    since: str = SINCE,
    until: str = UNTIL,
    top_k: int = TOP_K,
    explain: bool = EXPLAIN,
    as_json: bool = JSON_OPTION,
) -> None:
    """Keyword (BM25) search; inspects without counting an access."""
    result = state.service().search(
        query, top_k=top_k, explain=explain, **_filters(namespace, tags, tier, kind, agent_id, since, until), principal=LOCAL_PRINCIPAL
    )
    _show(result, explain, as_json)


@app.command("update")
def update(
    ctx: typer.Context,
    memory_id: str = typer.Argument(..., help="The memory's id."),
    content: str = typer.Option(None, "--content", "-c", help="New content."),
    title: str = typer.Option(None, "--title"),
    namespace: str = typer.Option(None, "--namespace", "-n", help="Move to this namespace."),
    tier: str = TIER,
    kind: str = KIND,
    tags: str = typer.Option(None, "--tags", "-t", help="Replace the tags."),
    priority: int = typer.Option(None, "--priority", "-p"),
    confidence: float = typer.Option(None, "--confidence"),
    metadata: str = typer.Option(None, "--metadata", "-m", help="Replace the metadata (a JSON object)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Change a memory; the old values go to its history."""
    changes = (content, title, namespace, tier, kind, tags, priority, confidence, metadata)
    if all(value is None for value in changes):
        raise typer.BadParameter(
            "nothing to update: give at least one of --content, --title, --namespace, --tier, --kind, --tags, --priority, "
            "--confidence, --metadata"
        )
    patch = {
        "content": content,
        "title": title,
        "namespace": namespace,
        "tier": tier,
        "kind": kind,
        "tags": split_tags(tags),
        "priority": priority,
        "confidence": confidence,
        "metadata": parse_json_object(metadata, "--metadata"),
    }
    memory = state.service().update(memory_id, parse_options(MemoryPatch, patch, ctx), principal=LOCAL_PRINCIPAL)
    print_json(memory) if as_json else console.print(f"updated [bold]{memory.id}[/]")


@app.command("delete")
def delete(memory_id: str = typer.Argument(..., help="The memory's id."), as_json: bool = JSON_OPTION) -> None:
    """Delete a memory (a tombstone stays so replicas and backups agree)."""
    tombstone = state.service().delete(memory_id, principal=LOCAL_PRINCIPAL)
    print_json(tombstone) if as_json else console.print(f"deleted [bold]{tombstone.id}[/] (undo: memmesh undelete {tombstone.id})")


@app.command("undelete")
def undelete(memory_id: str = typer.Argument(..., help="The deleted (or archived) memory's id."), as_json: bool = JSON_OPTION) -> None:
    """Bring back a deleted or archived memory from its history: same id and content, a fresh expiry (its old links stay gone)."""
    restored = state.service().lifecycle.restore(memory_id, principal=LOCAL_PRINCIPAL)
    print_json(restored) if as_json else console.print(f"restored [bold]{restored.id}[/]")


@app.command("link")
def link(
    source_id: str = typer.Argument(..., help="From this memory…"),
    target_id: str = typer.Argument(..., help="…to this one."),
    relation: str = typer.Option(
        "related_to", "--relation", "-r", help="related_to | supersedes | contradicts | derived_from | part_of | caused_by | mentions"
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Link two memories with a typed relation."""
    created = state.service().link(source_id, target_id, relation, principal=LOCAL_PRINCIPAL)
    print_json(created) if as_json else console.print(f"linked {source_id} -{created.relation.value}-> {target_id}")


@app.command("links")
def links(memory_id: str = typer.Argument(..., help="The memory's id."), as_json: bool = JSON_OPTION) -> None:
    """Links from and to a memory."""
    found = state.service().links(memory_id, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(found)
        return
    for item in found:
        console.print(f"{item.source_id} -{item.relation.value}-> {item.target_id}")


@app.command("history")
def history(memory_id: str = typer.Argument(..., help="The memory's id."), as_json: bool = JSON_OPTION) -> None:
    """Every change of a memory, oldest first."""
    entries = state.service().history(memory_id, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(entries)
        return
    render.history_view(entries)
