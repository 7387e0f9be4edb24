"""The curator: housekeeping that keeps a growing memory useful, reversibly.

One run scans the memories in scope, plans (:mod:`memmesh.curator.plan`) and applies:
archive expired memories, forget low-value ones by policy, consolidate near-duplicate
clusters (keep the best, link it ``supersedes`` to the rest, merge their tags), link
contradictions ``contradicts``, tag untagged memories with their keywords and adjust
priorities by use. Every write goes through the kernel (history, versions, the audit log,
the change feed replication ships) after the governance check of its action, in batches, and
in the same transaction as the change record that undoes it, so ``rollback`` can put back
the exact prior state of everything the run touched.

Runs are one at a time per store: the ``curator`` lease (:class:`memmesh.schedule.Lease`,
taken with one atomic upsert) keeps two ``serve`` processes on one database from curating
at once; the schedule in ``serve`` is a :class:`memmesh.schedule.Periodic`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from memmesh.audit.capture import AuditedTx, Pending, actor_of
from memmesh.clock import format_ts, new_id
from memmesh.curator.plan import Plan, PlanRules, later, plan, plan_text
from memmesh.curator.review import review
from memmesh.curator.rules import Claim, Verdict, judge
from memmesh.curator.store import Change, CuratorDb, Rows
from memmesh.curator.text import jaccard, keywords, tag_words, words
from memmesh.errors import (
    ConflictError,
    ForbiddenError,
    GovernanceDeniedError,
    InvalidInputError,
    MemmeshError,
    NotFoundError,
    PendingApprovalError,
)
from memmesh.host import Host
from memmesh.kernel import authorize, snapshot
from memmesh.limits import quota_namespace, utc_day
from memmesh.model import (
    DEFAULT_NAMESPACE,
    HistoryEntry,
    HistoryEvent,
    Kind,
    Link,
    Memory,
    MemoryPatch,
    Principal,
    Relation,
    normalize_namespace,
)
from memmesh.recall.keyword import STOPWORDS
from memmesh.schedule import Lease, Periodic
from memmesh.store import link_removals
from memmesh.store.base import Filter
from memmesh.wording import count

if TYPE_CHECKING:
    from memmesh.llm.client import LLMClient

log = logging.getLogger("memmesh.curator")

NO_LLM = "no LLM client configured"
"""The error a run lists for the LLM-only step (reviewing contradictions the heuristics cannot see)."""

BATCH = 200
"""Changes per transaction: each batch commits with the change records that undo it."""

SCAN_PAGE = 1000
MAX_LISTED = 100
"""Clusters and contradictions listed in a report (the counts are always complete)."""

CURATOR_PRINCIPAL = Principal(agent_id="curator", role="admin", namespaces=["*"])
"""Who the scheduled run in ``serve`` acts as (its history and audit entries name ``curator``)."""

UPDATE_FIELDS = ("tags", "priority", "metadata")

LEASE = "curator"
"""The run lease's name in ``leases``: a store has at most one curator run (or rollback) going."""

RUNS_HELP = {"curator_runs": "to see the run ids"}
"""What a missing or unknown run id points to, named by each face its own way."""

PROPOSAL_KEY = "curator_proposal"
"""The payload key of a pending action the curator queued: the proposed change's fingerprint."""
"""The fields a curator update may change (and rollback puts back)."""


@dataclass(frozen=True)
class CuratorPolicy(PlanRules):
    """``[curator]`` (see config.py): the plan's thresholds plus scheduling and limits."""

    interval_secs: float = 0.0
    max_ops: int = 1000
    lease_secs: float = 600.0
    llm_configured: bool = False


class Autonomy(BaseModel):
    """What the run changed on its own (docs/curator.md)."""

    clusters_formed: int = 0
    memories_consolidated: int = 0
    memories_forgotten: int = 0
    priority_adjustments: int = 0
    rollback_entries_written: int = 0
    errors: list[str] = Field(default_factory=list)


class ClusterView(BaseModel):
    keep: str
    superseded: list[str]
    tags: list[str]


class ContradictionView(BaseModel):
    a: str
    b: str
    reason: str
    similarity: float


class UpdateView(BaseModel):
    """A newer memory linked ``supersedes`` an older one it replaces (a new value of one slot,
    a changed stance): the verdict :mod:`memmesh.curator.rules` shares with extraction."""

    new: str
    old: str
    reason: str


class CuratorReport(BaseModel):
    """The curator's JSON report (docs/curator.md), plus the run's id (for rollback), its namespace and the first
    clusters and contradictions it found."""

    run_id: str
    started_at: datetime
    completed_at: datetime
    cycle_duration_ms: int
    memories_scanned: int
    memories_eligible: int
    auto_tagged: int
    contradictions_found: int
    operations_attempted: int
    operations_skipped_cap: int
    autonomy: Autonomy
    operations_skipped_quota: int = 0
    """Writes left out because their namespace used its ``limits.daily_write_quota`` for the
    day (each namespace named once under ``autonomy.errors``); the next run after the reset
    does them."""
    operations_skipped_rejected: int = 0
    """Changes left out because an approver rejected the same change (same memories, same
    content) when an earlier run queued it; proposed again once a memory it touches changes."""
    errors: list[str] = Field(default_factory=list)
    llm_reviewed: int = 0
    """Unsure pairs the ``[llm]`` server was asked about (0 without one)."""
    dry_run: bool
    namespace: str | None = None
    clusters: list[ClusterView] = Field(default_factory=list)
    contradictions: list[ContradictionView] = Field(default_factory=list)
    updates_found: int = 0
    """Newer memories found replacing older ones (linked ``supersedes``)."""
    updates: list[UpdateView] = Field(default_factory=list)


