"""The governance core: standards, the one check every write path makes, pending actions.

The service calls :meth:`Governance.check` (or :meth:`Governance.admit_writes` for stores)
once per write path, before its write transaction. The outcome is one of three:

* ``allow`` — the call returns and the write goes ahead;
* ``deny`` — :class:`GovernanceDeniedError` (403) naming the rule: the action, the namespace
  and the namespace whose standard set it;
* ``approve`` — the action is saved as a pending action and :class:`PendingApprovalError`
  (202, ``pending_id``) tells the caller it awaits approval.

Approving replays the saved action as its requester through the very same service method,
so validation, namespace scope, versions, history and quotas apply exactly as to a direct
write; a context variable lets that one replay past the check. ``governance.mode`` =
``advisory`` acts anyway and records the would-be refusal; ``off`` skips the checks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any

from memmesh.access import key_creators
from memmesh.audit.capture import actor_of
from memmesh.clock import format_ts, new_id
from memmesh.errors import (
    ConflictError,
    ForbiddenError,
    GovernanceDeniedError,
    InvalidInputError,
    MemmeshError,
    NotFoundError,
    PendingApprovalError,
)
from memmesh.governance import audited, recovery
from memmesh.governance.model import (
    ACTIONS,
    MAX_RETENTION_DAYS,
    MAX_TTL_SECONDS,
    EffectiveStandard,
    PendingAction,
    Standard,
    parse_count,
    parse_governance,
    parse_required_tags,
    parse_status,
    parse_tier,
)
from memmesh.governance.policy import Rule, effective, lineage, nearest, rule_for, strictest
from memmesh.governance.store import GovernanceStore
from memmesh.kernel import authorize, content_hash, update_target
from memmesh.model import Memory, MemoryPatch, NewMemory, Principal, Role, Tier, normalize_namespace

if TYPE_CHECKING:
    from memmesh.host import Host

log = logging.getLogger("memmesh.governance")

_APPLYING: ContextVar[str | None] = ContextVar("memmesh_governance_applying", default=None)
"""Set while an approved action is replayed, so its own write path does not queue it again."""

MAX_REASON_CHARS = 2000
STANDARDS_HELP = {"standards_list": "to see the namespaces that have one"}
"""What clearing a standard that is not there points to."""
PENDING_HELP = {"pending_all": "to see the ids of every pending action, decided ones too"}
"""What an unknown pending id points to, named by each face its own way."""
REPLICATED_PENDING_ACTIONS = {
    "pending": "pending.queue",
    "approved": "pending.approve",
    "rejected": "pending.reject",
    "applied": "pending.apply",
    "failed": "pending.fail",
    "advisory": "governance.advisory",
}
"""The audit action of a pending action's state arriving from a peer (as if made here)."""
MAX_LISTED = 10_000


