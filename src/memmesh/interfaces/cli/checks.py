"""The health checks ``memmesh doctor`` runs, as plain data."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memmesh.config import Settings, check_secret_file, unknown_env
from memmesh.errors import ConfigError, MemmeshError, NotFoundError
from memmesh.fileaccess import cannot_write
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.recall.embedders import Embedder
from memmesh.redact import redact_url
from memmesh.service import Service
from memmesh.store.sqlite import path_from_url
from memmesh.wording import agree, count


def run_checks(settings: Settings, service_factory: Callable[[], Service]) -> list[dict[str, Any]]:
    """Secret files, store (opens, schema, integrity) and embedder (loads, embeds); never raises."""
    checks: list[dict[str, Any]] = []
    unread = unknown_env(os.environ)
    if unread:
        checks.append({"name": "environment", "status": "warn", "detail": "not memmesh settings, ignored: " + ", ".join(unread)})
    for setting, path in settings.secret_files():
        try:
            check_secret_file(setting, path)
        except ConfigError as exc:
            return [*checks, {"name": "secret file", "status": "fail", "detail": exc.message}]
        checks.append({"name": "secret file", "status": "ok", "detail": f"{setting} {path}: owner only"})
    try:
        service = service_factory()
    except NotFoundError as exc:  # nothing stored yet: not a failure, and doctor creates nothing
        blocked = _folder_refuses_a_new_store(settings)
        if blocked:
            return [*checks, {"name": "store", "status": "fail", "detail": blocked}]
        checks.append({"name": "store", "status": "warn", "detail": f"{exc.message}; the first write or `memmesh init` creates it"})
        try:
            from memmesh.compose import build_embedder_from

            return checks + _embedder_checks(build_embedder_from(settings), None)
        except MemmeshError as exc:
            return [*checks, {"name": "embedder", "status": "fail", "detail": exc.message}]
    except MemmeshError as exc:
        return [*checks, {"name": "store", "status": "fail", "detail": exc.message}]
    store = service.store
    checks.append({"name": "store", "status": "ok", "detail": f"{redact_url(store.url)} schema {store.schema_version}"})
    integrity = store.integrity_check()
    checks.append({"name": "integrity", "status": "ok" if integrity == "ok" else "fail", "detail": integrity})
    from memmesh.health import lease_check

    checks.append(lease_check(service))
    return checks + _embedder_checks(service.embedder, service)


def _folder_refuses_a_new_store(settings: Settings) -> str | None:
    """Why the first write could not create the missing SQLite database (its folder exists but
    this user cannot write it), with the fix; None when it could, or for PostgreSQL."""
    url = settings.storage_url
    if not url.startswith("sqlite:"):
        return None
    path = Path(path_from_url(url))
    denied = cannot_write(path.parent) if path.parent.is_dir() else None
    if denied is None:
        return None
    return (
        f"no memmesh database at {path}, and none can be created: the folder {path.parent} {denied.why}; "
        f"{denied.fix}, or point --db at a folder this user can write"
    )


def _embedder_checks(embedder: Embedder | None, service: Service | None) -> list[dict[str, Any]]:
    """The embedder loads and embeds; with a store, every memory has a vector from it."""
    if embedder is None:
        return [{"name": "embedder", "status": "warn", "detail": "none configured: keyword-only recall"}]
    health = embedder.health()
    checks = [
        {
            "name": "embedder",
            "status": "ok" if health.get("ok") else "warn",
            "detail": f"{health.get('model_id')}: {health.get('detail')}",
        }
    ]
    if service is not None:
        pending = len(service.reindex_pending(principal=LOCAL_PRINCIPAL))
        checks.append(
            {
                "name": "vectors",
                "status": "ok" if pending == 0 else "warn",
                "detail": "every memory embedded"
                if pending == 0
                else f"{count(pending, 'memory')} {agree(pending, 'needs', 'need')} `memmesh reindex`",
            }
        )
    return checks


def health_report(service_factory: Callable[[], Service]) -> dict[str, Any]:
    """Every component's health (:func:`memmesh.health.check_health`); a store that cannot be
    opened is the one component reported, as down (or, when nothing is stored yet, degraded)."""
    from memmesh.health import check_health

    try:
        service = service_factory()
    except NotFoundError as exc:
        return {"status": "degraded", "components": {"store": {"status": "degraded", "reason": f"{exc.message}; nothing stored yet"}}}
    except MemmeshError as exc:
        return {"status": "down", "components": {"store": {"status": "down", "reason": exc.message}}}
    return check_health(service)
