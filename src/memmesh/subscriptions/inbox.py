"""Agent inboxes: ``memory_notify`` leaves a note for another agent, ``memory_inbox`` reads
one's own.

Why not a bus conversation: a bus conversation is a capability shared by a fixed set of
participants (whoever holds its token), made for a running exchange. A notification goes
to one agent by name, from any agent, without a token exchanged first, and is read by
whoever authenticates as that agent; so the inbox is addressed by agent id and guarded by
the caller's key. It shares the bus's agent-name rule and SQL layer.

Agent names are not owned by a tenant (any writer may notify any name, registered or not),
so the namespace a note carries is what keeps it inside a tenancy: a reader is shown (and
marks read) only the notes whose namespace its key may read, and the others stay unread
for a key that can. A note without a namespace is for whoever holds the agent name. A
namespace-scoped sender therefore never leaves one: its notes get its key's namespace (see
:meth:`Inbox.notify`). Notes thus neither block a name nor reveal anything to whoever
claims it later, and a namespace-scoped admin may give any unregistered name a key.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from memmesh.bus.core import check_agent_name
from memmesh.bus.sql import BusSql, Row, Rows
from memmesh.clock import new_id
from memmesh.errors import ContentTooLargeError, ForbiddenError, InvalidInputError, RateLimitedError
from memmesh.kernel import authorize, is_store_admin
from memmesh.model import Principal, check_text, normalize_namespace
from memmesh.subscriptions.model import InboxMessage, SubscriptionPolicy, when

if TYPE_CHECKING:
    from memmesh.host import Host

COLUMNS = "id, recipient, sender, subject, body, namespace, memory_id, created_at, read_at"
MAX_SUBJECT_CHARS = 200
MAX_UNREAD_FROM_ONE_SENDER = 1000
"""Unread notes one sender may leave in one inbox: any writer may notify any agent, so
without a cap one key could bury an agent's inbox (read oldest first) under its own notes."""
READ_PAGE = 200
"""Rows one inbox read fetches at a time while it skips the notes the reader may not see."""
LOCAL_AGENT = "local"
"""The agent name of the local caller (no key, no agent id): it sends as, and reads, ``local``."""