class RollbackReport(BaseModel):
    """What a rollback put back; ``conflicts`` names changes left alone because the memory
    was changed again after the run (putting it back would lose that later change)."""

    run_id: str
    restored: int
    conflicts: list[str] = Field(default_factory=list)
    rolled_back_at: datetime


class CuratorRun(BaseModel):
    """A recorded run: its report, and its rollback when one was made."""

    id: str
    started_at: datetime
    completed_at: datetime | None
    dry_run: bool
    namespace: str | None
    actor: str | None
    report: dict[str, Any]
    rolled_back_at: datetime | None = None
    rollback: dict[str, Any] | None = None


class ContradictionHit(BaseModel):
    memory: Memory
    reason: str
    similarity: float
    linked: bool


class ContradictionReport(BaseModel):
    memory_id: str | None
    namespace: str
    contradictions: list[ContradictionHit]


class AutoTagReport(BaseModel):
    memory_id: str
    suggested: list[str]
    tags: list[str]
    applied: bool


class QueryExpansion(BaseModel):
    query: str
    terms: list[str]
    expansions: list[str]
    expanded_query: str


@dataclass
class _Skips:
    """Writes a run left out for reasons other than its cap (counted in the report)."""

    rejected: int = 0
    """Changes an approver rejected before (not proposed again until the memory changes)."""
    quota: dict[str, int] = field(default_factory=dict)
    """Writes per top-level namespace left out because its daily write quota was used."""
    proposals: dict[str, tuple[str, str]] | None = None
    """Fingerprint -> (pending id, status) of the changes earlier runs queued (loaded once)."""


@dataclass
class _Op:
    """One planned write: ``n`` writes counted against ``max_ops``."""

    kind: str  # update | link | delete | archive
    memory: Memory
    patch: dict[str, Any] | None = None
    link: Link | None = None
    n: int = 1
    other: Memory | None = None
    """A link's other end (its content is part of the proposal's fingerprint)."""

    def proposal(self) -> str:
        """The fingerprint of the change this op proposes: the same kind of change (for an
        update, of the same fields) of the same memories with the same content gets the same
        one in every run, so a change queued for approval is queued once and a rejected one
        is not proposed again until a memory it touches changes its content
        (:meth:`Curator._admitted`)."""
        ends = [self.memory] + ([self.other] if self.other is not None else [])
        what: dict[str, Any] = {"kind": self.kind, "memories": [[m.id, m.content_hash, m.namespace] for m in ends]}
        if self.patch is not None:  # the fields, not their values: suggested tags move as the namespace grows
            what["patch"] = sorted(k for k in self.patch if not k.startswith("_"))
        if self.link is not None:
            what["link"] = [self.link.source_id, self.link.target_id, self.link.relation.value]
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


