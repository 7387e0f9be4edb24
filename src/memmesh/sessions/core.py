"""Long sessions kept as memories, and picked back up within a token budget (issue 17).

Each turn is a ``kind="message"`` memory in the namespace ``<root>/<session_id>`` (the
root given with the session's first turn, default ``sessions.namespace``). That namespace is
the session's key: one id under two roots is two sessions, so tenants never take an id from
each other, and a caller names the root only when it can see the id under several. Content
reads ``[turn N] role: text`` (the turn number keeps two identical turns apart, since
memmesh stores equal content in one namespace once) with ``turn`` and ``role`` in its
metadata. Turn numbers come from a per-session counter moved in the same transaction
as the turns (compare-and-set: an appender that lost a race numbers again), so concurrent
appenders never share a number, order is the order of commits, and a failed append leaves
neither turns, nor a gap, nor a session that has no turns.

:meth:`Sessions.rehydrate` rebuilds what an agent needs to continue, within
``budget_tokens`` (estimated as in recall: about four characters a token):

1. the latest turns, newest kept first, up to ``sessions.recent_share`` of the budget;
2. the memories most relevant to ``query`` (from this session's older turns and from the
   rest of the store), fetched in parallel with the turns;
3. an extractive summary of the older turns: their most informative sentences (term
   weights over the session, boosted by the query), in session order, in what is left.

No LLM is needed; the result says how many tokens its ``context`` text uses. With ``[llm]``
configured (and ``sessions.abstractive`` on, the default) the summary is abstractive: the
LLM rewrites the extractive selection (up to :data:`ABSTRACT_SOURCE_TOKENS` of it) into one
short paragraph within the same budget. Any LLM failure (server down, timeout, an empty
answer) falls back to the extractive summary, and ``summary_kind`` says which one came back.
Only rehydration asks the LLM: appending turns never waits for it.
"""

from __future__ import annotations

import builtins
import functools
import logging
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from memmesh.bus.sql import BusSql, Rows
from memmesh.clock import parse_ts
from memmesh.errors import ConflictError, ContentTooLargeError, ForbiddenError, InvalidInputError, MemmeshError, NotFoundError
from memmesh.kernel import authorize, outside_message
from memmesh.model import TURN_PREFIX_RE, Kind, Memory, Principal, Role, Tier, normalize_namespace
from memmesh.recall.ranking import estimate_tokens

if TYPE_CHECKING:
    from memmesh.host import Host
    from memmesh.llm.client import LLMClient

log = logging.getLogger("memmesh.sessions")
ABSTRACT_SOURCE_TOKENS = 6000
"""Most tokens of extractive selection handed to the LLM to summarise (a bounded request
whatever the session's length)."""
ABSTRACT_PROMPT = (
    "You summarise the earlier part of a conversation so an assistant can continue it. Write one short paragraph "
    "in plain prose that keeps every fact, decision, name, number and open question; no preamble, no lists. "
    "Use at most {words} words."
)

SESSION_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
ROLE_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
SENTENCE_RE = re.compile(r"[^.!?\n]+[.!?]*")
WORD_RE = re.compile(r"[a-z0-9]{3,}")
STOP = frozenset(
    [
        "the",
        "and",
        "for",
        "that",
        "this",
        "with",
        "you",
        "are",
        "was",
        "were",
        "have",
        "has",
        "had",
        "not",
        "but",
        "what",
        "when",
        "where",
        "which",
        "who",
        "will",
        "would",
        "can",
        "could",
        "should",
        "from",
        "into",
        "about",
        "there",
        "their",
        "they",
        "them",
        "then",
        "than",
        "its",
        "it's",
        "our",
        "your",
        "yes",
        "okay",
        "sure",
        "just",
        "also",
        "very",
        "more",
        "some",
        "any",
        "all",
        "one",
        "two",
        "let",
        "lets",
        "get",
        "got",
        "now",
        "how",
        "why",
        "did",
        "does",
        "done",
    ]
)
MAX_TURNS = 200_000
MAX_ROOTS_LISTED = 5
"""Most roots named when a session id is ambiguous for the caller."""
SESSION_HELP = {"session_append": "to add a turn", "session_list": "to see the sessions there are"}
"""What an error about a missing or empty session points to, named by each face its own way."""
APPEND_RETRIES = 50
UNQUEUED = (
    "a session append",
    "turns are numbered as they commit, so they cannot wait for approval",
    "keep sessions under a root whose writes need no approval, or have an admin change the standard",
)
"""How a session append is refused where writes need approval (queued, an approved turn came
back unnumbered and outside its session)."""
"""How often an append numbers its turns again after losing a race for the same numbers."""


