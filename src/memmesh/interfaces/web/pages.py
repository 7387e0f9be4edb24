"""The inspector's pages: each one parses its query or form, calls the service, picks a template.

No rule lives here: who may see or change what, and every error, comes from the service;
a refused call raises and the wrapper in :mod:`.app` renders it with the API's status code.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from memmesh.errors import InvalidInputError, MemmeshError, NotFoundError
from memmesh.interfaces.web.app import PREFIX, Page, Rendered, WebApp
from memmesh.interfaces.web.views import changes, line_chart, namespace_tree, neighbourhood_svg
from memmesh.model import Kind, Memory, Tier

PAGE_SIZES = (10, 25, 50, 100)
FILTERS = ("namespace", "tier", "kind", "tags", "agent_id", "since", "until")
EDITABLE = ("content", "title", "tier", "kind", "tags", "priority")


def _filters(query: dict[str, str]) -> dict[str, Any]:
    """The list/search filters the query names (blank fields are no filter)."""
    found: dict[str, Any] = {name: query[name].strip() for name in FILTERS if query.get(name, "").strip()}
    if "tags" in found:
        found["tags"] = [t.strip() for t in found["tags"].split(",") if t.strip()]
    return found


def _limit(query: dict[str, str]) -> int:
    raw = query.get("limit", "") or "25"
    if not raw.isdigit() or int(raw) not in PAGE_SIZES:
        raise InvalidInputError(f"limit must be one of {', '.join(map(str, PAGE_SIZES))} (got {raw!r})")
    return int(raw)


DONE = frozenset({"unchanged", "saved", "deleted", "promoted", "restored", "approved", "rejected", "rolled back"})
"""The outcomes a form redirects with (``?done=``): the only ones a page shows."""


def _done(query: dict[str, str]) -> str | None:
    """The ``done`` notice to show, or None for anything else.

    Why a fixed set: the notice is text taken from the URL, shown as if the server said it;
    a link such as ``/ui/memories?done=your key expired, log in at https://evil.example``
    would otherwise put an attacker's words on this page (escaped, but believable)."""
    done = query.get("done")
    return done if done in DONE else None


def _back(path: str, **message: str) -> RedirectResponse:
    """Post/redirect/get: a successful form lands on a page that says what happened."""
    suffix = "?" + urlencode(message) if message else ""
    return RedirectResponse(f"{PREFIX}{path}{suffix}", status_code=303)


# -- memories -------------------------------------------------------------------------------


def memories(web: WebApp, page: Page) -> Rendered:
    """The namespace tree, the filters, and a page of memories or of search hits."""
    service, who, query = web.service, page.principal, page.query
    filters, limit = _filters(query), _limit(query)
    text, mode = query.get("q", "").strip(), query.get("mode", "keyword") or "keyword"
    hits, items, next_cursor, notices = None, None, None, []
    if text:
        if mode not in ("keyword", "hybrid"):
            raise InvalidInputError(f"mode must be keyword or hybrid (got {mode!r})")
        if mode == "keyword":
            found = service.search(text, top_k=limit, explain=True, principal=who, **filters)
        else:
            found = service.recall(text, top_k=limit, mode="hybrid", explain=True, touch=False, principal=who, **filters)
        hits, notices = found.hits, found.notices
    else:
        listed = service.list(limit=limit, cursor=query.get("cursor") or None, principal=who, **filters)
        items, next_cursor = listed.items, listed.next_cursor
    more = {k: v for k, v in query.items() if k not in ("cursor", "done") and v}
    values = {
        "tree": namespace_tree(web.namespace_counts(who)),
        "query": query,
        "hits": hits,
        "items": items,
        "notices": notices,
        "next_url": f"{PREFIX}/memories?" + urlencode({**more, "cursor": next_cursor}) if next_cursor else None,
        "tiers": [t.value for t in Tier],
        "kinds": [k.value for k in Kind],
        "page_sizes": PAGE_SIZES,
        "done": _done(query),
        "mode": mode,
    }
    return Rendered("memories.html", values)


