"""Importers: bring the users of other memory stores over, idempotently.

One module per source (:mod:`.mcp_memory`, :mod:`.mem0`, :mod:`.legacy_sql`,
:mod:`.basic_memory`), all writing
through the one idempotent path in :mod:`.base`; this module detects a source's format and
offers one function per format. Every function takes the service, validates its options
before writing anything, supports ``dry_run`` and returns an :class:`ImportReport`.
memmesh's own JSON Lines export is imported by :mod:`memmesh.io.jsonl`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, Unpack

from memmesh.errors import InvalidInputError
from memmesh.io.importers import basic_memory, mcp_memory, mem0
from memmesh.io.importers.base import Candidate, Item, PlannedLink, Progress, Writer, check_scope, spot_check
from memmesh.io.importers.legacy_sql import LegacyTable, import_legacy
from memmesh.io.importers.reports import ImportReport, build_report
from memmesh.model import Principal, Tier, normalize_namespace
from memmesh.service import Service
from memmesh.store.sqlite import path_from_url

FORMATS = ("auto", "jsonl", "mcp-memory", "mem0", "mem0-history", "sql", "basic-memory")
_SQLITE_HEADER = b"SQLite format 3\x00"


def detect_format(source: str, *, table: str | None, read_text: Callable[[], str]) -> str:
    """The format of a source, from its URL, its first bytes or its content.

    A database URL with ``--table`` is a legacy SQL table; a SQLite file (or URL) with
    mem0's ``history`` table is a mem0 history db; text is told apart by its first line
    (``"type": "entity"|"relation"`` → MCP memory) or its shape (mem0's export); anything
    else is read as memmesh's own JSON Lines (whose parser then names the bad line). A folder
    is a basic-memory project, or one clear error saying why it is not.
    """
    if "://" in source:
        if table:
            return "sql"
        if source.startswith("sqlite://") and mem0.has_history_table(Path(path_from_url(source))):
            return "mem0-history"
        raise InvalidInputError(f"{source} is a database: give --table (and the column options) to import a legacy table")
    path = Path(source)
    if source != "-" and path.is_dir():
        basic_memory.check_project(path)
        return basic_memory.FORMAT
    if source != "-" and path.is_file():
        with path.open("rb") as handle:
            if handle.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER:
                if mem0.has_history_table(path):
                    return "mem0-history"
                raise InvalidInputError(
                    f"{source} is a SQLite file without mem0's history table: to import a legacy table "
                    f"give sqlite:///{path.absolute()} with --table"
                )
    return detect_text_format(read_text())


def detect_text_format(text: str) -> str:
    """``mcp-memory``, ``mem0`` or ``jsonl`` for a text source (see :func:`detect_format`)."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    try:
        head = json.loads(first)
    except (json.JSONDecodeError, RecursionError):
        head = None
    if isinstance(head, dict) and head.get("type") in ("entity", "relation"):
        return "mcp-memory"
    if isinstance(head, dict) and head.get("type") in ("header", "memory", "link"):
        return "jsonl"
    try:
        whole = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return "jsonl"
    return "mem0" if mem0.looks_like_export(whole) else "jsonl"


def _options(tier: str, namespace: str | None, default: str) -> str:
    """The target namespace (normalised), once the tier is known to be valid."""
    if tier not in Tier.__members__:
        raise InvalidInputError(f"tier {tier!r} is not one of {', '.join(Tier.__members__)}")
    return normalize_namespace(namespace or default)


def import_mcp_memory(
    service: Service, text: str, *, source: str = "memory.jsonl", principal: Principal, **options: Unpack[RunOptions]
) -> ImportReport:
    """Import the MCP memory server's ``memory.jsonl`` (entities, observations, relations).

    ``options`` (all importers): namespace, tier, dry_run, sample, progress."""
    run = _RunOptions(**options)
    ns = _options(run.tier, run.namespace, mcp_memory.DEFAULT_NAMESPACE)
    check_scope(principal, [ns])
    graph = mcp_memory.parse_graph(text.splitlines(), ns)
    items, links = mcp_memory.plan(service, graph, ns, tier=run.tier, principal=principal)
    return _run(service, mcp_memory.FORMAT, source, items, links, run, principal)


def import_mem0(
    service: Service, text: str, *, source: str = "mem0 export", principal: Principal, **options: Unpack[RunOptions]
) -> ImportReport:
    """Import mem0's exported memories (``{"results": [...]}`` or a list)."""
    run = _RunOptions(**options)
    base = _options(run.tier, run.namespace, mem0.DEFAULT_NAMESPACE)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{source}: not JSON ({exc.msg} at line {exc.lineno}); nothing was imported") from None
    except RecursionError:  # nested thousands deep: hostile, not an export
        raise InvalidInputError(f"{source}: JSON nested too deeply; nothing was imported") from None
    items = mem0.plan_export(mem0.export_records(data), base, tier=run.tier)
    return _run(service, mem0.FORMAT_EXPORT, source, items, [], run, principal)


def import_mem0_history(service: Service, path: str | Path, *, principal: Principal, **options: Unpack[RunOptions]) -> ImportReport:
    """Import the latest state of every memory in mem0's SQLite history db (the file is only read)."""
    run = _RunOptions(**options)
    base = _options(run.tier, run.namespace, mem0.DEFAULT_NAMESPACE)
    location = Path(path_from_url(str(path))) if str(path).startswith("sqlite://") else Path(path)
    items = mem0.read_history(location, base, tier=run.tier)
    return _run(service, mem0.FORMAT_HISTORY, str(location), items, [], run, principal)


def import_basic_memory(service: Service, project: str | Path, *, principal: Principal, **options: Unpack[RunOptions]) -> ImportReport:
    """Import a basic-memory project folder (notes, observations, relations; files are only read)."""
    run = _RunOptions(**options)
    ns = _options(run.tier, run.namespace, basic_memory.DEFAULT_NAMESPACE)
    check_scope(principal, [ns])
    root = basic_memory.check_project(project)
    items, links = basic_memory.plan(service, root, ns, tier=run.tier, principal=principal)
    return _run(service, basic_memory.FORMAT, str(project), items, links, run, principal)


class RunOptions(TypedDict, total=False):
    """The keyword options of every file importer, typed for callers."""

    namespace: str | None
    tier: str
    dry_run: bool
    sample: int
    progress: Progress | None


@dataclass(frozen=True)
class _RunOptions:
    """The options every file importer takes (an unknown one is a programming error)."""

    namespace: str | None = None
    tier: str = "long"
    dry_run: bool = False
    sample: int = 3
    progress: Progress | None = None


def _run(
    service: Service,
    fmt: str,
    source: str,
    items: Sequence[Item],
    links: Sequence[PlannedLink],
    run: _RunOptions,
    principal: Principal,
) -> ImportReport:
    check_scope(principal, [str(i.fields.get("namespace")) for i in items if isinstance(i, Candidate)])
    writer = Writer(service, dry_run=run.dry_run, principal=principal, progress=run.progress)
    outcomes = writer.apply(items)
    writer.link(links)
    report = build_report(fmt, source, run.dry_run, outcomes, (writer.links_written, writer.links_skipped))
    if not run.dry_run:
        report.spot_check = spot_check(service, outcomes, run.sample, principal)
    return report


__all__ = [
    "FORMATS",
    "ImportReport",
    "LegacyTable",
    "detect_format",
    "detect_text_format",
    "import_basic_memory",
    "import_legacy",
    "import_mcp_memory",
    "import_mem0",
    "import_mem0_history",
]
