"""Finding memories: hybrid recall (counts as an access) and keyword search (inspects only)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from memmesh.interfaces.http.deps import Caller, Svc, json_response, server
from memmesh.interfaces.http.routes import ERRORS
from memmesh.interfaces.http.routes.memories import Filters
from memmesh.interfaces.http.schemas import RecallRequest
from memmesh.model import RecallResult

router = APIRouter(prefix="/api/v1", tags=["recall"], responses=ERRORS)


@router.post("/recall", response_model=RecallResult, summary="Recall memories for a query")
def recall(body: RecallRequest, request: Request, service: Svc, who: Caller) -> Response:
    """Hybrid (keyword + semantic) ranking adjusted by priority, confidence, recency and tier.
    Counts as an access: extends short/mid TTLs and drives promotion to long."""
    started = time.perf_counter()
    chosen = body.filters.model_dump(exclude_none=True) if body.filters else {}
    result = service.recall(
        body.query,
        top_k=body.top_k,
        mode=body.mode,
        explain=body.explain,
        budget_tokens=body.budget_tokens,
        touch=body.touch,
        principal=who,
        **chosen,
    )
    server(request).metrics.recall_latency.labels(result.mode).observe(time.perf_counter() - started)
    return json_response(result)


@router.get("/search", response_model=RecallResult, summary="Keyword search")
def search(
    request: Request,
    service: Svc,
    who: Caller,
    chosen: Filters,
    q: Annotated[str, Query(description="keywords")],
    top_k: Annotated[int | None, Query(ge=1, description="hits to return")] = None,
    explain: Annotated[bool, Query(description="include the parts of each score")] = False,
) -> Response:
    """BM25 keyword search with the same filters as listing; does not count as an access. Scores of a key limited to
    some namespaces use only their memories' word statistics."""
    started = time.perf_counter()
    result = service.search(q, top_k=top_k, explain=explain, principal=who, **chosen)
    server(request).metrics.recall_latency.labels("search").observe(time.perf_counter() - started)
    return json_response(result)
