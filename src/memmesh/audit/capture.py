"""How changes reach the audit log: every write transaction of the service's store records them.

:class:`AuditedStore` wraps the store the service uses; each of its write transactions is an
:class:`AuditedTx`, which notes an entry for every history event (every change of a memory,
from any face, import or peer), link, agent, API key and purge, and appends them all just
before the transaction commits (see :meth:`memmesh.audit.log.AuditLog.append_many`).
Who acted is the caller the service last authorized in this context (:data:`current_caller`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from contextvars import ContextVar
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from memmesh.audit import chain
from memmesh.clock import format_ts
from memmesh.model import HistoryEntry, Link, Principal, StoredApiKey

if TYPE_CHECKING:
    from memmesh.model import Agent

current_caller: ContextVar[Principal | None] = ContextVar("memmesh_audit_caller", default=None)
"""The caller the service last authorized in this context: the actor of what it writes next."""

SYSTEM_ACTORS = {"gc", "memmesh"}


class AuditSink(Protocol):
    """What the capture needs of the log it feeds (:class:`memmesh.audit.log.AuditLog`): a
    protocol, so the capture (imported by the kernel) never imports the log, which sits
    above the kernel."""

    def append_many(self, tx: Any, items: Sequence[Pending]) -> int: ...

    def append_local(self, tx: Any, items: Sequence[Pending]) -> tuple[int, bytes] | None: ...

    def committed(self, head: tuple[int, bytes] | None = None) -> None: ...

    def abandoned(self) -> None: ...

    def sign_unsigned(self) -> None: ...


def actor_of(who: Principal | None, system: str | None = None) -> str:
    """How an entry names who acted: ``key:<id>`` (or ``local``) and ``agent:<id>``; a change
    memmesh made on its own (gc, promotion) is ``system:<what>`` plus the caller it served."""
    parts = [f"system:{system}"] if system else []
    if who is not None:
        parts.append(f"key:{who.key_id}" if who.key_id else "local")
        if who.agent_id:
            parts.append(f"agent:{who.agent_id}")
    return " ".join(parts) or "system"


class Pending(NamedTuple):
    """An entry waiting for the end of its transaction (who acted is fixed when it is made).
    A NamedTuple, not a frozen dataclass: one is made per change, and a tuple is made in a
    fraction of the time.

    ``detail`` is a dict, or a str that is already its canonical text (:func:`chain.detail_text`):
    the capture builds the one detail every memory change has directly (see :meth:`AuditedTx._history`)."""

    action: str
    target: str | None
    namespace: str | None
    detail: dict[str, Any] | str | None
    actor: str


class AuditedTx:
    """A store write transaction that records an audit entry for each change it makes; also
    the :meth:`AuditedStore.write` block that opens it (one object per write, not a block
    object and a transaction object: issue 16 counts the Python calls per write).

    The entries are appended when the block ends, just before the commit, not at each
    change: the chain's lock (PostgreSQL: an advisory lock) is then always the last lock a
    transaction takes, so writers that lock rows in different orders cannot deadlock on it,
    and they hold it only for the append and the commit. They are appended when the
    outermost block on this thread ends without error (a nested block that fails takes its
    own back, as its savepoint takes back its changes).
    """

    __slots__ = (
        "_inner",
        "_mark",
        "_pending",
        "_tx",
        "find_by_hash",
        "find_by_title",
        "get",
        "insert_memory",
        "next_seq",
        "put_vector",
        "update_memory",
    )
    # one per write transaction: no instance dict to make. The calls every memory write makes
    # (and that record nothing) are the inner transaction's own bound methods, set as the block
    # opens: a forwarding method would be one more Python call each, and through __getattr__
    # a failed attribute lookup first (an AttributeError made and dropped), per call.

    get: Any
    find_by_hash: Any
    find_by_title: Any
    next_seq: Any
    insert_memory: Any
    update_memory: Any
    put_vector: Any

    _mark: int | None
    _pending: list[Pending]
    _store: Any
    _audit: AuditSink
    _local: threading.local
    """Class attributes of the one subclass each :class:`AuditedStore` makes (:func:`_tx_class`):
    a write then makes its transaction with no Python ``__init__`` call at all."""

    def __enter__(self) -> AuditedTx:
        local = self._local
        outer: list[Pending] | None = getattr(local, "pending", None)
        inner = self._inner = self._store.write()
        if outer is not None:  # nested on this thread: part of the open unit
            self._mark = len(outer)
            self._pending = outer
            tx = inner.__enter__()
        else:
            self._mark = None
            pending: list[Pending] = []
            self._pending = local.pending = pending
            try:
                tx = inner.__enter__()
            except BaseException:
                local.pending = None
                self._audit.abandoned()
                raise
        self._tx = tx
        if type(tx) not in _FORWARDED:
            _forward_names(tx)
        self.get, self.find_by_hash, self.find_by_title = tx.get, tx.find_by_hash, tx.find_by_title
        self.next_seq, self.insert_memory, self.update_memory, self.put_vector = (
            tx.next_seq,
            tx.insert_memory,
            tx.update_memory,
            tx.put_vector,
        )
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> bool:
        inner = self._inner
        if self._mark is not None:
            if kind is not None:
                del self._pending[self._mark :]
            return bool(inner.__exit__(kind, error, trace))
        self._local.pending = None
        pending = self._pending
        head = None
        try:
            if kind is None:
                try:
                    if pending:
                        head = self._audit.append_local(self._tx, pending)
                except BaseException as failure:  # the transaction ends with the append's error
                    if not inner.__exit__(type(failure), failure, failure.__traceback__):
                        raise
                else:
                    inner.__exit__(None, None, None)
                suppressed = False
            else:
                suppressed = bool(inner.__exit__(kind, error, trace))
        except BaseException:
            self._audit.abandoned()
            raise
        if (kind is None or suppressed) and pending:  # its append set the head; committed, so durable
            self._audit.committed(head)
        return suppressed

    def defer(self, item: Pending) -> None:
        self._pending.append(item)

    def _add(self, action: str, *, target: str | None = None, namespace: str | None = None, detail: dict[str, Any] | None = None) -> None:
        self._pending.append(Pending(action, target, namespace, detail, actor_of(current_caller.get())))

    if TYPE_CHECKING:  # every other name is the inner transaction's (see _forward_names)

        def __getattr__(self, name: str) -> Any: ...

    def _namespace(self, entry: HistoryEntry) -> str | None:
        for snapshot in (entry.new, entry.old):
            namespace = snapshot.get("namespace") if isinstance(snapshot, dict) else None
            if isinstance(namespace, str):
                return namespace
        current = self._tx.get(entry.memory_id)
        return current.namespace if current is not None else None

    def _history(self, entry: HistoryEntry, stored: tuple[str | None, str | None] | None) -> None:
        """Note a memory change. ``stored`` is the JSON text the history writer stored for
        ``old`` and ``new``: hashed as it is (digest rule 2), so the change is not encoded a
        second time; a store that does not report it gets the rule 1 digest."""
        event, old, new = entry.event, entry.old, entry.new
        action = "memory." + event if isinstance(event, str) else f"memory.{getattr(event, 'value', event)}"  # StrEnum: its value
        fields = sorted(old.keys() | new.keys()) if old and new else None
        if stored is None:
            detail = chain.history_detail(chain.digest([old, new]), fields)
        else:
            detail = chain.change_detail(stored[0], stored[1], fields)
        namespace = new.get("namespace") if isinstance(new, dict) else None
        if not isinstance(namespace, str):
            namespace = self._namespace(entry)
        system = entry.actor if entry.actor in SYSTEM_ACTORS else None
        self._pending.append(Pending(action, entry.memory_id, namespace, detail, actor_of(current_caller.get(), system)))

    def add_history(self, entry: HistoryEntry) -> None:
        """Write one history entry and note its change: :meth:`_history` and :func:`actor_of`
        written out for the common case (a memory change the caller made, whose new state
        names its namespace), since every memory write comes through here once (issue 16:
        one Python call instead of five)."""
        stored = self._tx.add_history_many([entry])  # (not via add_history_many: one call less per write)
        # the entry's fields from its __dict__, once: a pydantic model defines __getattr__, so
        # each attribute read of one takes CPython's slow path
        fields = entry.__dict__
        new = fields["new"]
        namespace = new.get("namespace") if type(new) is dict else None
        if type(namespace) is not str or fields["actor"] in SYSTEM_ACTORS or type(stored) is not list or len(stored) != 1:
            self._history(entry, stored[0] if isinstance(stored, list) and len(stored) == 1 else None)
            return
        event, old = fields["event"], fields["old"]
        action = "memory." + event if isinstance(event, str) else f"memory.{getattr(event, 'value', event)}"  # StrEnum: its value
        old_text, new_text = stored[0]
        detail = chain.change_detail(old_text, new_text, sorted(old.keys() | new.keys()) if old and new else None)
        who = current_caller.get()
        if who is None:
            actor = "system"
        else:  # actor_of(who), written out
            caller = who.__dict__
            key_id, agent_id = caller["key_id"], caller["agent_id"]
            actor = f"key:{key_id}" if key_id else "local"
            if agent_id:
                actor = f"{actor} agent:{agent_id}"
        self._pending.append((action, fields["memory_id"], namespace, detail, actor))  # type: ignore[arg-type]  # a Pending's fields, as a plain tuple (no NamedTuple __new__ call)

    def add_history_many(self, entries: Sequence[HistoryEntry]) -> list[tuple[str | None, str | None]]:
        stored = self._tx.add_history_many(entries)
        texts = stored if isinstance(stored, list) and len(stored) == len(entries) else [None] * len(entries)
        for entry, text in zip(entries, texts, strict=True):
            self._history(entry, text)
        return stored if isinstance(stored, list) else []

    def put_link(self, link: Link, seq: int) -> None:
        self._tx.put_link(link, seq)
        source = self._tx.get(link.source_id)
        relation = link.relation.value if hasattr(link.relation, "value") else str(link.relation)
        self._add(
            "link.put",
            target=f"{link.source_id} {relation} {link.target_id}",
            namespace=source.namespace if source is not None else None,
            detail={"digest": chain.digest(link.model_dump(mode="json"))},
        )

    def put_agent(self, agent: Agent) -> None:
        self._tx.put_agent(agent)
        self._add("agent.put", target=agent.agent_id, detail={"role": agent.role, "namespaces": list(agent.namespaces)})

    def insert_api_key(self, key: StoredApiKey) -> None:
        self._tx.insert_api_key(key)
        self._add(  # the key's id and grant only: never its secret or hash
            "key.create", target=key.id, detail={"agent_id": key.agent_id, "role": key.role, "namespaces": list(key.namespaces)}
        )

    def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        revoked = self._tx.revoke_api_key(key_id, at)
        if revoked:
            self._add("key.revoke", target=key_id)
        return bool(revoked)

    def purge_tombstones(self, before: datetime) -> int:
        purged = int(self._tx.purge_tombstones(before))
        if purged:
            self._add("gc.purge_tombstones", detail={"purged": purged, "before": format_ts(before)})
        return purged

    def purge_archive(self, flt: Any, before: datetime | None = None) -> int:
        purged = int(self._tx.purge_archive(flt, before))
        if purged:
            self._add("archive.purge", namespace=getattr(flt, "namespace", None), detail={"purged": purged})
        return purged


class _Forward:
    """One name of the inner transactions, read from the open one (``tx.conn``,
    ``tx.delete_links``, …): what a ``__getattr__`` did, but only for these names. A class
    with ``__getattr__`` has every attribute read go through it first (CPython cannot
    specialise those reads), and the service reads the transaction's methods a dozen times per
    write (issue 16: about 8 k instructions of the audit's cost per write)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, tx: AuditedTx | None, owner: type | None = None) -> Any:
        if tx is None:
            return self
        return getattr(tx._tx, self.name)


_FORWARDED: set[type] = set()
"""The inner transaction classes whose names :class:`AuditedTx` forwards already."""


def _forward_names(tx: Any) -> None:
    """Forward every name of ``tx`` (its class's and its own, dunders aside) that
    :class:`AuditedTx` does not define itself, as its ``__getattr__`` did; once per inner
    transaction class, the first time one is opened."""
    for name in dir(tx):
        if not (name.startswith("__") and name.endswith("__")) and not hasattr(AuditedTx, name):
            setattr(AuditedTx, name, _Forward(name))
    _FORWARDED.add(type(tx))


class AuditedStore:
    """The store as the service sees it: the same store, whose write transactions audit."""

    def __init__(self, store: Any, audit: AuditSink) -> None:
        self._store = store
        self._audit = audit
        self._local = threading.local()
        # the store's own bound method, not a forwarding one (every memory write reads once)
        object.__setattr__(self, "reading", store.reading)
        # write(): this store's transaction class itself (making one is a C call, not one
        # more Python call per write); the method below says what it does
        object.__setattr__(self, "write", _tx_class(store, audit, self._local))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("_store", "_audit", "_local", "reading", "write"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._store, name, value)

    @property
    def inner(self) -> Any:
        """The unwrapped store (for code that must not audit, e.g. verification reads)."""
        return self._store

    def write(self) -> AbstractContextManager[AuditedTx]:
        """A write block of the store whose changes are audited (shadowed in ``__init__`` by
        the same call with its arguments bound)."""
        return self.__dict__["write"]()  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the store; first sign what this process appended (a clean shutdown of the
        Python API or the MCP server leaves no entry of its own unsigned)."""
        self._audit.sign_unsigned()
        self._store.close()


def _tx_class(store: Any, audit: AuditSink, local: threading.local) -> type[AuditedTx]:
    """The :class:`AuditedTx` of one audited store: a subclass holding the store, the log and
    the thread's open unit as class attributes, so making one per write runs no Python code."""
    return type("AuditedTx", (AuditedTx,), {"__slots__": (), "_store": store, "_audit": audit, "_local": local})


def unwrap(store: Any) -> Any:
    """The store under an :class:`AuditedStore` (or the store itself)."""
    return store.inner if isinstance(store, AuditedStore) else store