def memory(web: WebApp, page: Page) -> Rendered:
    """One memory: fields, history as diffs, links and their graph, and the forms that change it.

    A deleted memory the caller may see has no live page but still has history: it is shown
    with a restore form instead (the service decides whether its history is visible)."""
    service, who, memory_id = web.service, page.principal, page.params["memory_id"]
    try:
        current: Memory | None = service.get(memory_id, principal=who)
    except NotFoundError:
        current = None
    history = service.history(memory_id, principal=who)  # NotFoundError here: no such memory at all (for this caller)
    links, others = [], {}
    if current is not None:
        links = service.links(memory_id, principal=who)
        for link in links:
            other = link.target_id if link.source_id == memory_id else link.source_id
            try:
                others[other] = service.get(other, principal=who)
            except NotFoundError:
                continue  # expired since: not drawn
    values = {
        "memory": current,
        "memory_id": memory_id,
        "changes": changes(history),
        "links": links,
        "others": others,
        "graph": neighbourhood_svg(current, links, others) if current is not None and others else None,
        "tiers": [t.value for t in Tier],
        "kinds": [k.value for k in Kind],
        "done": _done(page.query),
        "title": (current.title or current.content[:40]) if current else f"deleted memory {memory_id}",
    }
    return Rendered("memory.html", values)


def edit(web: WebApp, page: Page) -> Response:
    """Change the fields the form changed (only those: an untouched field is not rewritten)."""
    memory_id, form = page.params["memory_id"], page.form
    current = web.service.get(memory_id, principal=page.principal)
    patch: dict[str, Any] = {}
    for name in EDITABLE:
        if name not in form:
            continue
        raw = form[name].replace("\r\n", "\n")  # browsers send a textarea's newlines as CRLF
        if name == "tags":
            value: Any = [t.strip() for t in raw.split(",") if t.strip()]
            if value != current.tags:
                patch[name] = value
        elif name == "priority":
            if not raw.strip().lstrip("-").isdigit():
                raise InvalidInputError(f"priority must be a whole number (got {raw!r})")
            if int(raw) != current.priority:
                patch[name] = int(raw)
        elif name == "title":
            if (raw.strip() or None) != current.title:
                patch[name] = raw.strip() or None
        elif raw != str(getattr(current, name).value if name in ("tier", "kind") else getattr(current, name)):
            patch[name] = raw
    if not patch:
        return _back(f"/memories/{memory_id}", done="unchanged")
    web.service.update(memory_id, patch, principal=page.principal)
    return _back(f"/memories/{memory_id}", done="saved")


def delete(web: WebApp, page: Page) -> Response:
    memory_id = page.params["memory_id"]
    web.service.delete(memory_id, principal=page.principal)
    return _back(f"/memories/{memory_id}", done="deleted")


def promote(web: WebApp, page: Page) -> Response:
    memory_id = page.params["memory_id"]
    web.service.lifecycle.promote(memory_id, principal=page.principal)
    return _back(f"/memories/{memory_id}", done="promoted")


def restore(web: WebApp, page: Page) -> Response:
    memory_id = page.params["memory_id"]
    web.service.lifecycle.restore(memory_id, principal=page.principal)
    return _back(f"/memories/{memory_id}", done="restored")


# -- namespaces, pending, audit -------------------------------------------------------------------


def namespaces(web: WebApp, page: Page) -> Rendered:
    """The tree with counts, and the standards set on namespaces (when the caller may read them)."""
    who = page.principal
    standards, refused = [], None
    try:
        standards = web.service.governance.list_standards(principal=who)
    except MemmeshError as error:
        refused = error.message
    return Rendered(
        "namespaces.html", {"tree": namespace_tree(web.service.namespaces(principal=who)), "standards": standards, "refused": refused}
    )


def pending(web: WebApp, page: Page) -> Rendered:
    status = page.query.get("status", "pending") or "pending"
    listed = web.service.governance.pending(status=status, limit=100, principal=page.principal)
    return Rendered("pending.html", {"pending": listed, "status": status, "done": _done(page.query)})


