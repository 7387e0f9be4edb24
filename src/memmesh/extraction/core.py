"""Remember a conversation: store its turns first, then the facts worth keeping (issue 23).

:meth:`Extraction.remember` is the one entry point every face calls:

1. the messages are checked (each needs a role and non-empty content) and stored as
   session turns (``kind="message"``) in ONE batch, before anything else happens: whatever
   the extraction does next, nothing the caller sent is lost;
2. with ``infer=True`` the facts are extracted — offline, or by the configured LLM with the
   offline extractor as its fallback (:mod:`memmesh.extraction.llm_extract`) — and stored in
   the session's root namespace (``<root>`` for turns in ``<root>/<session_id>``), one batch;
3. every fact is linked ``derived_from`` each turn it came from; a fact whose content is
   already stored there is *merged* (the stored memory gets the new ``derived_from`` links);
   a new value of a single-valued attribute ("Ana lives in Lyon" after "… in Paris") is
   linked ``supersedes`` the old fact, and an opposite preference ``contradicts`` it. Nothing
   is ever deleted or overwritten. Those verdicts are the curator's (:mod:`memmesh.curator.rules`):
   a fact met on write and the same pair found later by a curator run are judged alike.

Faces that must answer fast (HTTP, MCP) pass ``background=True``: the turns are committed,
a job row is written, and the extraction runs on a worker thread; ``job(job_id)`` reads its
status and report from the store, so any worker process of ``serve`` can answer the poll.
"""

from __future__ import annotations

import builtins
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field

from memmesh.access import check_still_keyed
from memmesh.bus.sql import BusSql
from memmesh.clock import new_id
from memmesh.curator.plan import PlanRules
from memmesh.curator.rules import Claim, Rules, Verdict, judge, keys
from memmesh.errors import InvalidInputError, MemmeshError, NotFoundError
from memmesh.extraction.jobs import Heartbeat, reap
from memmesh.extraction.llm_extract import extract_batch
from memmesh.extraction.offline import Fact, extract_turn, speaker_name
from memmesh.host import Host
from memmesh.kernel import authorize
from memmesh.model import MAX_TAG_CHARS, Link, Memory, Principal, Relation, check_one_line, check_text
from memmesh.recall.keyword import query_terms
from memmesh.sessions.core import Turn, check_role, check_session_id

if TYPE_CHECKING:
    from memmesh.llm.client import LLMClient
    from memmesh.sessions.core import Sessions

log = logging.getLogger("memmesh.extraction")

MAX_MESSAGES = 1000
"""Messages one call may carry (a longer conversation is sent in several calls)."""
MAX_NAME_CHARS = 64
TAG_RE = re.compile(r"[^a-z0-9:_-]+")
JOB_ID_RE = re.compile(r"ext-[0-9a-f-]{36}")
NEIGHBOURS = 8
"""Nearest memories by meaning a fact is compared with (the curator's vector pass keeps as many)."""
MAX_LINKS_PER_FACT = 8
"""Most supersedes/contradicts links one new fact gets (the newest others; see ``_verdicts``)."""
WORD_CANDIDATES = 12
"""Memories sharing a fact's words that it is compared with (BM25's best, turns included:
those below the namespace are then set aside)."""


@dataclass(frozen=True)
class ExtractionPolicy:
    """The ``[extraction]`` rules (built by the composition root)."""

    mode: Literal["auto", "offline", "llm"] = "auto"
    repairs: int = 1
    max_facts_per_turn: int = 8
    batch_turns: int = 8
    workers: int = 2
    job_stale_s: float = 120.0
    """A queued/running job whose process sent no heartbeat for this long is marked failed."""


class Failure(BaseModel):
    """Something that did not go as asked, with the turns it concerns (1-based in the call)."""

    turns: list[int]
    reason: str


class ExtractionReport(BaseModel):
    """What one extraction did; every turn is either extracted from, fallen back or failed."""

    mode: Literal["offline", "llm"]
    turns: int = Field(description="turns the extraction read")
    extracted: int = Field(0, description="new fact memories stored")
    merged: int = Field(0, description="facts already stored (same content): linked to the new turns instead")
    superseded: int = Field(0, description="supersedes links from a new value to the value it replaces")
    contradicted: int = Field(0, description="contradicts links between opposite statements")
    links_skipped: int = Field(
        0, description="supersedes/contradicts links not made: a fact links to at most MAX_LINKS_PER_FACT others (the newest)"
    )
    fallback: int = Field(0, description="turns the offline extractor handled because the LLM failed on them")
    repairs: int = Field(0, description="repair prompts sent after a reply that failed the schema")
    failed: list[Failure] = Field(default_factory=list, description="every failure, with its reason (turns are stored regardless)")
    fact_ids: list[str] = Field(default_factory=list)
    seconds: float = 0.0


