"""The write kernel's rules written once (issue 14): what the service and its satellites now
share, observed through the Python API."""

from __future__ import annotations

import pytest

from memmesh import Memory
from memmesh.errors import InvalidInputError
from memmesh.model import LOCAL_PRINCIPAL, HistoryEvent, Principal


def _promotion(mem: Memory, memory_id: str):
    entries = [e for e in mem.history(memory_id) if e.event == HistoryEvent.promote]
    assert len(entries) == 1
    return entries[0]


def test_automatic_and_manual_promotion_write_one_history_shape(mem: Memory) -> None:
    """Promotion by access counting and by a caller used to write different history records
    (the automatic one lost the expiry it removed); both now go through Kernel.promote."""
    by_access = mem.add("the build cache lives on the second disk", tier="mid")
    by_hand = mem.add("the release branch is cut on Mondays", tier="mid")
    for _ in range(mem.service.policy.promote_after_accesses):
        mem.service.get(by_access.id, principal=LOCAL_PRINCIPAL, touch=True)
    mem.service.lifecycle.promote(by_hand.id, principal=LOCAL_PRINCIPAL)

    auto, manual = _promotion(mem, by_access.id), _promotion(mem, by_hand.id)
    assert auto.old == {"tier": "mid", "expires_at": by_access.expires_at.isoformat()}
    assert manual.old == {"tier": "mid", "expires_at": by_hand.expires_at.isoformat()}
    assert auto.new == manual.new == {"tier": "long", "expires_at": None}
    assert auto.actor == "memmesh"
    assert mem.get(by_access.id).tier.value == mem.get(by_hand.id).tier.value == "long"


def test_an_empty_relation_is_refused_with_the_allowed_values(mem: Memory) -> None:
    """An empty relation used to reach ``Relation(None)`` and fail with a bare ValueError."""
    a, b = mem.add("service A calls service B"), mem.add("service B owns the billing table")
    with pytest.raises(InvalidInputError, match="relation is empty: use one of related_to"):
        mem.link(a.id, b.id, relation="")
    mem.link(a.id, b.id, relation="part_of")
    with pytest.raises(InvalidInputError, match="relation is empty"):
        mem.service.lifecycle.invalidate_link(a.id, b.id, "", principal=LOCAL_PRINCIPAL)
    assert [link.relation.value for link in mem.links(a.id)] == ["part_of"]


def test_delete_all_and_forget_delete_the_same_way(mem: Memory) -> None:
    """One bulk-delete loop: both leave a tombstone and a delete record holding the whole
    memory, so restore works after either."""
    for i in range(3):
        mem.add(f"scratch note {i}", namespace="scratch")
        mem.add(f"draft note {i}", namespace="drafts")
    assert mem.delete_all(namespace="scratch") == 3
    report = mem.service.lifecycle.forget(namespace="drafts", principal=LOCAL_PRINCIPAL)
    assert (report.matched, report.deleted) == (3, 3)
    for memory_id in report.ids:
        assert mem.history(memory_id)[-1].event == HistoryEvent.delete
        assert mem.history(memory_id)[-1].old["content"].startswith("draft note")
    restored = mem.service.lifecycle.restore(report.ids[0], principal=LOCAL_PRINCIPAL)
    assert restored.namespace == "drafts"
    assert mem.stats().total == 1


def test_bulk_delete_by_a_scoped_key_leaves_other_namespaces(mem: Memory) -> None:
    mine = mem.add("ours to clean", namespace="team/a", tags=["old"])
    theirs = mem.add("theirs to keep", namespace="other", tags=["old"])
    scoped = Principal(role="writer", namespaces=("team/*",), agent_id="cleaner")
    assert mem.service.delete_all(principal=scoped, tags=["old"]) == 1
    assert mem.get(theirs.id).content == "theirs to keep"
    assert mem.history(mine.id)[-1].actor == "cleaner"