def decide(web: WebApp, page: Page) -> Response:
    """Approve or reject: the service checks the approver's role and namespaces."""
    pending_id, verdict = page.params["pending_id"], page.params["verdict"]
    reason = page.form.get("reason", "").strip() or None
    if verdict == "approve":
        web.service.governance.approve(pending_id, reason=reason, principal=page.principal)
    elif verdict == "reject":
        web.service.governance.reject(pending_id, reason=reason, principal=page.principal)
    else:
        raise NotFoundError(f"no decision {verdict!r}: approve or reject")
    return _back("/pending", done=f"{verdict}d")


def audit(web: WebApp, page: Page, *, verified: Any = None) -> Rendered:
    """A page of audit entries (from ``since``) and, after the verify button, the chain's status."""
    raw = page.query.get("since", "") or "0"
    if not raw.isdigit():
        raise InvalidInputError(f"since must be an entry index, a whole number (got {raw!r})")
    listed = web.service.audit.entries(principal=page.principal, since=int(raw), limit=50)
    return Rendered("audit.html", {"entries": listed.entries, "next_since": listed.next_since, "since": int(raw), "verified": verified})


def verify(web: WebApp, page: Page) -> Rendered:
    """Verify the whole chain and its checkpoints on demand (it reads every entry: a button, not every view)."""
    report = web.service.audit.verify(principal=page.principal)
    return audit(web, page, verified=report)


# -- curator, cluster, bus, metrics ------------------------------------------------------------------


def curator(web: WebApp, page: Page) -> Rendered:
    runs = web.service.curator.runs(limit=20, principal=page.principal)
    return Rendered("curator.html", {"runs": runs, "done": _done(page.query)})


def rollback(web: WebApp, page: Page) -> Response:
    web.service.curator.rollback(page.params["run_id"], principal=page.principal)
    return _back("/curator", done="rolled back")


def cluster(web: WebApp, page: Page) -> Rendered:
    if web.service.mesh is None:
        return Rendered("cluster.html", {"status": None})
    return Rendered("cluster.html", {"status": web.service.replica.status(principal=page.principal)})


def bus(web: WebApp, page: Page) -> Rendered:
    """Conversations and queues: metadata only (the bus lists no bodies and no tokens)."""
    archived = page.query.get("archived") == "1"
    listed = web.service.bus.list(principal=page.principal, archived=archived, limit=100)
    return Rendered("bus.html", {"conversations": listed, "archived": archived})


def metrics(web: WebApp, page: Page) -> Rendered:
    """Charts of the sampled series; store-wide numbers, so store-wide admins only."""
    from memmesh.kernel import authorize_store_wide

    authorize_store_wide(page.principal, "server metrics")
    points = list(web.sampler.points) if web.sampler is not None else []
    charts = [
        line_chart([(p.at, p.memories) for p in points], label="live memories"),
        line_chart([(p.at, p.requests_per_s) for p in points], label="API requests", unit="/s"),
        line_chart([(p.at, p.recall_ms) for p in points], label="recall latency (mean)", unit=" ms"),
    ]
    return Rendered("metrics.html", {"charts": charts, "sampling": web.sampler is not None})


def routes(web: WebApp) -> list[Route]:
    r = web.route
    return [
        r("/memories", memories, section="memories"),
        r("/memories/{memory_id}", memory, section="memories"),
        r("/memories/{memory_id}/edit", edit, methods=("POST",), section="memories"),
        r("/memories/{memory_id}/delete", delete, methods=("POST",), section="memories"),
        r("/memories/{memory_id}/promote", promote, methods=("POST",), section="memories"),
        r("/memories/{memory_id}/restore", restore, methods=("POST",), section="memories"),
        r("/namespaces", namespaces, section="namespaces"),
        r("/pending", pending, section="pending"),
        r("/pending/{pending_id}/{verdict}", decide, methods=("POST",), section="pending"),
        r("/audit", audit, section="audit"),
        r("/audit/verify", verify, methods=("POST",), section="audit"),
        r("/curator", curator, section="curator"),
        r("/curator/{run_id}/rollback", rollback, methods=("POST",), section="curator"),
        r("/cluster", cluster, section="cluster"),
        r("/bus", bus, section="bus"),
        r("/metrics", metrics, section="metrics"),
    ]
