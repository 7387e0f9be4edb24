"""Every rule of the message bus, written once for every face (CLI, HTTP, MCP, Python).

Model (issue 17; docs/bus.md):

- A *conversation* has participants and a token of 64 hex characters, shown once and stored
  only as its SHA-256; every read or post presents it and it is compared in constant time.
  The token is a capability, not an identity: the store never keeps or logs it.
- Messages are numbered 1, 2, … per conversation inside the write that stores them, so every
  reader sees one order. A ``chat`` message goes to every other participant (or only to
  ``to``); each agent has a cursor: ``delivered_seq`` (the newest message an ``unread`` has
  handed it) and ``acked_seq`` (everything up to it is read). ``ack`` moves ``acked_seq``
  forward only, and only over messages already delivered to that agent, so ``ack --all``
  never swallows a message that arrived after the agent looked.
- A ``queue`` conversation holds tasks: ``claim`` leases the oldest ready task to one
  worker with a fresh *attempt token* (the fencing token); ``heartbeat`` extends the lease,
  ``complete`` records the result, ``fail`` gives it back. Each checks the attempt token and
  that the lease still holds, in the same write, so a worker that was paused past its lease
  (and lost the task to another) is refused. A task delivered ``max_deliveries`` times
  without completing goes to the dead-letter list with its reason and history.
- A conversation idle for its timeout (default 3 h) is archived: it stays readable in
  ``list --archived``, but nothing more can be sent, read or claimed in it.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from memmesh.access import check_still_keyed
from memmesh.bus.hints import NO_LEASE_FLOOR, QueueHints
from memmesh.bus.model import (
    AckResult,
    BusMessage,
    Completed,
    CompletedBatch,
    CompleteOutcome,
    Conversation,
    ConversationKind,
    Delivery,
    OpenedConversation,
    RefusedEntry,
    Task,
    TaskResult,
    Transcript,
    TranscriptMessage,
    Unread,
    when,
)
from memmesh.bus.notify import CHANNEL, Notifier
from memmesh.bus.replicated import apply_item
from memmesh.bus.sql import FLUSH_PG, BusSql, Row, Rows, Statement
from memmesh.clock import new_id
from memmesh.errors import (
    ContentTooLargeError,
    ForbiddenError,
    InvalidInputError,
    LeaseLostError,
    MemmeshError,
    NotFoundError,
    RateLimitedError,
)
from memmesh.kernel import authorize, check_agent
from memmesh.model import BUS_AGENT_PATTERN, Principal, check_text, text_problem
from memmesh.waits import Abandoned, gone

if TYPE_CHECKING:
    from memmesh.host import Host

TOKEN_RE = re.compile(r"[0-9a-f]{64}")
UNKNOWN_HASH = "0" * 64
"""What a presented token is compared with when the conversation does not exist (no token hashes to it)."""
AGENT_RE = re.compile(BUS_AGENT_PATTERN.strip("^$"))
MAX_PARTICIPANTS = 1000
MAX_PAGE = 1000
MAX_BATCH = 100
"""The most tasks one ``claim_many`` leases, one ``complete_many`` completes or one
``send_many`` posts: a batch is one write, and SQLite's single writer should not be held for
long by one caller."""
TICKET_TTL_S = 0.5
"""How long a waiting claim trusts another waiter's count of ready tasks (see Bus._claimable)."""
VOUCH_TTL_S = 1.0
"""How long a claim that passed its checks lets the same worker's next waiting claim skip
its first try on a queue known to be empty (see Bus._known_empty)."""
MAX_TIMEOUT_S = 3_153_600_000.0
"""The longest idle timeout a conversation may have (100 years): every timestamp derived from
it must stay a real date, or listing conversations would fail for every caller."""
CONV_COLUMNS = "id, kind, topic, participants, created_by, created_at, last_activity, timeout_s, archived_at, last_seq"
MSG_COLUMNS = "id, conversation_id, seq, sender, recipient, body, created_at"
TASK_COLUMNS = "id, conversation_id, seq, body, state, attempts, lease_owner, lease_expires, result, dead_reason, history"
DELIVERY_COMMIT = "set_config('synchronous_commit', 'off', true) AS delivery_commit"
"""Selected by the statements that record a *delivery* (``unread``'s delivered mark, a
claim's lease): their commit does not wait for the disk flush (PostgreSQL's asynchronous
commit, for this one transaction). Safe because a lost delivery only delivers again: the
delivered mark or the lease that a server crash loses leaves the message unread or the task
ready, and the attempt token it handed out matches nothing, so its ``complete`` is refused.
Every write a caller is told is stored (send, ack, complete, fail) still waits for the flush,
and its flush covers every delivery recorded before it (the WAL is one sequence). Under
fsync-per-commit this removes one of the three disk waits of each enqueue + ack."""
SEND_PG = (
    "WITH c AS (UPDATE bus_conversations SET last_seq = last_seq + ?, last_activity = ? "
    "WHERE id = ? AND token_hash = ? AND archived_at IS NULL AND last_activity + timeout_s > ? AND strpos(participants, ?) > 0 "
    "AND (?::text IS NULL OR (kind = 'chat' AND strpos(participants, ?::text) > 0)) RETURNING last_seq, kind), "
    "m AS (INSERT INTO bus_messages (id, conversation_id, seq, sender, recipient, body, created_at, state, history, origin, hlc) "
    "SELECT b.id, ?, c.last_seq - ? + b.ord, ?, ?, b.body, ?, "
    "CASE WHEN c.kind = 'queue' THEN 'ready' END, CASE WHEN c.kind = 'queue' THEN '[]' END, ?::text, b.hlc "
    "FROM c, unnest(?::text[], ?::text[], ?::text[]) WITH ORDINALITY AS b(id, body, hlc, ord) RETURNING seq) "
    f"SELECT c.last_seq, (SELECT COUNT(*) FROM m), pg_notify('{CHANNEL}', ?), {DELIVERY_COMMIT} FROM c"
)
SEND_PG_SYNC = SEND_PG.replace(f", {DELIVERY_COMMIT}", "")
"""The same send committing as the session commits (when commits do not wait for a disk)."""
"""One send on PostgreSQL (see :meth:`Bus._send_pg`). The token is matched as its SHA-256
(equality on the hash of a secret: learning where two hashes differ says nothing of the
token); the participant test looks for the JSON-quoted name, which holds no quote itself."""
UNREAD_PG = (
    "WITH c AS (SELECT id FROM bus_conversations WHERE id = ? AND token_hash = ? AND kind = 'chat' AND archived_at IS NULL "
    "AND last_activity + timeout_s > ? AND strpos(participants, ?) > 0), "
    "cur AS (SELECT COALESCE((SELECT acked_seq FROM bus_cursors WHERE conversation_id = ? AND agent = ?), 0) AS acked FROM c), "
    f"m AS (SELECT {MSG_COLUMNS} FROM bus_messages, cur WHERE conversation_id = ? AND seq > cur.acked AND sender <> ? "
    "AND (recipient IS NULL OR recipient = ?) ORDER BY seq LIMIT ?), "
    "d AS (INSERT INTO bus_cursors (conversation_id, agent, delivered_seq, acked_seq) "
    "SELECT ?, ?, MAX(seq), 0 FROM (SELECT seq FROM m ORDER BY seq LIMIT ?) shown HAVING COUNT(*) > 0 "
    "ON CONFLICT (conversation_id, agent) DO UPDATE SET delivered_seq = excluded.delivered_seq "
    "WHERE bus_cursors.delivered_seq < excluded.delivered_seq) "
    f"SELECT cur.acked, m.*, {DELIVERY_COMMIT} FROM cur LEFT JOIN m ON true ORDER BY m.seq"
)
"""``unread`` (no wait) on PostgreSQL in one statement (see :meth:`Bus._unread_pg`)."""
ACK_ALL_PG = (
    "WITH c AS (SELECT 1 FROM bus_conversations WHERE id = ? AND token_hash = ? AND kind = 'chat' AND archived_at IS NULL "
    "AND last_activity + timeout_s > ? AND strpos(participants, ?) > 0), "
    "cur AS (SELECT delivered_seq, acked_seq FROM bus_cursors WHERE conversation_id = ? AND agent = ? "
    "AND EXISTS (SELECT 1 FROM c) FOR UPDATE), "
    "u AS (UPDATE bus_cursors b SET acked_seq = cur.delivered_seq FROM cur WHERE b.conversation_id = ? AND b.agent = ? "
    "AND b.acked_seq < cur.delivered_seq RETURNING cur.acked_seq AS before, b.acked_seq AS after) "
    "SELECT (SELECT COUNT(*) FROM c), (SELECT acked_seq FROM cur), (SELECT after FROM u), "
    "(SELECT COUNT(*) FROM bus_messages m, u WHERE m.conversation_id = ? AND m.seq > u.before AND m.seq <= u.after "
    "AND m.sender <> ? AND (m.recipient IS NULL OR m.recipient = ?))"
)
"""``ack --all`` on PostgreSQL in one statement (see :meth:`Bus._ack_all_pg`)."""
CLAIM_PG = (
    "WITH c AS (SELECT 1 FROM bus_conversations WHERE id = ? AND token_hash = ? AND kind = 'queue' AND archived_at IS NULL "
    "AND last_activity + timeout_s > ? AND strpos(participants, ?) > 0 AND NOT EXISTS (SELECT 1 FROM bus_messages "
    "WHERE conversation_id = ? AND state = 'leased' AND lease_expires <= ? AND lease_expires > ?)), "
    "t AS (SELECT seq FROM bus_messages WHERE conversation_id = ? AND state = 'ready' AND seq >= ? AND EXISTS (SELECT 1 FROM c) "
    "ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED), "
    "u AS (UPDATE bus_messages b SET state = 'leased', attempts = b.attempts + 1, lease_owner = ?, lease_token = ?, "
    "lease_expires = ?, history = (COALESCE(b.history, '[]')::jsonb || jsonb_build_array(jsonb_build_object("
    "'at', ?::text, 'event', 'delivered', 'attempt', b.attempts + 1, 'worker', ?::text)))::text "
    "WHERE b.conversation_id = ? AND b.seq = (SELECT seq FROM t) "
    f"RETURNING {', '.join('b.' + c for c in MSG_COLUMNS.split(', '))}, b.attempts) "
    f"SELECT (SELECT COUNT(*) FROM c), u.*, {DELIVERY_COMMIT} FROM (SELECT 1) AS one LEFT JOIN u ON true"
)
"""``claim`` on PostgreSQL in one statement (see :meth:`Bus._claim_pg`): check the conversation,
take the oldest ready task past any other claimer's locked row, lease it with a fresh attempt
token and record the delivery. It refuses (first column 0) when a lease in flight has run
out, so the step-by-step claim gives those back (or dead-letters them) first. It looks only
past this process's floors (memmesh.bus.hints): ready tasks from the seq it last claimed,
leases running out since it last found none had. The leased row is named by its whole
primary key, ``seq = (SELECT seq FROM t)``, never joined to ``t``: a join let the plan that
psycopg prepares once per connection (planned while the table was nearly empty) reach the
row through every message of the queue (a bitmap scan by conversation, filtered on seq),
thousands of rows per claim once the queue had run for a while (issue 24)."""
COMPLETE_PG = (
    "UPDATE bus_messages SET state = 'done', lease_token = NULL, lease_expires = NULL, result = ?, "
    "history = (COALESCE(history, '[]')::jsonb || jsonb_build_array(jsonb_build_object("
    "'at', ?::text, 'event', 'completed', 'attempt', attempts, 'worker', ?::text)))::text "
    "WHERE conversation_id = ? AND state = 'leased' AND lease_owner = ? AND lease_expires > ? "
    "AND encode(sha256(convert_to(COALESCE(lease_token, ''), 'UTF8')), 'hex') = ? "
    "AND EXISTS (SELECT 1 FROM bus_conversations WHERE id = ? AND token_hash = ? AND kind = 'queue' AND archived_at IS NULL "
    f"AND last_activity + timeout_s > ? AND strpos(participants, ?) > 0) RETURNING {TASK_COLUMNS}"
)
"""``complete`` on PostgreSQL in one statement (see :meth:`Bus._complete_pg`). The fencing
check is the WHERE clause: the task is still leased, to this worker, unexpired, by this
attempt (matched as the SHA-256 of its token, so timing says nothing of the token itself);
PostgreSQL re-checks it on a row another transaction changed meanwhile, so a late ack of a
lost lease updates nothing and the step-by-step path names why."""
COMPLETE_PG_SEQ = COMPLETE_PG.replace(
    "WHERE conversation_id = ? AND state = 'leased'", "WHERE conversation_id = ? AND seq = ? AND COALESCE(state, '') = 'leased'"
)
"""The same complete when this process handed out the attempt token and knows its task's seq:
the row is reached by primary key, not by looking through the leases in flight. The state
test is written ``COALESCE(state, '') = 'leased'`` (the same test: a NULL state is a chat
message, never leased) so that it does not match the predicate of the partial index of
leases: with ``state = 'leased'`` the planner took that index on a tie of estimates and
walked every lease of the last ``lease_s`` seconds (each completed one leaves an entry
until vacuum) instead of the one primary-key entry (issue 24)."""
COMPLETE_CLAIM_PG = CLAIM_PG.replace(
    "WITH c AS (SELECT 1 FROM bus_conversations WHERE id = ?",
    f"WITH d AS ({COMPLETE_PG_SEQ}), c AS (SELECT 1 FROM bus_conversations WHERE EXISTS (SELECT 1 FROM d) AND id = ?",
    1,
).replace(
    f"SELECT (SELECT COUNT(*) FROM c), u.*, {DELIVERY_COMMIT} FROM (SELECT 1) AS one LEFT JOIN u ON true",
    "SELECT d.*, (SELECT COUNT(*) FROM c), u.* FROM (SELECT 1) AS one LEFT JOIN d ON true LEFT JOIN u ON true",
)
"""``complete(claim_next=True)`` on PostgreSQL in one statement (see :meth:`Bus._complete_claim_pg`):
COMPLETE_PG_SEQ, then CLAIM_PG only when the complete changed its row. It commits as the
session commits (no DELIVERY_COMMIT): the complete is a durable ack, and the lease rides in
the same flush."""
COMPLETE_MANY_PG = (
    "WITH e AS (SELECT * FROM unnest(?::bigint[], ?::text[], ?::text[]) WITH ORDINALITY AS e(seq, token_sha, result, ord)) "
    "UPDATE bus_messages b SET state = 'done', lease_token = NULL, lease_expires = NULL, result = e.result, "
    "history = (COALESCE(b.history, '[]')::jsonb || jsonb_build_array(jsonb_build_object("
    "'at', ?::text, 'event', 'completed', 'attempt', b.attempts, 'worker', ?::text)))::text "
    "FROM e WHERE b.conversation_id = ? AND b.seq = ANY(?::bigint[]) AND b.seq = e.seq AND COALESCE(b.state, '') = 'leased' "
    "AND b.lease_owner = ? "
    "AND b.lease_expires > ? AND encode(sha256(convert_to(COALESCE(b.lease_token, ''), 'UTF8')), 'hex') = e.token_sha "
    "AND EXISTS (SELECT 1 FROM bus_conversations WHERE id = ? AND token_hash = ? AND kind = 'queue' AND archived_at IS NULL "
    "AND last_activity + timeout_s > ? AND strpos(participants, ?) > 0) "
    f"RETURNING e.ord, {', '.join('b.' + c for c in TASK_COLUMNS.split(', '))}"
)
"""``complete_many`` on PostgreSQL in one statement (inside the batch's transaction, its rows
locked already), for the entries whose task is known (its seq: this process leased it, or it
was found among the queue's leases): each row is fenced by the same WHERE clause as
COMPLETE_PG_SEQ, so an entry that fails any check is simply not returned (and the
step-by-step path names why). The rows are named by primary key (``seq = ANY(…)``) as well as joined to the entries: with the
join alone the prepared plan hashed every message of the queue (640 blocks per batch).
Returns each completed entry's position in the batch (1-based) and its task."""
COMPLETE_PG_QUICK = f"{COMPLETE_PG}, {DELIVERY_COMMIT}"
COMPLETE_PG_SEQ_QUICK = f"{COMPLETE_PG_SEQ}, {DELIVERY_COMMIT}"
COMPLETE_CLAIM_PG_QUICK = COMPLETE_CLAIM_PG.replace("u.* FROM (SELECT 1) AS one", f"u.*, {DELIVERY_COMMIT} FROM (SELECT 1) AS one", 1)
"""The completes as they run in a group commit whose transaction commits asynchronously (its
flush then waited for, see BusSql._write_group): each also selects DELIVERY_COMMIT, so the
group needs no ``SET LOCAL`` statement of its own. A trailing column the callers never read."""

