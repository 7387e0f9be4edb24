"""Replication between peer nodes (SPEC §7): push, the change feed, hello and cluster status.

Only ``peer`` keys (or the local admin of an open server) may use push, since and hello;
the service (``Service.replica``) checks that and applies every rule.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Response

from memmesh.errors import MemmeshError
from memmesh.federation.changes import MAX_BATCH_ITEMS, ClusterStatus, Hello, SyncBatch, SyncPage, SyncReport
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
) -> Response:
    """One page of this node's change feed; ``more`` says whether to ask again from ``upto``."""
    return json_response(service.replica.feed(peer=peer, since=since, limit=limit, principal=who))


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
