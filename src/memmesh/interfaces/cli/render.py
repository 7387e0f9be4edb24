"""Human-readable output for memories, hits and stats (``--json`` bypasses all of it)."""

from __future__ import annotations

from rich.table import Table

from memmesh.interfaces.cli.context import console
from memmesh.model import Hit, Memory, Stats


def _short(text: str, width: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def memory_detail(memory: Memory) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold cyan")
    table.add_column()
    for name, value in memory.model_dump(mode="json").items():
        if value in (None, [], {}):
            continue
        table.add_row(name, str(value))
    console.print(table)


def memory_table(memories: list[Memory], title: str | None = None) -> None:
    table = Table(title=title)
    for column in ("id", "namespace", "tier", "tags", "content"):
        table.add_column(column, overflow="fold" if column == "id" else "ellipsis")
    for m in memories:
        table.add_row(m.id, m.namespace, m.tier.value, ",".join(m.tags), _short(m.content))
    console.print(table)


def hit_table(hits: list[Hit], explain: bool = False) -> None:
    table = Table()
    for column in ("score", "id", "namespace", "content"):
        table.add_column(column)
    if explain:
        table.add_column("explain")
    for h in hits:
        row = [f"{h.score:.3f}", h.memory.id, h.memory.namespace, _short(h.memory.content)]
        if explain and h.explain:
            row.append(" ".join(f"{k}={v:.3f}" for k, v in h.explain.items()))
        table.add_row(*row)
    console.print(table)


def stats_view(stats: Stats) -> None:
    console.print(
        f"[bold]{stats.total}[/] memories, {stats.links_count} links, "
        f"{stats.expiring_soon} expiring within a day, {stats.db_size_bytes:,} bytes on disk"
    )
    if stats.by_tier:
        console.print("by tier: " + ", ".join(f"{t.tier.value} {t.count}" for t in stats.by_tier))
    if stats.by_namespace:
        table = Table("namespace", "count")
        for n in stats.by_namespace[:20]:
            table.add_row(n.namespace, str(n.count))
        console.print(table)