class Inbox:
    """Per-agent notifications over one store (``service.inbox``)."""

    def __init__(self, service: Host, policy: SubscriptionPolicy | None = None) -> None:
        self.service = service
        self.policy = policy or SubscriptionPolicy()
        self.sql = BusSql(service.store)

    def notify(
        self,
        to: str,
        body: str,
        *,
        subject: str | None = None,
        namespace: str | None = None,
        memory_id: str | None = None,
        sender: str | None = None,
        principal: Principal,
    ) -> InboxMessage:
        """Leave ``body`` in agent ``to``'s inbox. A keyed caller sends as its own agent; the
        local caller names itself with ``sender`` (default ``local``). A ``namespace`` or
        ``memory_id`` it points at must be one the sender may read.

        A note's namespace hides it from every reader that may not read that namespace
        (:meth:`read`), so a key limited to some namespaces never sends a note without one:
        given neither ``namespace`` nor ``memory_id``, the note gets the key's namespace when
        it has exactly one, and is refused, asking for a namespace, when it has several. Otherwise an ``a/*`` writer's
        note would be readable by any key for its recipient's name, such as one a ``b/*``
        admin mints for it. Stamping (rather than always refusing) keeps a single-namespace
        key's notes working as before; its namespace is the one thing such a note can mean."""
        who = authorize(principal, "writer")
        recipient = check_agent_name(to, "to")
        if who.agent_id is not None:
            if sender is not None and sender != who.agent_id:
                raise ForbiddenError(f"sender {sender!r} is not this key's agent ({who.agent_id!r}): leave sender out")
            sender = who.agent_id
        sender = check_agent_name(sender or LOCAL_AGENT, "sender")
        if not isinstance(body, str) or not body.strip():
            raise InvalidInputError("body is empty: give the text of the notification")
        check_text(body, "body")
        size = len(body.encode("utf-8"))
        if size > self.policy.max_notify_bytes:
            limit = self.policy.max_notify_bytes
            raise ContentTooLargeError(f"body is {size} bytes; the limit is {limit} (subscriptions.max_notify_bytes)")
        subject = check_text(subject, "subject") or None
        if subject is not None and len(subject) > MAX_SUBJECT_CHARS:
            raise InvalidInputError(f"subject is {len(subject)} characters; at most {MAX_SUBJECT_CHARS}")
        ns = normalize_namespace(namespace) if namespace else None
        if ns is not None:
            authorize(who, "writer", ns)
        if memory_id is not None:
            ns = self._pointed(memory_id, ns, who)
        if ns is None:
            ns = _senders_namespace(who)
        now = self.service.clock().timestamp()
        message_id = new_id()
        with self.sql.write() as rows:
            unread = rows.one(
                "SELECT COUNT(*) FROM inbox_messages WHERE recipient = ? AND read_at IS NULL AND sender = ?", (recipient, sender)
            )
            if unread is not None and int(unread[0]) >= MAX_UNREAD_FROM_ONE_SENDER:
                raise RateLimitedError(
                    f"{recipient!r} has {unread[0]} unread notes from {sender!r} already (at most {MAX_UNREAD_FROM_ONE_SENDER}); "
                    "wait until they are read",
                    details={"retry_after": 60},
                )
            rows.run(
                f"INSERT INTO inbox_messages ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (message_id, recipient, sender, subject, body, ns, memory_id, now),
            )
        return InboxMessage(
            id=message_id,
            recipient=recipient,
            sender=sender,
            subject=subject,
            body=body,
            namespace=ns,
            memory_id=memory_id,
            created_at=when(now),
        )

    def _pointed(self, memory_id: str, namespace: str | None, who: Principal) -> str:
        """The namespace of a notification pointing at ``memory_id``: the memory must be one
        the sender can read (else the same not-found as for no memory), and lie in (or
        below) ``namespace`` when one is given, so a note never points somewhere it says it
        does not."""
        found = self.service.get(memory_id, principal=who).namespace
        if namespace is None:
            return found
        if found != namespace and not found.startswith(namespace.rstrip("/") + "/"):
            raise InvalidInputError(
                f"memory {memory_id} is in namespace {found!r}, not in {namespace!r}: leave namespace out or give {found!r}"
            )
        return namespace

    def read(
        self,
        *,
        agent: str | None = None,
        unread_only: bool = True,
        mark_read: bool = True,
        limit: int = 50,
        principal: Principal,
    ) -> builtins.list[InboxMessage]:
        """The agent's notifications, oldest first (by default the unread ones, which are then
        marked read). A keyed caller reads its own agent's inbox; only an admin for every
        namespace may read another's; the local caller reads ``local``'s unless it names one.

        A note with a namespace the caller may not read is left out, and left unread, as if it
        were not there: whoever holds a key for the name, only a key that may read the note's
        namespace sees it. A note without a namespace is shown to any reader of the inbox."""
        who = authorize(principal, "reader")
        if who.agent_id is not None:
            agent = who.agent_id if agent is None else agent  # '' is a name refused below, not "mine"
            if agent != who.agent_id and not is_store_admin(who):
                raise ForbiddenError(f"this key reads only its own agent's inbox ({who.agent_id!r}), not {agent!r}")
        elif agent is None:
            agent = LOCAL_AGENT  # the local caller's own inbox (what it sends as, unless it names a sender)
        name = check_agent_name(agent, "agent")
        limit = self.service.kernel.check_top_k(limit, "limit")
        where = "recipient = ?" + (" AND read_at IS NULL" if unread_only else "")
        now = self.service.clock().timestamp()
        with self.sql.write() as rows:
            found = _visible_rows(rows, who, where, name, limit)
            if mark_read:
                for row in found:
                    if row[8] is None:
                        rows.run("UPDATE inbox_messages SET read_at = ? WHERE id = ? AND read_at IS NULL", (now, row[0]))
        return [_message(row, now if mark_read and row[8] is None else None) for row in found]


def _senders_namespace(who: Principal) -> str | None:
    """The namespace of a note sent without one: none for a caller not limited to some
    namespaces, the key's one namespace, else a refusal saying to give one."""
    roots = who.prefixes()
    if roots is None:
        return None
    tops = {root for root in roots if not any(root.startswith(other + "/") for other in roots)}  # 'a' and 'a/x' are one
    if len(tops) == 1:
        return tops.pop()
    raise InvalidInputError(
        f"this key is limited to namespaces {', '.join(who.namespaces)}: give namespace (one inside them) "
        "so the note stays where only those who may read it see it"
    )


def _visible_rows(rows: Rows, who: Principal, where: str, recipient: str, limit: int) -> builtins.list[Row]:
    """The first ``limit`` rows of ``recipient``'s inbox matching ``where`` that ``who`` may see
    (no namespace, or one it may read), oldest first. Read a page at a time, so notes the
    reader may not see never crowd out the ones it may."""
    found: builtins.list[Row] = []
    after: Row | None = None
    while len(found) < limit:
        page_size = max(limit, READ_PAGE)
        if after is None:
            page = rows.all(f"SELECT {COLUMNS} FROM inbox_messages WHERE {where} ORDER BY created_at, id LIMIT ?", (recipient, page_size))
        else:
            page = rows.all(
                f"SELECT {COLUMNS} FROM inbox_messages WHERE {where} AND (created_at > ? OR (created_at = ? AND id > ?)) "
                "ORDER BY created_at, id LIMIT ?",
                (recipient, after[7], after[7], after[0], page_size),
            )
        found += [row for row in page if row[5] is None or who.covers(row[5])]
        if len(page) < page_size:
            break
        after = page[-1]
    return found[:limit]


def _message(row: Row, read_now: float | None) -> InboxMessage:
    read_at = row[8] if row[8] is not None else read_now
    return InboxMessage(
        id=row[0],
        recipient=row[1],
        sender=row[2],
        subject=row[3],
        body=row[4],
        namespace=row[5],
        memory_id=row[6],
        created_at=when(float(row[7])),
        read_at=when(float(read_at)) if read_at is not None else None,
    )
