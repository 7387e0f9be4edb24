"""Memories: store, batch store, list, get, update, delete, delete by filter, history, links."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Response

from memmesh.interfaces.http.deps import Caller, Svc, json_response
from memmesh.interfaces.http.routes import ERRORS
from memmesh.interfaces.http.schemas import BatchRequest, DeleteAllResult, NewMemoryRequest, StoredMemory
from memmesh.model import HistoryEntry, Kind, Link, Memory, MemoryPatch, Page, Tier, Tombstone

router = APIRouter(prefix="/api/v1", tags=["memories"], responses=ERRORS)

NEW_MEMORY_EXAMPLES = {
    "fact": {
        "summary": "A fact in a namespace",
        "value": {"content": "Alice prefers green tea", "namespace": "people/alice", "tags": ["preference"], "priority": 7},
    },
    "idempotent": {
        "summary": "With a client id (safe to retry)",
        "value": {"id": "0190f5d2-6a4b-7c1e-9d2f-3b4c5d6e7f80", "content": "Deploys happen on Tuesdays", "namespace": "team/ops"},
    },
}


async def list_filters(
    namespace: Annotated[str | None, Query(description="namespace; matches it and everything below it")] = None,
    tags: Annotated[list[str] | None, Query(description="repeat or comma-separate; all must match")] = None,
    tier: Tier | None = None,
    kind: Kind | None = None,
    agent_id: str | None = None,
    since: Annotated[datetime | None, Query(description="created at or after (RFC 3339)")] = None,
    until: Annotated[datetime | None, Query(description="created before (RFC 3339)")] = None,
) -> dict[str, Any]:
    """The listing filters (query parameters) as service keyword arguments."""
    split = [t for value in tags for t in value.split(",")] if tags else None
    return {"namespace": namespace, "tags": split, "tier": tier, "kind": kind, "agent_id": agent_id, "since": since, "until": until}


Filters = Annotated[dict[str, Any], Depends(list_filters)]

WaitForVector = Annotated[
    bool,
    Query(
        description="answer only once the memory's vector is stored too (default: answer at commit; "
        "the vector follows within milliseconds, and recall on this server waits for it)"
    ),
]


@router.post(
    "/memories",
    status_code=201,
    response_model=StoredMemory,
    summary="Store a memory",
    responses={200: {"model": StoredMemory, "description": "The same content was already stored: the stored memory (existed: true)"}},
)
def add_memory(
    new: Annotated[NewMemoryRequest, Body(openapi_examples=NEW_MEMORY_EXAMPLES)], service: Svc, who: Caller, wait: WaitForVector = False
) -> Response:
    """Store one memory (201). An identical memory in the same namespace, or a retry with the
    same client ``id``, returns the stored one instead of a duplicate (200, ``existed: true``).
    ``links`` are stored with it in one transaction: a missing target, or one the key cannot
    read, refuses the whole write (404) and nothing is stored."""
    links = [link.model_dump() for link in new.links] if new.links is not None else []
    memory, made, created = service.add_linked_outcome(new.memory(), links, principal=who, wait=wait)
    body = StoredMemory(**memory.model_dump(), existed=not created, links=made if new.links is not None else None)
    content = body.model_dump_json(exclude={"links"} if new.links is None else None).encode()
    return Response(content=content, status_code=201 if created else 200, media_type="application/json")


@router.post("/memories/batch", status_code=201, response_model=list[Memory], summary="Store several memories")
def add_memories(batch: BatchRequest, service: Svc, who: Caller, wait: WaitForVector = False) -> Response:
    """Store up to 1000 memories in one transaction: all are stored or none is."""
    return json_response(service.add_many(batch.items, principal=who, wait=wait), 201)


@router.get("/memories", response_model=Page, summary="List memories")
def list_memories(
    service: Svc,
    who: Caller,
    chosen: Filters,
    limit: Annotated[int, Query(ge=1, description="page size (at most limits.max_page_size)")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    """Newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    return json_response(service.list(limit=limit, cursor=cursor, principal=who, **chosen))


@router.delete("/memories", response_model=DeleteAllResult, summary="Delete memories matching filters")
def delete_memories(
    service: Svc,
    who: Caller,
    chosen: Filters,
    everything: Annotated[bool, Query(description="required to delete with no filter at all")] = False,
) -> Response:
    """Delete every memory the filters match (tombstones stay); returns how many."""
    return json_response(DeleteAllResult(deleted=service.delete_all(principal=who, everything=everything, **chosen)))


@router.get("/memories/{memory_id}", response_model=Memory, summary="Get a memory")
def get_memory(memory_id: str, service: Svc, who: Caller) -> Response:
    """One live memory. Reading by id inspects only: it does not count as an access."""
    # A plain def (thread pool), like every route that reaches the store: a read can wait on
    # a busy database or a remote Postgres, and must never stall the event loop.
    return json_response(service.get(memory_id, principal=who))


@router.patch("/memories/{memory_id}", response_model=Memory, summary="Update a memory")
def update_memory(memory_id: str, patch: MemoryPatch, service: Svc, who: Caller, wait: WaitForVector = False) -> Response:
    """Change the given fields; the old values go to the memory's history."""
    return json_response(service.update(memory_id, patch, principal=who, wait=wait))


@router.delete("/memories/{memory_id}", response_model=Tombstone, summary="Delete a memory")
def delete_memory(memory_id: str, service: Svc, who: Caller) -> Response:
    """Delete a memory and its links; a tombstone remains so replicas and backups agree."""
    return json_response(service.delete(memory_id, principal=who))


@router.get("/memories/{memory_id}/history", response_model=list[HistoryEntry], summary="History of a memory")
def memory_history(memory_id: str, service: Svc, who: Caller) -> Response:
    """Every change, oldest first; also answers for deleted memories."""
    return json_response(service.history(memory_id, principal=who))


@router.get("/memories/{memory_id}/links", response_model=list[Link], summary="Links of a memory")
def memory_links(memory_id: str, service: Svc, who: Caller) -> Response:
    """Links from and to the memory."""
    return json_response(service.links(memory_id, principal=who))
