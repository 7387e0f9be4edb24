"""What the core modules the service builds around itself (audit log, bus, sessions,
governance) use of it.

They are built by :class:`memmesh.service.Service` and handed the service; typing that
hand-over with this protocol instead of ``Service`` keeps them below the service in the
layer picture (docs/architecture.md): the service imports them, they never import it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from memmesh.clock import Clock
from memmesh.kernel import CoreCalls, Kernel, Policy
from memmesh.model import Link, Memory, NewMemory, Principal, Relation, Tombstone
from memmesh.store.base import Store


class Promoter(Protocol):
    """The lifecycle calls governance replays once approved: a promotion, a consolidation,
    a link's invalidation."""

    def promote(self, memory_id: str, *, principal: Principal) -> Memory: ...
    @property
    def consolidate(self) -> Callable[..., Memory]:
        """``Lifecycle.consolidate`` (memory ids, summary content, its options, principal)."""
        ...

    def invalidate_link(
        self, source_id: str, target_id: str, relation: Relation | str = ..., *, at: datetime | str | None = None, principal: Principal
    ) -> Link: ...


class Host(CoreCalls, Protocol):
    """The service as its built-in modules see it: its store, id, rules, clock and kernel,
    and the public calls they compose (those of :class:`CoreCalls`, plus the writes that
    governance replays once an action is approved)."""

    @property
    def store(self) -> Store:
        """The store every write goes through (the audited one)."""
        ...

    @property
    def node_id(self) -> str:
        """This node's id."""
        ...

    @property
    def kernel(self) -> Kernel:
        """The write kernel and the shared rules."""
        ...

    @property
    def policy(self) -> Policy:
        """The configured rules (limits, TTLs, quotas, governance)."""
        ...

    @property
    def clock(self) -> Clock:
        """The time every rule uses."""
        ...

    @property
    def lifecycle(self) -> Promoter:
        """promote and the other lifecycle calls."""
        ...

    def add_many(
        self,
        items: Iterable[NewMemory | Mapping[str, Any]],
        *,
        principal: Principal,
        within: Callable[[Any, builtins.list[Memory]], None] | None = None,
        unqueued: tuple[str, str, str] | None = None,
    ) -> builtins.list[Memory]:
        """``within(tx, stored)`` runs inside the same transaction, and ``unqueued`` (required
        with ``within``) words the refusal where writes need approval (see Service.add_many)."""
        ...

    def delete(self, memory_id: str, *, principal: Principal) -> Tombstone: ...

    def await_vectors(self, timeout: float = 30.0) -> bool:
        """Wait until the writes queued for background embedding so far have their vectors."""
        ...

    def link(
        self,
        source_id: str,
        target_id: str,
        relation: Relation | str = Relation.related_to,
        *,
        valid_from: datetime | str | None = None,
        valid_until: datetime | str | None = None,
        principal: Principal,
    ) -> Link: ...
