"""What a node holds, as the chaos checker asks it: the federation's own digests.

The ONE place the checker asks "do these nodes hold the same thing?" and "is this memory
there?". Both answers come from the route the nodes themselves compare during anti-entropy
(``GET /api/v1/sync/digest``, :mod:`memmesh.federation.digest`): per namespace, a digest over
every memory's and tombstone's winning version stamp, every visible link and every recorded
conflict. Polling it costs one small answer per node (no memory contents), so the checker
polls it until the nodes agree and only then reads the rows (``?namespace=&leaves=true``:
keys and version stamps, still no contents) to check the acknowledged writes one by one.
"""

from __future__ import annotations

from typing import Any, Protocol

DIGEST = "/api/v1/sync/digest"


class _Callable(Protocol):
    def call(self, method: str, path: str, **kwargs: Any) -> Any: ...


def _json(node: _Callable, **params: Any) -> dict[str, Any]:
    response = node.call("GET", DIGEST, params=params)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def under(namespace: str, prefix: str | None) -> bool:
    """``namespace`` is ``prefix`` or below it (everything when ``prefix`` is None)."""
    return prefix is None or namespace == prefix or namespace.startswith(prefix + "/")


def namespace_digests(node: _Callable, prefix: str | None = None) -> dict[str, str]:
    """namespace → the node's digest of it, for ``prefix`` and below when given."""
    report = _json(node)
    return {n["namespace"]: n["digest"] for n in report["namespaces"] if under(n["namespace"], prefix)}


def live_ids(node: _Callable, namespaces: list[str]) -> set[str]:
    """The ids of the live memories (not tombstones) the node holds in ``namespaces``, read
    from the bottom of its digest tree (``m|<id>`` rows)."""
    ids: set[str] = set()
    for namespace in namespaces:
        for leaf in _json(node, namespace=namespace, leaves="true").get("leaves") or []:
            if leaf["key"].startswith("m|"):
                ids.add(leaf["memory_id"])
    return ids
