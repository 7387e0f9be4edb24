"""Per-namespace content digests of a node, computed from its public API.

The ONE place the chaos checker asks "do these nodes hold the same thing?". It lists every
live memory over HTTP and hashes, per namespace, each memory's id, content hash and winning
version. When the server offers its own digests (``GET /api/v1/sync/digest``), point
:func:`namespace_digests` at that route instead; nothing else needs to change.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any, Protocol


class _Listable(Protocol):
    def memories(self, namespace: str | None = None) -> list[dict[str, Any]]: ...


def digests_of(memories: list[dict[str, Any]]) -> dict[str, str]:
    """namespace → sha256 over its memories' ``id, sha256(content), hlc, node`` lines in id order.

    The winning version is part of the digest, so two nodes that hold the same text under
    different versions (an unresolved conflict) do not compare equal.
    """
    lines: dict[str, list[str]] = defaultdict(list)
    for m in memories:
        content = hashlib.sha256(m["content"].encode()).hexdigest()
        version = m.get("version") or {}
        lines[m["namespace"]].append(f"{m['id']}\t{content}\t{version.get('hlc', '')}\t{version.get('node', '')}")
    return {ns: hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest() for ns, rows in sorted(lines.items())}


def namespace_digests(node: _Listable, namespace: str | None = None) -> dict[str, str]:
    """The per-namespace digests of one node, of ``namespace`` and below when given (see
    :func:`digests_of`)."""
    return digests_of(node.memories(namespace))