class Governance:
    """Standards and pending actions over one service (``service.governance``)."""

    def __init__(self, service: Host) -> None:
        self.service = service
        self.db = GovernanceStore(service.store)

    @property
    def mode(self) -> str:
        return self.service.policy.governance_mode

    def stamp(self) -> tuple[str, str]:
        """The version stamp (hlc, node id) of a governance write made on this node: what
        replicated standards and decisions are ordered by (last writer wins on it)."""
        return self.service.kernel.hlc.now(), self.service.node_id

    # -- standards ---------------------------------------------------------------------------

    def set_standard(
        self,
        namespace: str,
        *,
        governance: Any = None,
        default_tier: Any = None,
        ttl_seconds: Any = None,
        retention_days: Any = None,
        required_tags: Any = None,
        principal: Principal,
    ) -> Standard:
        """Set (replace) the standard of ``namespace``; an admin of that namespace only."""
        ns = normalize_namespace(namespace)
        who = self._authorize_admin(principal, [ns], "set a namespace standard")
        standard = Standard(
            namespace=ns,
            governance=parse_governance(governance),
            default_tier=parse_tier(default_tier),
            ttl_seconds=parse_count(ttl_seconds, "ttl_seconds", MAX_TTL_SECONDS),
            retention_days=parse_count(retention_days, "retention_days", MAX_RETENTION_DAYS),
            required_tags=parse_required_tags(required_tags),
            updated_at=self.service.clock(),
            updated_by=who.agent_id,
        )
        if not (standard.governance or standard.default_tier or standard.ttl_seconds or standard.retention_days or standard.required_tags):
            raise InvalidInputError(
                "a standard needs at least one of governance, default_tier, ttl_seconds, retention_days or required_tags "
                "(to remove one, clear it)"
            )
        with self.service.store.write() as tx:
            self.db.put_standard(tx, standard, self.stamp())
            audited.note(tx, "standard.set", target=ns, namespace=ns, detail=audited.standard_detail(standard), who=who)
        log.info("standard set on %s by %s: %s", ns, who.agent_id or "local", standard.governance)
        return standard

    def get_standard(self, namespace: str, *, principal: Principal) -> EffectiveStandard:
        """The standard as it applies in ``namespace`` (own fields and inherited ones)."""
        ns = normalize_namespace(namespace)
        authorize(principal, "reader", ns)
        return effective(ns, self.db.standards(lineage(ns)))

    def clear_standard(self, namespace: str, *, principal: Principal) -> Standard:
        """Remove the standard set on ``namespace`` (its ancestors' still apply); returns it."""
        ns = normalize_namespace(namespace)
        who = self._authorize_admin(principal, [ns], "clear a namespace standard")
        with self.service.store.write() as tx:
            found = self.db.standards([ns])
            if not found or not self.db.delete_standard(tx, ns, self.stamp()):
                raise NotFoundError(f"namespace {ns!r} has no standard of its own", use=STANDARDS_HELP)
            audited.note(tx, "standard.clear", target=ns, namespace=ns, detail=audited.standard_detail(found[0]), who=who)
        return found[0]

    def list_standards(self, *, principal: Principal) -> list[Standard]:
        """Every standard set on a namespace the caller may read."""
        who = authorize(principal, "reader")
        return [s for s in self.db.standards() if who.covers(s.namespace)]

    # -- the checks the service makes -------------------------------------------------------------

    def admit_writes(self, who: Principal, inputs: list[NewMemory], *, unqueued: tuple[str, str, str] | None = None) -> list[NewMemory]:
        """New memories as their namespaces' standards shape them (default tier, TTL), after
        the required-tags and ``write`` checks. A batch is one action: if any item needs
        approval, the whole batch waits as one pending action, so it stays all or nothing.

        ``unqueued`` = (what, why it is not queued, how to get it in) for a write that commits with more than its
        memories (a session's turn counter, links given with the memory): an approval replays
        only the memories, so such a write is refused under ``approve`` instead of queued
        (queued, the turns came back unnumbered and the links never came)."""
        if not inputs or self._bypassed():
            return inputs
        spaces = list(dict.fromkeys(new.namespace for new in inputs))
        standards = self.db.standards(sorted({ns for space in spaces for ns in lineage(space)}))
        if not standards:
            return inputs
        by_ns = {s.namespace: s for s in standards}
        shaped = [self._shape(new, by_ns) for new in inputs]
        if self.mode == "off":
            return shaped
        for new in shaped:
            self._check_required_tags(who, new, by_ns)
        rules = [rule_for(ns, "write", by_ns) for ns in spaces] + [rule_for(ns, "update", by_ns) for ns in self._updated_by(who, shaped)]
        if all(rule.decision == "allow" for rule in rules):
            return shaped
        if unqueued is not None:
            self._refuse_unqueued(who, rules, spaces, unqueued)
            return shaped
        if all(rule.decision != "deny" for rule in rules) and all(self._already_stored(who, new) for new in shaped):
            return shaped  # nothing to approve: the kernel answers with the stored memories
        # The replay payload: each item keeps an id chosen now, so applying it is idempotent.
        queued = [new if new.id else new.model_copy(update={"id": new_id()}) for new in shaped]
        payload: dict[str, Any] = {"items": [new.model_dump(mode="json", exclude_none=True) for new in queued]}
        if any(rule.action == "update" for rule in rules):
            payload["actions"] = ["write", "update"]
        self._decide(who, rules, spaces, payload)
        return shaped

    def _updated_by(self, who: Principal, inputs: list[NewMemory]) -> list[str]:
        """The namespaces where a store would change a stored memory in place rather than write
        a new one (``on_conflict="update"`` and that title already there, or the same content
        stored already without some of its tags): such a store is an ``update`` of that
        memory, so the ``update`` rule applies to it too."""
        found = [update_target(self.service.store, new) for new in inputs]
        return list(dict.fromkeys(m.namespace for m in found if m is not None and who.covers(m.namespace)))

    def _already_stored(self, who: Principal, new: NewMemory) -> bool:
        """True when storing ``new`` would write nothing: the same content (under the same
        id, if one is given) is stored in the caller's namespace with every tag it brings.
        Such a write is answered with the stored memory (``existed``) instead of waiting for
        an approval that could change nothing; a retry after a lost answer confirms a write
        that was approved meanwhile."""
        store = self.service.store
        digest = content_hash(new.namespace, new.content)
        existing = store.get(new.id) if new.id else store.find_by_hash(new.namespace, digest)
        return (
            existing is not None
            and existing.namespace == new.namespace
            and who.covers(existing.namespace)
            and existing.content_hash == digest
            and set(new.tags) <= set(existing.tags)
        )

    def check(
        self,
        who: Principal,
        action: str,
        *,
        ids: Sequence[str] = (),
        namespaces: Iterable[str | None] = (),
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Apply the ``action`` rule of every namespace touched (given, or held by the live
        memories ``ids`` the caller can see; ids it cannot see are left to the service's own
        not-found answer). ``payload`` is what replays the action once approved; without one
        (bulk deletes) an ``approve`` rule refuses, since a bulk action is not queued."""
        if self.mode == "off" or self._bypassed():
            return
        self.check_actions(who, {action: [*namespaces, *self._held(who, ids)]}, payload=payload)

    def _held(self, who: Principal, ids: Sequence[str]) -> list[str]:
        """The namespaces of the live memories ``ids`` that the caller can see."""
        if not ids:
            return []
        return [m.namespace for m in self.service.store.get_many(list(dict.fromkeys(ids))) if who.covers(m.namespace)]

    def check_actions(
        self,
        who: Principal,
        wanted: Mapping[str, Iterable[str | None]],
        *,
        payload: dict[str, Any] | None = None,
        unqueued: tuple[str, str, str] | None = None,
    ) -> None:
        """The one gate for a call that is several governed actions at once (``wanted``:
        action → the namespaces it touches), such as an update that moves a memory (``update``
        in both namespaces, ``write`` in the new one): every rule applies and the strictest
        decides. Approved, the call is replayed whole from ``payload``, which records the
        actions so a ``deny`` set meanwhile on any of them still refuses it; ``unqueued``
        words the refusal of a call that cannot be queued (see :meth:`_refuse_unqueued`)."""
        if self.mode == "off" or self._bypassed():
            return
        pairs = list(dict.fromkeys((action, ns) for action, spaces in wanted.items() for ns in spaces if ns))
        spaces = list(dict.fromkeys(ns for _, ns in pairs))
        rules = self._rules(pairs)
        if not rules:
            return
        if unqueued is not None:
            self._refuse_unqueued(who, rules, spaces, unqueued)
            return
        actions = list(dict.fromkeys(action for action, _ in pairs))
        if payload is not None and len(actions) > 1:
            payload = {**payload, "actions": actions}
        self._decide(who, rules, spaces, payload)

    def _rules(self, pairs: Sequence[tuple[str, str]]) -> list[Rule]:
        """The rule of each (action, namespace), or none at all when no standard applies."""
        if not pairs:
            return []
        standards = self.db.standards(sorted({ns for _, space in pairs for ns in lineage(space)}))
        if not standards:
            return []
        by_ns = {s.namespace: s for s in standards}
        return [rule_for(ns, action, by_ns) for action, ns in pairs]

    def check_update(self, who: Principal, current: Memory, patch: MemoryPatch) -> None:
        """Govern an update as every action it really is: ``update`` in the memory's namespace
        (and in the new one when it moves), ``write`` in the new namespace (a move brings the
        memory in), ``promote`` for a raise to tier ``long``, and ``delete`` for an
        ``expires_at`` at or before now (the memory is gone at once). Approved, the update is
        replayed exactly as asked."""
        moved = patch.namespace if patch.namespace not in (None, current.namespace) else None
        spaces = [current.namespace, moved]
        wanted: dict[str, list[str | None]] = {"update": spaces}
        if moved:
            wanted["write"] = [moved]
        if patch.tier == Tier.long and current.tier != Tier.long:
            wanted["promote"] = spaces
        if patch.expires_at is not None and patch.expires_at <= self.service.clock():
            wanted["delete"] = spaces
        payload = {"memory_id": current.id, "changes": patch.model_dump(mode="json", exclude_none=True)}
        self.check_actions(who, wanted, payload=payload)

    def admit_import(self, who: Principal, namespaces: Iterable[str], *, what: str = "import") -> None:
        """Imports and restores write memories that were decided elsewhere, so they are not
        queued: a ``write`` rule of ``deny`` refuses them, and so does ``approve`` (with a
        message saying how to get them in), before anything is written."""
        if self.mode == "off" or self._bypassed():
            return
        spaces = list(dict.fromkeys(ns for ns in namespaces if ns))
        rules = self._rules([("write", ns) for ns in spaces])
        fix = "store the memories one by one (each is queued for approval), or have an admin change the standard first"
        self._refuse_unqueued(who, rules, spaces, (what, f"an {what} is not queued", fix))

    def _refuse_unqueued(self, who: Principal, rules: list[Rule], spaces: list[str], words: tuple[str, str, str]) -> None:
        """A call that cannot wait for approval, ``words`` = (what it is, why it is not queued,
        how to get it in): refused under ``deny`` and ``approve``, recorded and let through in
        advisory mode, before anything is written."""
        what, why, fix = words
        rule = strictest(rules)
        if rule is None or rule.decision == "allow":
            return
        where = f"{what} {'into' if rule.action == 'write' else 'in'} namespace {rule.namespace!r}"
        if self.mode == "advisory":
            self._record(who, rule, spaces, {"import": what}, status="advisory")
            log.warning("advisory mode, not enforced: %s into %s would be refused (set on %s)", what, rule.namespace, rule.set_on)
            return
        details = {"rule": rule.describe()}
        if rule.decision == "deny":
            raise GovernanceDeniedError(
                f"{where} is denied by the standard set on {rule.set_on!r} (governance.{rule.action} = deny); nothing was written",
                details=details,
            )
        raise GovernanceDeniedError(
            f"{where} needs approval (governance.{rule.action} = approve, set on {rule.set_on!r}) and {why}; nothing was written: {fix}",
            details=details,
        )

    def check_update_tags(self, who: Principal, current: Memory, patch: MemoryPatch) -> None:
        """An update may not leave a memory without a tag its (new) namespace requires."""
        if self.mode == "off" or self._bypassed() or (patch.tags is None and patch.namespace is None):
            return
        target = patch.namespace or current.namespace
        standards = self.db.standards(lineage(target))
        if not standards:
            return
        tags = patch.tags if patch.tags is not None else current.tags
        required, set_on = nearest(target, {s.namespace: s for s in standards}, lambda s: s.required_tags)
        missing = [tag for tag in required or [] if tag not in tags]
        if not missing:
            return
        plural = len(missing) > 1
        message = (
            f"this update would leave memory {current.id} without the tag{'s' if plural else ''} {', '.join(missing)} that namespace "
            f"{target!r} requires (required_tags of the standard set on {set_on!r}): keep {'them' if plural else 'it'} in tags"
        )
        if self.mode == "advisory":
            log.warning("advisory mode, not refused: %s (agent %s)", message, who.agent_id or "local")
            return
        raise InvalidInputError(message, details={"missing_tags": missing, "set_on": set_on})

    def enforce_retention(self, now: datetime) -> int:
        """Forget every memory past its namespace standard's ``retention_days`` (gc calls this)."""
        from memmesh.governance.retention import forget_past_retention

        standards = [s for s in self.db.standards() if s.retention_days]
        return forget_past_retention(self.service, standards, now) if standards else 0

    @staticmethod
    def _bypassed() -> bool:
        return _APPLYING.get() is not None

    @staticmethod
    def _shape(new: NewMemory, by_ns: dict[str, Standard]) -> NewMemory:
        """Fill what the caller left out from the standard: the default tier, then its TTL
        (which replaces the tier's TTL; a ``long`` memory is kept, as everywhere)."""
        updates: dict[str, Any] = {}
        tier = new.tier
        default_tier, _ = nearest(new.namespace, by_ns, lambda s: s.default_tier)
        if tier is None and default_tier is not None:
            tier = updates["tier"] = Tier(default_tier)
        ttl, _ = nearest(new.namespace, by_ns, lambda s: s.ttl_seconds)
        if new.ttl_seconds is None and ttl and tier != Tier.long:
            updates["ttl_seconds"] = ttl
        return new.model_copy(update=updates) if updates else new

    def _check_required_tags(self, who: Principal, new: NewMemory, by_ns: dict[str, Standard]) -> None:
        required, set_on = nearest(new.namespace, by_ns, lambda s: s.required_tags)
        missing = [tag for tag in required or [] if tag not in new.tags]
        if not missing:
            return
        message = (
            f"namespace {new.namespace!r} requires the tag{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(required_tags of the standard set on {set_on!r}): add {'them' if len(missing) > 1 else 'it'} to tags"
        )
        if self.mode == "advisory":
            log.warning("advisory mode, not refused: %s (agent %s)", message, who.agent_id or "local")
            return
        raise InvalidInputError(message, details={"missing_tags": missing, "set_on": set_on})

    def _decide(self, who: Principal, rules: list[Rule], spaces: list[str], payload: dict[str, Any] | None) -> None:
        rule = strictest(rules)
        if rule is None or rule.decision == "allow":
            return
        action = rule.action
        if self.mode == "advisory":
            self._record(who, rule, spaces, payload or {}, status="advisory")
            outcome = "refused" if rule.decision == "deny" else "queued for approval"
            agent = who.agent_id or "local"
            log.warning(
                "advisory mode, not enforced: %s in %s would be %s (set on %s), agent %s",
                action,
                rule.namespace,
                outcome,
                rule.set_on,
                agent,
            )
            return
        details = {"rule": rule.describe()}
        if rule.decision == "deny":
            raise GovernanceDeniedError(
                f"{action} in namespace {rule.namespace!r} is denied by the standard set on {rule.set_on!r} (governance.{action} = deny)",
                details=details,
            )
        if payload is None:
            raise GovernanceDeniedError(
                f"{action} in namespace {rule.namespace!r} needs approval (governance.{action} = approve, set on {rule.set_on!r}) "
                "and a bulk action cannot be queued: act on one memory at a time",
                details=details,
            )
        pending = self._record(who, rule, spaces, payload, status="pending")
        raise PendingApprovalError(
            f"{action} in namespace {rule.namespace!r} awaits approval (governance.{action} = approve, set on {rule.set_on!r}): "
            f"queued as pending action {pending.id}; an admin of the namespace approves or rejects it",
            details={**details, "pending_id": pending.id, "action": action, "namespace": rule.namespace},
        )

    def _record(self, who: Principal, rule: Rule, spaces: list[str], payload: dict[str, Any], *, status: str) -> PendingAction:
        now = self.service.clock()
        advisory = status == "advisory"
        pending = PendingAction(
            id=new_id(),
            action=rule.action,
            namespace=rule.namespace,
            rule_namespace=rule.set_on or rule.namespace,
            payload={**payload, "namespaces": spaces},
            requested_by=who.agent_id,
            requested_at=now,
            status=status,
            decided_by="memmesh" if advisory else None,
            decided_at=now if advisory else None,
            reason=f"advisory mode: governance.{rule.action} = {rule.decision} was not enforced" if advisory else None,
            requester=who,
        )
        with self.service.store.write() as tx:
            twin = None if advisory else self.db.pending_twin(tx, pending)
            if twin is not None:  # a retry (a lost answer, the same client id): one action to decide, not two
                return twin
            self.db.insert_pending(tx, pending, self.stamp())
            audited.note(
                tx,
                "governance.advisory" if advisory else "pending.queue",
                target=pending.id,
                namespace=pending.namespace,
                detail=audited.pending_detail(pending, rule=rule.describe()),
                who=who,
            )
        return pending

    # -- replication (the mesh applies peers' standards and decisions through these) -------------

    def merge_replicated_standard(self, tx: Any, data: dict[str, Any], *, cleared: bool, hlc: str, node: str) -> bool:
        """Validate and merge a standard a peer sent (last writer on (HLC, node) wins)."""
        from memmesh.governance.replicated import merge_standard, standard_from_wire

        standard = standard_from_wire(data)
        changed = merge_standard(self.db, tx, standard, cleared, hlc, node)
        if changed:
            action = "standard.clear" if cleared else "standard.set"
            detail = audited.standard_detail(standard)
            actor = audited.replica_actor(node)
            audited.note(tx, action, target=standard.namespace, namespace=standard.namespace, detail=detail, actor=actor)
            log.info("standard %s on %s by replication from %s", "cleared" if cleared else "set", data.get("namespace"), node)
        return changed

    def merge_replicated_pending(self, tx: Any, data: dict[str, Any], *, hlc: str, node: str) -> bool:
        """Validate and merge a pending action (or its decision) a peer sent."""
        from memmesh.governance.replicated import merge_pending, pending_from_wire

        pending = pending_from_wire(data)
        changed = merge_pending(self.db, tx, pending, hlc, node)
        if changed:
            action = REPLICATED_PENDING_ACTIONS[pending.status]
            detail = audited.pending_detail(pending, status=pending.status, reason_digest=audited.text_digest(pending.reason))
            audited.note(tx, action, target=pending.id, namespace=pending.namespace, detail=detail, actor=audited.replica_actor(node))
        return changed

    def check_replicated(self, standard: dict[str, Any] | None = None, pending: dict[str, Any] | None = None) -> None:
        """Refuse a malformed replicated standard or pending action before a batch writes anything."""
        from memmesh.governance.replicated import pending_from_wire, standard_from_wire

        if standard is not None:
            standard_from_wire(standard)
        if pending is not None:
            pending_from_wire(pending)

    # -- pending actions -----------------------------------------------------------------------

    def pending(self, *, status: str | None = "pending", limit: int = 100, principal: Principal) -> list[PendingAction]:
        """Pending actions (``status``: one state, or None/"all" for every one), oldest first,
        only those whose namespaces all lie inside the caller's."""
        who = authorize(principal, "reader")
        wanted = parse_status(status)
        limit = self.service.kernel.check_top_k(limit, "limit")
        roots = who.prefixes()
        if roots is None:
            return self.db.pending_list(wanted, limit)
        mine = self.db.pending_list(wanted, MAX_LISTED, roots)  # the key's namespaces only, chosen by the store
        return [p for p in mine if all(who.covers(ns) for ns in p.namespaces())][:limit]

    def get_pending(self, pending_id: str, *, principal: Principal) -> PendingAction:
        who = authorize(principal, "reader")
        return self._scoped(self._find(pending_id), who)

    def approve(self, pending_id: str, *, reason: str | None = None, principal: Principal) -> PendingAction:
        """Approve and apply a pending action exactly once, as its requester, through the
        service's own write path. A failed write is recorded (``failed`` + the error) and
        the action stays decided: approve it again means asking for it again. Approving an
        action a crash left ``approved`` (its applier gone, see :mod:`.recovery`) applies it."""
        try:
            pending, who = self._claim(pending_id, "approved", reason, principal)
        except ConflictError as exc:
            if exc.details.get("status") != "approved":
                raise
            return self._redrive_one(pending_id, principal)
        recovery.fault("governance.after_claim")
        return self._drive(pending, who, actor_of(who))

    def redrive_approved(self) -> int:
        """Apply every action left ``approved`` by a crash (its apply lease expired); gc
        calls this. Returns how many were applied or failed now."""
        done = 0
        for pending in self.db.pending_list("approved", MAX_LISTED):
            if self._take_lease(pending.id):
                self._drive(pending, pending.requester, f"system:recovery agent:{pending.decided_by or 'local'}")
                done += 1
        return done

    def redrive_at_start(self) -> float | None:
        """:meth:`redrive_approved`, then how many seconds until the live apply leases of the
        actions still ``approved`` run out (None when none is left): serve's start-up pass
        (:class:`.recovery.StartupRedrive`)."""
        self.redrive_approved()
        left = [p.id for p in self.db.pending_list("approved", MAX_LISTED)]
        with self.service.store.reading() as conn:
            until = recovery.live_until(conn, left)
        return None if until is None else max(0.0, until - self.service.clock().timestamp())

    def _redrive_one(self, pending_id: str, principal: Principal) -> PendingAction:
        """``approve`` of an action already ``approved``: apply it if its applier died, else 409."""
        who = authorize(principal, "approver")
        pending = self._scoped(self._find(pending_id), who)
        self._authorize_admin(who, pending.namespaces(), "approve pending actions", role="approver")
        if pending.status == "approved" and self._take_lease(pending.id):
            return self._drive(pending, who, f"system:recovery {actor_of(who)}")
        current = self._find(pending.id)
        if current.status != "approved":
            raise ConflictError(_decided(current), details={"status": current.status})
        raise ConflictError(
            f"pending action {pending.id} is approved and being applied now; read it again in a moment "
            f"(an applier that died is replaced after {int(recovery.APPLY_LEASE_S)} s: approve it again then)",
            details={"status": "approved"},
        )

    def _take_lease(self, pending_id: str) -> bool:
        """Become the applier of an action still ``approved`` whose applier's lease ran out
        (one atomic upsert: one taker). Checked again under the lease, in its transaction:
        an applier that finished meanwhile leaves nothing to drive."""
        with self.service.store.write() as tx:
            if not recovery.take(tx, pending_id, self.service.clock().timestamp()):
                return False
            if self.db.pending_status(tx, pending_id) != "approved":
                recovery.release(tx, pending_id)
                return False
            return True

    def _drive(self, pending: PendingAction, who: Principal, actor: str) -> PendingAction:
        """Apply an approved action (this process holds its apply lease) and record the
        outcome, its audit entry and the lease's release in one transaction."""
        try:
            result, error = self._apply_once(pending), None
        except MemmeshError as exc:
            result, error = None, exc.message
        recovery.fault("governance.after_apply")
        with self.service.store.write() as tx:
            if self.db.finish(tx, pending.id, "failed" if error else "applied", result, error, self.stamp()):
                outcome = {"result": result, "error_digest": audited.text_digest(error)}
                action = "pending.fail" if error else "pending.apply"
                detail = audited.pending_detail(pending, **outcome)
                audited.note(tx, action, target=pending.id, namespace=pending.namespace, detail=detail, actor=actor)
            recovery.release(tx, pending.id)
        log.info(
            "pending %s (%s in %s) approved by %s: %s",
            pending.id,
            pending.action,
            pending.namespace,
            who.agent_id or "local",
            error or "applied",
        )
        return self._find(pending.id)

    def _apply_once(self, pending: PendingAction) -> dict[str, Any]:
        """:meth:`_apply`, except that a delete whose memory is already gone — the write a
        crash after it left unrecorded — is that delete's outcome, not a failure."""
        if pending.action == "delete" and "changes" not in pending.payload and isinstance(pending.payload.get("memory_id"), str):
            memory_id = pending.payload["memory_id"]
            if self.service.store.get(memory_id) is None and self._deleted(memory_id):
                return {"memory_id": memory_id}
        return self._apply(pending)

    def _deleted(self, memory_id: str) -> bool:
        """True when ``memory_id`` existed and its newest history event is a delete."""
        history = self.service.store.history(memory_id)
        return bool(history) and history[-1].event.value == "delete"

    def reject(self, pending_id: str, *, reason: str | None = None, principal: Principal) -> PendingAction:
        """Reject a pending action: nothing is written; the decision is recorded."""
        pending, who = self._claim(pending_id, "rejected", reason, principal)
        log.info("pending %s (%s in %s) rejected by %s", pending.id, pending.action, pending.namespace, who.agent_id or "local")
        return self._find(pending.id)

    def _claim(self, pending_id: str, status: str, reason: str | None, principal: Principal) -> tuple[PendingAction, Principal]:
        if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS):
            raise InvalidInputError(f"reason must be text of at most {MAX_REASON_CHARS} characters", field="reason")
        reason = reason.strip() or None if reason else None
        who = authorize(principal, "approver")
        pending = self._scoped(self._find(pending_id), who)
        verb = "approve" if status == "approved" else "reject"
        self._authorize_admin(who, pending.namespaces(), f"{verb} pending actions", role="approver")
        if status == "approved":
            self._not_the_requester(who, pending)
        if pending.status != "pending":
            raise ConflictError(_decided(pending), details={"status": pending.status})
        now = format_ts(self.service.clock())
        with self.service.store.write() as tx:
            claimed = self.db.claim(tx, pending.id, status, who.agent_id, now, reason, self.stamp())
            if claimed and status == "approved":  # the applier holds the action until its outcome
                recovery.take(tx, pending.id, self.service.clock().timestamp())
            if claimed:
                detail = audited.pending_detail(pending, reason_digest=audited.text_digest(reason))
                audited.note(tx, f"pending.{verb}", target=pending.id, namespace=pending.namespace, detail=detail, who=who)
        if not claimed:
            raise ConflictError(_decided(self._find(pending.id)), details={"status": self._find(pending.id).status})
        return self._find(pending.id), who

    def _not_the_requester(self, who: Principal, pending: PendingAction) -> None:
        """Refuse an approval by the requester: by its own agent, or with a key that the
        requester's agent (or its key) created, directly or through keys those created. A
        namespace admin could otherwise mint a key for a new approver agent and approve its own
        request with it. Only keyed callers are checked: the local caller owns the store."""
        if who.key_id is None:
            return
        if who.agent_id == pending.requested_by:
            raise ForbiddenError(
                f"agent {who.agent_id!r} asked for pending action {pending.id} and may not approve it: another approver must"
            )
        chain = key_creators(self.service.store, who.key_id)
        for depth, creator in enumerate(chain):
            if creator.agent_id == pending.requested_by or creator.id == pending.requester.key_id:
                via = f", through key {', '.join(k.id for k in chain[:depth])}," if depth else ""
                raise ForbiddenError(
                    f"an approval must come from someone other than the requester: key {who.key_id} was created{via} by key "
                    f"{creator.id} of agent {creator.agent_id!r}, the requester of pending action {pending.id}; ask another approver",
                    details={"requested_by": pending.requested_by, "created_by": creator.id},
                )

    def _apply(self, pending: PendingAction) -> dict[str, Any]:
        """Replay the action as its requester; the context variable lets it past the check."""
        svc, who, data = self.service, pending.requester, pending.payload
        if who.key_id is not None:
            key = svc.store.api_key(who.key_id)
            if key is None or key.revoked_at is not None:
                raise ForbiddenError(f"the key that asked for this action ({who.key_id}) has been revoked since; nothing was applied")
        self._confine(pending)
        self._not_denied_since(pending)
        token = _APPLYING.set(pending.id)
        try:
            # by the payload's shape: a store or an update governed by another rule as well
            # (a store that updates a titled memory, a tier raise, a move) replays as asked
            if "items" in data:
                return {"memory_ids": [m.id for m in svc.add_many(data["items"], principal=who)]}
            if "changes" in data:
                return {"memory_id": svc.update(data["memory_id"], data["changes"], principal=who).id}
            if "consolidate" in data:
                asked = data["consolidate"]
                summary = svc.lifecycle.consolidate(
                    asked["memory_ids"],
                    asked["content"],
                    namespace=asked["namespace"],
                    title=asked.get("title"),
                    tags=asked.get("tags"),
                    keep_sources=bool(asked.get("keep_sources")),
                    principal=who,
                )
                return {"memory_id": summary.id}
            if "invalidate_at" in data:
                ended = svc.lifecycle.invalidate_link(
                    data["source_id"], data["target_id"], data["relation"], at=data["invalidate_at"], principal=who
                )
                return {"source_id": ended.source_id, "target_id": ended.target_id, "relation": ended.relation.value}
            if pending.action == "delete":
                return {"memory_id": svc.delete(data["memory_id"], principal=who).id}
            if pending.action == "promote":
                return {"memory_id": svc.lifecycle.promote(data["memory_id"], principal=who).id}
            link = svc.link(
                data["source_id"],
                data["target_id"],
                data["relation"],
                valid_from=data.get("valid_from"),
                valid_until=data.get("valid_until"),
                principal=who,
            )
            return {"source_id": link.source_id, "target_id": link.target_id, "relation": link.relation.value}
        finally:
            _APPLYING.reset(token)

    def _confine(self, pending: PendingAction) -> None:
        """Refuse to apply an action outside the namespaces it was queued (and approved) in:
        the approver was authorized for ``pending.namespaces()`` only, so a payload naming a
        memory elsewhere (moved since, or a forged record) must not ride on that approval."""
        from memmesh.governance.replicated import payload_problem

        spaces = pending.namespaces()
        problem = payload_problem(pending.action, pending.payload, spaces)
        if problem:
            raise InvalidInputError(f"pending action {pending.id} cannot be applied: {problem}; nothing was applied")
        data = pending.payload
        ids = [data[k] for k in ("memory_id", "source_id", "target_id") if k in data]
        if isinstance(data.get("consolidate"), dict):
            ids += data["consolidate"]["memory_ids"]
        if isinstance(data.get("changes"), dict) and isinstance(data["changes"].get("namespace"), str):
            moved_to = data["changes"]["namespace"]
            if moved_to not in spaces:
                raise ForbiddenError(f"pending action {pending.id} would move a memory to {moved_to!r}, outside its namespaces")
        for memory in self.service.store.get_many(ids):
            if memory.namespace not in spaces:
                raise ForbiddenError(
                    f"memory {memory.id} is outside the namespaces pending action {pending.id} was queued and approved in "
                    f"({', '.join(spaces)}); nothing was applied"
                )

    def _not_denied_since(self, pending: PendingAction) -> None:
        """Refuse to apply an action its namespaces' standards ``deny`` now: a rule set after it
        was queued refuses everyone, its approver too (an ``approve`` or ``allow`` now changes
        nothing: the approval is the decision asked for)."""
        if self.mode != "enforce":
            return
        spaces = pending.namespaces()
        actions = pending.payload.get("actions")
        actions = [a for a in actions if a in ACTIONS] if isinstance(actions, list) else [pending.action]
        rule = strictest(self._rules([(action, ns) for action in actions for ns in spaces]))
        if rule is not None and rule.decision == "deny":
            raise GovernanceDeniedError(
                f"{rule.action} in namespace {rule.namespace!r} is denied by the standard set on {rule.set_on!r} "
                f"(governance.{rule.action} = deny) since pending action {pending.id} was queued; nothing was applied",
                details={"rule": rule.describe()},
            )

    def _find(self, pending_id: str) -> PendingAction:
        found = self.db.pending(pending_id.strip()) if isinstance(pending_id, str) and pending_id.strip() else None
        if found is None:
            raise NotFoundError(f"no pending action with id {pending_id!r}", use=PENDING_HELP)
        return found

    @staticmethod
    def _scoped(pending: PendingAction, who: Principal) -> PendingAction:
        """A pending action outside the caller's namespaces answers like an unknown id (a 403
        would tell a key scoped elsewhere that the id exists)."""
        if not all(who.covers(ns) for ns in pending.namespaces()):
            raise NotFoundError(f"no pending action with id {pending.id!r}", use=PENDING_HELP)
        return pending

    def _authorize_admin(self, principal: Principal, namespaces: Sequence[str], what: str, role: Role = "admin") -> Principal:
        """An admin (or, to decide pending actions, an approver) covering every namespace; with
        ``governance.admin_agents`` set, a keyed caller must also be on that list (the local
        caller, with no key, owns the store)."""
        who = authorize(principal, role)
        for ns in namespaces:
            authorize(who, role, ns)
        admins = self.service.policy.governance_admins
        if admins and who.key_id is not None and who.agent_id not in admins:
            raise ForbiddenError(f"only the agents in governance.admin_agents may {what}; {who.agent_id!r} is not one of them")
        return who


def _decided(pending: PendingAction) -> str:
    by = f" by {pending.decided_by}" if pending.decided_by else ""
    at = f" at {format_ts(pending.decided_at)}" if pending.decided_at else ""
    return f"pending action {pending.id} is already {pending.status}{by}{at}; a decision is made once"