class _Raced(Exception):
    """Another append to the same session committed first with the numbers this one chose."""


RELEVANT_TOP_K = 8


@dataclass(frozen=True)
class SessionPolicy:
    namespace: str = "sessions"
    recent_share: float = 0.5
    abstractive: bool = True


@dataclass(slots=True)
class _Row:
    """A turn as rehydration handles it (hundreds at a time: no validation cost)."""

    turn: int
    role: str
    content: str
    memory_id: str
    created_at: datetime

    def model(self) -> Turn:
        return Turn(turn=self.turn, role=self.role, content=self.content, memory_id=self.memory_id, created_at=self.created_at)


class Turn(BaseModel):
    """One turn of a session."""

    turn: int
    role: str
    content: str
    memory_id: str
    created_at: datetime


class SummaryLine(BaseModel):
    """A sentence taken from an older turn (extractive: the words are the turn's own)."""

    turn: int
    role: str
    text: str


class RelevantMemory(BaseModel):
    memory_id: str
    namespace: str
    content: str
    score: float


class SessionInfo(BaseModel):
    session_id: str
    namespace: str
    turns: int
    created_at: datetime
    updated_at: datetime


class Rehydrated(BaseModel):
    """What an agent needs to continue a session, within its token budget."""

    session_id: str
    namespace: str = Field(description="where the session's turns live: <root>/<session_id>")
    budget_tokens: int
    tokens_used: int = Field(description="estimated tokens of `context` (≤ budget_tokens)")
    turns_total: int
    recent: list[Turn]
    summary: list[SummaryLine]
    summary_kind: str = Field(
        default="none", description="extractive (sentences of the turns), abstractive (written by the [llm] server) or none"
    )
    relevant: list[RelevantMemory]
    context: str = Field(description="summary, relevant memories and recent turns as one text to put in a prompt")


