"""Retention from namespace standards: the ``retention_days`` of a standard, enforced.

``gc`` (the lifecycle sweep, also run by ``memmesh gc`` and the HTTP/MCP gc calls) calls
:func:`forget_past_retention`: every live memory created more than ``retention_days`` ago
in a namespace whose nearest standard sets a retention is deleted like any delete (a
tombstone, a history record with actor ``retention``, an audit entry), so it can be
restored from history while the tombstone is kept. The nearest standard decides: a
sub-namespace may keep memories longer or shorter than its parent. Retention is the
namespace's own policy, so it is not subject to the namespace's ``delete`` rule.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from memmesh.audit.capture import current_caller
from memmesh.governance.model import Standard
from memmesh.governance.policy import nearest
from memmesh.kernel import DELETE_BATCH
from memmesh.model import Principal
from memmesh.store.base import Filter

if TYPE_CHECKING:
    from memmesh.host import Host

RETENTION_ACTOR = Principal(agent_id="retention", role="admin")
"""Who history and the audit log name for a retention delete."""


def forget_past_retention(service: Host, standards: list[Standard], now: datetime) -> int:
    """Delete every live memory past its namespace's retention; returns how many."""
    token = current_caller.set(RETENTION_ACTOR)  # the audit entries of these deletes name "retention"
    try:
        return _forget(service, standards, now)
    finally:
        current_caller.reset(token)


def _forget(service: Host, standards: list[Standard], now: datetime) -> int:
    by_ns = {s.namespace: s for s in standards}
    forgotten = 0
    for standard in standards:
        if not standard.retention_days:
            continue
        cutoff = now - timedelta(days=standard.retention_days)
        ids = sorted(service.store.matching_ids(Filter(now=now, namespace=standard.namespace, until=cutoff)))
        for start in range(0, len(ids), DELETE_BATCH):
            with service.store.write() as tx:
                for memory_id in ids[start : start + DELETE_BATCH]:
                    current = tx.get(memory_id)
                    if current is None or current.created_at >= cutoff:
                        continue
                    days, set_on = nearest(current.namespace, by_ns, lambda s: s.retention_days)
                    if set_on != standard.namespace or not days:
                        continue  # a nearer standard decides this memory's retention
                    service.kernel.delete(tx, current, RETENTION_ACTOR, now)
                    forgotten += 1
    return forgotten
