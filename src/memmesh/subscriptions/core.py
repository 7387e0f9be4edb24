"""Webhook subscriptions: every rule written once for every face (CLI, HTTP, MCP, Python).

Model:

- A subscription names a namespace (it covers everything below it too), a URL and the
  events wanted (``memory.created``, ``memory.updated``, ``memory.deleted``). It belongs to
  the caller that made it and is scoped by that caller's key: a change is delivered only
  if the key could read it, and once the key is revoked the subscription stops.
- Changes are found in the store's change feed (the one replication reads), not by hooks
  in each write path, so no write path can forget to announce itself and nothing is lost
  while no server runs: a subscription keeps the change number it has queued up to
  (``seen_seq``) and :meth:`Subscriptions.enqueue` moves it forward in the same write that
  queues the deliveries. The move is conditional on the old number, so two processes never
  queue one change twice.
- The queue is a table in the store (durable: it survives a restart). A delivery is
  claimed by pushing its next attempt past the call's timeout (a process that dies
  mid-call leaves it to be retried), POSTed with an HMAC-SHA256 signature
  (:mod:`memmesh.subscriptions.signing`) to the address the SSRF guard checked
  (:mod:`memmesh.subscriptions.guard`), then marked ``delivered``, or retried with
  exponential backoff, or after ``max_attempts`` marked ``dead`` (the dead-letter list) with
  the last error. A 2xx answer is success; anything else (a redirect included) is not.
"""

from __future__ import annotations

import builtins
import json
import logging
import secrets
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from memmesh.audit.capture import AuditedTx, Pending, actor_of
from memmesh.bus.sql import BusSql, Row, Rows
from memmesh.clock import new_id
from memmesh.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError, RateLimitedError
from memmesh.kernel import authorize, is_store_admin
from memmesh.model import Memory, Principal, Tombstone, check_text, normalize_namespace
from memmesh.schedule import Periodic
from memmesh.subscriptions import signing
from memmesh.subscriptions.guard import Target, check_target
from memmesh.subscriptions.model import (
    EVENTS,
    CreatedSubscription,
    Delivery,
    DeliveryRun,
    Subscription,
    SubscriptionPolicy,
    when,
)

if TYPE_CHECKING:
    from memmesh.host import Host

log = logging.getLogger("memmesh.subscriptions")

SUB_COLUMNS = "id, namespace, url, events, owner_agent, owner_key, created_at, state, seen_seq, owner_role, owner_scope, secret"
DELIVERY_COLUMNS = "id, subscription_id, event, memory_id, state, attempts, next_attempt, last_error, last_status, created_at, delivered_at"
SUBSCRIPTIONS_HELP = {"subscriptions_list": "to see the subscription ids"}
"""What a missing or unknown subscription id points to, named by each face its own way."""
FEED_PAGE = 500
CLAIM_BATCH = 20
MIN_SECRET_CHARS = 16
MAX_SECRET_CHARS = 256
MAX_ERROR_CHARS = 500


