"""Health of every component, as one report for ``/readyz``, MCP ``memory_health`` and
``memmesh doctor`` (issue 17).

Each component is probed on its own, and a probe that fails is that component's answer, not
the report's: ``{"status": "ok|degraded|down", "components": {name: {"status", "reason",
…}}}``. Only the store being unreachable makes the whole report ``down`` (nothing works
without it, so ``/readyz`` answers 503 then and only then); anything else that fails makes
it ``degraded``, with the component named and the reason in words an operator can act on:

- ``store``: answers a query (schema version);
- ``writes``: no write failed for the store's own reasons (a full disk, an I/O error) in the
  last :data:`WRITE_TROUBLE_S`, and a SQLite store's disk has at least ``storage.min_free_mb``
  free (0: not checked; PostgreSQL's disk is its server's to watch);
- ``vector_index``: every memory has a vector from the current embedder;
- ``embedder``: embeds a test text (a missing model, an unreachable server);
- ``peers``: each peer answered the last push to it and the last catch-up pull from it
  (with ``--peers``; a peer taken out of ``--peers`` is named but not counted);
- ``outbox``: no peer this node pushes to is more than ``federation.outbox_lag_secs`` behind
  on our changes (peers taken out of ``--peers`` are left out, and so are peers that only
  reach this node, with no URL here: a ``sync-daemon`` laptop, a node replaced by a new store
  at the same URL; nothing is shipped to them, they fetch, and their lag is their own);
- ``workers``: the ``memmesh workers run`` supervisor is up and no worker is failed (when
  ``bus.workers_status_file`` is set);
- ``bus``: the bus tables answer (open conversations, dead letters);
- ``audit``: the head of the audit chain, and how far it runs past its last signed
  checkpoint (signing configured).

Reasons never carry secrets: the store's password (and any URL's credentials) is scrubbed
from every one, and store locations are shown with :func:`memmesh.redact.redact_url`.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from memmesh.audit.capture import unwrap
from memmesh.errors import MemmeshError
from memmesh.kernel import authorize, is_store_admin
from memmesh.model import LOCAL_PRINCIPAL, Principal
from memmesh.redact import redact_url, scrub
from memmesh.service import Service
from memmesh.wording import count
from memmesh.workers.supervisor import read_status

Status = Literal["ok", "degraded", "down"]
Probe = tuple[Status, str, dict[str, Any]]
AUDIT_UNSIGNED_MAX = 2_000
"""Entries past the last signed checkpoint before the audit chain counts as degraded (the
checkpointer signs every second or 1,000 entries: twice that means it has stopped)."""
WRITE_TROUBLE_S = 60.0
"""How long after a write failed for the store's own reasons ``writes`` stays degraded."""
READY_CACHE_S = 1.0
"""How long one health report answers ``/readyz``: a probe run embeds a test text and scans
the store, so a load balancer polling many times a second must not run one per request."""


def _store(service: Service) -> Probe:
    ready = service.ready()
    return "ok", f"answers queries (schema {ready['schema_version']})", {"schema_version": ready["schema_version"]}


def _writes(service: Service) -> Probe:
    store = unwrap(service.store)
    trouble = getattr(store, "write_trouble", None)  # SQLite's writer keeps it (store/sqlite_writer.py)
    found = trouble() if trouble is not None else None
    if found is not None and time.time() - found[0] < WRITE_TROUBLE_S:
        ago = max(0.0, time.time() - found[0])
        return (
            "degraded",
            f"a write failed {ago:.0f} s ago: {found[1]} (reads still work; once the disk has room, writes resume "
            f"without a restart, and this clears {WRITE_TROUBLE_S:.0f} s after the last failure)",
            {},
        )
    free = _free_bytes(store)
    low = _low_disk(free, service.policy.min_free_bytes, store)
    if low is not None:
        return "degraded", low, {"free_bytes": free}
    if trouble is None:
        return "ok", "not tracked on this backend (PostgreSQL's disk is its server's to watch)", {}
    return "ok", f"no write failed in the last {WRITE_TROUBLE_S:.0f} s", {"free_bytes": free} if free is not None else {}


def _low_disk(free: int | None, minimum: int, store: Any) -> str | None:
    """Why the disk is too full to trust writes to (None: enough room, or not checked).

    Below ``storage.min_free_mb`` (the policy's ``min_free_bytes``; 0 turns it off) a full
    disk is near, and a full disk turns every write into a 503: ``memmesh doctor`` and
    ``/readyz`` see it coming this way."""
    if free is None or free >= minimum:
        return None
    return (
        f"{free // (1024 * 1024)} MiB free on the disk of {store.path}, under storage.min_free_mb ({minimum // (1024 * 1024)} MiB): "
        "writes will fail when it fills; free some space"
    )


