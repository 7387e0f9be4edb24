"""Human-readable output for memories, hits and stats (``--json`` bypasses all of it)."""

from __future__ import annotations

import json
from typing import Any

from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from memmesh.interfaces.cli.context import TextTable, console, id_column, printable
from memmesh.model import HistoryEntry, Hit, Memory, Stats
from memmesh.wording import agree, count


def _short(text: str, width: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def value_text(value: Any) -> str:
    """One field value for people: text as is, lists comma-joined, objects as compact JSON
    (never a Python repr such as ``{'k': 1}`` or ``<Tier.long: 'long'>``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def memory_detail(memory: Memory) -> None:
    """``get``: one ``field  value`` line per filled field, full id and content."""
    table = TextTable(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in memory.model_dump(mode="json").items():
        if value in (None, [], {}):
            continue
        table.add_row(name, value_text(value))
    console.print(table)


def history_view(entries: list[HistoryEntry]) -> None:
    """``history``: a line per change (time, event, actor), then the fields it touched:
    ``old → new`` for an update, the values for an add, delete or restore."""
    for entry in entries:
        console.print(f"{entry.at.isoformat(timespec='seconds')}  [bold]{entry.event.value}[/]  by {entry.actor or '-'}")
        new, old = entry.new or {}, entry.old or {}
        names = [n for n in (*new, *(k for k in old if k not in new)) if n not in _QUIET_FIELDS and _filled(new, old, n)]
        width = max((len(n) for n in names), default=0)
        for name in names:
            if name in new and name in old:
                text = f"{_short(value_text(old[name]), HISTORY_WIDTH)} → {_short(value_text(new[name]), HISTORY_WIDTH)}"
            else:
                text = _short(value_text(new.get(name, old.get(name))), HISTORY_WIDTH)
            if text:
                console.print(f"    {name:<{width}}  {text}", markup=False, highlight=False)


HISTORY_WIDTH = 300
"""History is where old values are looked up: show them nearly whole (``--json`` has all)."""


def _filled(new: dict[str, Any], old: dict[str, Any], name: str) -> bool:
    return new.get(name) is not None or old.get(name) is not None


_QUIET_FIELDS = {"id", "content_hash", "created_at", "updated_at", "expires_at", "valid_from", "valid_to", "source", "confidence"}
"""Fields a history line leaves out for an add/delete snapshot (``--json`` has them all)."""


CONTENT_WIDTH = 30
"""The fewest cells a table's content column may get; a terminal narrower than that for it
prints cards instead (see :func:`_print_rows`)."""


def _content_cell(text: str) -> Text:
    """The content's first 80 characters on one line, flattened, wrapping in its column: the
    content column is the only one that gives way, so ids, namespaces and tags stay whole."""
    return Text(printable(_short(text)), overflow="fold")


def _print_rows(table: Table, rows: list[list[str]], content_at: int) -> None:
    """Print ``rows`` (their content, a raw memory text, at index ``content_at``) as ``table``
    when its content column gets :data:`CONTENT_WIDTH` cells, else as cards: a line with the
    cells before the content, then the content and the cells after it (``--explain``) indented
    below over the whole width. With the full id taking 36 cells, an 80-column terminal left the
    content of ``recall`` and ``list`` a few letters."""
    for row in rows:
        table.add_row(*row[:content_at], _content_cell(row[content_at]), *row[content_at + 1 :])
    unbounded = console.options.update_width(10_000)  # measured within the terminal, the minimum never exceeds it
    if Measurement.get(console, unbounded, table).minimum <= console.width:
        console.print(table)
        return
    for row in rows:
        _print_card(row[:content_at], [_short(row[content_at], 2 * (console.width - len(CARD_INDENT))), *row[content_at + 1 :]])


CARD_INDENT = "  "


def _print_card(heading: list[str], below: list[str]) -> None:
    """One row on a narrow terminal: ``heading`` cells on a line, then each of ``below``
    wrapped at words and indented. The heading keeps an id whole down to 38 columns."""
    console.print(Text(printable("  ".join(cell for cell in heading if cell))), soft_wrap=False)
    width = console.width - len(CARD_INDENT)
    for text in below:
        for line in Text(printable(text)).wrap(console, width, overflow="fold"):
            line.rstrip()
            console.print(CARD_INDENT, line, sep="", soft_wrap=False)


def memory_table(memories: list[Memory], title: str | None = None) -> None:
    table = TextTable(title=title, show_edge=False)
    id_column(table, [m.id for m in memories])
    table.add_column("namespace", overflow="fold", min_width=9)
    table.add_column("tier", no_wrap=True)
    table.add_column("tags", overflow="fold", min_width=4)
    table.add_column("content", min_width=CONTENT_WIDTH)
    _print_rows(table, [[m.id, m.namespace, m.tier.value, ",".join(m.tags), m.content] for m in memories], content_at=4)


def hit_table(hits: list[Hit], explain: bool = False) -> None:
    table = TextTable(show_edge=False)
    table.add_column("score", no_wrap=True)
    id_column(table, [h.memory.id for h in hits])
    table.add_column("namespace", overflow="fold", min_width=9)
    table.add_column("content", min_width=CONTENT_WIDTH)
    if explain:
        table.add_column("explain", min_width=16)
    rows = []
    for h in hits:
        row = [f"{h.score:.3f}", h.memory.id, h.memory.namespace, h.memory.content]
        if explain:
            row.append(" ".join(f"{k}={v:.3f}" for k, v in (h.explain or {}).items()))
        rows.append(row)
    _print_rows(table, rows, content_at=3)


def stats_view(stats: Stats) -> None:
    console.print(
        f"[bold]{stats.total}[/] {agree(stats.total, 'memory', 'memories')}, {count(stats.links_count, 'link')}, "
        f"{stats.expiring_soon} expiring within a day, {stats.db_size_bytes:,} bytes on disk"
    )
    if stats.by_tier:
        console.print("by tier: " + ", ".join(f"{t.tier.value} {t.count}" for t in stats.by_tier))
    if stats.by_namespace:
        table = Table("namespace", "count")
        for n in stats.by_namespace[:20]:
            table.add_row(n.namespace, str(n.count))
        console.print(table)