class Subscriptions:
    """Subscriptions, their delivery queue and the worker that drains it (``service.subscriptions``)."""

    def __init__(self, service: Host, policy: SubscriptionPolicy | None = None) -> None:
        self.service = service
        self.policy = policy or SubscriptionPolicy()
        self.sql = BusSql(service.store)
        self.worker = Periodic(
            "memmesh-webhooks", self.policy.poll_interval_s, self._pass, log=log, first_wait=False, join_secs=self.policy.timeout_s + 5
        )

    def _now(self) -> float:
        return self.service.clock().timestamp()

    # -- subscribing ---------------------------------------------------------------------

    def subscribe(
        self,
        namespace: str,
        url: str,
        *,
        events: Sequence[str] | str | None = None,
        secret: str | None = None,
        principal: Principal,
    ) -> CreatedSubscription:
        """Subscribe ``url`` to changes in ``namespace`` (and below), as the caller's key sees
        them. The URL is checked by the SSRF guard now and again before every call. Returns
        the subscription with its signing secret (shown this once).

        Subscribing the same URL to the same namespace again (the same caller, the same
        events; a retry after a lost answer) returns the subscription made first, with
        ``existed`` true and its secret, instead of a second one that would deliver every
        change twice. Other events or another secret for it are a conflict: unsubscribe first."""
        ns = normalize_namespace(namespace)
        who = authorize(principal, "reader", ns)
        check_target(url, allow_internal=self.policy.allow_loopback_webhooks)
        wanted = _events(events)
        key = _secret(secret)
        now = self._now()
        sub_id = new_id()
        owner_scope = [json.dumps(who.namespaces)]
        with self.service.store.write() as tx:
            rows = Rows(tx.conn, self.sql.postgres)
            owned = rows.one("SELECT COUNT(*) FROM subscriptions WHERE owner_agent = ?", (who.agent_id,)) if who.key_id else None
            if owned is not None and int(owned[0]) >= self.policy.max_per_owner:
                raise RateLimitedError(
                    f"agent {who.agent_id!r} already has {owned[0]} subscriptions (subscriptions.max_per_owner); unsubscribe one first",
                    details={"retry_after": 60},
                )
            same = self._same(rows, who, ns, url.strip(), wanted, key if secret is not None else None)
            if same is not None:
                return same
            seen = self.service.store.change_counter()
            rows.run(
                "INSERT INTO subscriptions (id, namespace, url, secret, events, owner_agent, owner_key, owner_role, owner_scope, "
                "created_at, seen_seq, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active')",
                (sub_id, ns, url.strip(), key, json.dumps(wanted), who.agent_id, who.key_id, who.role, *owner_scope, now, seen),
            )
            _audit(tx, "subscription.create", who, sub_id, ns, {"url": url.strip(), "events": wanted})
        log.info("subscription %s: %s → %s (%s) by %s", sub_id, ns, _origin(url.strip()), ",".join(wanted), who.agent_id or "local")
        return CreatedSubscription(
            id=sub_id,
            namespace=ns,
            url=url.strip(),
            events=wanted,
            owner_agent=who.agent_id,
            owner_key=who.key_id,
            created_at=when(now),
            state="active",
            seen_seq=seen,
            secret=key,
        )

    def _same(
        self, rows: Rows, who: Principal, ns: str, url: str, wanted: builtins.list[str], secret: str | None
    ) -> CreatedSubscription | None:
        """The caller's active subscription of ``url`` to ``ns`` (None when it has none); a
        conflict when it differs from what is asked (events, or a secret given)."""
        found = rows.all(f"SELECT {SUB_COLUMNS} FROM subscriptions WHERE namespace = ? AND url = ? AND state = 'active'", (ns, url))
        mine = [row for row in found if (row[4], row[5]) == (who.agent_id, who.key_id)]
        if not mine:
            return None
        sub = _subscription(mine[0])
        if sorted(sub.events) != sorted(wanted) or (secret is not None and secret != mine[0][11]):
            what = "other events" if sorted(sub.events) != sorted(wanted) else "another secret"
            raise ConflictError(
                f"{_origin(url)} is already subscribed to namespace {ns!r} (subscription {sub.id}, events "
                f"{', '.join(sub.events)}) and you asked for {what}: unsubscribe {sub.id} first to change it",
                details={"subscription_id": sub.id},
            )
        return CreatedSubscription(**sub.model_dump(), secret=str(mine[0][11]), existed=True)

    def list(self, *, principal: Principal) -> builtins.list[Subscription]:
        """Subscriptions on namespaces the caller may read (never their secrets)."""
        who = authorize(principal, "reader")
        with self.sql.read() as rows:
            found = rows.all(f"SELECT {SUB_COLUMNS} FROM subscriptions ORDER BY created_at, id")
        return [_shown(who, row) for row in found if _visible(who, row)]

    def get(self, subscription_id: str, *, principal: Principal) -> Subscription:
        who = authorize(principal, "reader")
        return _shown(who, self._found(who, subscription_id))

    def unsubscribe(self, subscription_id: str, *, principal: Principal) -> Subscription:
        """Remove a subscription and its queued deliveries; returns it. The agent that made
        it may, and an admin of its namespace."""
        who = authorize(principal, "reader")
        if not who.has_role("admin"):
            try:
                row = self._found(who, subscription_id)
            except NotFoundError:
                row = None
            if row is None or row[4] != who.agent_id:  # the same answer whether it exists or not: the role comes first, as everywhere
                raise ForbiddenError(
                    f"no subscription {subscription_id!r} of agent {who.agent_id!r}: only the agent that made a subscription "
                    "or an admin of its namespace may remove it"
                )
        row = self._found(who, subscription_id)
        with self.service.store.write() as tx:
            rows = Rows(tx.conn, self.sql.postgres)
            if rows.run("DELETE FROM subscriptions WHERE id = ?", (row[0],)) != 1:
                raise NotFoundError(f"no subscription with id {subscription_id!r} for this key", use=SUBSCRIPTIONS_HELP)
            rows.run("DELETE FROM subscription_deliveries WHERE subscription_id = ?", (row[0],))
            _audit(tx, "subscription.delete", who, row[0], row[1], {"url": row[2]})
        return _subscription(row)

    def deliveries(
        self, subscription_id: str, *, state: str | None = None, limit: int = 100, principal: Principal
    ) -> builtins.list[Delivery]:
        """A subscription's deliveries, newest first (``state``: pending, delivered or dead)."""
        who = authorize(principal, "reader")
        row = self._found(who, subscription_id)
        if state is not None and state not in ("pending", "delivered", "dead"):
            raise InvalidInputError(f"state must be pending, delivered or dead (got {state!r})", usage=True, field="state")
        limit = self.service.kernel.check_top_k(limit, "limit")
        where, params = "subscription_id = ?", [row[0]]
        if state:
            where, params = where + " AND state = ?", [*params, state]
        with self.sql.read() as rows:
            found = rows.all(
                f"SELECT {DELIVERY_COLUMNS} FROM subscription_deliveries WHERE {where} ORDER BY created_at DESC, id LIMIT ?",
                (*params, limit),
            )
        return [_delivery(r) for r in found]

    def _found(self, who: Principal, subscription_id: str) -> Row:
        if not isinstance(subscription_id, str) or not subscription_id.strip():
            raise InvalidInputError("subscription id is required", use=SUBSCRIPTIONS_HELP)
        with self.sql.read() as rows:
            row = rows.one(f"SELECT {SUB_COLUMNS} FROM subscriptions WHERE id = ?", (subscription_id.strip(),))
        if row is None or not _visible(who, row):
            raise NotFoundError(f"no subscription with id {subscription_id!r} for this key", use=SUBSCRIPTIONS_HELP)
        return row

    # -- queueing changes ------------------------------------------------------------------

    def enqueue(self) -> int:
        """Queue a delivery for every change each active subscription has not yet queued;
        returns how many were queued. The feed is read once per pass for every subscription,
        and each page is queued in one write. Safe to run in several processes at once: a
        subscription moves on only from the change number this pass read it at."""
        head = self.service.store.change_counter()
        with self.sql.read() as rows:
            subs = rows.all(f"SELECT {SUB_COLUMNS} FROM subscriptions WHERE state = 'active' AND seen_seq < ?", (head,))
        live: dict[str, tuple[Row, Principal]] = {}
        for row in subs:
            owner = self._owner(row)
            if owner is None:
                self._stop_revoked(row)
            else:
                live[row[0]] = (row, owner)
        seen = {sub_id: int(row[8]) for sub_id, (row, _) in live.items()}
        since, queued = min(seen.values(), default=head), 0
        while live and since < head:
            changes = self.service.store.changes_since(since, FEED_PAGE)
            found = [_memory_event(seq, m) for seq, m in changes.memories] + [_delete_event(seq, t) for seq, t in changes.tombstones]
            found.sort(key=lambda e: (e["seq"], e["memory_id"]))
            now = self._now()
            with self.sql.write() as rows:
                for sub_id, (row, owner) in builtins.list(live.items()):
                    if seen[sub_id] >= changes.upto:
                        continue
                    moved = rows.run(
                        "UPDATE subscriptions SET seen_seq = ? WHERE id = ? AND seen_seq = ? AND state = 'active'",
                        (changes.upto, sub_id, seen[sub_id]),
                    )
                    if moved != 1:
                        del live[sub_id]  # another process queued it (or it was removed): leave it to that one
                        continue
                    events = [e for e in found if e["seq"] > seen[sub_id] and _wanted(row, owner, e)]
                    for event in events:
                        delivery_id = new_id()
                        body = json.dumps({"id": delivery_id, "subscription_id": sub_id, **event}, sort_keys=True, default=str)
                        rows.run(
                            "INSERT INTO subscription_deliveries (id, subscription_id, event, memory_id, payload, state, attempts, "
                            "next_attempt, created_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                            (delivery_id, sub_id, event["event"], event["memory_id"], body, now, now),
                        )
                    queued += len(events)
                    seen[sub_id] = changes.upto
            if changes.upto <= since:
                break
            since = changes.upto
        return queued

    def _stop_revoked(self, row: Row) -> None:
        with self.sql.write() as rows:
            rows.run("UPDATE subscriptions SET state = 'revoked' WHERE id = ?", (row[0],))
            rows.run(
                "UPDATE subscription_deliveries SET state = 'dead', last_error = ? WHERE subscription_id = ? AND state = 'pending'",
                ("the key that made this subscription was revoked", row[0]),
            )
        log.warning("subscription %s stopped: its key %s was revoked", row[0], row[5])

    def _owner(self, row: Row) -> Principal | None:
        """The subscription's owner as it stands now (None once its key was revoked)."""
        key_id = row[5]
        if key_id is not None:
            key = self.service.store.api_key(key_id)
            if key is None or key.revoked_at is not None:
                return None
            return Principal(agent_id=key.agent_id, role=key.role, namespaces=key.namespaces, key_id=key.id)
        return Principal(agent_id=row[4], role=row[9], namespaces=json.loads(row[10]))

    # -- delivering --------------------------------------------------------------------------

    def deliver_due(self, *, limit: int = CLAIM_BATCH) -> DeliveryRun:
        """Claim up to ``limit`` due deliveries and call their webhooks once each."""
        run = DeliveryRun()
        for claimed in self._claim(limit):
            if self._revoked(claimed[1]):
                run.dead += 1
                continue
            self._attempt(claimed, run)
        return run

    def _revoked(self, subscription_id: str) -> bool:
        """True (and the subscription stopped) when the key that made it was revoked since
        its changes were queued: nothing more goes out under a revoked key, queued or not."""
        with self.sql.read() as rows:
            row = rows.one(f"SELECT {SUB_COLUMNS} FROM subscriptions WHERE id = ?", (subscription_id,))
        if row is None or row[7] == "revoked":
            return True  # removed or stopped since it was claimed
        if self._owner(row) is not None:
            return False
        self._stop_revoked(row)
        return True

    def run_once(self, *, principal: Principal) -> DeliveryRun:
        """Queue new changes and deliver what is due, once (``memmesh subscribe deliver``);
        store-wide work, so an admin for every namespace."""
        who = authorize(principal, "admin")
        if not is_store_admin(who):
            raise ForbiddenError("running deliveries covers every namespace; it needs an admin key not limited to some namespaces")
        queued = self.enqueue()
        run = DeliveryRun(queued=queued)
        while True:
            step = self.deliver_due()
            run.delivered, run.retried, run.dead = run.delivered + step.delivered, run.retried + step.retried, run.dead + step.dead
            if step.delivered + step.retried + step.dead < CLAIM_BATCH:
                return run

    def _claim(self, limit: int) -> builtins.list[Row]:
        now = self._now()
        lease = now + self.policy.timeout_s + 30.0
        with self.sql.write() as rows:
            due = rows.all(
                "SELECT d.id, d.subscription_id, d.event, d.payload, d.attempts, s.url, s.secret FROM subscription_deliveries d "
                "JOIN subscriptions s ON s.id = d.subscription_id "
                "WHERE d.state = 'pending' AND d.next_attempt <= ? AND s.state = 'active' "
                f"ORDER BY d.next_attempt, d.id LIMIT ?{_of_d(rows)}",
                (now, limit),
            )
            for row in due:
                rows.run("UPDATE subscription_deliveries SET attempts = attempts + 1, next_attempt = ? WHERE id = ?", (lease, row[0]))
        return due

    def _attempt(self, row: Row, run: DeliveryRun) -> None:
        delivery_id, _sub, event, payload, attempts, url, secret = row
        attempts = int(attempts) + 1
        status, error = self._post(url, secret, delivery_id, event, payload.encode())
        now = self._now()
        with self.sql.write() as rows:
            if error is None:
                rows.run(
                    "UPDATE subscription_deliveries SET state = 'delivered', delivered_at = ?, last_status = ?, last_error = NULL "
                    "WHERE id = ?",
                    (now, status, delivery_id),
                )
                run.delivered += 1
            elif attempts >= self.policy.max_attempts:
                rows.run(
                    "UPDATE subscription_deliveries SET state = 'dead', last_status = ?, last_error = ? WHERE id = ?",
                    (status, f"gave up after {attempts} attempts: {error}"[:MAX_ERROR_CHARS], delivery_id),
                )
                run.dead += 1
                log.warning("delivery %s to %s dead-lettered after %d attempts: %s", delivery_id, _origin(url), attempts, error)
            else:
                rows.run(
                    "UPDATE subscription_deliveries SET next_attempt = ?, last_status = ?, last_error = ? WHERE id = ?",
                    (now + self.backoff(attempts), status, error[:MAX_ERROR_CHARS], delivery_id),
                )
                run.retried += 1

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failed ones: doubling from
        ``retry_base_s``, capped at ``retry_max_s``."""
        return float(min(self.policy.retry_max_s, self.policy.retry_base_s * 2 ** max(0, attempts - 1)))

    def _post(self, url: str, secret: str, delivery_id: str, event: str, body: bytes) -> tuple[int | None, str | None]:
        """POST one signed delivery to the checked address: (status, error or None). httpx is
        imported here, by the delivery worker: every command builds this service, few deliver."""
        import httpx

        try:
            target = check_target(url, allow_internal=self.policy.allow_loopback_webhooks)
        except InvalidInputError as exc:
            return None, exc.message
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "memmesh-webhooks",
            "Host": _host_header(target),
            signing.TIMESTAMP_HEADER: str(stamp),
            signing.SIGNATURE_HEADER: signing.signature(secret, stamp, body),
            signing.DELIVERY_HEADER: delivery_id,
            signing.EVENT_HEADER: event,
        }
        pinned = httpx.URL(target.url).copy_with(host=target.address)
        extensions = {"sni_hostname": target.hostname} if target.scheme == "https" else {}
        try:
            # streamed and the body never read: only the status counts, and a receiver must
            # not be able to hold the worker, or fill the server's memory, with its answer
            with (
                httpx.Client(timeout=self.policy.timeout_s, follow_redirects=False, trust_env=False) as client,
                client.stream("POST", pinned, content=body, headers=headers, extensions=extensions) as answer,
            ):
                status, where = answer.status_code, answer.headers.get("location", "?")
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if 200 <= status < 300:
            return status, None
        if 300 <= status < 400:
            return status, f"answered {status} redirecting to {where[:200]}: redirects are not followed"
        return status, f"answered HTTP {status}"

    # -- the worker serve runs ------------------------------------------------------------------

    def start(self) -> None:
        """Run the delivery worker in a thread until :meth:`stop` (``memmesh serve`` does):
        a pass at once, then one every ``poll_interval_s`` (a failing pass is logged and the
        next one tries again)."""
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()

    def _pass(self) -> None:
        """Queue the new changes' deliveries, then deliver what is due until nothing is."""
        self.enqueue()
        while not self.worker.stopping and _busy(self.deliver_due()):
            pass


