"""The health checks ``memmesh doctor`` runs, as plain data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memmesh.config import Settings
from memmesh.errors import MemmeshError
from memmesh.service import Service
from memmesh.urls import redact_url


def run_checks(settings: Settings, service_factory: Callable[[], Service]) -> list[dict[str, Any]]:
    """Store (opens, schema, integrity) and embedder (loads, embeds); never raises."""
    checks: list[dict[str, Any]] = []
    try:
        service = service_factory()
    except MemmeshError as exc:
        return [{"name": "store", "status": "fail", "detail": exc.message}]
    store = service.store
    checks.append({"name": "store", "status": "ok", "detail": f"{redact_url(store.url)} schema {store.schema_version}"})
    integrity = store.integrity_check()
    checks.append({"name": "integrity", "status": "ok" if integrity == "ok" else "fail", "detail": integrity})
    if service.embedder is None:
        checks.append({"name": "embedder", "status": "warn", "detail": "none configured: keyword-only recall"})
    else:
        health = service.embedder.health()
        checks.append(
            {
                "name": "embedder",
                "status": "ok" if health.get("ok") else "warn",
                "detail": f"{health.get('model_id')}: {health.get('detail')}",
            }
        )
        pending = len(service.reindex_pending())
        checks.append(
            {
                "name": "vectors",
                "status": "ok" if pending == 0 else "warn",
                "detail": "every memory embedded" if pending == 0 else f"{pending} memories need `memmesh reindex`",
            }
        )
    return checks
