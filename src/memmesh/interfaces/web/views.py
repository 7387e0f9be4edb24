"""What the pages show, computed in Python so templates stay plain: diffs, SVG, the tree.

Why server-side SVG: the inspector ships no JavaScript library and works offline; a small
neighbourhood graph and a few line charts are easy to draw as inline SVG, which also reads
in a screen reader (titles on every node) and prints.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from memmesh.model import HistoryEntry, Link, Memory, NamespaceCount

QUIET_FIELDS = {"content", "updated_at", "version", "content_hash", "access_count", "last_accessed_at"}
"""Fields every write changes (or content, shown as a diff): not listed as field changes."""


@dataclass
class Change:
    """One version step of a memory: what happened, who did it, and what changed."""

    entry: HistoryEntry
    diff: Markup
    fields: list[tuple[str, Any, Any]]


def content_diff(old: str, new: str) -> Markup:
    """The content change as HTML: words removed in ``<del>``, added in ``<ins>``.

    Word-level, because memories are mostly a sentence or two; a line diff would show the
    whole sentence as replaced for a one-word edit.
    """
    a, b = old.split(" "), new.split(" ")
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(str(escape(" ".join(a[i1:i2]))))
            continue
        if op in ("delete", "replace"):
            out.append(f"<del>{escape(' '.join(a[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            out.append(f"<ins>{escape(' '.join(b[j1:j2]))}</ins>")
    return Markup(" ".join(out))


def changes(history: list[HistoryEntry]) -> list[Change]:
    """Each history entry with its content diff and the other fields it changed, newest first."""
    made: list[Change] = []
    for entry in history:
        old, new = entry.old or {}, entry.new or {}
        diff = content_diff(str(old.get("content", "")), str(new.get("content", ""))) if old and new else Markup("")
        fields = [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if k not in QUIET_FIELDS and old.get(k) != new.get(k)]
        if not old or not new:
            fields = []  # an add or a delete: the whole memory is the change, shown as content
        made.append(Change(entry=entry, diff=diff, fields=fields))
    return list(reversed(made))


@dataclass
class TreeNode:
    """A namespace in the tree: its own count and the total of everything below it."""

    name: str
    path: str
    own: int = 0
    total: int = 0
    depth: int = 0


def namespace_tree(counts: list[NamespaceCount]) -> list[TreeNode]:
    """The namespaces the caller may see as a flat, depth-ordered tree (``a``, ``a/b``, …)."""
    nodes: dict[str, TreeNode] = {}
    for item in counts:
        parts = item.namespace.split("/")
        for depth in range(len(parts)):
            path = "/".join(parts[: depth + 1])
            node = nodes.setdefault(path, TreeNode(name=parts[depth], path=path, depth=depth))
            node.total += item.count
        nodes[item.namespace].own += item.count
    return [nodes[p] for p in sorted(nodes)]


def _short(text: str, size: int = 28) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 1] + "…"


def neighbourhood_svg(center: Memory, links: list[Link], others: dict[str, Memory], *, limit: int = 12) -> Markup:
    """The memory in the middle, its linked memories on a circle, arrows by direction.

    Only ends the caller may see are in ``others`` (the service already dropped the rest);
    each node links to its page.
    """
    shown = [link for link in links if (link.target_id if link.source_id == center.id else link.source_id) in others][:limit]
    width, height, radius = 560, 360, 130
    cx, cy = width / 2, height / 2
    parts = [
        f'<svg class="graph" viewBox="0 0 {width} {height}" role="img" aria-label="links of this memory" xmlns="http://www.w3.org/2000/svg">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" class="arrow"/></marker></defs>',
    ]
    nodes: list[str] = []
    for i, link in enumerate(shown):
        outgoing = link.source_id == center.id
        other = others[link.target_id if outgoing else link.source_id]
        angle = 2 * math.pi * i / max(len(shown), 1) - math.pi / 2
        x, y = cx + radius * 1.6 * math.cos(angle), cy + radius * math.sin(angle)
        x1, y1, x2, y2 = (cx, cy, x, y) if outgoing else (x, y, cx, cy)
        parts.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" class="edge" marker-end="url(#arrow)"/>')
        parts.append(f'<text x="{(cx + x) / 2:.0f}" y="{(cy + y) / 2 - 4:.0f}" class="rel">{escape(link.relation.value)}</text>')
        label = escape(_short(other.title or other.content))
        nodes.append(
            f'<a href="/ui/memories/{escape(other.id)}"><title>{escape(other.namespace)}: {escape(_short(other.content, 120))}</title>'
            f'<circle cx="{x:.0f}" cy="{y:.0f}" r="9" class="node"/>'
            f'<text x="{x:.0f}" y="{y + 24:.0f}" class="label">{label}</text></a>'
        )
    parts.extend(nodes)
    parts.append(
        f'<circle cx="{cx:.0f}" cy="{cy:.0f}" r="13" class="node self"><title>{escape(_short(center.content, 120))}</title></circle>'
    )
    parts.append(f'<text x="{cx:.0f}" y="{cy + 30:.0f}" class="label self">{escape(_short(center.title or center.content))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(points: list[tuple[float, float]], *, label: str, unit: str = "", width: int = 520, height: int = 140) -> Markup:
    """A small line chart of (time, value) samples with the last value and the range."""
    if len(points) < 2:
        return Markup(f'<p class="muted">{escape(label)}: collecting samples…</p>')
    t0, t1 = points[0][0], points[-1][0]
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    span_t, span_v = (t1 - t0) or 1.0, (hi - lo) or 1.0
    pad = 8
    coords = " ".join(
        f"{pad + (t - t0) / span_t * (width - 2 * pad):.1f},{height - pad - (v - lo) / span_v * (height - 2 * pad):.1f}" for t, v in points
    )
    last = points[-1][1]
    return Markup(
        f'<figure class="chart"><figcaption>{escape(label)}: <strong>{last:,.2f}{escape(unit)}</strong> '
        f'<span class="muted">(min {lo:,.2f}, max {hi:,.2f}, {len(points)} samples over {t1 - t0:,.0f} s)</span></figcaption>'
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f'<polyline points="{coords}" class="series"/></svg></figure>'
    )