def _audit(tx: Any, action: str, who: Principal, target: str, namespace: str, detail: dict[str, Any]) -> None:
    """An audit entry committed with the change (the service's store is the audited one)."""
    if isinstance(tx, AuditedTx):
        tx.defer(Pending(action, target, namespace, detail, actor_of(who)))


def _busy(run: DeliveryRun) -> bool:
    """True when a pass claimed anything (there may be more due)."""
    return run.delivered + run.retried + run.dead > 0


def _of_d(rows: Rows) -> str:
    return " FOR UPDATE OF d SKIP LOCKED" if rows.postgres else ""


def _events(events: Sequence[str] | str | None) -> list[str]:
    if events is None or events == [] or events == "":
        return list(EVENTS)
    if not isinstance(events, str | list | tuple):  # a dict or set would pass as its keys, in no order
        raise InvalidInputError(f"events must be a list of event names ({', '.join(EVENTS)}), not {type(events).__name__}", field="events")
    items = [e.strip() for e in events.split(",")] if isinstance(events, str) else list(events)
    bad = [e for e in items if e not in EVENTS]
    if bad or not items:
        raise InvalidInputError(
            f"events names an unknown event {bad[0] if bad else ''!r}: use {', '.join(EVENTS)} (or leave events out for all)",
            usage=True,
            field="events",
        )
    return list(dict.fromkeys(items))