_POOL: list[ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One small shared pool for fetching relevant memories beside the turns (a pool per
    call would spend more starting threads than the fetch takes)."""
    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(max_workers=4, thread_name_prefix="memmesh-rehydrate"))
        return _POOL[0]


def _moment(value: datetime | str) -> datetime:
    """A stored timestamp (SQLite keeps RFC 3339 text, PostgreSQL a timestamptz)."""
    return value if isinstance(value, datetime) else parse_ts(value)


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def check_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not SESSION_ID_RE.fullmatch(session_id.strip()):
        raise InvalidInputError(
            f"session_id {session_id!r} is not valid: use 1-128 letters, digits and _ . : - (starting alphanumeric)", field="session_id"
        )
    return session_id.strip()


def check_role(role: str) -> str:
    if not isinstance(role, str) or not ROLE_RE.fullmatch(role.strip().lower()):
        raise InvalidInputError(
            f"role {role!r} is not valid: use a short lowercase word such as user, assistant, system or tool", field="role"
        )
    return role.strip().lower()


def _turn(memory: Memory) -> Turn:
    match = TURN_PREFIX_RE.match(memory.content)
    number = int(memory.metadata.get("turn") or (match.group(1) if match else 0))
    role = str(memory.metadata.get("role") or (match.group(2) if match else "unknown"))
    text = memory.content[match.end() :] if match else memory.content
    return Turn(turn=number, role=role, content=text, memory_id=memory.id, created_at=memory.created_at)


class Sessions:
    """Session rules over the service (every write goes through ``service.add_many``)."""

    def __init__(self, service: Host, policy: SessionPolicy | None = None, llm: LLMClient | None = None) -> None:
        self.service = service
        self.policy = policy or SessionPolicy()
        self.llm = llm
        self.sql = BusSql(service.store)
        self._stripes = [threading.Lock() for _ in range(64)]

    def namespace(self, session_id: str, root: str | None = None) -> str:
        """Where the session's turns live: ``<root>/<session_id>``."""
        return f"{normalize_namespace(root or self.policy.namespace)}/{session_id}"

    def _named(self, session_id: str) -> builtins.list[str]:
        """The namespaces of the sessions called ``session_id``: one per root it was started
        under (a session is keyed by its namespace, so tenants never share an id)."""
        with self.sql.read() as rows:
            return sorted(r[0] for r in rows.all("SELECT namespace FROM session_turns WHERE session_id = ?", (session_id,)))

    def _pick(self, session_id: str, principal: Principal, role: Role, root: str | None) -> tuple[str, bool]:
        """The session the caller means by ``session_id``: its namespace, and whether it exists.

        Only sessions the caller covers count, so another tenant's session of the same id
        changes nothing in the answer (no squatting, no oracle). With ``root`` it is the
        session under that root; without, the one the caller covers, a new one under the
        default root when there is none, and a question when the caller covers several.
        An empty ``root`` (``""``, spaces) is a usage error, not the default: every call that
        names a session (append, turns, rehydrate, remember) passes its root through here."""
        session_id = check_session_id(session_id)
        if isinstance(root, str) and not root.strip():
            raise InvalidInputError(
                f"namespace is empty: give the root the session lives under, such as {self.policy.namespace!r} (the default) "
                "or 'team/project', or leave it out for the session of this id you can see",
                usage=True,
                field="namespace",
            )
        who = authorize(principal, role)
        mine = [ns for ns in self._named(session_id) if who.covers(ns)]
        if root is not None:
            ns = self.namespace(session_id, root)
            return ns, ns in mine
        if len(mine) > 1:
            roots = ", ".join(ns[: -len(session_id) - 1] for ns in mine[:MAX_ROOTS_LISTED])
            raise InvalidInputError(
                f"session {session_id} exists under several roots ({roots}): give namespace, the root of the one you mean",
                usage=True,
            )
        return (mine[0], True) if mine else (self.namespace(session_id), False)

    def _readable(self, session_id: str, principal: Principal, root: str | None = None) -> str:
        """The session's namespace, checked readable; unknown and hidden sessions read alike."""
        ns, exists = self._pick(session_id, principal, "reader", root)
        if not exists:
            where = f" under {normalize_namespace(root)}" if root is not None else ""
            raise NotFoundError(f"no session {session_id.strip()}{where}: a session starts with its first turn", use=SESSION_HELP)
        return ns

    # -- writes ------------------------------------------------------------------------------

    def append(
        self,
        session_id: str,
        *,
        role: str,
        content: str,
        principal: Principal,
        agent_id: str | None = None,
        namespace: str | None = None,
    ) -> Turn:
        """Store one turn at the end of the session."""
        turns = [{"role": role, "content": content}]
        return self.append_many(session_id, turns, principal=principal, agent_id=agent_id, namespace=namespace)[0]

    def append_many(
        self,
        session_id: str,
        turns: builtins.list[dict[str, Any]],
        *,
        principal: Principal,
        agent_id: str | None = None,
        namespace: str | None = None,
    ) -> builtins.list[Turn]:
        """Store turns (dicts with ``role`` and ``content``) at the end of the session, in order.

        ``namespace`` is the root the session lives under (``<root>/<session_id>``): the first
        turn starts the session there (default ``sessions.namespace``); later appends may
        repeat it, or leave it out while the caller covers only one session of that id."""
        ns, _exists = self._pick(session_id, principal, "writer", namespace)
        session_id = check_session_id(session_id)
        roots = principal.prefixes()
        if namespace is None and roots and not principal.covers(ns):
            raise ForbiddenError(  # a new session under the default root, which this key may not write
                f"{outside_message(principal, ns)}; a session started without namespace lives under "
                f"{self.policy.namespace!r} (sessions.namespace): give namespace, a root inside them, e.g. {roots[0]!r}"
            )
        authorize(principal, "writer", ns)
        if not turns:
            raise InvalidInputError("no turns to append: give role and content")
        checked = []
        for i, item in enumerate(turns):
            if not isinstance(item, dict) or "content" not in item:
                raise InvalidInputError(f"turn {i + 1} needs role and content")
            text = item["content"]
            if not isinstance(text, str) or not text.strip():
                raise InvalidInputError(f"turn {i + 1} has empty content: give the text of the turn")
            checked.append((check_role(item.get("role", "user")), text))
        # Appenders of one session in this process take turns (a striped lock), so they never
        # race each other; other processes are kept apart by the compare-and-set below.
        with self._stripes[hash(ns) % len(self._stripes)]:
            return self._append_numbered(session_id, ns, checked, principal, agent_id)

    def _fits(self, checked: builtins.list[tuple[str, str]], first: int) -> None:
        """Each turn is stored as ``[turn N] role: text``, so the room for its text is the
        memory's limit less that prefix: a text over it is refused in the caller's own bytes
        (the limit's check on the stored content would count bytes the caller never sent)."""
        limit = self.service.policy.max_content_bytes
        for i, (role, text) in enumerate(checked):
            prefix = len(f"[turn {first + i}] {role}: ".encode())
            size = len(text.encode("utf-8", "surrogatepass"))
            if size + prefix > limit:
                raise ContentTooLargeError(
                    f"content of turn {i + 1} is {size} bytes; a turn's text may be at most {limit - prefix} bytes "
                    f"(limits.max_content_bytes, {limit}, less {prefix} for the stored '[turn {first + i}] {role}: ' prefix): "
                    "split it over several turns",
                    field="content",
                )

    def _append_numbered(
        self, session_id: str, ns: str, checked: builtins.list[tuple[str, str]], principal: Principal, agent_id: str | None
    ) -> builtins.list[Turn]:
        for attempt in range(APPEND_RETRIES):
            if attempt:
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))  # another process won: let it finish
            first = self._next_turn(ns)
            self._fits(checked, first)
            items = [
                {
                    "content": f"[turn {first + i}] {role}: {text}",
                    "namespace": ns,
                    "kind": Kind.message.value,
                    "tier": Tier.long.value,
                    "source": "session",
                    "agent_id": agent_id,
                    "metadata": {"session_id": session_id, "turn": first + i, "role": role},
                }
                for i, (role, text) in enumerate(checked)
            ]
            try:
                claim = functools.partial(self._claim_turns, session_id, ns, first, len(items))
                stored = self.service.add_many(items, principal=principal, within=claim, unqueued=UNQUEUED)
            except _Raced:
                continue  # another appender took these numbers first: number again after it
            return [_turn(m) for m in stored]
        raise ConflictError(f"session {session_id} is being appended to by many writers at once: retry the append")

    def _next_turn(self, ns: str) -> int:
        """The turn number the next append to the session in ``ns`` would get, as the counter
        stands now (the append's transaction checks it still does)."""
        with self.sql.read() as rows:
            row = rows.one("SELECT turns FROM session_turns WHERE namespace = ?", (ns,))
        top = int(row[0]) if row else 0
        return top + 1

    def _claim_turns(self, session_id: str, ns: str, first: int, count: int, tx: Any, _stored: Any) -> None:
        """Inside the append's own transaction: move the session's turn counter from
        ``first - 1`` to ``first + count - 1`` (creating the session for its first turns).
        The turns and the counter commit together, so a failed append leaves no session and
        no gap; a counter another appender moved meanwhile raises :class:`_Raced`."""
        if first - 1 + count > MAX_TURNS:
            raise InvalidInputError(f"session {session_id} would pass {MAX_TURNS} turns; start a new session")
        now = self.service.clock().timestamp()
        rows = Rows(tx.conn, self.sql.postgres)
        if first == 1:
            changed = rows.run(
                "INSERT INTO session_turns (session_id, namespace, turns, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (namespace) DO NOTHING",
                (session_id, ns, count, now, now),
            )
        else:
            changed = rows.run(
                "UPDATE session_turns SET turns = ?, updated_at = ? WHERE namespace = ? AND turns = ?",
                (first - 1 + count, now, ns, first - 1),
            )
        if changed != 1:
            raise _Raced()

    def count_replicated(self, tx: Any, memories: Iterable[Memory]) -> int:
        """Inside a peer batch's transaction: the turns among ``memories`` (written on another
        node) move their session's turn counter up to their number, creating the session
        here if it is new, so the session is listed and rehydrates on this node and its next
        turn here is numbered after them. Never moves a counter down. How many sessions
        changed."""
        top: dict[tuple[str, str], tuple[int, float]] = {}
        for memory in memories:
            sid, number = memory.metadata.get("session_id"), memory.metadata.get("turn")
            if memory.source != "session" or not isinstance(sid, str) or not isinstance(number, int) or isinstance(number, bool):
                continue
            if not memory.namespace.endswith(f"/{sid}") or not 0 < number <= MAX_TURNS:
                continue
            key, at = (sid, memory.namespace), memory.created_at.timestamp()
            held = top.get(key)
            top[key] = (max(number, held[0]), max(at, held[1])) if held else (number, at)
        rows = Rows(tx.conn, self.sql.postgres)
        return sum(
            rows.run(
                "INSERT INTO session_turns (session_id, namespace, turns, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (namespace) DO UPDATE SET turns = excluded.turns, updated_at = CASE "
                "WHEN session_turns.updated_at > excluded.updated_at THEN session_turns.updated_at ELSE excluded.updated_at END "
                "WHERE session_turns.turns < excluded.turns",
                (sid, ns, number, at, at),
            )
            for (sid, ns), (number, at) in sorted(top.items())
        )

    # -- reads -------------------------------------------------------------------------------

    def list(self, *, principal: Principal, limit: int = 100) -> builtins.list[SessionInfo]:
        """Sessions the caller may read, most recently active first."""
        who = authorize(principal, "reader")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise InvalidInputError(f"limit must be between 1 and 1000 (got {limit!r})", usage=True, field="limit")
        with self.sql.read() as rows:
            found = rows.all(
                "SELECT session_id, namespace, turns, created_at, updated_at FROM session_turns ORDER BY updated_at DESC, session_id"
            )
        out = []
        for sid, ns, turns, created, updated in found:
            if who.covers(ns):
                out.append(
                    SessionInfo(session_id=sid, namespace=ns, turns=int(turns), created_at=_when(created), updated_at=_when(updated))
                )
            if len(out) >= limit:
                break
        return out

    def turns(self, session_id: str, *, principal: Principal, namespace: str | None = None) -> builtins.list[Turn]:
        """Every stored turn of the session (under root ``namespace`` if given), in order."""
        return [row.model() for row in self._rows(self._readable(session_id, principal, namespace))]

    def _rows(self, ns: str) -> builtins.list[_Row]:
        """The turns in ``ns``, in order, read straight from the session's namespace (the
        caller's right to it is checked before): rehydration reads hundreds of turns and
        needs only five fields of each, so it skips building full Memory objects, which
        would cost most of its time budget."""
        now = self.service.clock()
        with self.sql.read() as rows:
            found = rows.all("SELECT id, content, created_at, expires_at FROM memories WHERE namespace = ? AND kind = 'message'", (ns,))
        turns = []
        for memory_id, content, created, expires in found:
            match = TURN_PREFIX_RE.match(content)
            if match is None or (expires is not None and _moment(expires) <= now):
                continue  # a message memory not written as a turn, or one that expired
            turns.append(_Row(int(match.group(1)), match.group(2), content[match.end() :], memory_id, _moment(created)))
        turns.sort(key=lambda t: (t.turn, t.created_at, t.memory_id))  # two nodes may number a turn alike (docs/federation.md)
        return turns

    def rehydrate(
        self, session_id: str, *, budget_tokens: int = 4000, query: str | None = None, principal: Principal, namespace: str | None = None
    ) -> Rehydrated:
        """The latest turns, the memories relevant to ``query`` and a summary of the rest,
        all within ``budget_tokens`` (see the module doc for how the budget is shared).
        ``namespace`` is the session's root, needed only when the caller can read sessions
        of this id under several roots."""
        ns = self._readable(session_id, principal, namespace)
        session_id = check_session_id(session_id)
        if not isinstance(budget_tokens, int) or isinstance(budget_tokens, bool) or not 50 <= budget_tokens <= 1_000_000:
            raise InvalidInputError(
                f"budget_tokens must be between 50 and 1000000 (got {budget_tokens!r})", usage=True, field="budget_tokens"
            )
        query = query.strip() if isinstance(query, str) and query.strip() else None
        relevant_job = _pool().submit(self._relevant, ns, query, principal) if query else None
        turns = self._rows(ns)
        relevant_hits = relevant_job.result() if relevant_job else []
        if not turns:
            raise NotFoundError(f"session {session_id} has no turns", use=SESSION_HELP)
        return self._fit(session_id, ns, turns, relevant_hits, query, budget_tokens)

    def _relevant(self, ns: str, query: str, principal: Principal) -> builtins.list[tuple[Memory, float]]:
        """Recall hits for the query: this session's turns and the rest of the store."""
        svc = self.service
        inside = svc.recall(query, namespace=ns, top_k=RELEVANT_TOP_K, touch=False, principal=principal).hits
        everywhere = svc.recall(query, top_k=RELEVANT_TOP_K, touch=False, principal=principal).hits
        merged: dict[str, tuple[Memory, float]] = {}
        for hit in [*inside, *everywhere]:
            if hit.memory.id not in merged or merged[hit.memory.id][1] < hit.score:
                merged[hit.memory.id] = (hit.memory, hit.score)
        return sorted(merged.values(), key=lambda pair: -pair[1])

    def _fit(
        self,
        session_id: str,
        ns: str,
        turns: builtins.list[_Row],
        hits: builtins.list[tuple[Memory, float]],
        query: str | None,
        budget: int,
    ) -> Rehydrated:
        """Share the budget: recent turns, then relevant memories, then the summary."""
        recent_budget = max(1, int(budget * self.policy.recent_share))
        recent: list[_Row] = []
        used = estimate_tokens("Recent turns:\n")
        for turn in reversed(turns):
            cost = estimate_tokens(_turn_line(turn)) + 1
            if recent and used + cost > recent_budget:
                break
            if not recent and used + cost > budget:
                turn = replace(turn, content=turn.content[: max(1, (budget - used) * 4 - 40)])
                cost = estimate_tokens(_turn_line(turn)) + 1
            recent.append(turn)
            used += cost
        recent.reverse()
        first_recent = recent[0].turn if recent else math.inf
        older = [t for t in turns if t.turn < first_recent]
        relevant: list[RelevantMemory] = []
        relevant_budget = (budget - used) // 2 if older else budget - used
        spent = estimate_tokens("Relevant memories:\n")
        recent_ids = {t.memory_id for t in recent}
        for memory, score in hits:
            if memory.id in recent_ids:
                continue
            cost = estimate_tokens(memory.content) + 3
            if spent + cost > relevant_budget:
                continue
            relevant.append(RelevantMemory(memory_id=memory.id, namespace=memory.namespace, content=memory.content, score=round(score, 4)))
            spent += cost
        used += spent if relevant else 0
        summary_budget = budget - used - estimate_tokens("Summary of earlier turns:\n") - 2
        summary = _summarise(older, query, summary_budget) if older else []
        kind = "extractive" if summary else "none"
        if older and summary_budget > 20 and self.llm is not None and self.policy.abstractive:
            written = self._abstract(older, query, summary_budget)
            if written is not None:
                summary, kind = [written], "abstractive"
        context = _render(summary, relevant, recent)
        while estimate_tokens(context) > budget and (summary or relevant):
            summary.pop() if summary else relevant.pop()
            context = _render(summary, relevant, recent)
        return Rehydrated(
            session_id=session_id,
            namespace=ns,
            budget_tokens=budget,
            tokens_used=estimate_tokens(context),
            turns_total=len(turns),
            recent=[row.model() for row in recent],
            summary=summary,
            summary_kind=kind if summary else "none",
            relevant=relevant,
            context=context,
        )

    def _abstract(self, older: builtins.list[_Row], query: str | None, budget: int) -> SummaryLine | None:
        """The older turns summarised by the LLM within ``budget`` tokens, or None (no answer,
        an error: the caller keeps the extractive summary). The LLM reads the extractive
        selection of the older turns, not all of them, so the request stays bounded."""
        assert self.llm is not None
        source = _summarise(older, query, min(ABSTRACT_SOURCE_TOKENS, max(budget * 3, budget)))
        if not source:
            return None
        lines = "\n".join(f"[turn {s.turn}] {s.role}: {s.text}" for s in source)
        ask = f"Conversation so far (turns 1-{older[-1].turn}, the most informative sentences):\n{lines}"
        if query:
            ask += f"\n\nThe assistant is about to deal with: {query}"
        words = max(10, int(budget * 0.6))
        try:
            text = self.llm.complete([{"role": "system", "content": ABSTRACT_PROMPT.format(words=words)}, {"role": "user", "content": ask}])
        except MemmeshError as exc:
            log.warning("session summary: the LLM failed, the extractive summary is used: %s", exc.message)
            return None
        text = " ".join(text.split())
        if not text:
            return None
        line = SummaryLine(turn=older[-1].turn, role="summary", text=text)
        while estimate_tokens(f"- [turn {line.turn}] {line.role}: {line.text}") + 1 > budget and len(line.text) > 1:
            cut = line.text[: max(1, len(line.text) - 4 * (estimate_tokens(line.text) - budget + 8))].rsplit(" ", 1)[0]
            line = SummaryLine(turn=line.turn, role=line.role, text=(cut or line.text[:1]) + "…")
        return line


