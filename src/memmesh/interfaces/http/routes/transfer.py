"""``POST /api/v1/import``: import another tool's export (or memmesh's own) sent as text.

The body carries the source's text, never a path: a server does not open files a request
names. The import runs as the caller's key (issue 21): records outside its namespaces are
rejected one by one and counted in the report; a reader key, or a key whose namespaces cover
none of the source, is refused before anything is written; a revoked key never gets here.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from pydantic import ConfigDict, Field

from memmesh.interfaces.http.deps import Caller, Svc, json_response
from memmesh.interfaces.http.routes import ERRORS
from memmesh.interfaces.http.schemas import Body
from memmesh.io.importers.reports import ImportReport
from memmesh.io.jsonl import ImportReport as JsonlImportReport
from memmesh.model import NamespaceText, StrictBool, Tier
from memmesh.transfer import ImportOptions

router = APIRouter(prefix="/api/v1", responses=ERRORS)


class ImportRequest(Body):
    """A source to import, as text, and how."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "format": "mcp-memory",
                    "content": '{"type":"entity","name":"Ada","entityType":"person","observations":["writes code"]}',
                    "namespace": "team/kg",
                }
            ]
        },
    )

    content: str = Field(
        min_length=1,
        description="the source's text: memmesh JSON Lines (memmesh export), the MCP memory server's memory.jsonl, or mem0's export JSON",
    )
    format: Literal["auto", "jsonl", "mcp-memory", "mem0"] = Field(default="auto", description="auto: told from the content")
    namespace: NamespaceText | None = Field(
        default=None, description="target namespace (mcp-memory: default mcp; mem0: base, default mem0; not for jsonl)"
    )
    tier: Tier = Field(default=Tier.long, description="tier of imported memories (not jsonl, which keeps its own)")
    dry_run: StrictBool = Field(default=False, description="validate and count; write nothing")
    sample: int = Field(default=3, ge=0, le=100, description="recall this many imported records afterwards to check them")


@router.post(
    "/import",
    response_model=ImportReport | JsonlImportReport,
    tags=["admin"],
    summary="Import another memory tool's export",
)
def import_text(body: ImportRequest, service: Svc, who: Caller) -> Response:
    """Idempotent (a re-run writes nothing). Needs a writer key; each record outside the key's
    namespaces is counted as failed with its reason. memmesh's own JSON Lines restores every
    memory as it was, so it needs an admin key covering every memory in it."""
    options = ImportOptions(format=body.format, namespace=body.namespace, tier=body.tier.value, dry_run=body.dry_run, sample=body.sample)
    return json_response(service.transfer.import_text(body.content, options, source="request body", principal=who))
