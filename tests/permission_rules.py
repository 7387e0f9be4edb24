"""The permission rules the matrix tests check, one per REST route and per MCP tool.

Each rule names the least role that may use the route or tool, whether it is store-wide
(then a namespace-scoped key is refused even with that role), a request inside the scoped
keys' namespace (``team/a``), optionally a request reaching another namespace (``team/b``)
with the status a scoped key must get for it, and a check that what a scoped caller got
back holds nothing of ``team/b``. The matrix tests compare these tables with the app's route
table and the MCP tool catalogue, so a new route or tool without a rule fails them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from memmesh.model import LOCAL_PRINCIPAL
from memmesh.service import Service

ROLES = ("reader", "writer", "admin")
RANK = {"reader": 0, "writer": 1, "admin": 2}
OWN = "team/a"
OTHER = "team/b"
ASIDE = "team/z"
"""Outside team/a like team/b, for sessions the bus rules seed (team/b's export must stay small)."""


@dataclass
class World:
    """Fresh memories and keys for one request, made by the local principal: ``a1``/``a2`` in
    the scoped namespace, ``b1`` outside it, links a1→a2 and a1→b1, and two keys to revoke."""

    tag: str
    a1: str
    a2: str
    b1: str
    key_a: str
    key_b: str
    agent_b: str
    gone: str
    gone_b: str
    conv: str = ""
    token: str = ""
    queue: str = ""
    queue_token: str = ""
    attempt: str = ""
    session: str = ""
    session_b: str = ""
    pend_a: str = ""
    pend_b: str = ""
    sub_a: str = ""
    sub_b: str = ""
    run_a: str = ""
    run_b: str = ""
    job: str = ""
    job_b: str = ""


def _seed_bus(service: Service, world: World) -> World:
    """A chat (a, b) with one message, a queue (coord, w) with a task leased to w, and one
    session in each namespace (issue 17)."""
    bus = service.bus
    chat = bus.open(["a", "b"], principal=LOCAL_PRINCIPAL)
    bus.send(chat.id, f"hello {world.tag}", sender="a", token=chat.token, principal=LOCAL_PRINCIPAL)
    queue = bus.open(["coord", "w"], kind="queue", principal=LOCAL_PRINCIPAL)
    bus.send(queue.id, f"job {world.tag}", sender="coord", token=queue.token, principal=LOCAL_PRINCIPAL)
    bus.send(queue.id, f"job 2 {world.tag}", sender="coord", token=queue.token, principal=LOCAL_PRINCIPAL)
    leased = bus.claim(queue.id, worker="w", token=queue.token, lease_s=3600, principal=LOCAL_PRINCIPAL)
    sessions = service.sessions
    sessions.append(f"s-{world.tag}", role="user", content=f"alpha turn {world.tag}", namespace=OWN, principal=LOCAL_PRINCIPAL)
    sessions.append(f"sb-{world.tag}", role="user", content=f"alpha turn {world.tag}", namespace=ASIDE, principal=LOCAL_PRINCIPAL)
    world.conv, world.token, world.queue, world.queue_token = chat.id, chat.token, queue.id, queue.token
    world.attempt = leased.attempt_token  # type: ignore[union-attr]
    world.session, world.session_b = f"s-{world.tag}", f"sb-{world.tag}"
    talk = [{"role": "user", "content": f"I love alpha tea {world.tag}."}]
    world.job = service.extraction.remember(talk, namespace=OWN, background=True, principal=LOCAL_PRINCIPAL).job_id or ""
    world.job_b = service.extraction.remember(talk, namespace=ASIDE, background=True, principal=LOCAL_PRINCIPAL).job_id or ""
    return world


def seed(service: Service) -> World:
    tag = uuid.uuid4().hex[:10]
    add = service.add
    a1 = add({"content": f"alpha apple {tag}", "namespace": OWN}, principal=LOCAL_PRINCIPAL)
    a2 = add({"content": f"alpha pear {tag}", "namespace": f"{OWN}/{tag}"}, principal=LOCAL_PRINCIPAL)
    b1 = add({"content": f"alpha plum {tag}", "namespace": OTHER}, principal=LOCAL_PRINCIPAL)
    service.link(a1.id, a2.id, "related_to", principal=LOCAL_PRINCIPAL)
    service.link(a1.id, b1.id, "related_to", principal=LOCAL_PRINCIPAL)
    key_a = service.create_key(f"a-{tag}", role="reader", namespaces=[OWN], principal=LOCAL_PRINCIPAL)
    key_b = service.create_key(f"b-{tag}", role="reader", namespaces=[OTHER], principal=LOCAL_PRINCIPAL)
    gone = add({"content": f"alpha gone {tag}", "namespace": OWN}, principal=LOCAL_PRINCIPAL)
    gone_b = add({"content": f"alpha gone {tag}", "namespace": OTHER}, principal=LOCAL_PRINCIPAL)
    service.delete(gone.id, principal=LOCAL_PRINCIPAL)
    service.delete(gone_b.id, principal=LOCAL_PRINCIPAL)
    pend_a, pend_b = (_queue(service, ns, tag) for ns in (GOV_OWN, GOV_OTHER))
    sub_a, sub_b = (service.subscriptions.subscribe(f"{ns}/{tag}/hooks", HOOK, principal=LOCAL_PRINCIPAL).id for ns in (OWN, OTHER))
    world = World(tag, a1.id, a2.id, b1.id, key_a.id, key_b.id, key_b.agent_id, gone.id, gone_b.id, pend_a=pend_a, pend_b=pend_b)
    world.sub_a, world.sub_b = sub_a, sub_b
    return _seed_bus(service, _seed_curator(service, world))


HOOK = "http://8.8.8.8/hook"
"""A public address (accepted by the SSRF guard without DNS); subscriptions made here watch
namespaces nothing writes into, so no delivery is ever attempted."""


def _seed_curator(service: Service, world: World) -> World:
    """A curator run (real, over an empty namespace: it changes nothing) in each namespace."""
    curate = service.curator.run
    world.run_a = curate(namespace=f"{OWN}/cur-{world.tag}", principal=LOCAL_PRINCIPAL).run_id
    world.run_b = curate(namespace=f"{OTHER}/cur-{world.tag}", principal=LOCAL_PRINCIPAL).run_id
    return world


GOV_OWN = f"{OWN}/gov"
GOV_OTHER = f"{OTHER}/gov"


def _queue(service: Service, namespace: str, tag: str) -> str:
    """A pending action in ``namespace`` (whose standard says write = approve), by the local caller."""
    from memmesh.errors import PendingApprovalError

    service.governance.set_standard(namespace, governance={"write": "approve"}, principal=LOCAL_PRINCIPAL)
    try:
        service.add({"content": f"queued {tag} {uuid.uuid4().hex}", "namespace": namespace}, principal=LOCAL_PRINCIPAL)
    except PendingApprovalError as queued:
        return str(queued.details["pending_id"])
    raise AssertionError(f"a write to {namespace} was not queued")


def expected(rule_role: str, store_wide: bool, role: str, scoped: bool, reaches_other: bool, other_status: int) -> str:
    """What a caller gets: ``ok``, or the error status as a string."""
    if RANK[role] < RANK[rule_role]:
        return "403"
    if scoped and store_wide:
        return "403"
    if scoped and reaches_other:
        return str(other_status)
    return "ok"


def _no_other(data: Any) -> None:
    """Nothing of team/b (its namespace name or the seeded b1 memory) in a reply."""
    text = repr(data)
    assert OTHER not in text, f"a scoped caller saw {OTHER}: {text[:400]}"


def _keys_inside(data: Any) -> None:
    for key in data:
        assert all(p == OWN or p.startswith(OWN + "/") for p in key["namespaces"]), key


def _readiness(data: Any) -> None:
    assert set(data) == {"status", "schema_version", "components"}, data
    assert all(set(part) <= {"status", "reason"} for part in data["components"].values()), data  # no counts for anyone


# -- REST -------------------------------------------------------------------------------------

Req = Callable[[World], tuple[str, dict[str, Any]]]
"""A request: (path, httpx keyword arguments)."""


@dataclass
class HttpRule:
    role: str  # least role, or "public" (no key needed)
    own: Req
    other: Req | None = None
    other_status: int = 404
    store_wide: bool = False
    ok_status: int = 200
    check: Callable[[Any], None] | None = None  # applied to a scoped caller's successful reply


def _mem(ns: str, w: World, word: str = "new") -> dict[str, Any]:
    return {"content": f"{word} {w.tag} {uuid.uuid4().hex}", "namespace": ns}


def _mcp_entity(w: World) -> str:
    return json.dumps({"type": "entity", "name": f"E{uuid.uuid4().hex[:8]}", "entityType": "thing", "observations": [f"seen {w.tag}"]})


def _bus(w: World, tail: str, queue: bool = False, **options: Any) -> tuple[str, dict[str, Any]]:
    conv, token = (w.queue, w.queue_token) if queue else (w.conv, w.token)
    return f"/api/v1/bus/conversations/{conv}/{tail}", {"headers": {"X-Bus-Token": token}, **options}


BUS_HTTP_RULES: dict[tuple[str, str], HttpRule] = {
    ("POST", "/api/v1/bus/conversations"): HttpRule(
        "writer", lambda w: ("/api/v1/bus/conversations", {"json": {"participants": ["a", "b"]}}), ok_status=201
    ),
    ("GET", "/api/v1/bus/conversations"): HttpRule("reader", lambda w: ("/api/v1/bus/conversations", {}), check=_no_other),
    ("POST", "/api/v1/bus/conversations/{conversation_id}/messages"): HttpRule(
        "writer", lambda w: _bus(w, "messages", json={"from": "a", "body": "hi"}), ok_status=201
    ),
    ("POST", "/api/v1/bus/conversations/{conversation_id}/messages/batch"): HttpRule(
        "writer", lambda w: _bus(w, "messages/batch", json={"from": "a", "bodies": ["hi", "there"]}), ok_status=201
    ),
    ("GET", "/api/v1/bus/conversations/{conversation_id}/messages"): HttpRule("reader", lambda w: _bus(w, "messages"), check=_no_other),
    ("GET", "/api/v1/bus/conversations/{conversation_id}/unread"): HttpRule(
        "reader", lambda w: _bus(w, "unread", params={"agent": "b"}), check=_no_other
    ),
    ("POST", "/api/v1/bus/conversations/{conversation_id}/ack"): HttpRule(
        "writer", lambda w: _bus(w, "ack", json={"agent": "b", "all": True})
    ),
    ("POST", "/api/v1/bus/conversations/{conversation_id}/claim"): HttpRule(
        "writer", lambda w: _bus(w, "claim", True, json={"worker": "w"})
    ),
    ("POST", "/api/v1/bus/conversations/{conversation_id}/heartbeat"): HttpRule(
        "writer", lambda w: _bus(w, "heartbeat", True, json={"worker": "w", "attempt_token": w.attempt})
    ),
    ("POST", "/api/v1/bus/conversations/{conversation_id}/complete"): HttpRule(
        "writer", lambda w: _bus(w, "complete", True, json={"worker": "w", "attempt_token": w.attempt, "result": "ok"})
    ),
    ("POST", "/api/v1/bus/conversations/{conversation_id}/complete/batch"): HttpRule(
        "writer", lambda w: _bus(w, "complete/batch", True, json={"worker": "w", "results": [{"attempt_token": w.attempt, "result": "ok"}]})
    ),
    ("POST", "/api/v1/bus/conversations/{conversation_id}/fail"): HttpRule(
        "writer", lambda w: _bus(w, "fail", True, json={"worker": "w", "attempt_token": w.attempt})
    ),
    ("GET", "/api/v1/bus/conversations/{conversation_id}/tasks"): HttpRule("reader", lambda w: _bus(w, "tasks", True)),
    ("POST", "/api/v1/sessions/{session_id}/turns"): HttpRule(
        "writer",
        lambda w: (f"/api/v1/sessions/n-{uuid.uuid4().hex[:12]}/turns", {"json": {"content": "hi", "namespace": OWN}}),
        lambda w: (f"/api/v1/sessions/n-{uuid.uuid4().hex[:12]}/turns", {"json": {"content": "hi", "namespace": ASIDE}}),
        403,
        ok_status=201,
    ),
    ("GET", "/api/v1/sessions/{session_id}/rehydrate"): HttpRule(
        "reader",
        lambda w: (f"/api/v1/sessions/{w.session}/rehydrate", {}),
        lambda w: (f"/api/v1/sessions/{w.session_b}/rehydrate", {}),
        check=_no_other,
    ),
    ("GET", "/api/v1/sessions"): HttpRule("reader", lambda w: ("/api/v1/sessions", {}), check=_no_other),
    ("POST", "/api/v1/remember"): HttpRule(
        "writer",
        lambda w: ("/api/v1/remember", {"json": {"messages": [{"content": f"I love tea {w.tag}."}], "namespace": OWN}}),
        lambda w: ("/api/v1/remember", {"json": {"messages": [{"content": f"I love tea {w.tag}."}], "namespace": ASIDE}}),
        403,
        ok_status=201,
    ),
    ("GET", "/api/v1/remember/jobs/{job_id}"): HttpRule(
        "reader",
        lambda w: (f"/api/v1/remember/jobs/{w.job}", {}),
        lambda w: (f"/api/v1/remember/jobs/{w.job_b}", {}),
        check=_no_other,
    ),
}


HTTP_RULES: dict[tuple[str, str], HttpRule] = {
    ("POST", "/api/v1/memories"): HttpRule(
        "writer",
        lambda w: ("/api/v1/memories", {"json": _mem(OWN, w)}),
        lambda w: ("/api/v1/memories", {"json": _mem(OTHER, w)}),
        403,
        ok_status=201,
    ),
    ("POST", "/api/v1/memories/batch"): HttpRule(
        "writer",
        lambda w: ("/api/v1/memories/batch", {"json": {"items": [_mem(OWN, w)]}}),
        lambda w: ("/api/v1/memories/batch", {"json": {"items": [_mem(OWN, w), _mem(OTHER, w)]}}),
        403,
        ok_status=201,
    ),
    ("GET", "/api/v1/memories"): HttpRule(
        "reader",
        lambda w: ("/api/v1/memories", {"params": {"limit": 1000}}),
        lambda w: ("/api/v1/memories", {"params": {"namespace": OTHER}}),
        403,
        check=_no_other,
    ),
    ("DELETE", "/api/v1/memories"): HttpRule(
        "writer",
        lambda w: ("/api/v1/memories", {"params": {"namespace": f"{OWN}/{w.tag}"}}),
        lambda w: ("/api/v1/memories", {"params": {"namespace": OTHER}}),
        403,
    ),
    ("GET", "/api/v1/memories/{memory_id}"): HttpRule(
        "reader", lambda w: (f"/api/v1/memories/{w.a1}", {}), lambda w: (f"/api/v1/memories/{w.b1}", {})
    ),
    ("PATCH", "/api/v1/memories/{memory_id}"): HttpRule(
        "writer",
        lambda w: (f"/api/v1/memories/{w.a1}", {"json": {"priority": 6}}),
        lambda w: (f"/api/v1/memories/{w.b1}", {"json": {"priority": 6}}),
    ),
    ("DELETE", "/api/v1/memories/{memory_id}"): HttpRule(
        "writer", lambda w: (f"/api/v1/memories/{w.a2}", {}), lambda w: (f"/api/v1/memories/{w.b1}", {})
    ),
    ("GET", "/api/v1/memories/{memory_id}/history"): HttpRule(
        "reader", lambda w: (f"/api/v1/memories/{w.a1}/history", {}), lambda w: (f"/api/v1/memories/{w.b1}/history", {}), check=_no_other
    ),
    ("GET", "/api/v1/memories/{memory_id}/links"): HttpRule(
        "reader",
        lambda w: (f"/api/v1/memories/{w.a1}/links", {}),
        lambda w: (f"/api/v1/memories/{w.b1}/links", {}),
        check=lambda data: None,  # checked by test_links_hide_other_namespaces (ids, not names)
    ),
    ("POST", "/api/v1/recall"): HttpRule(
        "reader",
        lambda w: ("/api/v1/recall", {"json": {"query": "alpha", "top_k": 100}}),
        lambda w: ("/api/v1/recall", {"json": {"query": "alpha", "filters": {"namespace": OTHER}}}),
        403,
        check=_no_other,
    ),
    ("GET", "/api/v1/search"): HttpRule(
        "reader",
        lambda w: ("/api/v1/search", {"params": {"q": "alpha", "top_k": 100}}),
        lambda w: ("/api/v1/search", {"params": {"q": "alpha", "namespace": OTHER}}),
        403,
        check=_no_other,
    ),
    ("POST", "/api/v1/links"): HttpRule(
        "writer",
        lambda w: ("/api/v1/links", {"json": {"source_id": w.a1, "target_id": w.a2, "relation": "part_of"}}),
        lambda w: ("/api/v1/links", {"json": {"source_id": w.a1, "target_id": w.b1, "relation": "part_of"}}),
        ok_status=201,
    ),
    ("GET", "/api/v1/stats"): HttpRule("reader", lambda w: ("/api/v1/stats", {}), check=_no_other),
    ("GET", "/api/v1/namespaces"): HttpRule("reader", lambda w: ("/api/v1/namespaces", {}), check=_no_other),
    ("GET", "/api/v1/agents"): HttpRule("admin", lambda w: ("/api/v1/agents", {}), check=_keys_inside),
    ("POST", "/api/v1/agents"): HttpRule(
        "admin",
        lambda w: ("/api/v1/agents", {"json": {"agent_id": f"new-{uuid.uuid4().hex[:8]}", "role": "reader", "namespaces": [OWN]}}),
        lambda w: ("/api/v1/agents", {"json": {"agent_id": w.agent_b, "role": "reader", "namespaces": [OWN]}}),
        403,
        ok_status=201,
    ),
    ("GET", "/api/v1/keys"): HttpRule("admin", lambda w: ("/api/v1/keys", {"params": {"include_revoked": True}}), check=_keys_inside),
    ("POST", "/api/v1/keys"): HttpRule(
        "admin",
        lambda w: ("/api/v1/keys", {"json": {"agent_id": f"new-{uuid.uuid4().hex[:8]}", "role": "reader", "namespaces": [OWN]}}),
        lambda w: ("/api/v1/keys", {"json": {"agent_id": f"new-{uuid.uuid4().hex[:8]}", "role": "reader", "namespaces": ["*"]}}),
        403,
        ok_status=201,
    ),
    ("DELETE", "/api/v1/keys/{key_id}"): HttpRule(
        "admin", lambda w: (f"/api/v1/keys/{w.key_a}", {}), lambda w: (f"/api/v1/keys/{w.key_b}", {})
    ),
    ("POST", "/api/v1/backup"): HttpRule("admin", lambda w: ("/api/v1/backup", {"json": {}}), store_wide=True, ok_status=201),
    ("POST", "/api/v1/admin/gc"): HttpRule("admin", lambda w: ("/api/v1/admin/gc", {}), store_wide=True),
    ("POST", "/api/v1/import"): HttpRule(
        "writer",
        lambda w: ("/api/v1/import", {"json": {"format": "mcp-memory", "content": _mcp_entity(w), "namespace": f"{OWN}/{w.tag}"}}),
        lambda w: ("/api/v1/import", {"json": {"format": "mcp-memory", "content": _mcp_entity(w), "namespace": OTHER}}),
        403,
    ),
    ("GET", "/api/v1/audit"): HttpRule("admin", lambda w: ("/api/v1/audit", {}), store_wide=True),  # names every namespace
    ("GET", "/api/v1/namespaces/standards"): HttpRule("reader", lambda w: ("/api/v1/namespaces/standards", {}), check=_no_other),
    ("GET", "/api/v1/namespaces/{namespace:path}/standard"): HttpRule(
        "reader", lambda w: (f"/api/v1/namespaces/{GOV_OWN}/standard", {}), lambda w: (f"/api/v1/namespaces/{GOV_OTHER}/standard", {}), 403
    ),
    ("PUT", "/api/v1/namespaces/{namespace:path}/standard"): HttpRule(
        "admin",
        lambda w: (f"/api/v1/namespaces/{OWN}/{w.tag}/standard", {"json": {"governance": {"delete": "approve"}}}),
        lambda w: (f"/api/v1/namespaces/{OTHER}/{w.tag}/standard", {"json": {"governance": {"delete": "approve"}}}),
        403,
    ),
    ("DELETE", "/api/v1/namespaces/{namespace:path}/standard"): HttpRule(
        "admin", lambda w: (f"/api/v1/namespaces/{GOV_OWN}/standard", {}), lambda w: (f"/api/v1/namespaces/{GOV_OTHER}/standard", {}), 403
    ),
    ("GET", "/api/v1/pending"): HttpRule("reader", lambda w: ("/api/v1/pending", {"params": {"status": "all"}}), check=_no_other),
    ("GET", "/api/v1/pending/{pending_id}"): HttpRule(
        "reader", lambda w: (f"/api/v1/pending/{w.pend_a}", {}), lambda w: (f"/api/v1/pending/{w.pend_b}", {})
    ),
    ("POST", "/api/v1/pending/{pending_id}/approve"): HttpRule(
        "admin", lambda w: (f"/api/v1/pending/{w.pend_a}/approve", {}), lambda w: (f"/api/v1/pending/{w.pend_b}/approve", {})
    ),
    ("POST", "/api/v1/curator/run"): HttpRule(
        "writer",
        lambda w: ("/api/v1/curator/run", {"json": {"namespace": f"{OWN}/{w.tag}", "dry_run": True}}),
        lambda w: ("/api/v1/curator/run", {"json": {"namespace": OTHER, "dry_run": True}}),
        403,
    ),
    ("GET", "/api/v1/curator/runs"): HttpRule("reader", lambda w: ("/api/v1/curator/runs", {"params": {"limit": 100}}), check=_no_other),
    ("GET", "/api/v1/curator/runs/{run_id}"): HttpRule(
        "reader", lambda w: (f"/api/v1/curator/runs/{w.run_a}", {}), lambda w: (f"/api/v1/curator/runs/{w.run_b}", {})
    ),
    ("POST", "/api/v1/curator/runs/{run_id}/rollback"): HttpRule(
        "writer", lambda w: (f"/api/v1/curator/runs/{w.run_a}/rollback", {}), lambda w: (f"/api/v1/curator/runs/{w.run_b}/rollback", {})
    ),
    ("POST", "/api/v1/pending/{pending_id}/reject"): HttpRule(
        "admin",
        lambda w: (f"/api/v1/pending/{w.pend_a}/reject", {"json": {"reason": "no"}}),
        lambda w: (f"/api/v1/pending/{w.pend_b}/reject", {"json": {"reason": "no"}}),
    ),
    ("POST", "/api/v1/subscriptions"): HttpRule(
        "reader",
        lambda w: ("/api/v1/subscriptions", {"json": {"namespace": f"{OWN}/{w.tag}/subs", "url": HOOK}}),
        lambda w: ("/api/v1/subscriptions", {"json": {"namespace": f"{OTHER}/{w.tag}/subs", "url": HOOK}}),
        403,
        ok_status=201,
    ),
    ("GET", "/api/v1/subscriptions"): HttpRule("reader", lambda w: ("/api/v1/subscriptions", {}), check=_no_other),
    ("POST", "/api/v1/subscriptions/deliver"): HttpRule("admin", lambda w: ("/api/v1/subscriptions/deliver", {}), store_wide=True),
    ("GET", "/api/v1/subscriptions/{subscription_id}"): HttpRule(
        "reader", lambda w: (f"/api/v1/subscriptions/{w.sub_a}", {}), lambda w: (f"/api/v1/subscriptions/{w.sub_b}", {})
    ),
    ("DELETE", "/api/v1/subscriptions/{subscription_id}"): HttpRule(
        "admin", lambda w: (f"/api/v1/subscriptions/{w.sub_a}", {}), lambda w: (f"/api/v1/subscriptions/{w.sub_b}", {})
    ),
    ("GET", "/api/v1/subscriptions/{subscription_id}/deliveries"): HttpRule(
        "reader",
        lambda w: (f"/api/v1/subscriptions/{w.sub_a}/deliveries", {}),
        lambda w: (f"/api/v1/subscriptions/{w.sub_b}/deliveries", {}),
    ),
    ("POST", "/api/v1/notify"): HttpRule(
        "writer",
        lambda w: ("/api/v1/notify", {"json": {"to": f"peer-{w.tag}", "body": "look at team/a", "namespace": OWN}}),
        lambda w: ("/api/v1/notify", {"json": {"to": f"peer-{w.tag}", "body": "look", "namespace": OTHER}}),
        403,
        ok_status=201,
    ),
    ("GET", "/api/v1/inbox"): HttpRule("reader", lambda w: ("/api/v1/inbox", {}), check=_no_other),
    ("GET", "/healthz"): HttpRule("public", lambda w: ("/healthz", {})),
    ("GET", "/readyz"): HttpRule("public", lambda w: ("/readyz", {}), check=_readiness),
    ("GET", "/metrics"): HttpRule("reader", lambda w: ("/metrics", {})),  # keys exist here: any valid key (test_closed_stores)
    **BUS_HTTP_RULES,
}
HTTP_ELSEWHERE = {
    ("*", "/mcp"): "every MCP tool over /mcp: test_permissions_mcp.py",
    ("*", "/ui"): "the web inspector's pages call the service as the session's key: tests/web/test_web_rules.py",
    ("GET", "/openapi.json"): "the API description, public by design",
    ("GET", "/docs"): "the API description, public by design",
    ("GET", "/docs/oauth2-redirect"): "the API description, public by design",
    ("GET", "/redoc"): "the API description, public by design",
    ("POST", "/api/v1/sync/push"): "peer keys only: tests/federation/test_sync_routes.py",
    ("GET", "/api/v1/sync/since"): "peer keys only: tests/federation/test_sync_routes.py",
    ("GET", "/api/v1/sync/hello"): "peer keys and store-wide admins: tests/http/test_probe6.py, tests/federation/test_sync_routes.py",
    ("GET", "/api/v1/sync/status"): "store-wide admins: tests/federation/test_sync_routes.py",
    ("GET", "/api/v1/sync/conflicts"): "store-wide admins: tests/federation/test_sync_routes.py",
    ("GET", "/api/v1/sync/digest"): "peer keys and store-wide admins: tests/federation/test_sync_routes.py",
    ("POST", "/api/v1/sync/items"): "peer keys and store-wide admins: tests/federation/test_sync_routes.py",
}


# -- MCP --------------------------------------------------------------------------------------

Call = Callable[[World], dict[str, Any]]
"""A tool call's arguments."""


@dataclass
class ToolRule:
    role: str
    own: Call
    other: Call | None = None
    store_wide: bool = False
    check: Callable[[Any], None] | None = None
    own_error: str | None = None  # the error code an allowed caller gets (past the permission check)
    other_filtered: bool = False  # reaching team/b answers with nothing of it rather than an error


def _other_error(reply_text: str) -> bool:
    """A refused reach into team/b: a not-found or forbidden tool error."""
    return reply_text.startswith(("not_found", "forbidden")) or "no memory" in reply_text or "outside" in reply_text


def _store(ns: str, w: World) -> dict[str, Any]:
    return {"content": f"tool {w.tag} {uuid.uuid4().hex}", "namespace": ns}


TOOL_RULES: dict[str, ToolRule] = {
    "memory_store": ToolRule("writer", lambda w: _store(OWN, w), lambda w: _store(OTHER, w)),
    "memory_recall": ToolRule(
        "reader", lambda w: {"query": "alpha", "top_k": 100}, lambda w: {"query": "alpha", "namespace": OTHER}, check=_no_other
    ),
    "memory_search": ToolRule(
        "reader", lambda w: {"query": "alpha", "top_k": 100}, lambda w: {"query": "alpha", "namespace": OTHER}, check=_no_other
    ),
    "memory_list": ToolRule("reader", lambda w: {"limit": 1000}, lambda w: {"namespace": OTHER}, check=_no_other),
    "memory_get": ToolRule("reader", lambda w: {"id": w.a1}, lambda w: {"id": w.b1}),
    "memory_update": ToolRule("writer", lambda w: {"id": w.a1, "priority": 6}, lambda w: {"id": w.b1, "priority": 6}),
    "memory_delete": ToolRule("writer", lambda w: {"id": w.a2}, lambda w: {"id": w.b1}),
    "memory_capabilities": ToolRule("reader", lambda w: {}),
    "memory_link": ToolRule(
        "writer", lambda w: {"source_id": w.a1, "target_id": w.a2, "relation": "part_of"}, lambda w: {"source_id": w.a1, "target_id": w.b1}
    ),
    "memory_get_links": ToolRule("reader", lambda w: {"id": w.a1}, lambda w: {"id": w.b1}),
    "memory_kg_query": ToolRule("reader", lambda w: {"id": w.a1, "depth": 2}, lambda w: {"id": w.b1}, check=_no_other),
    "memory_kg_timeline": ToolRule("reader", lambda w: {"id": w.a1}, lambda w: {"id": w.b1}, check=_no_other),
    "memory_kg_invalidate": ToolRule(
        "writer",
        lambda w: {"source_id": w.a1, "target_id": w.a2, "relation": "related_to"},
        lambda w: {"source_id": w.a1, "target_id": w.b1, "relation": "related_to"},
    ),
    "memory_find_paths": ToolRule(
        "reader", lambda w: {"source_id": w.a1, "target_id": w.a2}, lambda w: {"source_id": w.a1, "target_id": w.b1}
    ),
    "memory_get_taxonomy": ToolRule("reader", lambda w: {}, lambda w: {"namespace": OTHER}, check=_no_other, other_filtered=True),
    "memory_entity_register": ToolRule(
        "writer", lambda w: {"name": f"Ent {w.tag}", "namespace": OWN}, lambda w: {"name": f"Ent {w.tag}", "namespace": OTHER}
    ),
    "memory_entity_get_by_alias": ToolRule(
        "reader", lambda w: {"alias": "nobody", "namespace": OWN}, lambda w: {"alias": "nobody", "namespace": OTHER}
    ),
    "memory_promote": ToolRule("writer", lambda w: {"id": w.a1}, lambda w: {"id": w.b1}),
    "memory_forget": ToolRule(
        "writer", lambda w: {"namespace": f"{OWN}/{w.tag}", "dry_run": True}, lambda w: {"namespace": OTHER, "dry_run": True}
    ),
    "memory_consolidate": ToolRule(
        "writer",
        lambda w: {"ids": [w.a1, w.a2], "content": f"summary {w.tag}", "keep_sources": True},
        lambda w: {"ids": [w.a1, w.b1], "content": f"summary {w.tag}", "keep_sources": True},
    ),
    "memory_history": ToolRule("reader", lambda w: {"id": w.a1}, lambda w: {"id": w.b1}, check=_no_other),
    "memory_restore": ToolRule("writer", lambda w: {"id": w.gone}, lambda w: {"id": w.gone_b}),
    "memory_gc": ToolRule("admin", lambda w: {}, store_wide=True),
    "memory_archive_list": ToolRule("reader", lambda w: {}, lambda w: {"namespace": OTHER}),
    "memory_archive_restore": ToolRule("writer", lambda w: {"id": w.a1}, lambda w: {"id": w.b1}, own_error="not_found"),
    "memory_archive_purge": ToolRule("admin", lambda w: {"namespace": OWN}, lambda w: {"namespace": OTHER}),
    "memory_archive_stats": ToolRule("reader", lambda w: {}, lambda w: {"namespace": OTHER}),
    "memory_agent_register": ToolRule(
        "admin",
        lambda w: {"agent_id": f"new-{uuid.uuid4().hex[:8]}", "role": "reader", "namespaces": [OWN]},
        lambda w: {"agent_id": w.agent_b, "role": "reader", "namespaces": [OWN]},
    ),
    "memory_agent_list": ToolRule("admin", lambda w: {}, check=_keys_inside),
    "memory_session_start": ToolRule(
        "reader", lambda w: {"task": "alpha"}, lambda w: {"task": "alpha", "namespace": OTHER}, check=_no_other
    ),
    "memory_check_duplicate": ToolRule(
        "reader", lambda w: {"content": "alpha apple", "namespace": OWN}, lambda w: {"content": "alpha", "namespace": OTHER}
    ),
    "memory_stats": ToolRule("reader", lambda w: {}, check=_no_other),
    "memory_quota_status": ToolRule("reader", lambda w: {}, lambda w: {"namespace": OTHER}, check=_no_other),
    "memory_health": ToolRule("reader", lambda w: {}),
    "memory_export": ToolRule("admin", lambda w: {"namespace": f"{OWN}/{w.tag}"}, lambda w: {"namespace": OTHER}),
    "memory_import": ToolRule("admin", lambda w: {"jsonl": "", "dry_run": True}),
    "memory_backup": ToolRule("admin", lambda w: {}, store_wide=True),
    "bus_open_conversation": ToolRule("writer", lambda w: {"participants": ["a", "b"]}),
    "bus_send_message": ToolRule("writer", lambda w: {"conversation_id": w.conv, "token": w.token, "sender": "a", "body": "hi"}),
    "bus_get_unread_messages": ToolRule("reader", lambda w: {"conversation_id": w.conv, "token": w.token, "agent": "b"}, check=_no_other),
    "bus_get_transcript": ToolRule("reader", lambda w: {"conversation_id": w.conv, "token": w.token}, check=_no_other),
    "bus_ack": ToolRule("writer", lambda w: {"conversation_id": w.conv, "token": w.token, "agent": "b", "all": True}),
    "bus_list_conversations": ToolRule("reader", lambda w: {}, check=_no_other),
    "bus_claim_task": ToolRule("writer", lambda w: {"conversation_id": w.queue, "token": w.queue_token, "worker": "w"}),
    "bus_complete_task": ToolRule(
        "writer", lambda w: {"conversation_id": w.queue, "token": w.queue_token, "worker": "w", "attempt_token": w.attempt}
    ),
    "bus_complete_tasks": ToolRule(
        "writer",
        lambda w: {"conversation_id": w.queue, "token": w.queue_token, "worker": "w", "results": [{"attempt_token": w.attempt}]},
    ),
    "memory_extraction_status": ToolRule("reader", lambda w: {"job_id": w.job}, lambda w: {"job_id": w.job_b}, check=_no_other),
    "session_append": ToolRule(
        "writer",
        lambda w: {"session_id": f"n-{uuid.uuid4().hex[:12]}", "content": "hi", "namespace": OWN},
        lambda w: {"session_id": f"n-{uuid.uuid4().hex[:12]}", "content": "hi", "namespace": ASIDE},
    ),
    "session_rehydrate": ToolRule("reader", lambda w: {"session_id": w.session}, lambda w: {"session_id": w.session_b}, check=_no_other),
    "session_list": ToolRule("reader", lambda w: {}, check=_no_other),
    "memory_namespace_set_standard": ToolRule(
        "admin",
        lambda w: {"namespace": f"{OWN}/{w.tag}", "governance": {"delete": "approve"}},
        lambda w: {"namespace": f"{OTHER}/{w.tag}", "governance": {"delete": "approve"}},
    ),
    "memory_namespace_get_standard": ToolRule("reader", lambda w: {"namespace": GOV_OWN}, lambda w: {"namespace": GOV_OTHER}),
    "memory_namespace_clear_standard": ToolRule("admin", lambda w: {"namespace": GOV_OWN}, lambda w: {"namespace": GOV_OTHER}),
    "memory_pending_list": ToolRule("reader", lambda w: {"status": "all"}, check=_no_other),
    "memory_pending_approve": ToolRule("admin", lambda w: {"id": w.pend_a}, lambda w: {"id": w.pend_b}),
    "memory_pending_reject": ToolRule("admin", lambda w: {"id": w.pend_a, "reason": "no"}, lambda w: {"id": w.pend_b}),
    "memory_subscribe": ToolRule(
        "reader", lambda w: {"namespace": f"{OWN}/{w.tag}/subs", "url": HOOK}, lambda w: {"namespace": f"{OTHER}/{w.tag}/subs", "url": HOOK}
    ),
    "memory_unsubscribe": ToolRule("admin", lambda w: {"id": w.sub_a}, lambda w: {"id": w.sub_b}),
    "memory_list_subscriptions": ToolRule("reader", lambda w: {}, check=_no_other),
    "memory_notify": ToolRule(
        "writer",
        lambda w: {"to": f"peer-{w.tag}", "body": "look at team/a", "namespace": OWN},
        lambda w: {"to": f"peer-{w.tag}", "body": "look", "namespace": OTHER},
    ),
    "memory_inbox": ToolRule("reader", lambda w: {}, check=_no_other),
    "memory_detect_contradiction": ToolRule("reader", lambda w: {"id": w.a1}, lambda w: {"id": w.b1}, check=_no_other),
    "memory_auto_tag": ToolRule("reader", lambda w: {"id": w.a1}, lambda w: {"id": w.b1}),
    "memory_expand_query": ToolRule(
        "reader", lambda w: {"query": "alpha", "namespace": OWN}, lambda w: {"query": "alpha", "namespace": OTHER}, check=_no_other
    ),
}