class RememberResult(BaseModel):
    """The stored turns and what happened (or will happen) to the facts in them."""

    session_id: str
    namespace: str = Field(description="where the facts go (the session's turns live in <namespace>/<session_id>)")
    turns: list[Turn]
    status: Literal["stored", "done", "queued"] = Field(
        description="stored: infer=false, turns only; done: facts extracted (report); queued: running in the background (job_id)"
    )
    job_id: str | None = None
    report: ExtractionReport | None = None


class ExtractionJob(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed"]
    session_id: str
    namespace: str
    created_at: datetime
    updated_at: datetime
    report: ExtractionReport | None = None
    error: str | None = None


@dataclass(frozen=True)
class _Msg:
    role: str
    content: str
    name: str | None


class ExtractionHost(Host, Protocol):
    """The service as extraction sees it: a Host with sessions."""

    @property
    def sessions(self) -> Sessions: ...

    def link_many(self, links: Sequence[tuple[str, str, Relation | str]], *, principal: Principal) -> builtins.list[Link]: ...

    @property
    def curator_policy(self) -> PlanRules | None:
        """The ``[curator]`` thresholds the shared rules judge with."""
        ...


class Extraction:
    """Remember conversations (see the module doc); built by the service."""

    def __init__(self, service: ExtractionHost, policy: ExtractionPolicy | None = None, llm: LLMClient | None = None) -> None:
        self.service = service
        self.policy = policy or ExtractionPolicy()
        self.llm = llm
        self.sql = BusSql(service.store)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._heartbeat = Heartbeat(self.sql, self.policy.job_stale_s / 4)
        self._swept = False

    @property
    def mode(self) -> Literal["offline", "llm"]:
        """The extractor in use: the LLM when configured and not switched off."""
        if self.policy.mode == "offline" or self.llm is None:
            return "offline"
        return "llm"

    # -- the entry point ------------------------------------------------------------------

    def remember(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        principal: Principal,
        session_id: str | None = None,
        namespace: str | None = None,
        infer: bool = True,
        agent_id: str | None = None,
        background: bool = False,
    ) -> RememberResult:
        """Store ``messages`` as turns of ``session_id`` (a new session when omitted), then
        extract their facts inline (``background=False``) or on a worker (``True``)."""
        authorize(principal, "writer")
        if not isinstance(infer, bool):
            raise InvalidInputError(f"infer must be true or false (got {infer!r})", usage=True)
        if self.policy.mode == "llm" and self.llm is None and infer:
            raise InvalidInputError("extraction.mode is llm but no [llm] base_url is configured: set llm.base_url or use mode offline")
        msgs = check_messages(messages)
        sid = check_session_id(session_id) if session_id is not None else f"conv-{new_id()}"
        turns = self.service.sessions.append_many(
            sid, [{"role": m.role, "content": m.content} for m in msgs], principal=principal, agent_id=agent_id, namespace=namespace
        )
        root = _parent(turns, self.service, sid)
        if not infer:
            return RememberResult(session_id=sid, namespace=root, turns=turns, status="stored")
        if not background:
            report = self.extract(msgs, turns, namespace=root, session_id=sid, agent_id=agent_id, principal=principal)
            return RememberResult(session_id=sid, namespace=root, turns=turns, status="done", report=report)
        job_id = self._queue(msgs, turns, root, sid, agent_id, principal)
        return RememberResult(session_id=sid, namespace=root, turns=turns, status="queued", job_id=job_id)

    # -- extraction -----------------------------------------------------------------------

    def extract(
        self,
        msgs: Sequence[_Msg],
        turns: Sequence[Turn],
        *,
        namespace: str,
        session_id: str,
        agent_id: str | None,
        principal: Principal,
    ) -> ExtractionReport:
        """Extract facts from stored ``turns`` (``msgs`` carry the speakers' names) and store
        and link them; failures are counted in the report, never raised past the turns."""
        started = time.perf_counter()
        report = ExtractionReport(mode=self.mode, turns=len(turns))
        facts = self._facts(msgs, report)
        facts = _merge_same(facts)
        if facts:
            try:
                names = frozenset(query_terms(" ".join(speaker_name(m.role, m.name) for m in msgs)))
                self._store(facts, turns, namespace, session_id, agent_id, principal, report, names)
            except MemmeshError as exc:  # governance, quota, a store error: the turns stay stored
                report.failed.append(Failure(turns=list(range(1, len(turns) + 1)), reason=f"storing facts: {exc.message}"))
        report.seconds = round(time.perf_counter() - started, 4)
        return report

    def _facts(self, msgs: Sequence[_Msg], report: ExtractionReport) -> builtins.list[Fact]:
        limit = self.policy.max_facts_per_turn
        if self.mode == "offline" or self.llm is None:
            return [f for i, m in enumerate(msgs) for f in extract_turn(m.content, role=m.role, name=m.name, index=i, limit=limit)]
        facts: list[Fact] = []
        size = self.policy.batch_turns
        for start in range(0, len(msgs), size):
            batch = [(start + j, m.role, m.name, m.content) for j, m in enumerate(msgs[start : start + size])]
            outcome = extract_batch(self.llm, batch, repairs=self.policy.repairs, limit=limit)
            facts.extend(outcome.facts)
            report.repairs += outcome.repairs
            report.fallback += len(outcome.fallback_turns)
            numbers = [idx + 1 for idx, *_ in batch]
            for reason in outcome.failures:
                report.failed.append(Failure(turns=numbers, reason=reason))
        return facts

    def _store(
        self,
        facts: builtins.list[Fact],
        turns: Sequence[Turn],
        namespace: str,
        session_id: str,
        agent_id: str | None,
        principal: Principal,
        report: ExtractionReport,
        names: frozenset[str] = frozenset(),
    ) -> None:
        """Judge every fact against the stored memories it may meet (:mod:`memmesh.curator.rules`,
        the curator's verdicts) and the earlier facts of this call, then store what is new and
        link what it updates or contradicts; a duplicate is not stored again: the memory it
        repeats gains the turns (``derived_from``) and the tags."""
        # a background job runs after its request: a key revoked meanwhile writes nothing more
        check_still_keyed(self.service.store, principal, since="it was revoked after this extraction was queued; no fact was stored")
        run = new_id()
        rules = self.rules
        claims = [Claim.of(f.content, _structured(f)) for f in facts]
        found = self._candidates(facts, claims, namespace, principal, names)
        merged_into, relations, report.links_skipped = _verdicts(claims, found, rules)
        keep = [i for i in range(len(facts)) if i not in merged_into]
        items = [_item(facts[i], turns, namespace, session_id, agent_id, run) for i in keep]
        stored = dict(zip(keep, self.service.add_many(items, principal=principal) if items else [], strict=True))
        memory_of: dict[int, Memory] = {}
        for i in range(len(facts)):
            target = merged_into.get(i)
            while isinstance(target, int) and target in merged_into:  # a duplicate of a duplicate
                target = merged_into[target]
            memory_of[i] = stored[i] if target is None else stored[target] if isinstance(target, int) else target
        links: list[tuple[str, str, Relation]] = []
        tags: dict[str, builtins.list[str]] = {}
        for i, fact in enumerate(facts):
            memory = memory_of[i]
            fresh = i in stored and memory.metadata.get("extraction_run") == run
            report.extracted += fresh
            report.merged += not fresh
            report.fact_ids.append(memory.id)
            links.extend((memory.id, turns[t].memory_id, Relation.derived_from) for t in fact.turns if t < len(turns))
            if not fresh:
                wanted = _item(fact, turns, namespace, session_id, agent_id, run)["tags"]
                current = tags.get(memory.id, memory.tags)
                if not set(wanted) <= set(current):
                    tags[memory.id] = list(dict.fromkeys([*current, *wanted]))[:32]
        for i, other, relation in relations:
            source, target = memory_of[i], memory_of[other] if isinstance(other, int) else other
            if source.id != target.id and source.metadata.get("extraction_run") == run:
                links.append((source.id, target.id, relation))
        links = list(dict.fromkeys(links))
        report.superseded += sum(1 for link in links if link[2] is Relation.supersedes)
        report.contradicted += sum(1 for link in links if link[2] is Relation.contradicts)
        try:
            self.service.link_many(links, principal=principal)
        except MemmeshError as exc:
            report.failed.append(Failure(turns=list(range(1, len(turns) + 1)), reason=f"linking facts to their turns: {exc.message}"))
        for memory_id, merged in tags.items():
            try:
                self.service.update(memory_id, {"tags": merged}, principal=principal)
            except MemmeshError as exc:  # governance or a concurrent change: the fact and its links stay
                report.failed.append(Failure(turns=list(range(1, len(turns) + 1)), reason=f"merging tags into {memory_id}: {exc.message}"))
        rows = {(namespace, key, memory_of[i].id) for i in stored for key in keys(claims[i])}
        if rows:
            with self.sql.write() as sql:
                for row in sorted(rows):
                    sql.run("INSERT INTO extraction_slots (namespace, slot_key, memory_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", row)

    @property
    def rules(self) -> PlanRules:
        """The curator's thresholds (``[curator]``): one place for both (issue 23)."""
        return self.service.curator_policy or PlanRules()

    def _candidates(
        self, facts: Sequence[Fact], claims: Sequence[Claim], namespace: str, principal: Principal, names: frozenset[str]
    ) -> builtins.list[builtins.list[tuple[Memory, Claim, float]]]:
        """The stored memories of ``namespace`` (exactly: not the session turns below it) each
        fact may meet, found as the curator finds pairs: the facts filling the same slot or
        topic (the slot index), the nearest by meaning (vector recall, when vectors exist,
        with their cosine) and those sharing its words (keyword search, without the speakers'
        names: they are in every fact of the conversation)."""
        slotted = self._slotted(namespace, {key for claim in claims for key in keys(claim)})
        semantic = self.service.kernel.embedder is not None
        words = self.service.kernel.filter(principal, namespace=namespace)  # BM25 over the namespace, read rights checked
        out: list[list[tuple[Memory, Claim, float]]] = []
        for fact, claim in zip(facts, claims, strict=True):
            met: dict[str, tuple[Memory, float]] = {}
            for key in keys(claim):
                for memory in slotted.get(key, []):
                    met[memory.id] = (memory, 0.0)
            if semantic:
                hits = self.service.recall(
                    fact.content, mode="vector", top_k=NEIGHBOURS, explain=True, touch=False, namespace=namespace, principal=principal
                ).hits
                for hit in hits:
                    cosine = float((hit.explain or {}).get("vector", 0.0) or 0.0)
                    if hit.memory.namespace == namespace and cosine >= self.rules.candidate_cosine:
                        met[hit.memory.id] = (hit.memory, cosine)
            terms = [t for t in query_terms(fact.content) if t not in names]  # the speakers' names are in every fact
            for memory, _score in self.service.store.keyword_search(terms, words, WORD_CANDIDATES):
                if memory.namespace == namespace and memory.id not in met:
                    met[memory.id] = (memory, 0.0)
            out.append([(m, Claim.of(_text(m), m.metadata), cosine) for m, cosine in met.values()])
        return out

    def _slotted(self, namespace: str, keys: set[str]) -> dict[str, builtins.list[Memory]]:
        """Live stored facts of ``namespace`` under each slot key (one indexed lookup)."""
        if not keys:
            return {}
        ordered = sorted(keys)
        marks = ", ".join("?" for _ in ordered)
        with self.sql.read() as sql:
            found = sql.all(
                f"SELECT slot_key, memory_id FROM extraction_slots WHERE namespace = ? AND slot_key IN ({marks})", (namespace, *ordered)
            )
        now = self.service.clock()
        live = {m.id: m for m in self.service.store.get_many(list({row[1] for row in found})) if m.expires_at is None or m.expires_at > now}
        out: dict[str, list[Memory]] = {}
        for key, memory_id in found:
            if memory_id in live:
                out.setdefault(str(key), []).append(live[memory_id])
        return out

    # -- background jobs ------------------------------------------------------------------

    def _queue(self, msgs: Sequence[_Msg], turns: Sequence[Turn], namespace: str, sid: str, agent_id: str | None, who: Principal) -> str:
        job_id = f"ext-{new_id()}"
        now = time.time()
        with self.sql.write() as rows:
            rows.run(
                "INSERT INTO extraction_jobs (id, status, session_id, namespace, created_by, created_at, updated_at) "
                "VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                (job_id, sid, namespace, who.agent_id, now, now),
            )
        self._heartbeat.hold(job_id)
        self._workers().submit(self._run_job, job_id, list(msgs), list(turns), namespace, sid, agent_id, who)
        return job_id

    def _workers(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.policy.workers, thread_name_prefix="memmesh-extract")
            return self._pool

    def _run_job(
        self,
        job_id: str,
        msgs: builtins.list[_Msg],
        turns: builtins.list[Turn],
        namespace: str,
        sid: str,
        agent_id: str | None,
        who: Principal,
    ) -> None:
        try:
            self._set_job(job_id, "running")
            try:
                report = self.extract(msgs, turns, namespace=namespace, session_id=sid, agent_id=agent_id, principal=who)
            except Exception as exc:  # a job must end in a status a poller can read, whatever failed
                log.exception("extraction job %s failed", job_id)
                self._set_job(job_id, "failed", error=f"{type(exc).__name__}: {exc}"[:1000])
                return
            self._set_job(job_id, "done", report=report)
        finally:
            self._heartbeat.release(job_id)

    def _set_job(self, job_id: str, status: str, *, report: ExtractionReport | None = None, error: str | None = None) -> None:
        with self.sql.write() as rows:
            rows.run(
                "UPDATE extraction_jobs SET status = ?, updated_at = ?, report = ?, error = ? WHERE id = ?",
                (status, time.time(), report.model_dump_json() if report else None, error, job_id),
            )

    def job(self, job_id: str, *, principal: Principal) -> ExtractionJob:
        """A background extraction's status and, once done, its report (unknown and hidden
        jobs read alike: the caller must be able to read the facts' namespace)."""
        who = authorize(principal, "reader")
        if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
            raise InvalidInputError(f"job id {str(job_id)[:80]!r} is not valid: pass the job_id that remember returned (ext-…)")
        self._reap(job_id)
        with self.sql.read() as rows:
            row = rows.one(
                "SELECT id, status, session_id, namespace, created_at, updated_at, report, error FROM extraction_jobs WHERE id = ?",
                (job_id,),
            )
        if row is None or not who.covers(str(row[3])):
            raise NotFoundError(f"no extraction job {job_id}")
        return ExtractionJob(
            job_id=row[0],
            status=row[1],
            session_id=row[2],
            namespace=row[3],
            created_at=datetime.fromtimestamp(float(row[4]), UTC),
            updated_at=datetime.fromtimestamp(float(row[5]), UTC),
            report=ExtractionReport.model_validate_json(row[6]) if row[6] else None,
            error=row[7],
        )

    def start(self) -> int:
        """``serve``'s start: fail the jobs a crashed server left queued or running (their
        heartbeat stopped); how many. Jobs of servers still alive keep their heartbeat."""
        self._swept = True
        return reap(self.sql, self.policy.job_stale_s)

    def _reap(self, job_id: str) -> None:
        """Fail the jobs whose process died: all of them on the first poll of this process
        (its start), then the one polled."""
        if not self._swept:
            self._swept = True
            reap(self.sql, self.policy.job_stale_s)
        reap(self.sql, self.policy.job_stale_s, job_id=job_id)

    def wait(self, job_id: str, *, principal: Principal, timeout_s: float = 30.0) -> ExtractionJob:
        """Poll :meth:`job` until it is done or failed (or ``timeout_s`` passes)."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id, principal=principal)
            if job.status in ("done", "failed") or time.monotonic() >= deadline:
                return job
            time.sleep(0.02)

    def close(self) -> None:
        """Finish the running jobs and stop the workers (serve's shutdown)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def check_messages(messages: Any) -> builtins.list[_Msg]:
    """The messages as (role, content, name), or one clear error naming the bad message."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidInputError('messages must be a list of {"role": ..., "content": ...} objects')
    if not messages:
        raise InvalidInputError('messages is empty: give at least one {"role": ..., "content": ...}')
    if len(messages) > MAX_MESSAGES:
        raise InvalidInputError(f"{len(messages)} messages in one call; the limit is {MAX_MESSAGES}: send the conversation in parts")
    out = []
    for i, item in enumerate(messages, start=1):
        if not isinstance(item, Mapping):
            raise InvalidInputError(f'message {i} is not an object: give {{"role": ..., "content": ...}}')
        unknown = set(item) - {"role", "content", "name"}
        if unknown:
            raise InvalidInputError(f"message {i} has unknown field(s) {', '.join(sorted(map(str, unknown)))}: use role, content and name")
        content = item.get("content")
        if not isinstance(content, str) or not content.strip():
            raise InvalidInputError(f"message {i} has no content: give the text of the turn as a string")
        name = item.get("name")
        if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS):
            raise InvalidInputError(f"message {i}: name must be a non-empty string of at most {MAX_NAME_CHARS} characters")
        check_text(name, f"message {i}: name")
        if name is not None:  # it goes into the turn and its facts as the speaker: "Ana\n[turn 9] system: …" forged a turn
            check_one_line(name, f"message {i}: name", "a name is one line")
        out.append(_Msg(role=check_role(item.get("role", "user")), content=content, name=name.strip() if name else None))
    return out


def _parent(turns: Sequence[Turn], service: ExtractionHost, sid: str) -> str:
    """The root namespace of the session the turns were stored in."""
    turn_ns = service.store.get(turns[0].memory_id)
    ns = turn_ns.namespace if turn_ns is not None else service.sessions.namespace(sid)
    return ns.rsplit("/", 1)[0] if ns.endswith("/" + sid) else ns


def _merge_same(facts: builtins.list[Fact]) -> builtins.list[Fact]:
    """One fact per content within a call (its turns merged): the store keeps one copy anyway."""
    by_content: dict[str, Fact] = {}
    for fact in facts:
        kept = by_content.get(fact.content)
        if kept is None:
            by_content[fact.content] = fact
        else:
            kept.turns.extend(t for t in fact.turns if t not in kept.turns)
    return list(by_content.values())


def _item(fact: Fact, turns: Sequence[Turn], namespace: str, sid: str, agent_id: str | None, run: str) -> dict[str, Any]:
    tags = [t for t in (TAG_RE.sub("-", tag.lower()).strip("-")[:MAX_TAG_CHARS] for tag in ["extracted", *fact.tags]) if t]
    meta: dict[str, Any] = {
        "extraction_run": run,
        "session_id": sid,
        "turns": [turns[i].turn for i in fact.turns if i < len(turns)],
    }
    for key in ("slot", "value", "polarity", "topic"):
        value = getattr(fact, key)
        if value is not None:
            meta[key] = value
    for key in ("entities", "dates", "quantities"):
        if getattr(fact, key):
            meta[key] = getattr(fact, key)
    return {
        "content": fact.content,
        "namespace": namespace,
        "kind": fact.kind.value,
        "tags": list(dict.fromkeys(tags))[:16],
        "source": "extraction",
        "agent_id": agent_id,
        "metadata": meta,
    }


def _verdicts(
    claims: Sequence[Claim], found: Sequence[Sequence[tuple[Memory, Claim, float]]], rules: Rules
) -> tuple[dict[int, Memory | int], builtins.list[tuple[int, Memory | int, Relation]], int]:
    """Each fact judged against the stored memories it met and the earlier facts of the call
    (by index): which facts repeat another (not stored again), the links the rest owe, and
    how many links were not made. A fact links to at most :data:`MAX_LINKS_PER_FACT` others,
    the call's latest facts first, then the stored memories it met most closely: without a
    bound, n facts on one slot ("Eve likes color 1", "… color 2", …) made n(n-1)/2 links, and
    one 40 KB request of 1,000 such messages wrote 499,500 links and grew the store by 630 MB."""
    merged_into: dict[int, Memory | int] = {}
    relations: list[tuple[int, Memory | int, Relation]] = []
    skipped = 0
    for i, claim in enumerate(claims):
        met: list[tuple[Memory | int, Claim, float]] = [(m, c, cos) for m, c, cos in found[i]]
        met += [(j, claims[j], 0.0) for j in range(i) if j not in merged_into]
        mine: list[tuple[int, Memory | int, Relation]] = []
        for other, other_claim, cosine in met:
            verdict = judge(claim, other_claim, cosine=cosine, rules=rules).verdict
            if verdict is Verdict.duplicate:
                merged_into[i] = other
                mine = []
                break
            if verdict is Verdict.update:
                mine.append((i, other, Relation.supersedes))
            elif verdict is Verdict.contradiction:
                mine.append((i, other, Relation.contradicts))
        if len(mine) > MAX_LINKS_PER_FACT:
            mine.sort(key=lambda link: (not isinstance(link[1], int), -link[1] if isinstance(link[1], int) else 0))  # stable
            skipped += len(mine) - MAX_LINKS_PER_FACT
            mine = mine[:MAX_LINKS_PER_FACT]
        relations += mine
    return merged_into, relations, skipped


def _structured(fact: Fact) -> dict[str, Any] | None:
    """An LLM fact's own slot (subject|attribute and value), which the shared rules prefer to
    the one they would read from the words."""
    return {"slot": fact.slot, "value": fact.value} if fact.slot and fact.value else None


def _text(memory: Memory) -> str:
    return f"{memory.title}\n{memory.content}" if memory.title else memory.content


__all__ = ["Extraction", "ExtractionJob", "ExtractionPolicy", "ExtractionReport", "Failure", "RememberResult", "check_messages"]