class Curator:
    """``service.curator``: run, rollback, the run record, the text tools, the schedule."""

    def __init__(self, host: Host, policy: CuratorPolicy | None = None, llm: LLMClient | None = None) -> None:
        self.host = host
        self.policy = policy or CuratorPolicy()
        self.llm = llm
        """The ``[llm]`` client, when configured: it confirms the plan's unsure contradictions."""
        self.db = CuratorDb(host.store)
        self.lease = Lease(host.store, LEASE)
        self.schedule = Periodic("memmesh-curator", self.policy.interval_secs, self.run_scheduled, log=log)
        self.runs_started = 0
        """Scheduled runs this process started (for tests and /metrics-style checks)."""

    # -- checks -------------------------------------------------------------------------------

    def _cap(self, max_ops: int | None) -> int:
        value = self.policy.max_ops if max_ops is None else max_ops
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInputError(
                f"max_ops must be a whole number of at least 1 (got {max_ops!r}); a dry run changes nothing", usage=True, field="max_ops"
            )
        return value

    # -- run ----------------------------------------------------------------------------------

    def run(
        self, *, dry_run: bool = False, namespace: str | None = None, max_ops: int | None = None, principal: Principal
    ) -> CuratorReport:
        """One curator cycle over the memories the caller may write (in ``namespace`` when
        given); ``dry_run`` reports what would change and writes nothing but the run record.

        A real run holds the store's run lease, so a second run meanwhile (another process
        included) is refused with a conflict instead of curating the same memories twice."""
        who = authorize(principal, "writer")
        cap = self._cap(max_ops)
        if not isinstance(dry_run, bool):
            raise InvalidInputError(f"dry_run must be true or false (got {dry_run!r})")
        flt = self.host.kernel.filter(who, namespace=namespace)
        self.host.await_vectors()  # duplicates are found by meaning: the vectors of fresh writes first
        if dry_run:
            return self._run(who, flt, cap, dry_run=True)
        busy = "a curator run is already going on this store{}; wait for it to finish, or do a dry run"
        with self._leased("", busy.format, who) as renew:
            return self._run(who, flt, cap, dry_run=False, renew=renew)

    @contextmanager
    def _leased(self, tag: str, busy: Callable[[str], str], who: Principal) -> Iterator[Callable[[], object]]:
        """Hold the store's run lease for the block (runs and rollbacks never interleave, in
        any process); yields the call that renews it. Taken already: a conflict whose message
        is ``busy(" (held by <holder>)")``. The holder names a node and a process id, which is
        for operators: only an admin caller is shown it (a writer gets the message without it)."""
        holder = f"{self.host.node_id}:{os.getpid()}:{tag}{new_id()}"
        held = self.lease.acquire(holder, time.time(), self.policy.lease_secs)
        if held is not None:
            if who.has_role("admin"):
                raise ConflictError(busy(f" (held by {held})"), details={"holder": held})
            raise ConflictError(busy(""))
        try:
            yield lambda: self.lease.acquire(holder, time.time(), self.policy.lease_secs)
        finally:
            self.lease.release(holder)

    def _run(self, who: Principal, flt: Filter, cap: int, *, dry_run: bool, renew: Callable[[], object] | None = None) -> CuratorReport:
        k = self.host.kernel
        started = k.clock()
        t0 = time.perf_counter()
        memories = self._scan(flt)
        now = flt.now
        live = [m for m in memories if m.expires_at is None or m.expires_at > now]
        vectors = self._vectors([m.id for m in live])
        links = self._links(live)
        found = plan(memories, vectors, links, self.policy, now)
        errors, reviewed = self._review(found)
        run_id = new_id()
        with self.host.store.write() as tx:
            self.db.start_run(self.db.rows(tx), run_id, started.timestamp(), dry_run, flt.namespace, who.agent_id, who.prefixes())
        ops = _ops(found, now)
        autonomy = Autonomy(clusters_formed=len(found.clusters))
        skips = _Skips()
        applied, skipped = self._apply(run_id, ops, cap, who, autonomy, skips, dry_run=dry_run, renew=renew)
        autonomy.errors += [
            f"{count(n, 'write')} in namespace {ns!r} skipped: it used its {self.host.policy.daily_write_quota} writes "
            "for today (limits.daily_write_quota); the next run after midnight UTC does them"
            for ns, n in sorted(skips.quota.items())
        ]
        done = [op for op in ops if id(op) in applied]
        autonomy.memories_consolidated = sum(1 for op in done if op.kind == "link" and op.link and op.link.relation == Relation.supersedes)
        autonomy.memories_forgotten = sum(1 for op in done if op.kind in ("delete", "archive"))
        autonomy.priority_adjustments = sum(1 for op in done if op.kind == "update" and op.patch and "priority" in op.patch)
        completed = k.clock()
        report = CuratorReport(
            run_id=run_id,
            started_at=started,
            completed_at=completed,
            cycle_duration_ms=int((time.perf_counter() - t0) * 1000),
            memories_scanned=len(memories),
            memories_eligible=len(live),
            auto_tagged=sum(1 for op in done if op.kind == "update" and op.patch and op.patch.get("_auto_tag")),
            contradictions_found=len(found.contradictions),
            operations_attempted=sum(op.n for op in done),
            operations_skipped_cap=skipped,
            autonomy=autonomy,
            operations_skipped_quota=sum(skips.quota.values()),
            operations_skipped_rejected=skips.rejected,
            errors=errors,
            llm_reviewed=reviewed,
            dry_run=dry_run,
            namespace=flt.namespace,
            clusters=[ClusterView(keep=c.keep.id, superseded=[o.id for o in c.others], tags=c.tags) for c in found.clusters[:MAX_LISTED]],
            contradictions=[
                ContradictionView(a=c.a.id, b=c.b.id, reason=c.reason, similarity=c.similarity) for c in found.contradictions[:MAX_LISTED]
            ],
            updates_found=len(found.updates),
            updates=[UpdateView(new=u.new.id, old=u.old.id, reason=u.reason) for u in found.updates[:MAX_LISTED]],
        )
        with self.host.store.write() as tx:
            self.db.finish_run(self.db.rows(tx), run_id, completed.timestamp(), report.model_dump(mode="json"))
            counts = {"dry_run": dry_run, "operations": report.operations_attempted, "scanned": report.memories_scanned}
            _audit(tx, "curator.run", who, run_id, flt.namespace, counts)
        return report

    def _review(self, found: Plan) -> tuple[list[str], int]:
        """The LLM-only step: add the unsure pairs the LLM confirms to the plan's
        contradictions; the report's errors (:data:`NO_LLM` without a client, each failed
        review with one)."""
        if self.llm is None:
            return ([] if self.policy.llm_configured else [NO_LLM]), 0
        checked = review(self.llm, found.unsure)
        found.contradictions.extend(checked.confirmed)
        return checked.errors, checked.reviewed

    def _scan(self, flt: Filter) -> list[Memory]:
        """Every memory in scope, expired ones included (so they can be archived)."""
        scan = Filter(now=flt.now, namespace=flt.namespace, scopes=flt.scopes, include_expired=True)
        found: list[Memory] = []
        after: tuple[str, str] | None = None
        while True:
            page = self.host.store.list(scan, SCAN_PAGE, after)
            found.extend(page)
            if len(page) < SCAN_PAGE:
                return found
            after = (format_ts(page[-1].created_at), page[-1].id)

    def _vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        embedder = self.host.kernel.embedder
        if embedder is None or not ids:
            return {}
        model = embedder.model_id
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), 2000):
            for row in self.host.store.get_vectors(ids[start : start + 2000]):
                if row.model == model:
                    found[row.memory_id] = np.asarray(row.vector, dtype=np.float32)
        return found

    def _links(self, live: Sequence[Memory]) -> set[tuple[str, str, str]]:
        """The supersedes and contradicts links among the live memories (what a plan skips)."""
        wanted = (Relation.supersedes.value, Relation.contradicts.value)
        links = self.host.store.links_among({m.id for m in live})
        return {(link.source_id, link.target_id, link.relation.value) for link in links if link.relation.value in wanted}

    # -- apply --------------------------------------------------------------------------------

    def _apply(
        self,
        run_id: str,
        ops: list[_Op],
        cap: int,
        who: Principal,
        autonomy: Autonomy,
        skips: _Skips,
        *,
        dry_run: bool,
        renew: Callable[[], object] | None,
    ) -> tuple[set[int], int]:
        """Apply ops up to ``cap`` writes; (ids of the ops applied, writes skipped by the cap)."""
        budget, skipped = cap, 0
        chosen: list[_Op] = []
        for op in ops:
            if op.n <= budget:
                chosen.append(op)
                budget -= op.n
            else:
                skipped += op.n
        if dry_run:
            return {id(op) for op in chosen}, skipped
        applied: set[int] = set()
        mine: dict[str, Memory] = {}
        n = 0
        for start in range(0, len(chosen), BATCH):
            if renew is not None:
                renew()
            batch = [op for op in chosen[start : start + BATCH] if self._admitted(op, who, autonomy, skips)]
            if not batch:
                continue
            changes: list[Change] = []
            with self.host.store.write() as tx:
                rows = self.db.rows(tx)
                for op in batch:
                    if not self._charged(tx, op, skips, 1):
                        continue
                    change = self._write(tx, op, who, n, autonomy, mine)
                    if change is None:
                        self._charged(tx, op, skips, -1)  # nothing written: nothing counted
                    else:
                        changes.append(change)
                        applied.add(id(op))
                        n += 1
                self.db.add_changes(rows, run_id, changes)
            autonomy.rollback_entries_written += len(changes)
        return applied, skipped

    def _admitted(self, op: _Op, who: Principal, autonomy: Autonomy, skips: _Skips) -> bool:
        """The namespace standard's rule for the op's action (archiving what already expired is
        the TTL's own rule, like gc). A queued or refused op is reported and skipped.

        A change is queued for approval once: its payload carries the op's fingerprint
        (:meth:`_Op.proposal`), and a change an earlier run queued is not queued again while
        it waits, nor after an approver rejected it (until a memory it touches changes its
        content, which changes the fingerprint)."""
        if op.kind == "archive":
            return True
        fingerprint = op.proposal()
        if skips.proposals is None:
            skips.proposals = self.db.proposals(PROPOSAL_KEY)
        earlier = skips.proposals.get(fingerprint)
        if earlier is not None:
            pending_id, status = earlier
            if status == "rejected":
                skips.rejected += 1
            else:
                autonomy.errors.append(f"{op.kind} of memory {op.memory.id}: still awaits approval as pending action {pending_id}")
            return False
        governance = self.host.governance
        marker = {PROPOSAL_KEY: fingerprint}
        try:
            if op.kind == "update":
                changes = {k: v for k, v in (op.patch or {}).items() if not k.startswith("_")}
                payload = {"memory_id": op.memory.id, "changes": changes, **marker}
                governance.check(who, "update", namespaces=[op.memory.namespace], payload=payload)
            elif op.kind == "link" and op.link is not None:
                payload = op.link.model_dump(mode="json", include={"source_id", "target_id", "relation", "valid_from", "valid_until"})
                governance.check(who, "link", ids=[op.link.source_id, op.link.target_id], payload={**payload, **marker})
            elif op.kind == "delete":
                governance.check(who, "delete", ids=[op.memory.id], payload={"memory_id": op.memory.id, **marker})
        except PendingApprovalError as queued:
            skips.proposals[fingerprint] = (str(queued.details.get("pending_id")), "pending")
            autonomy.errors.append(f"{op.kind} of memory {op.memory.id}: {queued.message}")
            return False
        except (GovernanceDeniedError, ForbiddenError) as refused:
            autonomy.errors.append(f"{op.kind} of memory {op.memory.id}: {refused.message}")
            return False
        return True

    def _charged(self, tx: Any, op: _Op, skips: _Skips, n: int) -> bool:
        """Count ``n`` writes (-1: give one back) of the op against its top-level namespace's
        ``limits.daily_write_quota`` inside the batch's transaction, as every other writer is
        counted (:meth:`Kernel.charge_quota`); False (the write is skipped, the count left as
        it was) when the quota is used. Archiving what already expired is the TTL's own rule,
        like gc, and costs nothing."""
        quota = self.host.policy.daily_write_quota
        if quota <= 0 or op.kind == "archive":
            return True
        namespace = quota_namespace(op.memory.namespace)
        if n > 0 and namespace in skips.quota:
            skips.quota[namespace] += 1
            return False
        day = utc_day(self.host.kernel.clock())
        if tx.count_writes(namespace, day, n) <= quota or n < 0:
            return True
        tx.count_writes(namespace, day, -n)
        skips.quota[namespace] = 1
        return False

    def _write(self, tx: Any, op: _Op, who: Principal, n: int, autonomy: Autonomy, mine: dict[str, Memory]) -> Change | None:
        """One op inside the batch's transaction; None (and an error noted) when the memory
        changed since the scan (other than by this run: ``mine`` holds what this run wrote),
        so the run never overwrites what it did not see."""
        k = self.host.kernel
        now = k.clock()
        current = tx.get(op.memory.id)
        expected = mine.get(op.memory.id, op.memory)
        if current is None or not who.covers(current.namespace) or snapshot(current) != snapshot(expected):
            autonomy.errors.append(f"{op.kind} of memory {op.memory.id}: skipped, it changed or went since the scan")
            return None
        before = current.model_dump(mode="json")
        if op.kind == "update":
            changes = {k2: v for k2, v in (op.patch or {}).items() if not k2.startswith("_")}
            updated = k.update(tx, current, MemoryPatch.model_validate(changes), who, now, None)
            mine[updated.id] = updated
            after = updated.model_dump(mode="json")
            return Change(
                n, "update", current.id, current.namespace, {f: before[f] for f in UPDATE_FIELDS}, {f: after[f] for f in UPDATE_FIELDS}
            )
        if op.kind == "link" and op.link is not None:
            other = tx.get(op.link.target_id if op.link.source_id == current.id else op.link.source_id)
            if other is None or not who.covers(other.namespace):
                autonomy.errors.append(f"link of memory {op.memory.id}: skipped, the other end went since the scan")
                return None
            prior = tx.get_link(op.link.source_id, op.link.target_id, op.link.relation.value)
            link = op.link.model_copy(update={"created_at": now, "observed_by": who.agent_id})
            tx.put_link(link, tx.next_seq())
            return Change(
                n, "link", current.id, current.namespace, prior.model_dump(mode="json") if prior else None, link.model_dump(mode="json")
            )
        if op.kind == "delete":
            k.delete(tx, current, who, now)
            return Change(n, "delete", current.id, current.namespace, before, None)
        tx.archive(current, now, "curator")
        tx.add_history(HistoryEntry(memory_id=current.id, event=HistoryEvent.archive, old=snapshot(current), actor=who.agent_id, at=now))
        return Change(n, "archive", current.id, current.namespace, before, None)

    # -- rollback -----------------------------------------------------------------------------

    def rollback(self, run_id: str, *, principal: Principal) -> RollbackReport:
        """Put back what run ``run_id`` changed, newest change first.

        Each memory the run changed gets its prior fields back (tags, priority, metadata;
        deleted and archived memories return exactly as they were, expiry included) and each
        link it added goes. A change made to the same memory after the run (a move to another
        namespace included) is kept and named in ``conflicts``, and so is a link whose other end
        moved out of the caller's namespaces. Unknown run: not found; a dry run or a run rolled back already: a
        conflict; nothing is changed either way."""
        who = authorize(principal, "writer")
        if not isinstance(run_id, str) or not run_id.strip():
            raise InvalidInputError("give the run id to roll back (from a run's report)", use=RUNS_HELP)
        row = self.db.run_row(run_id)
        if row is None or not self._visible(who, row):
            raise NotFoundError(f"no curator run with id {run_id}", use=RUNS_HELP)
        run = _run_of(row)
        if run.dry_run:
            raise ConflictError(f"curator run {run_id} was a dry run: it changed nothing, so there is nothing to roll back")
        if run.rolled_back_at is not None:
            raise ConflictError(f"curator run {run_id} was rolled back already ({run.rolled_back_at.isoformat()})")
        for namespace in self.db.change_namespaces(run_id):
            authorize(who, "writer", namespace)
        # the run lease: a rollback never interleaves with a run (its own, if it is still
        # going, or another); a run whose process died is rolled back once its lease ran out

        def busy(held_by: str) -> str:
            return f"a curator run is going on this store{held_by}; roll back {run_id} when it has finished"

        with self._leased("rollback:", busy, who):
            return self._rollback(run_id, who)

    def _rollback(self, run_id: str, who: Principal) -> RollbackReport:
        changes = self.db.changes(run_id)
        now = self.host.kernel.clock()
        vectors = self._revive_vectors(changes)
        conflicts: list[str] = []
        restored = 0
        # One transaction: the run is rolled back entirely or not at all (a crash leaves it as
        # it was, to roll back again), and a second rollback meanwhile finds it claimed.
        with self.host.store.write() as tx:
            rows = self.db.rows(tx)
            if not self.db.mark_rolled_back(rows, run_id, now.timestamp(), {}):
                raise ConflictError(f"curator run {run_id} was rolled back already")
            for change in reversed(changes):
                problem = self._undo(tx, rows, change, who, vectors)
                if problem is None:
                    restored += 1
                else:
                    conflicts.append(f"{change.kind} of memory {change.memory_id}: {problem}")
            report = RollbackReport(run_id=run_id, restored=restored, conflicts=conflicts, rolled_back_at=now)
            self.db.set_rollback_report(rows, run_id, report.model_dump(mode="json"))
            counts = {"restored": restored, "conflicts": len(conflicts)}
            _audit(tx, "curator.rollback", who, run_id, None, counts)
        return report

    def _revive_vectors(self, changes: Sequence[Change]) -> dict[str, np.ndarray]:
        """Vectors for the memories a rollback brings back (embedded before the transactions)."""
        back = [c.before for c in changes if c.kind in ("delete", "archive") and c.before]
        if not back:
            return {}
        vectors, _ = self.host.kernel.embed([f"{b['title']}\n{b['content']}" if b.get("title") else b["content"] for b in back])
        if vectors is None:
            return {}
        return {b["id"]: vectors[i] for i, b in enumerate(back)}

    def _undo(self, tx: Any, rows: Rows, change: Change, who: Principal, vectors: dict[str, np.ndarray]) -> str | None:
        k = self.host.kernel
        now = k.clock()
        if change.kind == "update":
            current = tx.get(change.memory_id)
            if current is None:
                return "the memory is gone since the run"
            if current.namespace != change.namespace:  # not named: it may lie outside the caller's namespaces
                return "moved to another namespace since the run; kept as it is"
            mine = current.model_dump(mode="json")
            if change.after is None or change.before is None or any(mine[f] != change.after[f] for f in UPDATE_FIELDS):
                return "changed again since the run; kept as it is"
            k.update(tx, current, MemoryPatch.model_validate(change.before), who, now, None)
            return None
        if change.kind == "link":
            after = Link.model_validate(change.after)
            current_link = tx.get_link(after.source_id, after.target_id, after.relation.value)
            if current_link is None or current_link != after:
                return "the link changed since the run; kept as it is"
            ends = [tx.get(after.source_id), tx.get(after.target_id)]
            if any(end is not None and not who.covers(end.namespace) for end in ends):
                return "an end of the link moved out of this key's namespaces since the run; kept as it is"
            if change.before is None:
                self.db.drop_link(rows, after.source_id, after.target_id, after.relation.value)
                removal = link_removals.Removal(after.source_id, after.target_id, after.relation.value, now, who.agent_id)
                link_removals.record(tx, removal, tx.next_seq())  # the link tombstone: the removal replicates
            else:
                tx.put_link(Link.model_validate(change.before), tx.next_seq())
            return None
        return self._revive(tx, change, who, vectors.get(change.memory_id))

    def _revive(self, tx: Any, change: Change, who: Principal, vector: np.ndarray | None) -> str | None:
        """A deleted or archived memory back exactly as it was (its version moves on, so peers
        take the revival over the tombstone)."""
        k = self.host.kernel
        if change.before is None:
            return "nothing recorded to restore"
        memory = Memory.model_validate(change.before)
        if tx.get(memory.id) is not None:
            return "the memory is live again already; kept as it is"
        clash = tx.find_by_hash(memory.namespace, memory.content_hash)
        if clash is not None:
            return f"memory {clash.id} now holds the same content; kept as it is"
        tombstone = tx.tombstone(memory.id)
        revived = memory.model_copy(update={"version": k.next_version(tombstone.version if tombstone else memory.version)})
        seq = tx.next_seq()
        tx.insert_memory(revived, seq)
        tx.take_archived(memory.id)
        k.put_vector(tx, memory.id, vector, seq)
        tx.add_history(
            HistoryEntry(memory_id=memory.id, event=HistoryEvent.restore, new=snapshot(revived), actor=who.agent_id, at=k.clock())
        )
        return None

    # -- the run record -----------------------------------------------------------------------

    def _visible(self, who: Principal, row: tuple[Any, ...]) -> bool:
        """A run is visible to a caller that covers what it curated: its namespace, or (a run
        without one) every namespace root of the key that made it; a store-wide run only to
        callers without namespace limits."""
        if who.prefixes() is None:
            return True
        namespace, scopes = row[4], json.loads(row[6] or "null")
        if namespace is not None:
            return bool(who.covers(namespace))
        return isinstance(scopes, list) and bool(scopes) and all(who.covers(s) for s in scopes)

    def runs(self, *, limit: int = 20, principal: Principal) -> list[CuratorRun]:
        """Recorded runs, newest first: a key limited to some namespaces sees the runs made
        on a namespace inside them."""
        who = authorize(principal, "reader")
        limit = self.host.kernel.check_top_k(limit, "limit")
        found = [_run_of(row) for row in self.db.run_rows(limit if who.prefixes() is None else 10 * limit) if self._visible(who, row)]
        return found[:limit]

    def get_run(self, run_id: str, *, principal: Principal) -> CuratorRun:
        who = authorize(principal, "reader")
        row = self.db.run_row(run_id)
        if row is None or not self._visible(who, row):
            raise NotFoundError(f"no curator run with id {run_id}", use=RUNS_HELP)
        return _run_of(row)

    # -- the text tools (MCP) -----------------------------------------------------------------

    def detect_contradiction(
        self,
        *,
        memory_id: str | None = None,
        content: str | None = None,
        namespace: str | None = None,
        top_k: int = 10,
        principal: Principal,
    ) -> ContradictionReport:
        """Memories that contradict a stored memory (``memory_id``) or a text about to be
        stored (``content`` in ``namespace``): of its nearest neighbours, those that
        :func:`memmesh.curator.rules.judge` calls a contradiction, the newer statement judged
        against the older as a curator run judges the pair (a text not stored yet is the
        newer), so this tool and the curator agree on every pair. Reads only (nothing is
        linked)."""
        who = authorize(principal, "reader")
        if (memory_id is None) == (content is None):
            raise InvalidInputError("give either the id of a stored memory or content (a text to check), not both")
        top = self.host.kernel.check_top_k(top_k)
        memory: Memory | None = None
        if memory_id is not None:
            memory = self.host.get(memory_id, principal=who)
            text, ns = memory.content, memory.namespace
            mine = Claim.of(plan_text(memory), memory.metadata, transcript=memory.kind == Kind.message)
        else:
            self.host.kernel.check_content(content or "")
            text, ns = str(content), normalize_namespace(namespace or DEFAULT_NAMESPACE)
            mine = Claim.of(text)
        result = self.host.recall(
            text, namespace=ns, top_k=min(top * 3, self.host.policy.max_page_size), explain=True, touch=False, principal=who
        )
        links = self.host.store.links(memory_id) if memory_id else []
        linked = {lk.target_id if lk.source_id == memory_id else lk.source_id for lk in links if lk.relation == Relation.contradicts}
        hits: list[ContradictionHit] = []
        for hit in result.hits:
            if hit.memory.id == memory_id:
                continue
            theirs = Claim.of(plan_text(hit.memory), hit.memory.metadata, transcript=hit.memory.kind == Kind.message)
            cosine = float((hit.explain or {}).get("vector") or 0.0)
            newer, older = (theirs, mine) if memory is not None and later(hit.memory, memory) else (mine, theirs)
            found = judge(newer, older, cosine=cosine, rules=self.policy)
            if found.verdict is Verdict.contradiction:
                similarity = cosine or jaccard(mine.statement.subject, theirs.statement.subject)
                hits.append(
                    ContradictionHit(
                        memory=hit.memory, reason=found.reason, similarity=round(float(similarity), 4), linked=hit.memory.id in linked
                    )
                )
        return ContradictionReport(memory_id=memory_id, namespace=ns, contradictions=hits[:top])

    def auto_tag(self, memory_id: str, *, apply: bool = False, max_tags: int | None = None, principal: Principal) -> AutoTagReport:
        """Tags for a memory from its keywords (word weight against its namespace's memories);
        ``apply`` adds them (an update through the service: governance, history, replication)."""
        who = authorize(principal, "writer" if apply else "reader")
        limit = self.policy.max_auto_tags if max_tags is None else max_tags
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 32:
            raise InvalidInputError(f"max_tags must be between 1 and 32 (got {max_tags!r})", usage=True, field="max_tags")
        memory = self.host.get(memory_id, principal=who)
        page = self.host.store.list(Filter(now=self.host.kernel.clock(), namespace=memory.namespace), 2000)
        df: dict[str, int] = {}
        for m in page:
            for w in tag_words(m.content):
                df[w] = df.get(w, 0) + 1
        text = f"{memory.title}\n{memory.content}" if memory.title else memory.content
        suggested = [t for t in keywords(text, df, max(len(page), 1), limit=limit + len(memory.tags)) if t not in memory.tags][:limit]
        tags = list(dict.fromkeys([*memory.tags, *suggested]))[:32]
        applied = False
        if apply and tags != memory.tags:
            memory = self.host.update(memory_id, {"tags": tags}, principal=who)
            applied = True
        return AutoTagReport(memory_id=memory_id, suggested=suggested, tags=memory.tags if applied else tags, applied=applied)

    def expand_query(
        self, query: str, *, namespace: str | None = None, max_terms: int = 8, top_k: int = 10, principal: Principal
    ) -> QueryExpansion:
        """More words for a query from the store's own vocabulary: the tags and telling words
        of the memories that answer it best (their neighbours in meaning), weighted by rank.
        Reads only; recall is not counted as an access."""
        who = authorize(principal, "reader")
        if not isinstance(max_terms, int) or isinstance(max_terms, bool) or not 1 <= max_terms <= 50:
            raise InvalidInputError(f"max_terms must be between 1 and 50 (got {max_terms!r})", usage=True, field="max_terms")
        result = self.host.recall(query, namespace=namespace, top_k=top_k, touch=False, principal=who)
        terms = [w for w in dict.fromkeys(words(query)) if w not in STOPWORDS]
        seen = set(terms) | {w.rstrip("s") for w in terms}
        weight: dict[str, float] = {}
        for rank, hit in enumerate(result.hits):
            share = 1.0 / (rank + 1)
            for tag in hit.memory.tags:
                weight[tag] = weight.get(tag, 0.0) + 2 * share
            for w in tag_words(hit.memory.content):
                weight[w] = weight.get(w, 0.0) + share
        expansions = [w for w in sorted(weight, key=lambda w: (-weight[w], w)) if w not in seen and w.rstrip("s") not in seen][:max_terms]
        return QueryExpansion(query=query, terms=terms, expansions=expansions, expanded_query=" ".join([query.strip(), *expansions]))

    # -- the schedule (serve) -----------------------------------------------------------------

    def start(self) -> None:
        """Run on ``[curator] interval_secs`` in a background thread (0: never)."""
        self.schedule.start()

    def stop(self) -> None:
        self.schedule.stop()

    def run_scheduled(self) -> CuratorReport | None:
        """One scheduled run; None when another process holds the lease (it curates now)."""
        try:
            self.runs_started += 1
            return self.run(principal=CURATOR_PRINCIPAL)
        except ConflictError as busy:
            log.info("curator: skipped this turn: %s", busy.message)
        except MemmeshError as exc:
            log.warning("curator: the scheduled run failed: %s", exc.message)
        return None


