"""memmesh's own JSON Lines format: a lossless export and an idempotent import.

Line 1 is a header ``{"type": "header", "format": "memmesh-jsonl", "version": 1, …}``; then
one ``{"type": "memory", "memory": {...}, "history": [...]}`` line per memory (every field,
ids and timestamps kept) and one ``{"type": "link", "link": {...}}`` line per link.
Import validates every line before writing anything, so a bad file changes nothing; a
re-import of the same file writes nothing.

Both run as a caller (a :class:`Principal`) and are confined to its namespaces record by
record: an export holds only the memories, history entries and links the caller may see; an
import refuses, before writing anything, a memory outside its namespaces, an id another
namespace holds, or a history entry of another memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pydantic import BaseModel, ValidationError

from memmesh.clock import format_ts
from memmesh.errors import InvalidInputError
from memmesh.kernel import authorize
from memmesh.model import HistoryEntry, Link, Memory, Principal, describe_validation_error
from memmesh.service import Service, visible_history

FORMAT = "memmesh-jsonl"
VERSION = 1


class ImportReport(BaseModel):
    """What an import did: lines read, memories and links written or already present."""

    lines: int
    memories_written: int
    memories_skipped: int
    links_written: int
    links_skipped: int
    dry_run: bool = False


def export_lines(service: Service, namespace: str | None = None, *, principal: Principal) -> Iterator[str]:
    """Every memory (with its history) and link the caller may see as JSON lines, header first.

    Needs an admin; a namespace-scoped admin gets its own namespaces only (checked before the
    first line, so a refused export yields nothing)."""
    who = authorize(principal, "admin", namespace or None)
    return _export(service, namespace, who)


def _export(service: Service, namespace: str | None, who: Principal) -> Iterator[str]:
    store = service.store
    yield json.dumps(
        {
            "type": "header",
            "format": FORMAT,
            "version": VERSION,
            "schema_version": store.schema_version,
            "node_id": service.node_id,
            "exported_at": format_ts(service.clock()),
        }
    )
    history: dict[str, list[HistoryEntry]] = {}
    for entry in store.iter_history():
        history.setdefault(entry.memory_id, []).append(entry)
    exported: set[str] = set()
    for memory in store.iter_memories():
        if namespace and not (memory.namespace == namespace or memory.namespace.startswith(namespace + "/")):
            continue
        if not who.covers(memory.namespace):
            continue
        exported.add(memory.id)
        entries = [e.model_dump(mode="json") for e in visible_history(who, history.get(memory.id, []))]
        yield json.dumps({"type": "memory", "memory": memory.model_dump(mode="json"), "history": entries}, ensure_ascii=False)
    for link in store.iter_links():
        if link.source_id in exported and link.target_id in exported:
            yield json.dumps({"type": "link", "link": link.model_dump(mode="json")}, ensure_ascii=False)


def count_exportable(service: Service, *, principal: Principal) -> int:
    """How many memories an export will write (for a progress bar's total)."""
    return service.stats(principal=principal).total


Record = tuple[str, Any, list[HistoryEntry]]


def parse_lines(lines: Iterable[str]) -> list[Record]:
    """Validate every line; raise one error naming the first bad line (nothing is written)."""
    records: list[Record] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"line {number}: not JSON ({exc.msg}); nothing was imported") from None
        except RecursionError:  # JSON nested thousands deep: hostile, not a memory
            raise InvalidInputError(f"line {number}: JSON nested too deeply; nothing was imported") from None
        if not isinstance(data, dict) or "type" not in data:
            raise InvalidInputError(f'line {number}: expected an object with a "type"; nothing was imported')
        try:
            records.extend(_record(data, number))
        except ValidationError as exc:
            raise InvalidInputError(f"line {number}: {describe_validation_error(exc)}; nothing was imported") from None
    return records


def _record(data: dict[str, Any], number: int) -> list[Record]:
    kind = data["type"]
    if kind == "header":
        if data.get("format") != FORMAT or int(data.get("version", 0)) > VERSION:
            raise InvalidInputError(f"line {number}: not a memmesh-jsonl v{VERSION} export; nothing was imported")
        return []
    if kind == "memory":
        memory = Memory.model_validate(data.get("memory"))
        history = [HistoryEntry.model_validate(h) for h in data.get("history", [])]
        return [("memory", memory, history)]
    if kind == "link":
        return [("link", Link.model_validate(data.get("link")), [])]
    raise InvalidInputError(f"line {number}: unknown record type {kind!r} (memory, link); nothing was imported")


def import_records(
    service: Service,
    records: list[Record],
    *,
    principal: Principal,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Write parsed records; existing identical memories and links are skipped.

    Needs an admin. Every record is checked against the caller's namespaces before the
    first write (a refused import writes nothing, also in a dry run)."""
    who = authorize(principal, "admin")
    _check_scope(service, records, who)
    report = ImportReport(lines=len(records), memories_written=0, memories_skipped=0, links_written=0, links_skipped=0, dry_run=dry_run)
    for kind, value, history in records:
        if kind == "memory":
            written = False if dry_run else service.put_exact(value, history=history, principal=who)
            if dry_run:
                written = service.store.get(value.id) != value
            report.memories_written += int(written)
            report.memories_skipped += int(not written)
        else:
            written = False if dry_run else _put_link(service, value, who)
            report.links_written += int(written)
            report.links_skipped += int(not written)
        if progress:
            progress(1)
    return report


def _check_scope(service: Service, records: list[Record], who: Principal) -> None:
    """Refuse the whole import if any memory lies outside the caller's namespaces, takes an id
    another namespace holds, or carries history of another memory; links must join memories
    of the file or ones the caller can see."""
    in_file: set[str] = set()
    for kind, value, history in records:
        if kind != "memory":
            continue
        service.check_exact(value, principal=who)
        stray = next((e for e in history if e.memory_id != value.id), None)
        if stray is not None:
            raise InvalidInputError(
                f"memory {value.id}: its history holds an entry of another memory ({stray.memory_id}); nothing was imported"
            )
        in_file.add(value.id)
    for kind, value, _ in records:
        if kind == "link":
            for end in (value.source_id, value.target_id):
                if end not in in_file:
                    service.kernel.check_exact_target(who, end)


def _put_link(service: Service, link: Link, who: Principal) -> bool:
    if any(existing == link for existing in service.store.links(link.source_id)):
        return False
    return service.put_link(link, principal=who)