def _turn_line(turn: _Row) -> str:
    return f"[turn {turn.turn}] {turn.role}: {turn.content}"


def _render(summary: list[SummaryLine], relevant: list[RelevantMemory], recent: list[_Row]) -> str:
    parts = []
    if summary:
        parts.append("Summary of earlier turns:\n" + "\n".join(f"- [turn {s.turn}] {s.role}: {s.text}" for s in summary))
    if relevant:
        parts.append("Relevant memories:\n" + "\n".join(f"- {r.content}" for r in relevant))
    parts.append("Recent turns:\n" + "\n".join(_turn_line(t) for t in recent))
    return "\n\n".join(parts)


def _summarise(older: list[_Row], query: str | None, budget: int) -> list[SummaryLine]:
    """The most informative sentences of ``older`` that fit ``budget`` tokens, in order.

    A sentence scores the mean weight of its words, a word weighing log(1 + count) times
    its inverse turn frequency (words said in every turn tell little); words of the query
    count three times more, so the summary leans towards what the caller is about to ask.
    """
    if budget <= 0:
        return []
    candidates: list[tuple[int, int, str, str, list[str]]] = []
    doc_freq: Counter[str] = Counter()
    term_freq: Counter[str] = Counter()
    for turn in older:
        words_in_turn = set()
        for j, match in enumerate(SENTENCE_RE.finditer(turn.content)):
            sentence = match.group(0).strip()
            words = [w for w in WORD_RE.findall(sentence.lower()) if w not in STOP]
            if len(words) < 2:
                continue
            candidates.append((turn.turn, j, turn.role, sentence, words))
            term_freq.update(words)
            words_in_turn.update(words)
        doc_freq.update(words_in_turn)
    n = max(1, len(older))
    query_words = {w for w in WORD_RE.findall((query or "").lower()) if w not in STOP}
    weight = {w: math.log1p(count) * math.log(1 + n / doc_freq[w]) * (3.0 if w in query_words else 1.0) for w, count in term_freq.items()}
    scored = [(sum(weight[w] for w in words) / math.sqrt(len(words)), index) for index, (*_, words) in enumerate(candidates)]
    chosen: list[int] = []
    spent = 0
    seen: set[str] = set()
    for _score, index in sorted(scored, reverse=True):
        turn_no, _j, role, sentence, _words = candidates[index]
        key = sentence.lower()
        if key in seen:
            continue
        cost = estimate_tokens(f"- [turn {turn_no}] {role}: {sentence}") + 1
        if spent + cost > budget:
            continue
        seen.add(key)
        chosen.append(index)
        spent += cost
    return [SummaryLine(turn=candidates[i][0], role=candidates[i][2], text=candidates[i][3]) for i in sorted(chosen)]