def _ops(found: Plan, now: datetime) -> list[_Op]:
    """The plan as writes, in the order they are applied (forgetting first: nothing is
    tagged or linked only to be forgotten)."""
    ops: list[_Op] = [_Op("archive", m) for m in found.expired]
    ops += [_Op("delete", m) for m in found.low_value]
    for cluster in found.clusters:
        if cluster.tags != cluster.keep.tags:
            ops.append(_Op("update", cluster.keep, patch={"tags": cluster.tags}))
        for other in cluster.others:
            link = Link(source_id=cluster.keep.id, target_id=other.id, relation=Relation.supersedes, created_at=now)
            ops.append(_Op("link", cluster.keep, link=link, other=other))
    for u in found.updates:
        link = Link(source_id=u.new.id, target_id=u.old.id, relation=Relation.supersedes, created_at=now)
        ops.append(_Op("link", u.new, link=link, other=u.old))
    for c in found.contradictions:
        link = Link(source_id=c.a.id, target_id=c.b.id, relation=Relation.contradicts, created_at=now)
        ops.append(_Op("link", c.a, link=link, other=c.b))
    for memory, tags in found.tags:
        ops.append(_Op("update", memory, patch={"tags": tags, "_auto_tag": True}))
    for memory, priority in found.priorities:
        patch: dict[str, Any] = {"priority": priority}
        if priority > memory.priority:
            patch["metadata"] = {**memory.metadata, "curator_rewarded_accesses": memory.access_count}
        ops.append(_Op("update", memory, patch=patch))
    return _chain(ops)