def _free_bytes(store: Any) -> int | None:
    """Free bytes on the disk holding a SQLite store's file (None in memory or elsewhere)."""
    path = getattr(store, "path", None)
    if not isinstance(path, str) or getattr(store, "in_memory", True):
        return None
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    except OSError:
        return None


def _vector_index(service: Service) -> Probe:
    if service.embedder is None:
        return "ok", "no embedder configured: recall is keyword-only, no vectors needed", {}
    missing = len(service.store.ids_missing_vectors(service.embedder.model_id))
    if missing:
        return "degraded", f"memories without a vector from {service.embedder.model_id}: run `memmesh reindex`", {"missing": missing}
    return "ok", "every memory has a vector", {"missing": 0}


def _embedder(service: Service) -> Probe:
    if service.embedder is None:
        return "ok", "none configured: keyword-only recall", {}
    health = service.embedder.health()
    status: Status = "ok" if health.get("ok") else "degraded"
    reason = str(health.get("detail") or "")
    if status == "degraded":
        reason += " (recall falls back to keywords)"
    return status, f"{health.get('model_id')}: {reason}", {"model_id": health.get("model_id")}


def _peers(service: Service) -> Probe:
    if service.mesh is None:
        return "ok", "no peers configured", {}
    every = service.replica.status(principal=LOCAL_PRINCIPAL).peers
    peers = [p for p in every if not p.removed]
    gone = [p.node_id or "?" for p in every if p.removed]  # taken out of --peers, rows kept: named, not counted
    removed = f" ({count(len(gone), 'removed peer')} not counted: {', '.join(gone)})" if gone else ""
    down = [p for p in peers if not p.up]
    if down:
        named = "; ".join(f"{redact_url(p.url or '?')}: {p.last_error or 'not reached yet'}" for p in down)
        return (
            "degraded",
            f"{len(down)} of {count(len(peers), 'peer')} unreachable: {named}{removed}",
            {"peers": len(peers), "up": len(peers) - len(down)},
        )
    answered = "the peer answered" if len(peers) == 1 else f"all {len(peers)} peers answered"
    return "ok", answered + removed, {"peers": len(peers), "up": len(peers)}


def _outbox(service: Service) -> Probe:
    if service.mesh is None:
        return "ok", "no peers: nothing to ship", {}
    limit: float = service.mesh.settings.outbox_lag_s  # type: ignore[attr-defined]  # federation's Mesh (health may not import it)
    shipped_to = [p for p in service.replica.status(principal=LOCAL_PRINCIPAL).peers if p.url is not None and not p.removed]
    behind = [p for p in shipped_to if p.outbox_changes and (p.lag_seconds or 0) > limit]
    pending = sum(p.outbox_changes for p in shipped_to)
    if behind:
        named = ", ".join(redact_url(p.url or "?") for p in behind)
        return "degraded", f"changes wait more than {limit:g} s to ship to {named} (federation.outbox_lag_secs)", {"pending": pending}
    return "ok", f"{count(pending, 'change')} waiting to ship", {"pending": pending}


def _workers(service: Service) -> Probe:
    path = service.bus.policy.workers_status_file
    if path is None:
        return "ok", "no supervisor configured (bus.workers_status_file)", {}
    status = read_status(path)
    workers = status.get("workers", [])
    if not status.get("running"):
        return "degraded", status.get("error") or "the `memmesh workers run` supervisor is not running", {"workers": len(workers)}
    failed = [w for w in workers if w.get("state") == "failed"]
    if failed:
        named = ", ".join(f"{w['name']} ({int(w.get('restarts', 0))} restarts)" for w in failed)
        return "degraded", f"failed after too many restarts: {named}", {"workers": len(workers), "failed": len(failed)}
    return "ok", f"{count(len(workers), 'worker')} supervised", {"workers": len(workers), "failed": 0}


def _bus(service: Service) -> Probe:
    counts = service.bus.counts()
    dead = counts["tasks_dead"]
    note = f"; {count(dead, 'task')} in the dead-letter list" if dead else ""
    return "ok", f"{count(counts['conversations_open'], 'conversation')} open{note}", dict(counts)


def _audit(service: Service) -> Probe:
    from memmesh.audit.notes import read_checkpoints
    from memmesh.store import audit_sql

    with audit_sql.reading(service.store) as conn:
        head = audit_sql.head(conn)
    size = head[0] + 1 if head is not None else 0
    detail: dict[str, Any] = {"entries": size, "head": head[1][:16] if head is not None else None}
    folder = service.audit.folder
    if folder is None or service.audit.verifier() is None:
        return "ok", f"chain of {count(size, 'entry')} (no signed checkpoints configured)", detail
    found = read_checkpoints(folder, service.audit.origin).checkpoints
    signed = found[-1][0].size if found else 0
    detail["signed"] = signed
    if size - signed > AUDIT_UNSIGNED_MAX:
        return "degraded", f"more than {AUDIT_UNSIGNED_MAX} entries past the last signed checkpoint: is the checkpointer running?", detail
    return "ok", f"chain of {count(size, 'entry')}, {signed} under a signed checkpoint", detail


