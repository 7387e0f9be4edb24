"""Anti-entropy: find where this node and a peer differ by their digest trees, and repair
only that (see :mod:`.digest` for the tree).

Pushes and catch-up pulls follow the change feed, so anything the feed did not carry (a row
lost to a restored backup or a disk, a bug) would stay different forever. A repair compares
namespace digests, descends only into subtrees whose digests differ, exchanges the rows of
the differing leaves, then ships each differing memory's whole current state both ways
(its version or tombstone, its links, its conflicts) through the ordinary merge: the
greater stamp wins on both nodes, so after a repair both hold the same state.

What crosses the wire is counted in :class:`RepairReport` (``rows_exchanged``): for one
diverged memory among 100k rows it stays well under 100.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from memmesh.errors import MemmeshError
from memmesh.federation.changes import MAX_BATCH_ITEMS, SyncBatch
from memmesh.federation.digest import (
    Comparison,
    DigestLeaf,
    DigestNode,
    DigestReport,
    Row,
    compare_reports,
    digests_from,
    tree_node_from,
)
from memmesh.model import LOCAL_PRINCIPAL

if TYPE_CHECKING:
    from collections.abc import Iterable

    from memmesh.federation.peers import PeerClient
    from memmesh.federation.replica import Replica

log = logging.getLogger("memmesh.federation")


class RepairReport(BaseModel):
    """What one anti-entropy round with one peer did."""

    peer: str
    namespaces_differing: list[str] = Field(default_factory=list)
    tree_nodes: int = 0
    """Digest tree nodes read from the peer (one request each)."""
    rows_exchanged: int = 0
    """Leaf rows read from the peer plus replicated items pulled from and pushed to it."""
    memories: int = 0
    """Memories whose state differed and was shipped both ways."""
    pulled: int = 0
    pushed: int = 0
    applied_here: int = 0
    applied_there: int = 0


def verify(ours: DigestReport, clients: Iterable[PeerClient]) -> Comparison:
    """This node's namespace digests beside every peer's (``cluster verify``). A peer that
    cannot be read is named in ``errors`` with why, and the verdict is then not consistent:
    what was not compared is not known to agree."""
    reports = [ours]
    errors: dict[str, str] = {}
    for client in clients:
        try:
            reports.append(client.digests())
        except MemmeshError as exc:
            errors[client.url] = exc.message
    return compare_reports(reports, errors)


def _differing(ours: list[DigestLeaf], theirs: list[DigestLeaf]) -> set[str]:
    mine = {leaf.key: (leaf.value, leaf.memory_id) for leaf in ours}
    other = {leaf.key: (leaf.value, leaf.memory_id) for leaf in theirs}
    return {(mine.get(key) or other[key])[1] for key in mine.keys() | other.keys() if mine.get(key, ("",))[0] != other.get(key, ("",))[0]}


def repair(replica: Replica, client: PeerClient, peer_node: str) -> RepairReport:
    """One anti-entropy round between this node and the peer behind ``client``."""
    service = replica.service
    own = service.node_id
    local_rows: list[Row] = replica.digest_rows()
    report = RepairReport(peer=peer_node)
    ours = digests_from(local_rows, own)
    theirs = client.digests()
    report.namespaces_differing = compare_reports([ours, theirs]).differing
    ids: set[str] = set()

    def descend(namespace: str, prefix: str) -> None:
        mine: DigestNode = tree_node_from(local_rows, own, namespace, prefix)
        other = client.digest_node(namespace, prefix)
        report.tree_nodes += 1
        if mine.digest == other.digest:
            return
        if mine.leaves is not None or other.leaves is not None:
            my_leaves = mine.leaves if mine.leaves is not None else tree_node_from(local_rows, own, namespace, prefix, leaves=True).leaves
            their_leaves = other.leaves if other.leaves is not None else client.digest_node(namespace, prefix, leaves=True).leaves
            report.rows_exchanged += len(their_leaves or [])
            ids.update(_differing(my_leaves or [], their_leaves or []))
            return
        mine_children, their_children = mine.children or {}, other.children or {}
        for digit in sorted(mine_children.keys() | their_children.keys()):
            a, b = mine_children.get(digit), their_children.get(digit)
            if a is None or b is None or a.digest != b.digest:
                descend(namespace, prefix + digit)

    for namespace in report.namespaces_differing:
        descend(namespace, "")
    report.memories = len(ids)
    chunk = MAX_BATCH_ITEMS // 4
    wanted = sorted(ids)
    for start in range(0, len(wanted), chunk):
        part = wanted[start : start + chunk]
        page = client.items(part)
        if page.node != peer_node:
            from memmesh.errors import PeerError

            raise PeerError(f"peer {client.url} answered items as node {page.node}, not {peer_node}")
        report.pulled += len(page.items)
        if page.items:
            report.applied_here += replica.apply(SyncBatch(node=peer_node, items=page.items), principal=LOCAL_PRINCIPAL).applied
        mine_page = replica.items(part, principal=LOCAL_PRINCIPAL)
        report.pushed += len(mine_page.items)
        if mine_page.items:
            report.applied_there += client.push(SyncBatch(node=own, items=mine_page.items)).applied
    report.rows_exchanged += report.pulled + report.pushed
    if ids:
        log.info(
            "anti-entropy with %s: %d memories differed in %s; %d rows exchanged",
            peer_node,
            len(ids),
            ", ".join(report.namespaces_differing),
            report.rows_exchanged,
        )
    return report
