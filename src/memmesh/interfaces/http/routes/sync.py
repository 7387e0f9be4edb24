"""Replication between peer nodes (docs/federation.md): push, the change feed, hello and cluster status.

Only ``peer`` keys (or the local admin of an open server) may use push, since and hello;
the service (``Service.replica``) checks that and applies every rule.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from memmesh.errors import MemmeshError
from memmesh.federation.changes import MAX_BATCH_ITEMS, ClusterStatus, Hello, SyncBatch, SyncPage, SyncReport
from memmesh.federation.digest import DigestNode, DigestReport
from memmesh.interfaces.http.deps import Caller, Svc, json_response
from memmesh.interfaces.http.routes import ERRORS
from memmesh.model import Conflict

router = APIRouter(prefix="/api/v1/sync", tags=["sync"], responses=ERRORS)
log = logging.getLogger("memmesh.federation")


@router.post("/push", response_model=SyncReport, summary="Apply a peer's batch of changes")
def push(batch: SyncBatch, service: Svc, who: Caller) -> Response:
    """Apply a batch from a peer in one transaction (idempotent: a batch applied twice
    changes nothing). A bad batch is rejected whole and the store is left unchanged."""
    try:
        return json_response(service.replica.apply(batch, principal=who))
    except MemmeshError as exc:
        log.warning("push from node %s rejected: %s %s", batch.node, exc.code, exc.message)
        raise


@router.get("/since", response_model=SyncPage, summary="Changes after a change number")
def since(
    service: Svc,
    who: Caller,
    peer: Annotated[str, Query(description="the asking node's id")],
    since: Annotated[int, Query(ge=0, description="the last change number of ours the asking node applied")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_BATCH_ITEMS, description="rows per page")] = 500,
    omit_own: Annotated[
        bool, Query(description="leave out the memories and tombstones the asking node wrote itself (what a catch-up pull asks)")
    ] = False,
) -> Response:
    """One page of this node's change feed; ``more`` says whether to ask again from ``upto``."""
    return json_response(service.replica.feed(peer=peer, since=since, limit=limit, omit_own=omit_own, principal=who))


@router.get("/hello", response_model=Hello, summary="This node's id and clock")
def hello(service: Svc, who: Caller) -> Response:
    return json_response(service.replica.hello(who))


@router.get("/status", response_model=ClusterStatus, summary="Cluster status (admin)")
def status(service: Svc, who: Caller) -> Response:
    """Peers, cursors, outbox depth, last contact and clocks, as ``memmesh cluster status``."""
    return json_response(service.replica.status(principal=who))


@router.get("/conflicts", response_model=list[Conflict], summary="Recorded replication conflicts (admin)")
def conflicts(service: Svc, who: Caller, memory_id: str | None = None) -> Response:
    """Concurrent versions that lost a merge, each under an id every node gives it the same way."""
    return json_response(service.replica.conflicts(memory_id=memory_id, principal=who))


@router.get("/digest", response_model=DigestReport | DigestNode, summary="Per-namespace content digests")
def digest(
    service: Svc,
    who: Caller,
    namespace: Annotated[str | None, Query(description="one namespace's digest tree instead of every namespace's digest")] = None,
    prefix: Annotated[str, Query(max_length=64, description="the tree node: a hex prefix of the bucket (sha256 of the memory id)")] = "",
    leaves: Annotated[bool, Query(description="answer with the rows under the prefix, however many")] = False,
) -> Response:
    """Without ``namespace``: every namespace's row count and digest on this node (equal on
    two nodes exactly when they hold the same replicated state). With it: one node of that
    namespace's Merkle-style tree, its 16 children's digests or, when small, its rows.
    For peers and store-wide admins."""
    if namespace is None:
        return json_response(service.replica.digests(principal=who))
    return json_response(service.replica.digest_node(namespace=namespace, prefix=prefix, leaves=leaves, principal=who))


class ItemsRequest(BaseModel):
    """Which memories' replicated state to read."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=MAX_BATCH_ITEMS // 4)


@router.post("/items", response_model=SyncPage, summary="The current state of some memories (anti-entropy)")
def items(body: ItemsRequest, service: Svc, who: Caller) -> Response:
    """Each named memory's current version or tombstone, its links and conflicts, as a page
    outside the feed: what anti-entropy pulls for the rows whose digests differ."""
    return json_response(service.replica.items(body.ids, principal=who))
