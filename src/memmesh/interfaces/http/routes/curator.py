"""The curator over HTTP: ``POST /api/v1/curator/run``, ``GET /api/v1/curator/runs``,
``GET /api/v1/curator/runs/{run_id}`` and ``POST /api/v1/curator/runs/{run_id}/rollback``.

Each route is one ``service.curator`` call as the caller: a run curates only the
namespaces the key may write; a run made on another key's namespaces answers 404.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import Field

from memmesh.curator import CuratorReport, CuratorRun, RollbackReport
from memmesh.interfaces.http.deps import Caller, Svc, json_response
from memmesh.interfaces.http.routes import ERRORS
from memmesh.interfaces.http.schemas import Body

router = APIRouter(prefix="/api/v1/curator", responses=ERRORS, tags=["curator"])


class RunRequest(Body):
    """One curator run."""

    dry_run: bool = Field(default=False, description="report what would change and change nothing (the run is still recorded)")
    namespace: str | None = Field(default=None, description="curate only this namespace and those below it")
    max_ops: int | None = Field(default=None, description="most writes this run makes (default: [curator] max_ops); at least 1")


@router.post("/run", response_model=CuratorReport, summary="Run the curator")
def run(service: Svc, who: Caller, body: RunRequest | None = None) -> Response:
    """One run; answers its report (docs/curator.md). 409 while another run holds the store's run lease."""
    req = body or RunRequest()
    return json_response(service.curator.run(dry_run=req.dry_run, namespace=req.namespace, max_ops=req.max_ops, principal=who))


@router.get("/runs", response_model=list[CuratorRun], summary="List curator runs")
def list_runs(service: Svc, who: Caller, limit: Annotated[int, Query(description="at most this many, newest first")] = 20) -> Response:
    """Recorded runs, newest first (a namespace-limited key sees runs made inside its namespaces)."""
    return json_response(service.curator.runs(limit=limit, principal=who))


@router.get("/runs/{run_id}", response_model=CuratorRun, summary="One curator run")
def get_run(run_id: str, service: Svc, who: Caller) -> Response:
    return json_response(service.curator.get_run(run_id, principal=who))


@router.post("/runs/{run_id}/rollback", response_model=RollbackReport, summary="Roll back a curator run")
def rollback(run_id: str, service: Svc, who: Caller) -> Response:
    """Put back exactly what the run changed (409 for a dry run or a run rolled back already)."""
    return json_response(service.curator.rollback(run_id, principal=who))