def _secret(secret: str | None) -> str:
    if secret is None:
        return secrets.token_hex(32)
    if not isinstance(secret, str) or not MIN_SECRET_CHARS <= len(secret.strip()) <= MAX_SECRET_CHARS:
        raise InvalidInputError(
            f"secret must be {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} characters (or leave it out and memmesh makes one)",
            field="secret",
        )
    return str(check_text(secret.strip(), "secret"))


def _visible(who: Principal, row: Row) -> bool:
    """A subscription is seen by callers who may read its namespace (they could make the
    same one); its secret is never listed (only its maker subscribing it again gets it back)."""
    return bool(who.covers(row[1]))


def _shown(who: Principal, row: Row) -> Subscription:
    """A subscription as ``who`` may see it: the URL in full only to the agent that made it
    and to admins of its namespace. A webhook URL often is a credential (chat services put
    the token in its path or query), so other readers of the namespace see its origin only."""
    sub = _subscription(row)
    if who.agent_id is None or row[4] == who.agent_id or who.has_role("admin"):
        return sub
    return sub.model_copy(update={"url": _origin(sub.url), "owner_key": None})


def _origin(url: str) -> str:
    """``scheme://host[:port]/…`` of a webhook URL: what may be shown or logged of it (its
    path and query may hold the receiver's token)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    hidden = f"{parts.scheme}://{f'[{host}]' if ':' in host else host}"
    return hidden + (f":{parts.port}" if parts.port else "") + "/…"


def _subscription(row: Row) -> Subscription:
    return Subscription(
        id=row[0],
        namespace=row[1],
        url=row[2],
        events=json.loads(row[3]),
        owner_agent=row[4],
        owner_key=row[5],
        created_at=when(float(row[6])),
        state=row[7],
        seen_seq=int(row[8]),
    )


def _delivery(row: Row) -> Delivery:
    state = row[4]
    return Delivery(
        id=row[0],
        subscription_id=row[1],
        event=row[2],
        memory_id=row[3],
        state=state,
        attempts=int(row[5]),
        next_attempt_at=when(float(row[6])) if state == "pending" else None,
        last_error=row[7],
        last_status=row[8],
        created_at=when(float(row[9])),
        delivered_at=when(float(row[10])) if row[10] is not None else None,
    )


def _memory_event(seq: int, memory: Memory) -> dict[str, Any]:
    # a memory's vector clock counts its changes: 1 for a memory as first written (here or on a peer)
    changes = sum(memory.version.clock.values()) if memory.version is not None and memory.version.clock else None
    first = changes <= 1 if changes is not None else memory.created_at == memory.updated_at
    event = "memory.created" if first else "memory.updated"
    return {
        "event": event,
        "seq": seq,
        "namespace": memory.namespace,
        "memory_id": memory.id,
        "occurred_at": memory.updated_at.isoformat(),
        "memory": memory.model_dump(mode="json", exclude={"version"}),
    }


def _delete_event(seq: int, tombstone: Tombstone) -> dict[str, Any]:
    return {
        "event": "memory.deleted",
        "seq": seq,
        "namespace": tombstone.namespace,
        "memory_id": tombstone.id,
        "occurred_at": tombstone.deleted_at.isoformat(),
        "memory": None,
    }


def _wanted(row: Row, owner: Principal, event: dict[str, Any]) -> bool:
    ns, base = event["namespace"], row[1]
    inside = ns == base or ns.startswith(base.rstrip("/") + "/")
    return bool(inside and owner.covers(ns) and event["event"] in json.loads(row[3]))


def _host_header(target: Target) -> str:
    default = 443 if target.scheme == "https" else 80
    host = f"[{target.hostname}]" if ":" in target.hostname else target.hostname
    return host if target.port == default else f"{host}:{target.port}"