PROBES: tuple[tuple[str, Callable[[Service], Probe]], ...] = (
    ("store", _store),
    ("writes", _writes),
    ("vector_index", _vector_index),
    ("embedder", _embedder),
    ("peers", _peers),
    ("outbox", _outbox),
    ("workers", _workers),
    ("bus", _bus),
    ("audit", _audit),
)
NEEDS_STORE = frozenset({"vector_index", "outbox", "bus", "audit"})


def _secrets(service: Service) -> list[str]:
    """The store URL's password, wherever it is written (authority or query)."""
    parts = urlsplit(service.store.url)
    found = [parts.password] if parts.password else []
    found += parse_qs(parts.query).get("password", [])
    return [s for s in found if s]


def lease_check(service: Service) -> dict[str, Any]:
    """``memmesh doctor``'s ``leases`` line: who holds the background leases (curator run,
    scheduled gc, each running server's serving mark) and for how long; an expired one is free (its holder stopped, or died: the
    next turn takes it). Store-wide, so for the local operator only (not in ``/readyz``)."""
    from memmesh.schedule import held_leases

    now = time.time()
    try:
        found = held_leases(service.store)
    except MemmeshError as exc:
        return {"name": "leases", "status": "fail", "detail": exc.message}
    parts = [
        f"{name} held by {holder} for {expires - now:.0f} s more"
        if expires > now
        else f"{name} free (last {holder}, ran out {now - expires:.0f} s ago)"
        for name, holder, expires in found
    ]
    return {"name": "leases", "status": "ok", "detail": "; ".join(parts) or "none held (no server, curator run or gc turn going)"}


def check_health(service: Service) -> dict[str, Any]:
    """Probe every component (see the module doc); never raises."""
    components: dict[str, dict[str, Any]] = {}
    secrets = _secrets(service)
    store_down = False
    for name, probe in PROBES:
        if store_down and name in NEEDS_STORE:
            components[name] = {"status": "degraded", "reason": "not checked: the store is down"}
            continue
        try:
            status, reason, detail = probe(service)
        except MemmeshError as exc:
            status, reason, detail = ("down" if name == "store" else "degraded"), exc.message, {}
        except Exception as exc:  # a probe's own bug must not hide the other components
            status, reason, detail = ("down" if name == "store" else "degraded"), f"{type(exc).__name__}: {exc}", {}
        store_down = store_down or (name == "store" and status == "down")
        components[name] = {"status": status, "reason": scrub(reason, *secrets), **detail}
    overall: Status = "down" if store_down else ("degraded" if any(c["status"] != "ok" for c in components.values()) else "ok")
    return {"status": overall, "components": components}


def public_view(report: dict[str, Any]) -> dict[str, Any]:
    """What anyone may see (``/readyz`` is open on every bind): each component's status and,
    for one that is not ok, its reason (reasons of a component that is not ok name no count
    of what the store holds); no counts, sizes or hashes."""
    return {
        "status": report["status"],
        "components": {
            name: {"status": c["status"], **({"reason": c["reason"]} if c["status"] != "ok" else {})}
            for name, c in report["components"].items()
        },
    }


def health_for(service: Service, *, principal: Principal) -> dict[str, Any]:
    """The report as a caller may see it: whole (with counts, the chain head) for an admin of
    every namespace, else :func:`public_view` (store-wide numbers are not a scoped key's)."""
    who = authorize(principal, "reader")
    report = check_health(service)
    return report if is_store_admin(who) else public_view(report)


class _Cached:
    """One service's latest report and the lock that lets one probe run at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.report: dict[str, Any] | None = None
        self.at = 0.0


_CACHES: weakref.WeakKeyDictionary[Service, _Cached] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def cached_health(service: Service, max_age: float = READY_CACHE_S) -> dict[str, Any]:
    """:func:`check_health`, run at most once per ``max_age`` seconds per service whatever the
    request rate: callers arriving while a run is under way wait for it and share its report
    (one probe run per window, not one per waiting caller)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(service)
        if cache is None:
            cache = _CACHES[service] = _Cached()
    with cache.lock:
        if cache.report is None or time.monotonic() - cache.at >= max_age:
            cache.report = check_health(service)
            cache.at = time.monotonic()
        return cache.report


def status_view(report: dict[str, Any]) -> dict[str, Any]:
    """What an anonymous caller of ``/readyz`` sees: the overall status and each component's,
    no reasons (a reason may name an internal peer host or a file path)."""
    return {"status": report["status"], "components": {name: {"status": c["status"]} for name, c in report["components"].items()}}
