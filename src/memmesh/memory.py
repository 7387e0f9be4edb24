"""The embedded Python API: ``Memory`` (sync) and ``AsyncMemory`` (same methods, awaitable).

Both are thin over :class:`memmesh.service.Service`; ``AsyncMemory`` runs each call on a
worker thread (the logic is written once, synchronously, as in datasette).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from memmesh.clock import Clock
from memmesh.compose import build
from memmesh.config import Settings, db_override, load_settings
from memmesh.curator import CuratorReport, CuratorRun, RollbackReport
from memmesh.errors import InvalidInputError
from memmesh.extraction.core import ExtractionJob, RememberResult
from memmesh.governance import EffectiveStandard, PendingAction, Standard
from memmesh.model import LOCAL_PRINCIPAL, GcReport, HistoryEntry, Hit, Link, Page, RecallResult, Stats, Tombstone
from memmesh.model import Memory as MemoryRecord
from memmesh.service import Service
from memmesh.sessions.core import Rehydrated, SessionInfo, Turn
from memmesh.transfer import ImportOptions

if TYPE_CHECKING:
    from memmesh.io.backup import BackupResult, RestoreReport
    from memmesh.io.importers.reports import ImportReport
    from memmesh.io.jsonl import ImportReport as JsonlImportReport


def _open(url: str | None, config: Settings | str | Path | None, clock: Clock | None, create: bool = True) -> Service:
    if isinstance(config, Settings):
        settings = (
            config
            if url is None
            else config.model_copy(update={"storage": config.storage.model_copy(update={"url": db_override(url)["storage"]["url"]})})
        )
    else:
        settings = load_settings(config, overrides=db_override(url))
    return build(settings, clock=clock, create=create)


class Memory:
    """Long-term memory in one local database (SQLite by default).

    >>> m = Memory("sqlite:///:memory:")          # doctest: +SKIP
    >>> m.add("Alice prefers tea", namespace="people/alice")
    >>> m.recall("what does alice drink?").hits[0].memory.content
    """

    def __init__(
        self, url: str | None = None, config: Settings | str | Path | None = None, *, clock: Clock | None = None, create: bool = True
    ) -> None:
        """Open (by default creating) the store; ``create=False`` makes a missing store a
        ``NotFoundError`` naming the path instead, for code that only reads."""
        self.service = _open(url, config, clock, create)
        self.service.engine.warm_up()  # the vectors load in the background, not in the first recall
        self.principal = LOCAL_PRINCIPAL
        """The embedded caller: this process opened the database itself, so it has every right."""

    @overload
    def add(self, content: str, *, wait: bool = False, **fields: Any) -> MemoryRecord: ...

    @overload
    def add(
        self,
        content: None = None,
        *,
        messages: Iterable[Mapping[str, Any]],
        infer: bool = True,
        session_id: str | None = None,
        namespace: str | None = None,
        agent_id: str | None = None,
    ) -> RememberResult: ...

    def add(
        self, content: str | None = None, *, messages: Iterable[Mapping[str, Any]] | None = None, wait: bool = False, **fields: Any
    ) -> MemoryRecord | RememberResult:
        """Store one memory; fields as in docs/concepts.md (namespace, title, tier, tags, …).

        Returns once the memory is committed (recallable by keyword); its vector follows in
        the background. ``wait=True`` returns only once the vector is stored too.

        With ``messages=[{"role": "user", "content": "…"}, …]`` instead of ``content``,
        remember a conversation (docs/extraction.md): the turns are stored first, in the
        session ``session_id`` (a new one when omitted), then with ``infer=True`` (the
        default) the facts in them are extracted, stored and linked ``derived_from`` their
        turns, inline; the result holds the turns and the extraction report.

        ``links=[{"target_id": ID, "relation": "derived_from"}, …]`` (Python API only) are
        stored with the memory in the same transaction: all of them and the memory, or nothing."""
        if messages is None:
            if content is None:
                raise InvalidInputError("give the content to store, or messages=[{'role': ..., 'content': ...}] to remember a conversation")
            links: Sequence[Mapping[str, Any]] | None = fields.pop("links", None)
            if links is not None:
                return self.service.add_linked({"content": content, **fields}, links, principal=self.principal, wait=wait)[0]
            return self.service.add({"content": content, **fields}, principal=self.principal, wait=wait)
        if content is not None:
            raise InvalidInputError("give content or messages, not both")
        allowed = {"infer", "session_id", "namespace", "agent_id"}
        unknown = set(fields) - allowed
        if unknown:
            raise InvalidInputError(f"with messages, add takes only {', '.join(sorted(allowed))} (got {', '.join(sorted(unknown))})")
        given = messages if isinstance(messages, Sequence) else builtins.list(messages)  # a str is refused by the check, not split
        return self.service.extraction.remember(given, principal=self.principal, **fields)

    def extraction_job(self, job_id: str) -> ExtractionJob:
        """Status and report of a background extraction (HTTP and MCP run them in the background)."""
        return self.service.extraction.job(job_id, principal=self.principal)

    def add_many(self, items: Iterable[Mapping[str, Any] | str], *, wait: bool = False) -> builtins.list[MemoryRecord]:
        """Store many memories in one transaction (strings or dicts with ``content``);
        ``wait`` as in :meth:`add`."""
        return self.service.add_many(items, principal=self.principal, wait=wait)

    def search(self, query: str, **options: Any) -> builtins.list[Hit]:
        """Keyword (BM25) hits for a query; never counts as an access (as ``search`` on every face).

        Options: the filters of :meth:`recall`, top_k, explain. Use :meth:`recall` to find
        memories by meaning.
        """
        return self.service.search(query, principal=self.principal, **options).hits

    def recall(self, query: str, **options: Any) -> RecallResult:
        """Hits plus the mode used, what a token budget dropped, and notices.

        Options: namespace, tags, tier, kind, agent_id, since, until, as_of, top_k, mode
        (hybrid | keyword | vector), explain, budget_tokens, touch.
        """
        return self.service.recall(query, principal=self.principal, **options)

    def get(self, memory_id: str) -> MemoryRecord:
        return self.service.get(memory_id, principal=self.principal)

    def get_all(self, *, limit: int = 100, cursor: str | None = None, **filters: Any) -> builtins.list[MemoryRecord]:
        """Memories newest first (one page; use :meth:`list` for the cursor)."""
        return self.service.list(limit=limit, cursor=cursor, principal=self.principal, **filters).items

    def list(self, *, limit: int = 100, cursor: str | None = None, **filters: Any) -> Page:
        return self.service.list(limit=limit, cursor=cursor, principal=self.principal, **filters)

    def update(self, memory_id: str, *, wait: bool = False, **changes: Any) -> MemoryRecord:
        """Change fields of a memory; a new text is re-embedded in the background (``wait``
        as in :meth:`add`)."""
        return self.service.update(memory_id, changes, principal=self.principal, wait=wait)

    def delete(self, memory_id: str) -> Tombstone:
        return self.service.delete(memory_id, principal=self.principal)

    def delete_all(self, **filters: Any) -> int:
        return self.service.delete_all(principal=self.principal, **filters)

    def history(self, memory_id: str) -> builtins.list[HistoryEntry]:
        return self.service.history(memory_id, principal=self.principal)

    def link(self, source_id: str, target_id: str, relation: str = "related_to", **options: Any) -> Link:
        return self.service.link(source_id, target_id, relation, principal=self.principal, **options)

    def links(self, memory_id: str) -> builtins.list[Link]:
        return self.service.links(memory_id, principal=self.principal)

    def stats(self) -> Stats:
        return self.service.stats(principal=self.principal)

    def gc(self) -> GcReport:
        return self.service.gc(principal=self.principal)

    def reindex(self) -> int:
        return self.service.reindex(principal=self.principal)

    # -- the curator (memmesh.curator: reversible housekeeping runs) -------------------------

    def curate(self, *, dry_run: bool = False, namespace: str | None = None, max_ops: int | None = None) -> CuratorReport:
        """One curator run (its report: docs/curator.md); ``dry_run`` changes nothing. See docs/curator.md."""
        return self.service.curator.run(dry_run=dry_run, namespace=namespace, max_ops=max_ops, principal=self.principal)

    def curator_rollback(self, run_id: str) -> RollbackReport:
        """Put back exactly what curator run ``run_id`` changed."""
        return self.service.curator.rollback(run_id, principal=self.principal)

    def curator_runs(self, *, limit: int = 20) -> builtins.list[CuratorRun]:
        """Recorded curator runs, newest first."""
        return self.service.curator.runs(limit=limit, principal=self.principal)

    # -- backup, restore, export, import (all through memmesh.transfer, as on every face) --

    def backup(self, to: str | Path | None = None, *, retain: int | None = None) -> BackupResult:
        """Snapshot the whole store (consistent, while it stays in use) into the folder ``to``
        (default: ``<data dir>/backups``), with a checksummed manifest; keep the newest
        ``retain``. A missing ``to`` is created only when its parent exists."""
        return self.service.transfer.backup(to, retain=retain, principal=self.principal)

    def restore(self, snapshot: str | Path) -> RestoreReport:
        """Verify a snapshot made by :meth:`backup` and copy it into this store; records that
        break the write rules are refused and listed (``report.rejects``), newer data here is
        kept. A damaged or newer snapshot raises before anything is written."""
        return self.service.transfer.restore(snapshot, principal=self.principal)

    def export(self, path: str | Path, *, namespace: str | None = None) -> int:
        """Write memmesh JSON Lines (every memory with its history, every link) to ``path``,
        whole or not at all; returns how many memories it holds."""
        return self.service.transfer.export(path, namespace, principal=self.principal)

    def import_file(
        self, source: str | Path, *, format: str = "auto", dry_run: bool = False, **options: Any
    ) -> ImportReport | JsonlImportReport:
        """Import a file, folder or database URL idempotently (a re-run writes nothing).

        ``format``: auto, jsonl (memmesh's export), mcp-memory, mem0, mem0-history,
        basic-memory or sql (then ``legacy=LegacyTable(...)``). Options: namespace, tier,
        sample, check_only, batch_size. Named ``import_file`` because ``import`` is a
        Python keyword. Returns the import report (``ImportReport`` for other tools'
        formats, the JSON Lines report for memmesh's own)."""
        return self.service.transfer.import_source(
            source, ImportOptions(format=format, dry_run=dry_run, **options), principal=self.principal
        )

    def import_text(self, text: str, *, format: str = "auto", dry_run: bool = False, **options: Any) -> ImportReport | JsonlImportReport:
        """Like :meth:`import_file` for text already in hand (jsonl, mcp-memory or mem0)."""
        return self.service.transfer.import_text(text, ImportOptions(format=format, dry_run=dry_run, **options), principal=self.principal)

    def session_append(self, session_id: str, *, role: str = "user", content: str, namespace: str | None = None) -> Turn:
        """Store one turn at the end of a session (a ``kind="message"`` memory, in order)."""
        return self.service.sessions.append(session_id, role=role, content=content, namespace=namespace, principal=self.principal)

    def session_rehydrate(
        self, session_id: str, *, budget_tokens: int = 4000, query: str | None = None, namespace: str | None = None
    ) -> Rehydrated:
        """The latest turns, a summary of older ones and memories relevant to ``query``,
        within ``budget_tokens``, with the tokens used (see docs/bus.md, Sessions).
        ``namespace``: the session's root, when the id is used under several."""
        sessions = self.service.sessions
        return sessions.rehydrate(session_id, budget_tokens=budget_tokens, query=query, namespace=namespace, principal=self.principal)

    def session_list(self, *, limit: int = 100) -> builtins.list[SessionInfo]:
        """Sessions, most recently active first."""
        return self.service.sessions.list(limit=limit, principal=self.principal)

    # -- governance (docs/governance.md) ------------------------------------------------

    def set_standard(self, namespace: str, **fields: Any) -> Standard:
        """Set (replace) a namespace's standard: ``governance`` ({action: allow|approve|deny}),
        ``default_tier``, ``ttl_seconds``, ``retention_days``, ``required_tags``."""
        return self.service.governance.set_standard(namespace, **fields, principal=self.principal)

    def get_standard(self, namespace: str) -> EffectiveStandard:
        """The standard as it applies in ``namespace``: its own fields and inherited ones."""
        return self.service.governance.get_standard(namespace, principal=self.principal)

    def clear_standard(self, namespace: str) -> Standard:
        """Remove the namespace's own standard (its ancestors' still apply); returns it."""
        return self.service.governance.clear_standard(namespace, principal=self.principal)

    def pending(self, *, status: str | None = "pending", limit: int = 100) -> builtins.list[PendingAction]:
        """Actions a standard queued for approval (``status``: one state, or "all")."""
        return self.service.governance.pending(status=status, limit=limit, principal=self.principal)

    def approve(self, pending_id: str, *, reason: str | None = None) -> PendingAction:
        """Approve a pending action: it is applied at once, exactly once, as its requester."""
        return self.service.governance.approve(pending_id, reason=reason, principal=self.principal)

    def reject(self, pending_id: str, *, reason: str | None = None) -> PendingAction:
        """Reject a pending action: nothing is written; the decision is recorded."""
        return self.service.governance.reject(pending_id, reason=reason, principal=self.principal)

    # -- subscriptions and inboxes (docs/subscriptions.md) ---------------------------------

    def subscribe(self, namespace: str, url: str, *, events: builtins.list[str] | None = None, secret: str | None = None) -> Any:
        """Have every change in ``namespace`` POSTed, HMAC-signed, to ``url``; the result
        holds the signing secret (shown this once)."""
        return self.service.subscriptions.subscribe(namespace, url, events=events, secret=secret, principal=self.principal)

    def unsubscribe(self, subscription_id: str) -> Any:
        """Remove a subscription and its queued deliveries."""
        return self.service.subscriptions.unsubscribe(subscription_id, principal=self.principal)

    def subscriptions(self) -> builtins.list[Any]:
        """Subscriptions on namespaces this caller may read."""
        return self.service.subscriptions.list(principal=self.principal)

    def notify(self, to: str, body: str, **fields: Any) -> Any:
        """Leave a notification in agent ``to``'s inbox (``subject``, ``namespace``, ``memory_id``, ``sender``)."""
        return self.service.inbox.notify(to, body, **fields, principal=self.principal)

    def inbox(self, agent: str | None = None, **options: Any) -> builtins.list[Any]:
        """An agent's unread notifications, oldest first, marked read (``unread_only``, ``mark_read``, ``limit``)."""
        return self.service.inbox.read(agent=agent, **options, principal=self.principal)

    def close(self) -> None:
        """Finish this process's extractions and embeddings (bounded), then close the store."""
        self.service.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncMemory:
    """``Memory`` for asyncio code: the same methods, each a coroutine run on a thread."""

    def __init__(
        self, url: str | None = None, config: Settings | str | Path | None = None, *, clock: Clock | None = None, create: bool = True
    ) -> None:
        self._sync = Memory(url, config, clock=clock, create=create)

    @property
    def service(self) -> Service:
        return self._sync.service

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._sync, name)
        if not callable(method):
            return method

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call

    async def __aenter__(self) -> AsyncMemory:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self._sync.close)
