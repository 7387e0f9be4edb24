"""Which tools exist, in which family, and what each profile turns on (pure data).

Profiles keep a model's context small: ``core`` (the default) is the eight everyday
tools; ``graph``, ``admin`` and ``power`` add families on top of it; ``full`` is every
tool. A profile may also be a comma list of profile and family names
(``core,archive,agents``). ``core`` is always included, so a model can always store,
recall and ask ``memory_capabilities`` what else exists.
"""

from __future__ import annotations

from memmesh.errors import ConfigError

FAMILIES: dict[str, tuple[str, ...]] = {
    "core": (
        "memory_store",
        "memory_recall",
        "memory_search",
        "memory_list",
        "memory_get",
        "memory_update",
        "memory_delete",
        "memory_capabilities",
    ),
    "graph": (
        "memory_link",
        "memory_get_links",
        "memory_kg_query",
        "memory_kg_timeline",
        "memory_kg_invalidate",
        "memory_find_paths",
        "memory_get_taxonomy",
    ),
    "entities": ("memory_entity_register", "memory_entity_get_by_alias"),
    "lifecycle": ("memory_promote", "memory_forget", "memory_consolidate", "memory_history", "memory_restore", "memory_gc"),
    "archive": ("memory_archive_list", "memory_archive_restore", "memory_archive_purge", "memory_archive_stats"),
    "agents": ("memory_agent_register", "memory_agent_list"),
    "session": (
        "memory_session_start",
        "memory_check_duplicate",
        "session_append",
        "session_rehydrate",
        "session_list",
        "memory_extraction_status",
    ),
    "bus": (
        "bus_open_conversation",
        "bus_send_message",
        "bus_get_unread_messages",
        "bus_get_transcript",
        "bus_ack",
        "bus_list_conversations",
        "bus_claim_task",
        "bus_complete_task",
        "bus_complete_tasks",
    ),
    "ops": ("memory_stats", "memory_quota_status", "memory_health", "memory_export", "memory_import", "memory_backup"),
    "governance": (
        "memory_namespace_set_standard",
        "memory_namespace_get_standard",
        "memory_namespace_clear_standard",
        "memory_pending_list",
        "memory_pending_approve",
        "memory_pending_reject",
    ),
    "subscriptions": ("memory_subscribe", "memory_unsubscribe", "memory_list_subscriptions"),
    "inbox": ("memory_notify", "memory_inbox"),
    "curator": ("memory_detect_contradiction", "memory_auto_tag", "memory_expand_query"),
}

FAMILY_DESCRIPTIONS: dict[str, str] = {
    "core": "store, find, read, change and delete memories",
    "graph": "typed links between memories; neighbourhoods, timelines and paths as of a time; the namespace tree",
    "entities": "named memories with aliases ('everything about X')",
    "lifecycle": "promote to long-term, bulk forget (with dry run), consolidate, history, undelete, garbage collection",
    "archive": "expired memories moved aside by gc: list, restore, purge, count",
    "agents": "registered agent identities",
    "session": "start a session with context; check for duplicates before storing; append turns and rehydrate long sessions; "
    "poll the fact extraction of a conversation stored with memory_store(messages=...)",
    "bus": "message bus between agents: conversations with tokens, unread/ack, task queues with leases",
    "ops": "statistics, quotas, health, JSONL export and import",
    "governance": "namespace standards (allow / approve / deny per action) and the queue of actions awaiting approval",
    "subscriptions": "webhooks told of every change in a namespace (HMAC-signed, retried, SSRF-guarded)",
    "inbox": "notifications between agents: notify another agent, read your own inbox",
    "curator": "find contradictions, suggest tags, widen a query with the store's own words (no LLM)",
}

PROFILES: dict[str, tuple[str, ...]] = {
    "core": ("core",),
    "graph": ("core", "graph", "entities"),
    "admin": ("core", "lifecycle", "archive", "agents", "ops", "governance", "subscriptions", "curator"),
    "power": ("core", "graph", "entities", "lifecycle", "session", "ops", "bus", "subscriptions", "inbox", "curator"),
    "full": tuple(FAMILIES),
}

DEFAULT_PROFILE = "core"


def resolve_profile(spec: str | None, *, flag: str | None = None) -> list[str]:
    """The families a profile spec turns on, in catalogue order; a bad name is a ConfigError
    naming ``mcp.profile``, or ``flag`` when the spec came from that command-line flag (then a
    usage error: the CLI exits 2, as for any other value an option never takes)."""
    tokens = [t.strip().lower() for t in (spec or DEFAULT_PROFILE).split(",") if t.strip()] or [DEFAULT_PROFILE]
    chosen = {"core"}
    for token in tokens:
        if token in PROFILES:
            chosen.update(PROFILES[token])
        elif token in FAMILIES:
            chosen.add(token)
        else:
            raise ConfigError(
                f"unknown MCP profile or tool family {token!r} ({flag or 'mcp.profile'}): use one of the profiles "
                f"{', '.join(PROFILES)} or a comma list of families {', '.join(FAMILIES)}",
                usage=flag is not None,
            )
    return [family for family in FAMILIES if family in chosen]


def tools_for(families: list[str]) -> list[str]:
    """Tool names of the given families, in catalogue order."""
    return [name for family in families for name in FAMILIES[family]]


def family_of(tool: str) -> str:
    for family, names in FAMILIES.items():
        if tool in names:
            return family
    raise KeyError(tool)


ALL_TOOLS: tuple[str, ...] = tuple(tools_for(list(FAMILIES)))
