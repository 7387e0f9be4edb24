"""Store-wide views and administration: stats, namespaces, agents, API keys, backup, gc."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from memmesh.interfaces.http.deps import Caller, Svc, json_response
from memmesh.interfaces.http.routes import ERRORS
from memmesh.interfaces.http.schemas import AgentRequest, BackupRequest, KeyRequest
from memmesh.io.backup import BackupResult
from memmesh.model import Agent, ApiKey, CreatedKey, GcReport, NamespaceCount, Stats

router = APIRouter(prefix="/api/v1", responses=ERRORS)


@router.get("/stats", response_model=Stats, tags=["admin"], summary="Store statistics")
def stats(service: Svc, who: Caller) -> Response:
    """Counts by tier and namespace, links, memories expiring soon, size on disk (only the
    caller's namespaces for a key limited to some)."""
    return json_response(service.stats(principal=who))


@router.get("/namespaces", response_model=list[NamespaceCount], tags=["admin"], summary="Namespaces with counts")
def namespaces(service: Svc, who: Caller) -> Response:
    """Namespaces that hold live memories, largest first."""
    return json_response(service.namespaces(principal=who))


@router.get("/agents", response_model=list[Agent], tags=["agents"], summary="List agents")
def list_agents(service: Svc, who: Caller) -> Response:
    """Registered agents (admin keys only)."""
    return json_response(service.agents(principal=who))


@router.post("/agents", status_code=201, response_model=Agent, tags=["agents"], summary="Register an agent")
def register_agent(body: AgentRequest, service: Svc, who: Caller) -> Response:
    """Register or update an agent identity (admin keys only)."""
    agent = service.register_agent(body.agent_id, display_name=body.display_name, role=body.role, namespaces=body.namespaces, principal=who)
    return json_response(agent, 201)


@router.get("/keys", response_model=list[ApiKey], tags=["keys"], summary="List API keys")
def list_keys(
    service: Svc,
    who: Caller,
    include_revoked: Annotated[bool, Query(description="also list revoked keys")] = False,
) -> Response:
    """API keys without their secrets (admin keys only)."""
    return json_response(service.keys(include_revoked=include_revoked, principal=who))


@router.post("/keys", status_code=201, response_model=CreatedKey, tags=["keys"], summary="Create an API key")
def create_key(body: KeyRequest, service: Svc, who: Caller) -> Response:
    """A new key; ``key`` in the response is its only copy (the store keeps a hash)."""
    return json_response(service.create_key(body.agent_id, role=body.role, namespaces=body.namespaces, principal=who), 201)


@router.delete("/keys/{key_id}", response_model=ApiKey, tags=["keys"], summary="Revoke an API key")
def revoke_key(key_id: str, service: Svc, who: Caller) -> Response:
    """Revoke at once: requests with the key get 401 from now on."""
    return json_response(service.revoke_key(key_id, principal=who))


@router.post("/backup", status_code=201, response_model=BackupResult, tags=["admin"], summary="Take a backup now")
def take_backup(service: Svc, who: Caller, body: BackupRequest | None = None) -> Response:
    """An online snapshot with its checksummed manifest in the server's backup folder
    (``<data dir>/backups``); needs an admin key for every namespace."""
    return json_response(service.backup_now(retain=body.retain if body else None, principal=who), 201)


@router.post("/admin/gc", response_model=GcReport, tags=["admin"], summary="Run garbage collection now")
def run_gc(service: Svc, who: Caller) -> Response:
    """Archive expired memories, delete those past their namespace standard's
    ``retention_days`` (restorable, audited) and purge old tombstones, as ``memmesh gc`` and
    the scheduled gc in serve (``[gc] interval_secs``) do; needs an admin key for every
    namespace."""
    return json_response(service.gc(principal=who))