def _chain(ops: list[_Op]) -> list[_Op]:
    """Ops on one memory run in order; the second sees the first's result, so an op planned
    from the scan must not fail its own "unchanged since the scan" check. Later updates of a
    memory are merged into its first update."""
    first: dict[str, _Op] = {}
    out: list[_Op] = []
    for op in ops:
        if op.kind == "update":
            earlier = first.get(op.memory.id)
            if earlier is not None and earlier.patch is not None and op.patch is not None:
                if op.patch.get("_auto_tag"):
                    earlier.patch["_auto_tag"] = True
                earlier.patch.update({k: v for k, v in op.patch.items() if k != "_auto_tag"})
                continue
            first[op.memory.id] = op
        out.append(op)
    return out


def _run_of(row: tuple[Any, ...]) -> CuratorRun:
    rid, started, completed, dry, namespace, actor, _scopes, report, rolled, rollback = row
    return CuratorRun(
        id=rid,
        started_at=_ts(started) or datetime.now(UTC),
        completed_at=_ts(completed),
        dry_run=bool(dry),
        namespace=namespace,
        actor=actor,
        report=json.loads(report or "{}"),
        rolled_back_at=_ts(rolled),
        rollback=json.loads(rollback) if rollback else None,
    )


def _audit(tx: Any, action: str, who: Principal, target: str, namespace: str | None, detail: dict[str, Any]) -> None:
    """An admin entry (a run, a rollback) committed with the run's record: its memory writes
    have their own entries; this one says who ran the curator and what it did, in counts."""
    if isinstance(tx, AuditedTx):
        tx.defer(Pending(action, target, namespace, detail, actor_of(who)))