QUEUE_CHECK = (
    "SELECT COUNT(*) FROM bus_conversations WHERE id = ? AND token_hash = ? AND kind = 'queue' AND archived_at IS NULL "
    "AND last_activity + timeout_s > ? AND instr(participants, ?) > 0"
)
"""SQLite: 1 when the token opens this live queue and the worker takes part (the checks of
Bus._queue as one expression; its participant test looks for the JSON-quoted name, which
holds no quote itself). It rides as a column in the statement a queue call runs anyway, so
the conversation is not read on its own; a 0 sends the call down the step-by-step path,
which names the reason."""
CLAIM_SQLITE = (
    f"SELECT ({QUEUE_CHECK}), t.* FROM (SELECT 1) AS one LEFT JOIN (SELECT {MSG_COLUMNS}, attempts, history FROM bus_messages "
    "WHERE conversation_id = ? AND state = 'ready' AND seq >= ? ORDER BY seq LIMIT 1) AS t"
)
"""SQLite's claim: the queue checks and the oldest ready task (from the ready floor) in one read."""
FENCED_SQLITE = (
    f"SELECT ({QUEUE_CHECK}), seq, attempts, lease_owner, lease_expires, history, id, lease_token FROM bus_messages "
    "WHERE conversation_id = ? AND seq = ? AND state = 'leased'"
)
"""SQLite's complete of a task this process leased: the queue checks and the leased row by key."""
SEND_SQLITE = (
    "UPDATE bus_conversations SET last_seq = last_seq + ?, last_activity = ? WHERE id = ? AND token_hash = ? "
    "AND archived_at IS NULL AND last_activity + timeout_s > ? AND instr(participants, ?) > 0 "
    "AND (? IS NULL OR (kind = 'chat' AND instr(participants, ?) > 0)) RETURNING last_seq, kind"
)
"""SQLite's send: check and number in one statement (no row: the step-by-step send names why)."""
LEASE_SQL = (
    "UPDATE bus_messages SET state = 'leased', attempts = ?, lease_owner = ?, lease_token = ?, lease_expires = ?, history = ? "
    "WHERE conversation_id = ? AND seq = ?"
)
"""A claim's lease of one task (the step-by-step claim; the one-statement claims lease in SQL)."""
LEASE_NEXT = "SELECT MIN(lease_expires) FROM bus_messages WHERE conversation_id = ? AND state = 'leased' AND lease_expires > ?"
"""When the first lease still in flight runs out (QueueHints.leases_known)."""


def append_event(history: str | None, now: float, event: str, attempt: int, worker: str) -> str:
    """A task's history (a JSON array as text) with one delivery event appended (``at``,
    ``event``, ``attempt``, ``worker``), without parsing it: every claim and complete adds
    one, and the history grows with each delivery. The event is written as ``json.dumps``
    writes its dict, without its encoder (~8 µs a call): the time is ISO digits, the event a
    fixed word, the attempt an int and the worker a checked name (see :func:`quoted`)."""
    text = (history or "[]").rstrip()
    added = f'{{"at": "{when(now).isoformat()}", "event": "{event}", "attempt": {int(attempt)}, "worker": {quoted(worker)}}}'
    return f"[{added}]" if text[:-1].strip() == "[" else f"{text[:-1]}, {added}]"


def quoted(agent: str) -> str:
    """A name :func:`check_agent_name` accepted, as a JSON string: what ``json.dumps`` gives,
    since such a name holds no character JSON escapes (no quote, backslash, control or
    non-ASCII character), without the encoder's call per statement."""
    return f'"{agent}"'


@dataclass(frozen=True)
class BusPolicy:
    """The bus rules that come from the ``[bus]`` settings (see config.py for each meaning)."""

    max_message_bytes: int = 65_536
    conversation_timeout_s: float = 10_800.0
    lease_s: float = 30.0
    max_deliveries: int = 5
    max_wait_s: float = 60.0
    max_long_polls: int = 16
    """Long-polls (``unread``/``claim`` with a wait) one process lets wait at once. Each holds a
    worker thread for up to ``max_wait_s``: unbounded, one key could park them all and stall
    every other request; past the bound a poll is told to retry (429) instead."""
    max_long_polls_per_key: int = 4
    """Of those, how many one caller (one API key; every keyless or local caller counts as one)
    may hold at once, so one key cannot take every slot and turn away everyone else's polls."""
    workers_status_file: Path | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def check_agent_name(agent: str, what: str = "agent", field: str | None = None) -> str:
    """An agent name as the bus accepts it: 1-128 letters, digits and ``_.:@-``. ``what``
    starts the error: the parameter that gave the name (its ``field``), unless ``field`` is
    given (``what="participants:"``, ``field="participants"``)."""
    if not isinstance(agent, str) or not AGENT_RE.fullmatch(agent.strip()):
        raise InvalidInputError(
            f"{what} {agent!r} is not a valid agent name: use 1-128 ASCII letters, digits and _ . : @ - (starting alphanumeric)",
            field=field or what,
        )
    return agent.strip()


