"""Governance that arrives from a peer is audited on the receiving node (issue 15 "Left"): one
entry per applied standard or decision, naming ``system:replica`` and the origin node; an
older or duplicate item changes nothing and appends nothing; both logs verify. In-process
nodes, one on SQLite and one on each backend (PostgreSQL from scripts/pg_test_server.py)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.federation.test_catchup_backends import pg_url
from tests.federation.test_replicate_standards import pair, replay, sync

from memmesh.errors import PendingApprovalError
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.service import Service

__all__ = ["pair", "pg_url"]

KINDS = ("standard.", "pending.", "governance.")


def governed(service: Service) -> list[Any]:
    return [e for e in service.audit.entries(principal=P, limit=1000).entries if e.action.startswith(KINDS)]


def test_replicated_standards_and_decisions_are_audited_once_naming_the_origin(pair: tuple[Service, Service]) -> None:
    a, b = pair
    a.governance.set_standard("legal", governance={"write": "approve"}, principal=P)
    first = sync(a, b)
    got = governed(b)
    assert [(e.action, e.target, e.namespace) for e in got] == [("standard.set", "legal", "legal")]
    assert got[0].actor.startswith("system:replica") and got[0].actor.endswith("node:node-a")
    assert got[0].detail == governed(a)[0].detail  # the same standard: the same digest and fields
    assert replay(first, b).applied == 0
    assert len(governed(b)) == 1  # a duplicate appends nothing

    with pytest.raises(PendingApprovalError) as queued:
        a.add({"content": "The supplier contract renews in March.", "namespace": "legal"}, principal=P)
    pending_id = queued.value.details["pending_id"]
    sync(a, b)
    assert [(e.action, e.target) for e in governed(b)][1:] == [("pending.queue", pending_id)]
    assert governed(b)[-1].actor.endswith("node:node-a")

    b.governance.approve(pending_id, reason="checked", principal=P)
    local = [(e.action, e.actor) for e in governed(b)][2:]
    assert local == [("pending.approve", "local"), ("pending.apply", "local")]
    before_a = len(governed(a))
    decision = sync(b, a)
    arrived = governed(a)[before_a:]
    # the feed carries the action's latest state: one entry for the one change applied on a
    assert [(e.action, e.target) for e in arrived] == [("pending.apply", pending_id)]
    assert arrived[0].actor.startswith("system:replica") and arrived[0].actor.endswith("node:node-b")
    assert arrived[0].detail["status"] == "applied" and "reason_digest" in arrived[0].detail
    assert replay(decision, a).applied == 0 and len(governed(a)) == before_a + 1

    a.governance.clear_standard("legal", principal=P)
    sync(a, b)
    assert [(e.action, e.target) for e in governed(b)][-1] == ("standard.clear", "legal")
    count = len(governed(b))
    assert replay(first, b).applied == 0  # the older set after the clear: ignored, no entry
    assert len(governed(b)) == count
    for node in (a, b):
        assert node.audit.verify(principal=P).problems == []