class Bus:
    """Conversations, messages, cursors and task leases in the service's store."""

    def __init__(self, service: Host, policy: BusPolicy | None = None) -> None:
        self.service = service
        self.policy = policy or BusPolicy()
        self.sql = BusSql(service.store)
        self.notifier = Notifier(service.store, self.sql.postgres)
        self.notifier.on_sent = self._sent  # another process's send carries the counts too
        self._polls = threading.BoundedSemaphore(self.policy.max_long_polls)
        self._polls_lock = threading.Lock()
        self._polls_held: dict[str | None, int] = {}
        """Long-polls waiting now, per API key id (None: keyless and local callers)."""
        self._tickets_lock = threading.Lock()
        self._tickets: dict[str, builtins.list[Any]] = {}
        self._readers: dict[str, threading.Lock] = {}
        self._vouched: dict[tuple[str, str, str], float] = {}
        self.hints = QueueHints()
        """Per queue: [wake-up count, tickets left, earliest lease expiry, read at, read done at] (see _claimable)."""

    # -- helpers -----------------------------------------------------------------------------

    def _now(self) -> float:
        return self.service.clock().timestamp()

    def _hlc(self) -> str:
        """A message's stamp on the node's hybrid logical clock: later than every stamp this
        node issued or received, so a reply sorts after what it answers on every node."""
        return self.service.kernel.hlc.now()

    def _authorize(self, principal: Principal, role: str, agent: str | None = None) -> Principal:
        """The caller's role. Inside a conversation the token is the credential: an API key
        gates reaching the bus at all (reader to read, writer to post), and a participant
        name is trusted to whoever holds the token, as every participant shares it."""
        return authorize(principal, role)  # type: ignore[arg-type]

    @staticmethod
    def _token_hash(conversation_id: str, token: str) -> str:
        """The hash of a well-formed token (refusing an empty id or a malformed token first)."""
        if not isinstance(conversation_id, str) or not conversation_id.strip():
            raise InvalidInputError("conversation_id is empty: give the id `bus open` printed")
        if text_problem(conversation_id):  # a NUL or a lone surrogate: no conversation has it, nor can a driver take it
            shown = conversation_id.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
            raise NotFoundError(f"no conversation {shown} with this token: check the id and use the token `bus open` printed for it")
        presented = token.strip().lower() if isinstance(token, str) else None
        if presented is None or not TOKEN_RE.fullmatch(presented):
            raise ForbiddenError(
                f"the token for conversation {conversation_id} is malformed: it is the 64 hex characters `bus open` printed"
            )
        return hash_token(presented)

    def _conversation(self, rows: Rows, conversation_id: str, token: str) -> Row:
        """The conversation row after checking the token; NotFound when unknown."""
        presented = self._token_hash(conversation_id, token)
        row = rows.one(f"SELECT {CONV_COLUMNS}, token_hash FROM bus_conversations WHERE id = ?", (conversation_id,))
        # An unknown id and a wrong token get one answer, after the same work: a caller
        # without the token must not learn whether the conversation exists.
        matches = hmac.compare_digest(presented, row[-1] if row is not None else UNKNOWN_HASH)
        if row is None or not matches:
            raise NotFoundError(
                f"no conversation {conversation_id} with this token: check the id and use the token `bus open` printed for it"
            )
        return row[:-1]

    def _live(self, row: Row, now: float) -> None:
        """Refuse work in an archived conversation, or one idle past its timeout (which the
        next ``list`` archives)."""
        if row[8] is not None or self._expired(row, now):
            raise ForbiddenError(f"conversation {row[0]} is archived (idle for {row[7]:g} s): open a new conversation to go on")

    @staticmethod
    def _participant(row: Row, agent: str) -> None:
        participants = json.loads(row[3])
        if agent not in participants:
            raise ForbiddenError(f"agent {agent!r} is not a participant of conversation {row[0]} (participants: {', '.join(participants)})")

    def _expired(self, row: Row, now: float) -> bool:
        return row[8] is None and now - row[6] >= row[7]

    @staticmethod
    def _conv_model(row: Row) -> Conversation:
        return Conversation(
            id=row[0],
            kind=row[1],
            topic=row[2],
            participants=json.loads(row[3]),
            created_by=row[4],
            created_at=when(row[5]),
            last_activity_at=when(row[6]),
            expires_at=when(row[6] + row[7]),
            archived_at=when(row[8]),
            messages=int(row[9]),
        )

    @staticmethod
    def _message(row: Row) -> BusMessage:
        return BusMessage(
            id=row[0], conversation_id=row[1], seq=int(row[2]), sender=row[3], to=row[4], body=row[5], created_at=when(row[6])
        )

    def _wait(self, wait_s: float | None) -> float:
        if wait_s is None:
            return 0.0
        if not isinstance(wait_s, int | float) or isinstance(wait_s, bool) or not wait_s >= 0:  # NaN too
            raise InvalidInputError(f"wait must be a number of seconds ≥ 0 (got {wait_s!r})", usage=True, field="wait")
        if wait_s > self.policy.max_wait_s:
            raise InvalidInputError(
                f"wait {wait_s:g} s is longer than the longest long-poll, {self.policy.max_wait_s:g} s (bus.max_wait_s)", field="wait"
            )
        return float(wait_s)

    @contextmanager
    def _long_poll(self, principal: Principal) -> Iterator[None]:
        """A waiting slot for one long-poll, or 429 when the caller's key already holds its
        share (bus.max_long_polls_per_key) or every slot of the process is taken.

        Callers without a key are held only to the process's total: they are the embedding
        program itself (its worker threads) or, on a server that requires no key, local
        callers who are admins already. The share exists to stop one key holder from
        turning every other agent's long-polls away."""
        key = principal.key_id
        with self._polls_lock:
            if not self._polls.acquire(blocking=False):
                raise RateLimitedError(
                    f"{self.policy.max_long_polls} long-polls already wait in this server (bus.max_long_polls): "
                    "retry in a second, or ask without a wait",
                    details={"retry_after": 1},
                )
            held = self._polls_held.get(key, 0)
            if key is not None and held >= self.policy.max_long_polls_per_key:
                self._polls.release()
                raise RateLimitedError(
                    f"this key already has {held} long-polls waiting, the most one key may hold (bus.max_long_polls_per_key): "
                    "retry when one of them returns, or ask without a wait",
                    details={"retry_after": 1},
                )
            self._polls_held[key] = held + 1
        try:
            yield
        finally:
            with self._polls_lock:
                left = self._polls_held[key] - 1
                if left:
                    self._polls_held[key] = left
                else:
                    del self._polls_held[key]
            self._polls.release()

    def end_waits(self) -> int | None:
        """The process is stopping: every long-poll (``unread`` and ``claim`` with a wait),
        waiting now or asked later, answers at once as an empty poll does at its timeout,
        after one last look (a message or task already there is still delivered: its caller
        is there to take it). Sends, acks, completes and every other write go on as ever.
        Returns how many long-polls were waiting, or None when the waits had already ended."""
        with self._polls_lock:
            waiting = sum(self._polls_held.values())
        return waiting if self.notifier.end_waits() else None

    @staticmethod
    def _limit(limit: int) -> int:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
            raise InvalidInputError(f"limit must be between 1 and {MAX_PAGE} (got {limit!r})", usage=True, field="limit")
        return limit

    # -- conversations -----------------------------------------------------------------------

    def open(
        self,
        participants: Sequence[str],
        *,
        principal: Principal,
        kind: ConversationKind = "chat",
        topic: str | None = None,
        timeout_s: float | None = None,
        created_by: str | None = None,
    ) -> OpenedConversation:
        """A new conversation and its token (returned once; only its hash is kept)."""
        who = self._authorize(principal, "writer", created_by)
        if isinstance(participants, str):
            participants = [p for p in participants.split(",")]
        names = (
            [check_agent_name(p, "participants:", field="participants") for p in participants if isinstance(p, str) and p.strip()]
            if participants
            else []
        )
        if len(names) != len(list(participants or [])):
            raise InvalidInputError("participants has an empty name: each participant is an agent name", field="participants")
        twice = sorted(n for n, times in Counter(names).items() if times > 1)  # one pass: the list is not yet capped
        if twice:  # merging them silently would hide a typo for another agent's name
            raise InvalidInputError(
                f"participants names {', '.join(twice)} more than once: name each agent once", usage=True, field="participants"
            )
        if not names:
            raise InvalidInputError(
                "participants names nobody: a conversation needs at least one participant", usage=True, field="participants"
            )
        if len(names) > MAX_PARTICIPANTS:
            raise InvalidInputError(f"participants names {len(names)} agents; the limit is {MAX_PARTICIPANTS}", field="participants")
        if kind not in ("chat", "queue"):
            raise InvalidInputError(f"kind must be chat or queue (got {kind!r})", usage=True, field="kind")
        if topic is not None and (not isinstance(topic, str) or len(topic) > 1000):
            raise InvalidInputError("topic must be text of at most 1000 characters", field="topic")
        check_text(topic, "topic")
        timeout = self.policy.conversation_timeout_s if timeout_s is None else timeout_s
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 < timeout <= MAX_TIMEOUT_S:
            raise InvalidInputError(
                f"timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:.0f} (100 years) (got {timeout_s!r})",
                field="timeout",
            )
        if created_by is not None:
            created_by = check_agent_name(created_by, "created_by")
            check_agent(who, created_by)  # a key opens conversations as its own agent, as it writes memories
        else:
            created_by = who.agent_id  # left out: the key's agent, as for a memory's agent_id (None without a key)
        token = secrets.token_hex(32)
        now = self._now()
        conv_id = new_id()
        with self.sql.write() as rows:
            rows.run(
                "INSERT INTO bus_conversations (id, kind, topic, participants, token_hash, created_by, created_at, last_activity, "
                "timeout_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conv_id, kind, topic, json.dumps(names), hash_token(token), created_by, now, now, float(timeout)),
            )
        row = (conv_id, kind, topic, json.dumps(names), created_by, now, now, float(timeout), None, 0)
        return OpenedConversation(**self._conv_model(row).model_dump(), conversation_id=conv_id, token=token)

    def list(
        self, *, principal: Principal, archived: bool = False, agent: str | None = None, limit: int = 100
    ) -> builtins.list[Conversation]:
        """Conversations, newest activity first: open ones, or the archived ones (archived by
        hand, or idle past their timeout: such a one shows ``archived_at`` = the moment it
        timed out). Tokens are never listed. A key limited to some namespaces lists only
        conversations its agent takes part in or opened (a coordinator opens a queue for its
        workers without being one of them).

        One read, filtered in SQL: listing writes nothing (a conversation's archival is a
        fact of its last activity and timeout, worked out when read) and fetches only the
        page it returns, whoever asks."""
        who = self._authorize(principal, "reader", agent)
        limit = self._limit(limit)
        if agent is not None:
            agent = check_agent_name(agent)
        now = self._now()
        timed_out = "last_activity + timeout_s <= ?"
        where = [f"(archived_at IS NOT NULL OR {timed_out})" if archived else f"archived_at IS NULL AND NOT {timed_out}"]
        params: builtins.list[Any] = [now]
        if agent is not None:
            where.append(self.sql.contains("participants"))
            params.append(quoted(agent))  # names hold no quote nor backslash: '"name"' occurs only as that element
        if who.prefixes() is not None:  # a namespace-limited key sees only its own agent's conversations
            if who.agent_id is None:
                return []
            where.append(f"({self.sql.contains('participants')} OR created_by = ?)")
            params.extend([json.dumps(who.agent_id), who.agent_id])
        timed_out_at = "COALESCE(archived_at, CASE WHEN last_activity + timeout_s <= ? THEN last_activity + timeout_s END)"
        columns = CONV_COLUMNS.replace("archived_at", timed_out_at)
        with self.sql.read() as rows:
            found = rows.all(
                f"SELECT {columns} FROM bus_conversations WHERE {' AND '.join(where)} ORDER BY last_activity DESC, id LIMIT ?",
                (now, *params, limit),
            )
        return [self._conv_model(r) for r in found]

    # -- messages ----------------------------------------------------------------------------

    def _check_body(self, body: str, what: str = "message") -> None:
        """A message body (or, ``what`` = "result", a task's result): text, storable, within bus.max_message_bytes."""
        if not isinstance(body, str) or not body.strip():
            raise InvalidInputError(
                f"{what} is empty: give the text to send" if what == "message" else f"{what} is empty: give text or leave it out"
            )
        check_text(body, what)  # NUL or a lone surrogate: PostgreSQL (and UTF-8) refuse them
        size = len(body.encode("utf-8"))
        if size > self.policy.max_message_bytes:
            raise ContentTooLargeError(f"{what} is {size} bytes; the limit is {self.policy.max_message_bytes} (bus.max_message_bytes)")

    def send(self, conversation_id: str, body: str, *, sender: str, token: str, principal: Principal, to: str | None = None) -> BusMessage:
        """Post a message (to everyone else, or in a chat only to ``to``: a queue refuses a recipient); numbered in conversation order."""
        return self.send_many(conversation_id, [body], sender=sender, token=token, principal=principal, to=to)[0]

    def send_many(
        self, conversation_id: str, bodies: Sequence[str], *, sender: str, token: str, principal: Principal, to: str | None = None
    ) -> builtins.list[BusMessage]:
        """Post several messages in one write (all or nothing), numbered consecutively."""
        sender = check_agent_name(sender, "sender")
        self._authorize(principal, "writer", sender)
        bodies = list(bodies)
        if not bodies:
            raise InvalidInputError("no messages to send")
        if len(bodies) > MAX_BATCH:
            raise InvalidInputError(f"a batch sends at most {MAX_BATCH} messages (got {len(bodies)}): split it")
        for body in bodies:
            self._check_body(body)
        if to is not None:
            to = check_agent_name(to, "to:", field="to")
        now = self._now()
        if self.sql.postgres:
            fast = self._send_pg(conversation_id, bodies, sender, token, to, now)
            if fast is not None:
                self.notifier.notify(conversation_id, len(bodies), functools.partial(self._sent, conversation_id, len(bodies)))
                return fast
        # SQLite, or PostgreSQL explaining why its one-statement send stored nothing
        token_hash = self._token_hash(conversation_id, token)
        quoted_to = json.dumps(to) if to is not None else None
        with self.sql.write() as rows:
            # SQLite checks and numbers in one statement; nothing changed when it refused,
            # and the step-by-step checks then name the reason
            top = (
                None
                if rows.postgres
                else rows.one(SEND_SQLITE, (len(bodies), now, conversation_id, token_hash, now, quoted(sender), quoted_to, quoted_to))
            )
            if top is None:
                row = self._conversation(rows, conversation_id, token)
                self._live(row, now)
                self._participant(row, sender)
                if to is not None and row[1] == "queue":
                    raise InvalidInputError(
                        f"conversation {conversation_id} is a task queue: each task goes to whichever worker claims it, "
                        "so it cannot be addressed to one agent; send it without a recipient (or open a queue for that worker)"
                    )
                if to is not None and to not in json.loads(row[3]):
                    raise InvalidInputError(f"recipient {to!r} is not a participant of conversation {conversation_id}")
                top = rows.one(
                    "UPDATE bus_conversations SET last_seq = last_seq + ?, last_activity = ? WHERE id = ? RETURNING last_seq, kind",
                    (len(bodies), now, conversation_id),
                )
            first = int(top[0]) - len(bodies) + 1  # type: ignore[index]
            state = "ready" if top[1] == "queue" else None  # type: ignore[index]
            history = "[]" if state else None
            made = []
            for offset, body in enumerate(bodies):
                msg = (new_id(), conversation_id, first + offset, sender, to, body, now)
                made.append(msg)
            origin = self.service.node_id
            if rows.postgres:
                rows.conn.cursor().executemany(
                    "INSERT INTO bus_messages (id, conversation_id, seq, sender, recipient, body, created_at, state, history, origin, hlc) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [(*m, state, history, origin, self._hlc()) for m in made],
                )
                rows.run(f"SELECT pg_notify('{CHANNEL}', ?)", (self.notifier.payload(conversation_id),))
            else:
                rows.conn.executemany(
                    "INSERT INTO bus_messages (id, conversation_id, seq, sender, recipient, body, created_at, state, history, origin, hlc) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*m, state, history, origin, self._hlc()) for m in made],
                )
        self.notifier.notify(conversation_id, len(bodies), functools.partial(self._sent, conversation_id, len(bodies)))
        return [self._message(m) for m in made]

    def _grouped(
        self, sql: str, durable: bool, conversation_id: str, params: Sequence[Any], quick: str | None = None, seq: int | None = None
    ) -> Row | None:
        """One self-contained statement that locks no conversation row (a claim, a complete),
        run through the group commit (BusSql.grouped), or alone as it always ran. The group's
        transaction decides how it commits: where it commits as the session does, the
        statement runs without its DELIVERY_COMMIT column (the last one), so a claim cannot
        make a durable group-mate's commit asynchronous; where it commits asynchronously,
        ``quick`` (the statement with that column; ``sql`` itself when it has one) sets it.
        ``seq``: the task row a complete locks, when known (the group locks rows in seq order)."""
        in_group = sql.replace(f", {DELIVERY_COMMIT}", "")
        fast = quick if quick is not None else sql
        lock = (0, conversation_id, seq or 0)
        return self.sql.grouped(Statement(in_group, params, durable, lock, lambda rows: rows.one(sql, params), fast))

    def _send_pg(
        self, conversation_id: str, bodies: builtins.list[str], sender: str, token: str, to: str | None, now: float
    ) -> builtins.list[BusMessage] | None:
        """The whole send as ONE statement (PostgreSQL): check the token, the conversation is
        live and both names take part; number the messages; insert them; notify. None when
        the checks refused (nothing was written): the caller then runs the step-by-step send,
        which names the reason. One round trip, where the step-by-step send takes seven, and
        a second one (FLUSH_PG) that waits for durability after the row lock is released:
        the caller is answered only once the message is durable. A reader may see it a few
        milliseconds before that; should the server crash in between, both the message and
        that reader's delivery mark are lost together and the sender, which got an error,
        sends again. Concurrent sends, claims and completes of this process's threads share
        one transaction and one flush (BusSql.grouped); a send that comes alone runs as
        described."""
        ids = [new_id() for _ in bodies]
        params = (
            len(bodies),
            now,
            conversation_id,
            self._token_hash(conversation_id, token),
            now,
            quoted(sender),
            to,
            json.dumps(to) if to is not None else None,
            conversation_id,
            len(bodies),
            sender,
            to,
            now,
            self.service.node_id,
            ids,
            bodies,
            [self._hlc() for _ in bodies],
            self.notifier.payload(conversation_id, len(bodies)),
        )

        def alone(rows: Rows) -> Row | None:
            # the flush rides behind the send in the same round trip (it runs even when the
            # send refused: one WAL record, harmless); without a flush wait, one plain statement
            return rows.one_then(SEND_PG, params, FLUSH_PG) if self.sql.flush_wanted(rows) else rows.one(SEND_PG_SYNC, params)

        top = self.sql.grouped(Statement(SEND_PG_SYNC, params, True, (1, conversation_id, 0), alone, SEND_PG))
        if top is None:
            return None
        first = int(top[0]) - len(bodies) + 1
        return [
            BusMessage(id=i, conversation_id=conversation_id, seq=first + n, sender=sender, to=to, body=b, created_at=when(now))
            for n, (i, b) in enumerate(zip(ids, bodies, strict=True))
        ]

    def transcript(
        self, conversation_id: str, *, token: str, principal: Principal, after: str | None = None, limit: int = 100
    ) -> Transcript:
        """The conversation's messages in mesh order, (hlc, node, id): the same on every node
        once they hold the same messages, whichever node each was sent on. Reads only: no
        cursor moves (``unread``/``ack`` deliver in this node's arrival order)."""
        self._authorize(principal, "reader")
        limit = self._limit(limit)
        now = self._now()
        key = "(COALESCE(hlc, ''), COALESCE(origin, ''), id)"
        with self.sql.read() as rows:
            row = self._conversation(rows, conversation_id, token)
            self._live(row, now)
            where, params = "conversation_id = ?", [conversation_id]
            if after is not None:
                check_text(after, "after")  # a NUL or a lone surrogate: no message id has it, nor can a driver take it
                mark = rows.one(
                    "SELECT COALESCE(hlc, ''), COALESCE(origin, ''), id FROM bus_messages WHERE id = ? AND conversation_id = ?",
                    (after, conversation_id),
                )
                if mark is None:
                    raise InvalidInputError(
                        f"after: no message {after!r} in conversation {conversation_id}: give the id of a message listed before"
                    )
                where, params = f"{where} AND {key} > (?, ?, ?)", [*params, *mark]
            found = rows.all(
                f"SELECT {MSG_COLUMNS}, origin, hlc FROM bus_messages WHERE {where} ORDER BY {key[1:-1]} LIMIT ?",
                (*params, limit + 1),
            )
        messages = [TranscriptMessage(**self._message(r[:7]).model_dump(), node=r[7], hlc=r[8]) for r in found[:limit]]
        return Transcript(conversation_id=conversation_id, messages=messages, more=len(found) > limit)

    def apply_replicated(self, conn: Any, item: dict[str, Any]) -> bool:
        """Take in a bus object a mesh peer sent, inside the replica's write on ``conn``
        (see :mod:`memmesh.bus.replicated`); True when it was new here."""
        return apply_item(Rows(conn, self.sql.postgres), item, max_message_bytes=self.policy.max_message_bytes)

    def replicated(self) -> None:
        """Messages from a peer committed: wake this process's long-polls (and, on PostgreSQL,
        every process's, like a send)."""
        if self.sql.postgres:
            with self.sql.statement() as rows:
                rows.run(f"SELECT pg_notify('{CHANNEL}', ?)", ("",))
        self.notifier.notify()

    def _visible(self) -> str:
        """Messages an agent receives: not its own, and addressed to everyone or to it."""
        return "conversation_id = ? AND seq > ? AND sender <> ? AND (recipient IS NULL OR recipient = ?)"

    def unread(
        self,
        conversation_id: str,
        *,
        agent: str,
        token: str,
        principal: Principal,
        limit: int = 100,
        wait_s: float | None = None,
        abandoned: Abandoned | None = None,
    ) -> Unread:
        """The agent's unacknowledged messages, oldest first. With ``wait_s``, an empty answer
        waits up to that long for a message (long-poll) instead of returning at once.

        Reading marks the messages delivered (so ``ack --all`` covers exactly them), and
        returns them again until they are acked: a reader that crashes before its ack loses
        nothing. A face sets ``abandoned`` when its caller goes away: the wait ends at once."""
        agent = check_agent_name(agent)
        self._authorize(principal, "reader", agent)
        limit = self._limit(limit)
        wait = self._wait(wait_s)
        if self.sql.postgres:
            fast = self._unread_pg(conversation_id, agent, token, limit)
            if fast is not None and (fast.messages or wait <= 0):
                return fast
        with self.sql.read() as rows:
            row = self._conversation(rows, conversation_id, token)
        self._participant(row, agent)
        if row[1] == "queue":
            raise InvalidInputError(f"conversation {conversation_id} is a task queue: workers take its tasks with `bus claim`")
        self._live(row, self._now())

        cursor = "COALESCE((SELECT acked_seq FROM bus_cursors WHERE conversation_id = ? AND agent = ?), 0)"

        def look() -> Unread:
            # one query: the cursor is read inside it (each row carries it); only an empty
            # answer needs a second look for the cursor alone
            with self.sql.read() as rows:
                found = rows.all(
                    f"SELECT {MSG_COLUMNS}, {cursor} FROM bus_messages WHERE {self._visible().replace('seq > ?', f'seq > {cursor}')} "
                    "ORDER BY seq LIMIT ?",
                    (conversation_id, agent, conversation_id, conversation_id, agent, agent, agent, limit + 1),
                )
                if found:
                    acked = int(found[0][7])
                else:
                    cur = rows.one(f"SELECT {cursor}", (conversation_id, agent))
                    acked = int(cur[0]) if cur else 0
            messages = [self._message(r[:7]) for r in found[:limit]]
            return Unread(conversation_id=conversation_id, agent=agent, messages=messages, acked_seq=acked, more=len(found) > limit)

        answer = look()
        if not answer.messages and wait > 0:
            with self._long_poll(principal):
                found = self.notifier.wait_for(
                    lambda: (lambda got: got if got.messages else None)(look()), wait, abandoned, conversation_id
                )
            if gone(abandoned):
                return answer  # nobody takes it: nothing is marked delivered
            check_still_keyed(self.service.store, principal)  # a key revoked while it waited gets nothing
            answer = found or look()
        if answer.messages:
            self._delivered(conversation_id, agent, answer.messages[-1].seq)
        return answer

    def _unread_pg(self, conversation_id: str, agent: str, token: str, limit: int) -> Unread | None:
        """``unread`` without a wait as ONE statement (PostgreSQL): check the conversation,
        read the cursor and the messages, and raise the delivered mark to the last one
        returned. None when the checks refused (nothing changed): the step-by-step read then
        names the reason."""
        now = self._now()
        with self.sql.statement() as rows:
            found = rows.all(
                UNREAD_PG,
                (
                    conversation_id, self._token_hash(conversation_id, token), now, quoted(agent),
                    conversation_id, agent,
                    conversation_id, agent, agent, limit + 1,
                    conversation_id, agent, limit,
                ),
            )  # fmt: skip
        if not found:
            return None
        listed = [r[1:] for r in found if r[1] is not None]
        messages = [self._message(r) for r in listed[:limit]]
        return Unread(conversation_id=conversation_id, agent=agent, messages=messages, acked_seq=int(found[0][0]), more=len(listed) > limit)

    def _delivered(self, conversation_id: str, agent: str, seq: int) -> None:
        """Raise the agent's delivered mark to ``seq`` (never lowering it): one upsert, which
        on PostgreSQL runs as its own autocommit statement."""
        sql = (
            "INSERT INTO bus_cursors (conversation_id, agent, delivered_seq, acked_seq) VALUES (?, ?, ?, 0) "
            "ON CONFLICT (conversation_id, agent) DO UPDATE SET delivered_seq = excluded.delivered_seq "
            "WHERE bus_cursors.delivered_seq < excluded.delivered_seq"
        )
        with self.sql.statement() if self.sql.postgres else self.sql.write() as rows:
            rows.run(sql, (conversation_id, agent, seq))

    def ack(
        self,
        conversation_id: str,
        *,
        agent: str,
        token: str,
        principal: Principal,
        ids: Sequence[str] = (),
        all: bool = False,
    ) -> AckResult:
        """Mark the agent's messages read: every delivered one (``all``) or up to and including
        the given ids. Only messages delivered to this agent may be acked; the cursor never
        moves back (acking an older id again changes nothing)."""
        agent = check_agent_name(agent)
        self._authorize(principal, "writer", agent)
        ids = list(dict.fromkeys(i.strip() for i in ids if isinstance(i, str) and i.strip()))  # each id is looked up once
        if len(ids) > MAX_PAGE:
            raise InvalidInputError(
                f"an ack names at most {MAX_PAGE} message ids (got {len(ids)}): ack the last one, it covers the earlier ones"
            )
        if all and ids:
            raise InvalidInputError("ack either the given message ids or every message unread has returned, not both", usage=True)
        if not all and not ids:
            raise InvalidInputError(
                "say what to ack: message ids (each and everything before it), or every message unread has returned",
                retry_with={"all": [True]},
                usage=True,
            )
        now = self._now()
        if all and self.sql.postgres:
            fast = self._ack_all_pg(conversation_id, agent, token, now)
            if fast is not None:
                return fast
        with self.sql.write() as rows:
            row = self._conversation(rows, conversation_id, token)
            self._live(row, now)
            self._participant(row, agent)
            if row[1] == "queue":
                raise InvalidInputError(
                    f"conversation {conversation_id} is a task queue: its tasks are not acked; "
                    "finish one with `bus complete` (or give it back with `bus fail`)"
                )
            cur = rows.one(
                "SELECT delivered_seq, acked_seq FROM bus_cursors WHERE conversation_id = ? AND agent = ?", (conversation_id, agent)
            )
            delivered, acked = (int(cur[0]), int(cur[1])) if cur else (0, 0)
            target = delivered if all else max(self._ackable(rows, conversation_id, agent, ids, delivered))
            if target <= acked:
                return AckResult(conversation_id=conversation_id, agent=agent, acked_seq=acked, acked=0)
            count = rows.one(
                "SELECT COUNT(*) FROM bus_messages WHERE conversation_id = ? AND seq > ? AND seq <= ? AND sender <> ? "
                "AND (recipient IS NULL OR recipient = ?)",
                (conversation_id, acked, target, agent, agent),
            )
            rows.run(
                "UPDATE bus_cursors SET acked_seq = ? WHERE conversation_id = ? AND agent = ? AND acked_seq < ?",
                (target, conversation_id, agent, target),
            )
        return AckResult(conversation_id=conversation_id, agent=agent, acked_seq=target, acked=int(count[0]))  # type: ignore[index]

    def _ack_all_pg(self, conversation_id: str, agent: str, token: str, now: float) -> AckResult | None:
        """``ack --all`` as ONE statement (PostgreSQL); None when the conversation checks
        refused (nothing changed): the step-by-step ack then names the reason."""
        with self.sql.statement() as rows:
            got = rows.one(
                ACK_ALL_PG,
                (
                    conversation_id,
                    self._token_hash(conversation_id, token),
                    now,
                    quoted(agent),
                    conversation_id,
                    agent,
                    conversation_id,
                    agent,
                    conversation_id,
                    agent,
                    agent,
                ),
            )
        if got is None or not got[0]:
            return None
        if got[2] is None:  # nothing new delivered since the last ack
            return AckResult(conversation_id=conversation_id, agent=agent, acked_seq=int(got[1] or 0), acked=0)
        return AckResult(conversation_id=conversation_id, agent=agent, acked_seq=int(got[2]), acked=int(got[3]))

    @staticmethod
    def _ackable(rows: Rows, conversation_id: str, agent: str, ids: Sequence[str], delivered: int) -> builtins.list[int]:
        """The sequence numbers of ``ids``, each checked to be a message delivered to ``agent``."""
        seqs = []
        for message_id in ids:
            found = rows.one("SELECT seq, sender, recipient, conversation_id FROM bus_messages WHERE id = ?", (message_id,))
            if found is None or found[3] != conversation_id:
                raise NotFoundError(f"no message {message_id} in conversation {conversation_id}")
            seq, sender, recipient = int(found[0]), found[1], found[2]
            if sender == agent:
                raise ForbiddenError(f"message {message_id} was sent by {agent} itself: an agent acks only messages delivered to it")
            if recipient is not None and recipient != agent:
                raise ForbiddenError(f"message {message_id} is addressed to {recipient}, not {agent}: an agent acks only its own messages")
            if seq > delivered:
                raise ForbiddenError(f"message {message_id} has not been delivered to {agent} yet: read it with unread before acking it")
            seqs.append(seq)
        return seqs

    # -- task queues ---------------------------------------------------------------------------

    def _lease(self, lease_s: float | None) -> float:
        lease = self.policy.lease_s if lease_s is None else lease_s
        if not isinstance(lease, int | float) or isinstance(lease, bool) or not 0 < lease <= 86_400:
            raise InvalidInputError(
                f"lease must be above 0 and at most 86400 seconds (one day) (got {lease_s!r})", usage=True, field="lease"
            )
        return float(lease)

    def _queue(self, rows: Rows, conversation_id: str, token: str, worker: str, now: float) -> Row:
        row = self._conversation(rows, conversation_id, token)
        self._live(row, now)
        self._participant(row, worker)
        if row[1] != "queue":
            raise InvalidInputError(f"conversation {conversation_id} is a chat, not a task queue: read it with unread")
        return row

    def _requeue_expired(self, rows: Rows, conversation_id: str, now: float, after: float = NO_LEASE_FLOOR) -> None:
        """Tasks whose lease ran out go back to the queue, or to the dead letters after
        ``max_deliveries`` deliveries (looking only at leases running out after ``after``)."""
        stale = rows.all(
            "SELECT seq, attempts, lease_owner, history FROM bus_messages "
            "WHERE conversation_id = ? AND state = 'leased' AND lease_expires <= ? AND lease_expires > ?" + rows.skip_locked,
            (conversation_id, now, after),
        )
        for seq, attempts, owner, history in stale:
            self._give_back(rows, conversation_id, seq, attempts, history, now, f"lease expired (worker {owner} sent no heartbeat)")
        if stale:
            self.hints.given_back(conversation_id)

    def _give_back(self, rows: Rows, conversation_id: str, seq: int, attempts: int, history: str | None, now: float, reason: str) -> str:
        events = json.loads(history or "[]")
        events.append({"at": when(now).isoformat(), "event": "returned", "attempt": attempts, "reason": reason})
        dead = attempts >= self.policy.max_deliveries
        if dead:
            events.append({"at": when(now).isoformat(), "event": "dead_letter", "reason": f"{attempts} deliveries: {reason}"})
        rows.run(
            "UPDATE bus_messages SET state = ?, lease_owner = NULL, lease_token = NULL, lease_expires = NULL, history = ?, "
            "dead_reason = ? WHERE conversation_id = ? AND seq = ?",
            (
                "dead" if dead else "ready",
                json.dumps(events),
                f"delivered {attempts} times; last: {reason}" if dead else None,
                conversation_id,
                seq,
            ),
        )
        return "dead" if dead else "ready"

    def claim(
        self,
        conversation_id: str,
        *,
        worker: str,
        token: str,
        principal: Principal,
        lease_s: float | None = None,
        wait_s: float | None = None,
        abandoned: Abandoned | None = None,
    ) -> Delivery | None:
        """Lease the oldest ready task to ``worker`` (None when the queue stays empty for
        ``wait_s``). The delivery's attempt token fences every later call about it.

        A face sets ``abandoned`` when its caller goes away: the wait ends at once with None
        and takes no task for nobody: a claim already running when it is set (blocked on a
        lock, say) gives what it leased back at once (a delivery, as a failed attempt is);
        only a task handed to the face just before its caller left waits out its lease."""
        got = self._claim(conversation_id, worker, token, principal, lease_s, wait_s, abandoned, 1)
        return got[0] if got else None

    def claim_many(
        self,
        conversation_id: str,
        *,
        worker: str,
        token: str,
        principal: Principal,
        limit: int = 10,
        lease_s: float | None = None,
        wait_s: float | None = None,
        abandoned: Abandoned | None = None,
    ) -> builtins.list[Delivery]:
        """Lease up to ``limit`` of the oldest ready tasks to ``worker`` in one write (like
        SQS's ReceiveMessage with MaxNumberOfMessages): each delivery has its own attempt
        token and lease, and is completed, failed or lost on its own. ``limit`` 1 runs the
        one-task claim's paths, so a face offering a count calls this alone. With ``wait_s`` an
        empty queue waits for a task, then answers with what is ready (at least one); an
        empty list when none came."""
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_BATCH:
            raise InvalidInputError(f"limit must be between 1 and {MAX_BATCH} tasks per claim (got {limit!r})", usage=True, field="limit")
        return self._claim(conversation_id, worker, token, principal, lease_s, wait_s, abandoned, limit)

    def _claim(
        self,
        conversation_id: str,
        worker: str,
        token: str,
        principal: Principal,
        lease_s: float | None,
        wait_s: float | None,
        abandoned: Abandoned | None,
        limit: int,
    ) -> builtins.list[Delivery]:
        """claim and claim_many: one try, then (with a wait) sleep until a task may be ready."""
        worker = check_agent_name(worker, "worker")
        self._authorize(principal, "writer", worker)
        lease = self._lease(lease_s)
        wait = self._wait(wait_s)
        deadline = time.monotonic() + wait
        caller = (conversation_id, self._token_hash(conversation_id, token), worker)
        skipped = wait > 0 and self._known_empty(caller)
        if gone(abandoned):  # the caller left before the first try (e.g. while its call queued for a thread)
            return []
        if not skipped:
            generation, started = self.notifier.generation, time.monotonic()
            got = self._unclaimed(
                conversation_id, worker, token, principal, self._take(conversation_id, worker, token, lease, limit, caller[1]), abandoned
            )
            self._vouch(caller)
            if got:
                self._taken(conversation_id, generation, started)
            if got or wait <= 0:
                return got
        with self._long_poll(principal), self.notifier.waiting(conversation_id, queue=True, abandoned=abandoned) as waiter:
            # Registered before the first look, so a send after it wakes this claim (or another
            # waiting one: a send of n tasks wakes n waiting claims, see Notifier.notify); the
            # looks share the current wake-up's count (one read for the waiters it woke).
            seen: builtins.list[float | None] = [None]
            woken: builtins.list[int] = [0]

            def check() -> bool:
                woken[0] = self.notifier.generation
                ready, seen[0] = self._claimable(conversation_id)
                return ready

            def take() -> builtins.list[Delivery]:
                before = waiter.claiming()
                taken = self._take(conversation_id, worker, token, lease, limit, caller[1])
                got = self._unclaimed(conversation_id, worker, token, principal, taken, abandoned)
                waiter.claimed(before, len(got), limit)
                return got

            ready = waiter.look(check)
            while True:
                expiry, generation = seen[0], woken[0]
                if gone(abandoned):
                    return []  # a task found for nobody: the waiter hands its wake-up on as it leaves
                check_still_keyed(self.service.store, principal)  # a key revoked while it waited takes no task
                if ready or (expiry is not None and expiry <= self._now()):
                    got = take()
                    if got:
                        return got
                    self._drained(conversation_id, generation)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.notifier.ending:  # timed out, or the process is stopping (end_waits)
                    # a wait that skipped the first claim ends with one: whatever changed
                    # meanwhile (the conversation archived, a task) is answered as ever
                    if not skipped or gone(abandoned):
                        return []
                    return take()
                # Sleep until a task may be claimable: a send or a give-back (notified), or the
                # earliest lease running out (nobody announces that, so wake for it).
                step = remaining if expiry is None else min(remaining, max(0.005, expiry - self._now()))
                ready = waiter.wait(check, step)

    def _unclaimed(
        self, conversation_id: str, worker: str, token: str, principal: Principal, got: builtins.list[Delivery], abandoned: Abandoned | None
    ) -> builtins.list[Delivery]:
        """``got``, unless the caller went away while the claim ran (its thread blocked on a
        lock or a busy connection): then nobody will work on those tasks, and they go back to
        the queue at once instead of when their leases run out."""
        if not got or not gone(abandoned):
            return got
        for delivery in got:
            with suppress(MemmeshError):  # a task another worker took meanwhile is not ours to give back
                self.fail(
                    conversation_id,
                    delivery.attempt_token,
                    worker=worker,
                    token=token,
                    principal=principal,
                    reason="the claiming client went away before it received the task",
                )
        return []

    def _vouch(self, caller: tuple[str, str, str]) -> None:
        """A claim by ``caller`` (conversation, token hash, worker) passed every check just now."""
        with self._tickets_lock:
            if len(self._vouched) > 1000:
                self._vouched.clear()
            self._vouched[caller] = time.monotonic()

    def _drained(self, conversation_id: str, generation: int) -> None:
        """A claim made on the count of wake-up ``generation`` found nothing (the tasks counted
        were taken meanwhile, e.g. by workers completing with ``claim_next``): the tickets
        still held for that count would only buy more claims that find nothing. A later
        wake-up counts afresh. A count whose earliest lease expiry has passed is dropped
        whole: that lease was given back (by this claim or another), and a waiter trusting
        the stale expiry would claim again every few milliseconds until the count lapsed."""
        with self._tickets_lock:
            held = self._tickets.get(conversation_id)
            if held is not None and held[2] is not None and held[2] <= self._now():
                del self._tickets[conversation_id]
            elif held is not None and held[0] == generation:
                held[1] = 0

    def _found_empty(self, caller: tuple[str, str, str], generation: int) -> None:
        """A claim that rode on ``complete(claim_next=True)`` found nothing ready, as of the
        wake-up count ``generation`` read before it: the worker's next ``claim`` with a wait
        may skip its first try (see _known_empty), like after an empty claim's count."""
        self._vouch(caller)
        with self._tickets_lock:
            held = self._tickets.get(caller[0])
            if held is None or held[0] <= generation:
                self._tickets[caller[0]] = [generation, 0, held[2] if held is not None else None, time.monotonic(), time.monotonic()]

    def _sent(self, conversation_id: str, count: int, generation: int) -> None:
        """A send in this process committed ``count`` tasks and moved the wake-up count to
        ``generation`` (called under the wake-up lock, see Notifier.notify). When the queue's
        count of ready tasks was read at the wake-up just before, nothing else can have
        changed the queue unannounced: the count carries over plus ``count``, and the
        waiters this send wakes take tickets from it instead of each wake-up costing a read
        of the queue. On PostgreSQL another process's send arrives here too (its NOTIFY
        names its count, Notifier.on_sent); on SQLite another process's commit is a bare
        wake-up (the commit counter) and a fresh read follows. Tasks another process claims
        are not seen: the count runs high, and a claim that finds nothing drops it.
        Over-counting (a send that committed before the read but woke after it) costs one
        claim that finds nothing, which drops the count (_drained); the count is re-read at
        least every TICKET_TTL_S, as the carried count keeps its read time."""
        with self._tickets_lock:
            held = self._tickets.get(conversation_id)
            if held is not None and held[0] == generation - 1 and time.monotonic() - held[3] < TICKET_TTL_S:
                held[0] = generation
                held[1] += count

    def _taken(self, conversation_id: str, generation: int, started: float) -> None:
        """A claim outside the tickets (a ``complete(claim_next=True)``, or a claim's first
        try) leased a task; its statement started at ``started`` (monotonic) with the wake-up
        count at ``generation``. When the current count was read for that same wake-up and
        its read had returned before the claim started, the claim took one of the tasks the
        count counted (or one sent after it, which a send here added, see _sent, or whose
        sender's wake-up is still to come): one ticket fewer, so a waiting worker does not
        race the completers for a task that is gone and run a claim that finds nothing."""
        with self._tickets_lock:
            held = self._tickets.get(conversation_id)
            if held is not None and held[0] == generation and held[4] < started and held[1] > 0:
                held[1] -= 1

    def _known_empty(self, caller: tuple[str, str, str]) -> bool:
        """Whether a waiting claim may skip its first try and go straight to waiting: the
        same worker's claim with the same token passed every check within VOUCH_TTL_S, and
        the queue's count for the current wake-up (see _claimable) left no task and no lease
        run out. A worker that completes a task and claims the next one finds an empty queue
        most of the time when workers outnumber the work; its first claim would be a
        statement that finds nothing (half the claims when producers set the pace). Skipping
        it is safe: the wait wakes on the next send, and ends with the claim it skipped."""
        now = time.monotonic()
        with self._tickets_lock:
            vouched = self._vouched.get(caller)
            held = self._tickets.get(caller[0])
            if vouched is None or now - vouched > VOUCH_TTL_S or held is None:
                return False
            fresh = held[0] == self.notifier.generation and now - held[3] < TICKET_TTL_S
            return fresh and held[1] <= 0 and (held[2] is None or held[2] > self._now())

    def _poll_state(self, conversation_id: str) -> tuple[int, float | None]:
        """How many tasks are ready (counted up to 64) and when the earliest lease runs out:
        one indexed read for a waiting claim."""
        with self.sql.read() as rows:
            row = rows.one(
                "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM bus_messages WHERE conversation_id = ? AND state = 'ready' AND seq >= ? "
                "LIMIT 64) r), (SELECT MIN(lease_expires) FROM bus_messages WHERE conversation_id = ? AND state = 'leased' "
                "AND lease_expires > ?)",
                (conversation_id, self.hints.ready_floor(conversation_id), conversation_id, self.hints.lease_floor(conversation_id)),
            )
        assert row is not None  # a SELECT without FROM returns its one row
        return int(row[0]), float(row[1]) if row[1] is not None else None

    def _claimable(self, conversation_id: str) -> tuple[bool, float | None]:
        """Whether this waiting claim should try now, and the earliest lease expiry.

        A send here wakes as many waiting workers as it sent tasks (Notifier.notify), but
        another process's commit on SQLite, a replica's, a lease running out or the periodic
        re-check wake every waiting worker of the process. Without care each of them would
        read the queue and most would then try a claim that finds nothing: with 16 workers,
        ~2 wasted statements per task. Instead the first waiter woken reads how many tasks are ready and hands that many *tickets*
        to the waiters woken by the same wake-up; a waiter without a ticket sleeps on. The
        count is read after the wake-up count it is filed under, so a send committed after
        the read moves the count on and is seen by a fresh read (never lost); tickets also
        lapse after TICKET_TTL_S, so the listener's periodic re-check still reads. A ticket
        is a hint, not a lease: the claim itself (SKIP LOCKED, or SQLite's single writer)
        decides who gets a task. On SQLite a waiter that sees another connection's commit
        (``PRAGMA data_version``, read by its watcher) is a wake-up (Notifier), so the
        count is read again after it; there the saving matters most, as every claim is a
        write and SQLite has one writer."""
        generation, now = self.notifier.generation, time.monotonic()
        with self._tickets_lock:
            if len(self._tickets) > 1000:  # a process with many queues: forget the stale ones
                self._tickets.clear()
                self._readers.clear()
            reader = self._readers.setdefault(conversation_id, threading.Lock())
        # one read per wake-up: the waiters woken together queue here behind the first one
        # and take tickets from its count instead of each reading (and claiming) themselves
        with reader:
            with self._tickets_lock:
                held = self._tickets.get(conversation_id)
                if held is not None and held[0] == generation and now - held[3] < TICKET_TTL_S:
                    if held[1] > 0:
                        held[1] -= 1
                        return True, held[2]
                    return False, held[2]
            count, expiry = self._poll_state(conversation_id)
            with self._tickets_lock:
                self._tickets[conversation_id] = [generation, max(0, count - 1), expiry, now, time.monotonic()]
        return count > 0, expiry

    def _take(
        self, conversation_id: str, worker: str, token: str, lease: float, limit: int, token_hash: str | None = None
    ) -> builtins.list[Delivery]:
        """One claim of up to ``limit`` tasks (the one-task claim keeps its one-statement paths);
        ``token_hash``: the token's hash when the caller has it already."""
        if limit == 1:
            got = self._claim_once(conversation_id, worker, token, lease, token_hash)
            return [] if got is None else [got]
        now = self._now()
        with self.sql.write() as rows:
            self._queue(rows, conversation_id, token, worker, now)
            leased = self._claim_rows(rows, conversation_id, worker, lease, now, limit=limit)
        return [d for one in leased if (d := self._leased(conversation_id, worker, lease, now, one)) is not None]

    def _claim_once(self, conversation_id: str, worker: str, token: str, lease: float, token_hash: str | None = None) -> Delivery | None:
        now = self._now()
        if token_hash is None:
            token_hash = self._token_hash(conversation_id, token)
        if self.sql.postgres:
            fast = self._claim_pg(conversation_id, worker, token_hash, lease, now)
            if fast is not None:
                return fast[0]
        # SQLite, or PostgreSQL when the one-statement claim refused (a check failed, or a
        # lapsed lease must be given back first): the step-by-step claim does it or names why
        with self.sql.write() as rows:
            if rows.postgres:
                self._queue(rows, conversation_id, token, worker, now)
            leased = self._claim_rows(rows, conversation_id, worker, lease, now, None if rows.postgres else token, token_hash=token_hash)
        return self._leased(conversation_id, worker, lease, now, leased[0] if leased else None)

    def _claim_rows(
        self,
        rows: Rows,
        conversation_id: str,
        worker: str,
        lease: float,
        now: float,
        token: str | None = None,
        limit: int = 1,
        token_hash: str | None = None,
    ) -> builtins.list[tuple[Row, int, str, int]]:
        """The claim's writes inside a write: for each of up to ``limit`` tasks leased, its
        row, its attempt number, its fresh attempt token and the ready floor looked from
        (empty when nothing is ready). Shared by ``claim``, ``claim_many`` and
        ``complete(claim_next=True)``. With ``token`` (SQLite's claim of one task) the queue
        checks have not been made yet: they ride in the ready select (CLAIM_SQLITE), and a
        refusal runs them step by step, which names the reason; without it the caller made
        them. ``token_hash``: the token's hash when the caller has it already."""
        # Lapsed leases first, then the oldest ready task; each query walks a partial
        # index of its state (schema 23) from this process's floor, never the done tasks.
        # PostgreSQL comes here when a lease ran out: it looks at every lease. SQLite looks
        # only when a lease may have run out (QueueHints.leases_due: one writer, so every
        # lease run out by the last look was given back then).
        if rows.postgres:
            self._requeue_expired(rows, conversation_id, now)
        elif self.hints.leases_due(conversation_id, now):
            if token is not None:  # the checks come before any write
                self._queue(rows, conversation_id, token, worker, now)
                token = None
            self._requeue_expired(rows, conversation_id, now, self.hints.lease_floor(conversation_id))
            self.hints.leases_checked(conversation_id, now)
            earliest = rows.one(LEASE_NEXT, (conversation_id, now))
            self.hints.leases_known(conversation_id, None if earliest is None or earliest[0] is None else float(earliest[0]))
        floor = self.hints.ready_floor(conversation_id)
        ready: builtins.list[Row] = []
        if token is not None:  # only a one-task claim passes its token
            got = rows.one(
                CLAIM_SQLITE,
                (conversation_id, token_hash or self._token_hash(conversation_id, token), now, quoted(worker), conversation_id, floor),
            )
            if got is not None and got[0]:
                ready = [got[1:]] if got[1] is not None else []
            else:  # refused: the step-by-step checks name why (or, at a float's edge, pass)
                self._queue(rows, conversation_id, token, worker, now)
                token = None
        if token is None:
            # limit is a checked int, written into the SQL so a one-task claim keeps LIMIT 1 for the planner
            ready = rows.all(
                f"SELECT {MSG_COLUMNS}, attempts, history FROM bus_messages WHERE conversation_id = ? AND state = 'ready' "
                f"AND seq >= ? ORDER BY seq LIMIT {int(limit)}" + rows.skip_locked,
                (conversation_id, floor),
            )
        leased = []
        for found in ready:
            attempt = int(found[7]) + 1
            history = append_event(found[8], now, "delivered", attempt, worker)
            leased.append((found, attempt, secrets.token_hex(16), history))
        updates = [
            (attempt, worker, attempt_token, now + lease, history, conversation_id, found[2])
            for found, attempt, attempt_token, history in leased
        ]
        if len(updates) == 1:  # the common case: no executemany machinery for one row
            rows.run(LEASE_SQL, updates[0])
        elif updates:
            rows.many(LEASE_SQL, updates)
        if updates:
            self.hints.lease_granted(conversation_id, now + lease)
        return [(found, attempt, attempt_token, floor) for found, attempt, attempt_token, _ in leased]

    def _leased(
        self, conversation_id: str, worker: str, lease: float, now: float, leased: tuple[Row, int, str, int] | None
    ) -> Delivery | None:
        """The delivery of a committed claim (see _claim_rows), noted in this process's hints."""
        if leased is None:
            return None
        found, attempt, attempt_token, floor = leased
        self.hints.claimed(conversation_id, int(found[2]), floor)
        self.hints.leased(attempt_token, conversation_id, int(found[2]))
        return Delivery(
            conversation_id=conversation_id,
            message=self._message(found[:7]),
            attempt=attempt,
            attempt_token=attempt_token,
            worker=worker,
            lease_expires_at=when(now + lease),
        )

    def _claim_pg(self, conversation_id: str, worker: str, token_hash: str, lease: float, now: float) -> tuple[Delivery | None] | None:
        """The whole claim as ONE statement (PostgreSQL), one round trip instead of about six.
        None when it refused (nothing written): the caller runs the step-by-step claim. A
        1-tuple otherwise, holding the delivery or None for an empty queue."""
        attempt_token = secrets.token_hex(16)
        floor = self.hints.ready_floor(conversation_id)
        got = self._grouped(
            CLAIM_PG,
            False,
            conversation_id,
            (
                conversation_id,
                token_hash,
                now,
                quoted(worker),
                conversation_id,
                now,
                self.hints.lease_floor(conversation_id),
                conversation_id,
                floor,
                worker,
                attempt_token,
                now + lease,
                when(now).isoformat(),
                worker,
                conversation_id,
            ),
        )
        if got is None or not got[0]:
            return None
        self.hints.leases_checked(conversation_id, now)
        if got[1] is None:
            return (None,)
        self.hints.claimed(conversation_id, int(got[3]), floor)
        self.hints.leased(attempt_token, conversation_id, int(got[3]))
        return (
            Delivery(
                conversation_id=conversation_id,
                message=self._message(got[1:8]),
                attempt=int(got[8]),
                attempt_token=attempt_token,
                worker=worker,
                lease_expires_at=when(now + lease),
            ),
        )

    def _complete_pg(
        self, conversation_id: str, attempt_token: str, worker: str, token: str, result: str | None, now: float
    ) -> Task | None:
        """The whole fenced ``complete`` as ONE statement (PostgreSQL); None when it changed
        nothing, and the step-by-step path then names the reason (or, in a race it lost,
        does the same checks under a lock)."""
        if not isinstance(attempt_token, str) or not re.fullmatch(r"[0-9a-f]{32}", attempt_token):
            return None
        seq = self.hints.seq_of(attempt_token, conversation_id)
        done = self._grouped(
            COMPLETE_PG if seq is None else COMPLETE_PG_SEQ,
            True,
            conversation_id,
            (
                result,
                when(now).isoformat(),
                worker,
                conversation_id,
                *(() if seq is None else (seq,)),
                worker,
                now,
                hashlib.sha256(attempt_token.encode("ascii")).hexdigest(),
                conversation_id,
                self._token_hash(conversation_id, token),
                now,
                quoted(worker),
            ),
            COMPLETE_PG_QUICK if seq is None else COMPLETE_PG_SEQ_QUICK,
            seq,
        )
        return self._task_model(done) if done is not None else None

    def _fenced(
        self, rows: Rows, conversation_id: str, attempt_token: str, worker: str, now: float, what: str, seq: int | None = None
    ) -> Row:
        """The leased task this attempt token holds, or LeaseLostError. ``seq``: the task this
        process leased under the token (QueueHints), read by primary key in one statement."""
        if not isinstance(attempt_token, str) or not re.fullmatch(r"[0-9a-f]{32}", attempt_token):
            raise InvalidInputError("attempt_token is malformed: it is the 32 hex characters the claim returned")
        found = None
        if seq is not None:
            hinted = rows.one(
                # COALESCE: the same test, written so the planner reads the row by primary key
                # instead of walking the partial index of leases (see COMPLETE_PG_SEQ)
                "SELECT seq, attempts, lease_owner, lease_expires, history, id, lease_token FROM bus_messages "
                "WHERE conversation_id = ? AND seq = ? AND COALESCE(state, '') = 'leased'" + rows.for_update,
                (conversation_id, seq),
            )
            if hinted is not None and hmac.compare_digest(str(hinted[6] or ""), attempt_token):
                found = hinted[:6]
        # The token is never handed to SQL to match (an index lookup answers faster for a
        # near miss): the conversation's leases in flight are read, and each token compared
        # in constant time. In flight are only the tasks being worked on, a handful per worker.
        leased = []
        if found is None:
            leased = rows.all(
                "SELECT seq, attempts, lease_token FROM bus_messages WHERE conversation_id = ? AND state = 'leased'", (conversation_id,)
            )
        for number, attempts, held in leased:
            if hmac.compare_digest(str(held or ""), attempt_token):
                # lock that task as it stands now: still leased, still this attempt
                found = rows.one(
                    "SELECT seq, attempts, lease_owner, lease_expires, history, id FROM bus_messages "
                    "WHERE conversation_id = ? AND seq = ? AND state = 'leased' AND attempts = ?" + rows.for_update,
                    (conversation_id, number, attempts),
                )
        if found is None:
            raise LeaseLostError(
                f"cannot {what}: this attempt no longer holds its task (it was completed or failed with this attempt already, "
                "or its lease expired and the task went back to the queue or to another worker)"
            )
        if found[2] != worker:
            raise ForbiddenError(f"cannot {what}: the task is leased to {found[2]}, not {worker}")
        if float(found[3]) <= now:
            raise LeaseLostError(
                f"cannot {what}: the lease of task {found[5]} expired {now - float(found[3]):.3f} s ago; it goes back to the queue"
            )
        return found

    def heartbeat(
        self, conversation_id: str, attempt_token: str, *, worker: str, token: str, principal: Principal, lease_s: float | None = None
    ) -> Delivery:
        """Extend a held lease by ``lease_s`` from now (refused once the lease is lost)."""
        worker = check_agent_name(worker, "worker")
        self._authorize(principal, "writer", worker)
        lease = self._lease(lease_s)
        now = self._now()
        with self.sql.write() as rows:
            self._queue(rows, conversation_id, token, worker, now)
            found = self._fenced(rows, conversation_id, attempt_token, worker, now, "heartbeat")
            rows.run(
                "UPDATE bus_messages SET lease_expires = ? WHERE conversation_id = ? AND seq = ?", (now + lease, conversation_id, found[0])
            )
            msg = rows.one(f"SELECT {MSG_COLUMNS} FROM bus_messages WHERE conversation_id = ? AND seq = ?", (conversation_id, found[0]))
        # a heartbeat may shorten the lease: the next claim must know it can run out that soon
        self.hints.lease_granted(conversation_id, now + lease)
        return Delivery(
            conversation_id=conversation_id,
            message=self._message(msg),  # type: ignore[arg-type]
            attempt=int(found[1]),
            attempt_token=attempt_token,
            worker=worker,
            lease_expires_at=when(now + lease),
        )

    def complete(
        self,
        conversation_id: str,
        attempt_token: str,
        *,
        worker: str,
        token: str,
        principal: Principal,
        result: str | None = None,
        claim_next: bool = False,
        lease_s: float | None = None,
    ) -> Completed:
        """The task is done, with its result: accepted only from the attempt holding the lease.

        With ``claim_next`` the same worker is also leased the oldest ready task (for
        ``lease_s``) in the same write, so a busy worker commits once per task instead of
        twice; the complete is durable before either is answered, and a refused complete
        claims nothing."""
        worker = check_agent_name(worker, "worker")
        self._authorize(principal, "writer", worker)
        if result is not None:
            self._check_body(result, "result")
        if not isinstance(claim_next, bool):
            raise InvalidInputError(f"claim_next must be true or false (got {claim_next!r})", usage=True)
        lease = self._lease(lease_s) if claim_next else 0.0
        now = self._now()
        generation, started = self.notifier.generation, time.monotonic()
        if self.sql.postgres:
            both = self._complete_claim_pg(conversation_id, attempt_token, worker, token, result, lease, now) if claim_next else None
            if both is not None:
                return both
            fast = self._complete_pg(conversation_id, attempt_token, worker, token, result, now)
            if fast is not None:
                nxt = self._claim_once(conversation_id, worker, token, lease) if claim_next else None
                return Completed(**dict(fast), next=nxt)
        hint = None if self.sql.postgres else self.hints.seq_of(attempt_token, conversation_id)  # PG's fast path used it
        token_hash = self._token_hash(conversation_id, token)
        # A worker completing with claim_next when this process's count says no task is
        # ready (see _known_empty) skips the claim: it would find nothing, and its claim
        # with a wait that follows wakes on the next send.
        skip_claim = claim_next and not self.sql.postgres and self._none_ready(conversation_id)
        with self.sql.write() as rows:
            found = None if hint is None else self._fenced_sqlite(rows, conversation_id, attempt_token, worker, token_hash, now, hint)
            if found is None:  # not leased here, or refused: the step-by-step checks name why
                self._queue(rows, conversation_id, token, worker, now)
                found = self._fenced(rows, conversation_id, attempt_token, worker, now, "complete the task", hint)
            history = append_event(found[4], now, "completed", int(found[1]), worker)
            done = rows.one(
                "UPDATE bus_messages SET state = 'done', lease_token = NULL, lease_expires = NULL, result = ?, history = ? "
                f"WHERE conversation_id = ? AND seq = ? AND attempts = ? RETURNING {TASK_COLUMNS}",
                (result, history, conversation_id, found[0], found[1]),
            )
            # SQLite: the next claim rides in the same group commit (PostgreSQL reaches this
            # path only when its one-statement complete refused: the claim then follows alone)
            claims = claim_next and not rows.postgres and not skip_claim
            leased = next(iter(self._claim_rows(rows, conversation_id, worker, lease, now)), None) if claims else None
        if claim_next and self.sql.postgres:
            return self._task_model(done, Completed, next=self._claim_once(conversation_id, worker, token, lease))  # type: ignore[arg-type,return-value]
        if claim_next and leased is None:
            self._found_empty((conversation_id, token_hash, worker), generation)
        elif leased is not None:
            self._taken(conversation_id, generation, started)
        return self._task_model(done, Completed, next=self._leased(conversation_id, worker, lease, now, leased))  # type: ignore[arg-type,return-value]

    def complete_many(
        self,
        conversation_id: str,
        results: Sequence[TaskResult | dict[str, Any]],
        *,
        worker: str,
        token: str,
        principal: Principal,
    ) -> CompletedBatch:
        """Complete up to MAX_BATCH leased tasks in one durable write (like SQS's
        DeleteMessageBatch): one commit, one disk flush, for the whole batch.

        Each entry is fenced on its own, exactly as ``complete`` fences it: an attempt whose
        lease ran out, or that another worker holds now, is refused alone (its outcome
        carries the error the single call would raise) and changes nothing, while the other
        entries complete. Malformed input (an entry without a well-formed attempt token, a
        result too large) refuses the whole batch before anything is written, and an error
        raised from the write (a lock not granted in time) means nothing was stored: the
        batch is one transaction. Its rows are locked in seq order, so two batches naming
        the same tasks in different orders never wait on each other in a cycle."""
        worker = check_agent_name(worker, "worker")
        self._authorize(principal, "writer", worker)
        entries = self._task_results(results)
        now = self._now()
        outcomes: dict[int, CompleteOutcome] = {}
        seqs = {i: self.hints.seq_of(e.attempt_token, conversation_id) for i, e in enumerate(entries)}
        first_of: dict[str, int] = {}
        for i, entry in enumerate(entries):
            if entry.attempt_token in first_of:
                twice = f"this attempt token is listed twice in the batch (entries {first_of[entry.attempt_token]} and {i})"
                outcomes[i] = self._refused(entry, InvalidInputError(twice))
            else:
                first_of[entry.attempt_token] = i
        with self.sql.write() as rows:
            self._queue(rows, conversation_id, token, worker, now)
            left = [i for i in range(len(entries)) if i not in outcomes]
            self._lease_seqs(rows, conversation_id, entries, left, seqs)
            if rows.postgres:
                # every row first, in seq order: the statements below then wait for no lock
                held = sorted({seq for i in left if (seq := seqs[i]) is not None})
                if held:
                    rows.all(
                        "SELECT seq FROM bus_messages WHERE conversation_id = ? AND seq = ANY(?) ORDER BY seq FOR UPDATE",
                        (conversation_id, held),
                    )
                outcomes.update(self._complete_many_pg(rows, conversation_id, entries, seqs, outcomes, worker, token, now))
            for i in sorted((i for i in left if i not in outcomes), key=lambda i: (seqs[i] is None, seqs[i] or 0, i)):
                entry = entries[i]
                try:
                    found = self._fenced(rows, conversation_id, entry.attempt_token, worker, now, "complete the task", seqs[i])
                except (ForbiddenError, LeaseLostError) as exc:
                    outcomes[i] = self._refused(entry, exc)
                    continue
                history = append_event(found[4], now, "completed", int(found[1]), worker)
                done = rows.one(
                    "UPDATE bus_messages SET state = 'done', lease_token = NULL, lease_expires = NULL, result = ?, history = ? "
                    f"WHERE conversation_id = ? AND seq = ? AND attempts = ? RETURNING {TASK_COLUMNS}",
                    (entry.result, history, conversation_id, found[0], found[1]),
                )
                outcomes[i] = CompleteOutcome(attempt_token=entry.attempt_token, task=self._task_model(done))  # type: ignore[arg-type]
        return self._batch_done(conversation_id, entries, outcomes)

    def _complete_many_pg(
        self,
        rows: Rows,
        conversation_id: str,
        entries: builtins.list[TaskResult],
        seqs: dict[int, int | None],
        decided: dict[int, CompleteOutcome],
        worker: str,
        token: str,
        now: float,
    ) -> dict[int, CompleteOutcome]:
        """PostgreSQL, inside the batch's write: every entry whose task is known (seq) completed
        in one statement (COMPLETE_MANY_PG); the ones it refused are left to the step-by-step
        path, which names why."""
        known = [i for i in range(len(entries)) if seqs[i] is not None and i not in decided]
        if not known:
            return {}
        params = (
            [seqs[i] for i in known],
            [hashlib.sha256(entries[i].attempt_token.encode("ascii")).hexdigest() for i in known],
            [entries[i].result for i in known],
            *(when(now).isoformat(), worker, conversation_id, [seqs[i] for i in known], worker, now),
            *(conversation_id, self._token_hash(conversation_id, token), now, quoted(worker)),
        )
        done = rows.all(COMPLETE_MANY_PG, params)
        return {
            known[int(row[0]) - 1]: CompleteOutcome(
                attempt_token=entries[known[int(row[0]) - 1]].attempt_token, task=self._task_model(row[1:])
            )
            for row in done
        }

    @staticmethod
    def _lease_seqs(
        rows: Rows, conversation_id: str, entries: builtins.list[TaskResult], left: Sequence[int], seqs: dict[int, int | None]
    ) -> None:
        """Fill in the seq of the task each entry of ``left`` holds when this process did not
        lease it (no hint), from one read of the queue's leases in flight (each token compared in
        constant time, never handed to SQL, as in _fenced). The step-by-step path then locks
        every row in seq order: locked in the order asked, two batches naming the same tasks in
        different orders waited on each other (a deadlock PostgreSQL broke by cancelling one,
        after deadlock_timeout). A token matching no lease keeps None (_fenced refuses it)."""
        unknown = [i for i in left if seqs[i] is None]
        if not unknown:
            return
        leased = rows.all("SELECT seq, lease_token FROM bus_messages WHERE conversation_id = ? AND state = 'leased'", (conversation_id,))
        for i in unknown:
            for number, held in leased:
                if hmac.compare_digest(str(held or ""), entries[i].attempt_token):
                    seqs[i] = int(number)

    @staticmethod
    def _batch_done(conversation_id: str, entries: builtins.list[TaskResult], outcomes: dict[int, CompleteOutcome]) -> CompletedBatch:
        answered = [outcomes[i] for i in range(len(entries))]
        completed = sum(1 for o in answered if o.task is not None)
        return CompletedBatch(conversation_id=conversation_id, completed=completed, refused=len(answered) - completed, outcomes=answered)

    def _task_results(self, results: Sequence[TaskResult | dict[str, Any]]) -> builtins.list[TaskResult]:
        """A batch complete's entries, checked whole before anything is written."""
        if isinstance(results, str | bytes) or not isinstance(results, Sequence) or not results:
            raise InvalidInputError("results must be a non-empty list of {attempt_token, result} entries")
        if len(results) > MAX_BATCH:
            raise InvalidInputError(f"a batch completes at most {MAX_BATCH} tasks (got {len(results)}): split it")
        entries = []
        for i, raw in enumerate(results):
            try:
                # a TaskResult too: one built by model_construct, or changed after, was never checked
                entry = TaskResult.model_validate(dict(raw) if isinstance(raw, TaskResult) else raw)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg'].lower()}" for e in exc.errors())
                raise InvalidInputError(f"results[{i}] is not an {{attempt_token, result}} entry ({problems})") from None
            if not re.fullmatch(r"[0-9a-f]{32}", entry.attempt_token):
                raise InvalidInputError(f"results[{i}].attempt_token is malformed: it is the 32 hex characters the claim returned")
            if entry.result is not None:
                try:
                    self._check_body(entry.result, "result")
                except MemmeshError as exc:
                    raise type(exc)(f"results[{i}]: {exc.reason}") from None
            entries.append(entry)
        return entries

    @staticmethod
    def _refused(entry: TaskResult, exc: MemmeshError) -> CompleteOutcome:
        return CompleteOutcome(attempt_token=entry.attempt_token, error=RefusedEntry(code=exc.code, message=exc.message))

    def _fenced_sqlite(
        self, rows: Rows, conversation_id: str, attempt_token: str, worker: str, token_hash: str, now: float, seq: int
    ) -> Row | None:
        """SQLite: the task ``seq`` this process leased under ``attempt_token``, read with the
        queue checks in one statement (FENCED_SQLITE), when every check and the fence pass
        (the row as _fenced returns it); None otherwise, and _fenced names the reason."""
        got = rows.one(FENCED_SQLITE, (conversation_id, token_hash, now, quoted(worker), conversation_id, seq))
        if got is None or not got[0] or got[3] != worker or float(got[4]) <= now:
            return None
        return got[1:7] if hmac.compare_digest(str(got[7] or ""), attempt_token) else None

    def _none_ready(self, conversation_id: str) -> bool:
        """This process's count for the current wake-up (see _claimable) leaves no ready task
        and no lease run out: a claim now would find nothing."""
        now = time.monotonic()
        with self._tickets_lock:
            held = self._tickets.get(conversation_id)
            if held is None or held[0] != self.notifier.generation or now - held[3] >= TICKET_TTL_S:
                return False
            return held[1] <= 0 and (held[2] is None or held[2] > self._now())

    def _complete_claim_pg(
        self, conversation_id: str, attempt_token: str, worker: str, token: str, result: str | None, lease: float, now: float
    ) -> Completed | None:
        """``complete(claim_next=True)`` as ONE statement on PostgreSQL: the fenced complete
        and the next claim commit together, durably (the complete is the worker's ack), in one
        round trip and one disk flush. None when the complete changed nothing (nothing was
        written; the step-by-step path names the reason) or this process did not hand the
        token out (its seq is unknown)."""
        if not isinstance(attempt_token, str) or not re.fullmatch(r"[0-9a-f]{32}", attempt_token):
            return None
        seq = self.hints.seq_of(attempt_token, conversation_id)
        if seq is None:
            return None
        next_token = secrets.token_hex(16)
        floor = self.hints.ready_floor(conversation_id)
        token_hash = self._token_hash(conversation_id, token)
        generation, started = self.notifier.generation, time.monotonic()
        got = self._grouped(
            COMPLETE_CLAIM_PG,
            True,
            conversation_id,
            (
                *(result, when(now).isoformat(), worker, conversation_id, seq, worker, now),
                *(hashlib.sha256(attempt_token.encode("ascii")).hexdigest(), conversation_id, token_hash, now, quoted(worker)),
                *(conversation_id, token_hash, now, quoted(worker), conversation_id, now, self.hints.lease_floor(conversation_id)),
                *(conversation_id, floor, worker, next_token, now + lease, when(now).isoformat(), worker, conversation_id),
            ),
            COMPLETE_CLAIM_PG_QUICK,
            seq,
        )
        if got is None or got[0] is None:
            self.hints.leased(attempt_token, conversation_id, seq)  # unused: the fallback may use it
            return None
        row = got[:11]  # the completed task, built once as the Completed answered (no Task to copy from)
        if not got[11]:  # completed; a lease ran out meanwhile: the step-by-step claim gives it back first
            return self._completed(row, self._claim_once(conversation_id, worker, token, lease))
        self.hints.leases_checked(conversation_id, now)
        if got[12] is None:
            self._found_empty((conversation_id, token_hash, worker), generation)
            return self._completed(row, None)
        self.hints.claimed(conversation_id, int(got[14]), floor)
        self.hints.leased(next_token, conversation_id, int(got[14]))
        self._taken(conversation_id, generation, started)
        nxt = Delivery(
            conversation_id=conversation_id,
            message=self._message(got[12:19]),
            attempt=int(got[19]),
            attempt_token=next_token,
            worker=worker,
            lease_expires_at=when(now + lease),
        )
        return self._completed(row, nxt)

    def _completed(self, row: Row, nxt: Delivery | None) -> Completed:
        """A completed task row and the next delivery as the Completed answered, in one validation."""
        done = self._task_model(row, Completed, next=nxt)
        assert isinstance(done, Completed)
        return done

    def fail(
        self,
        conversation_id: str,
        attempt_token: str,
        *,
        worker: str,
        token: str,
        principal: Principal,
        reason: str = "worker reported failure",
    ) -> Task:
        """Give the task back (it is delivered again, or dead-lettered after ``max_deliveries``)."""
        worker = check_agent_name(worker, "worker")
        self._authorize(principal, "writer", worker)
        if reason is not None and not isinstance(reason, str):
            raise InvalidInputError(f"reason must be text (got {type(reason).__name__})", field="reason")
        reason = check_text((reason or "worker reported failure").strip()[:1000], "reason")
        now = self._now()
        with self.sql.write() as rows:
            self._queue(rows, conversation_id, token, worker, now)
            found = self._fenced(rows, conversation_id, attempt_token, worker, now, "fail the task")
            self._give_back(rows, conversation_id, int(found[0]), int(found[1]), found[4], now, reason)
            task = self._task(rows, conversation_id, int(found[0]))
        self.hints.given_back(conversation_id)
        self.notifier.notify(conversation_id, 1)
        return task

    def tasks(
        self, conversation_id: str, *, token: str, principal: Principal, state: str | None = None, limit: int = 100
    ) -> builtins.list[Task]:
        """A queue's tasks in order (``state``: ready, leased, done or dead: the dead letters)."""
        self._authorize(principal, "reader")
        limit = self._limit(limit)
        if state is not None and state not in ("ready", "leased", "done", "dead"):
            raise InvalidInputError(f"state must be ready, leased, done or dead (got {state!r})", usage=True, field="state")
        now = self._now()
        with self.sql.write() as rows:
            row = self._conversation(rows, conversation_id, token)
            if row[1] != "queue":
                raise InvalidInputError(f"conversation {conversation_id} is a chat, not a task queue")
            if row[8] is None:
                self._requeue_expired(rows, conversation_id, now)
        # the state is written into the SQL (one of four checked words): a partial index
        # serves only a query naming its own state, so ready, leased and dead tasks are
        # listed without walking the done ones
        where = "conversation_id = ? AND state IS NOT NULL" + (f" AND state = '{state}'" if state else "")
        params: list[Any] = [conversation_id]
        with self.sql.read() as rows:
            found = rows.all(f"SELECT {TASK_COLUMNS} FROM bus_messages WHERE {where} ORDER BY seq LIMIT ?", (*params, limit))
        return [self._task_model(r) for r in found]

    def _task(self, rows: Rows, conversation_id: str, seq: int) -> Task:
        found = rows.one(f"SELECT {TASK_COLUMNS} FROM bus_messages WHERE conversation_id = ? AND seq = ?", (conversation_id, seq))
        return self._task_model(found)  # type: ignore[arg-type]

    @staticmethod
    def _task_model(row: Row, model: type[Task] = Task, **extra: Any) -> Task:
        """A task row as ``model`` (Task, or Completed with its ``next``): built in one
        validation pass (pydantic's compiled validator is faster than model_construct here,
        and validating a Task again to make a Completed costs as much as the first time)."""
        return model(
            id=row[0],
            conversation_id=row[1],
            seq=int(row[2]),
            body=row[3],
            state=row[4],
            attempts=int(row[5]),
            worker=row[6],
            lease_expires_at=when(row[7]),
            result=row[8],
            dead_reason=row[9],
            history=json.loads(row[10] or "[]"),
            **extra,
        )

    def counts(self) -> dict[str, int]:
        """Store-wide numbers for /metrics and health: open conversations, tasks by state."""
        with self.sql.read() as rows:
            open_convs = rows.one(
                "SELECT COUNT(*) FROM bus_conversations WHERE archived_at IS NULL AND last_activity + timeout_s > ?", (self._now(),)
            )
            states = rows.all("SELECT state, COUNT(*) FROM bus_messages WHERE state IS NOT NULL GROUP BY state")
        found = {"conversations_open": int(open_convs[0])}  # type: ignore[index]
        for state in ("ready", "leased", "done", "dead"):
            found[f"tasks_{state}"] = 0
        for state, n in states:
            found[f"tasks_{state}"] = int(n)
        return found
