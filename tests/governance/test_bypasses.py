"""probe23's governance bypasses: calls that changed memories without their rule. Each call is
governed as the actions it really is (docs/governance.md, "What each call counts as"):

* a store with ``on_conflict: "update"`` that hits a titled memory is an ``update`` of it,
  and so is a repeated store that adds tags to the memory already holding its content;
* a consolidation is a ``write`` of its summary and a ``delete`` of its sources;
* ending a link (``kg_invalidate``) is a ``link``;
* an update to tier ``long`` is a ``promote``, an ``expires_at`` at or before now a
  ``delete``, a move an ``update`` plus a ``write`` in the target namespace.

Each test checks the refusal (or the queued pending action) and that nothing changed; the
queued ones are then approved and must make exactly the change asked for.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import FakeClock
from tests.mcp.conftest import keyword_mcp_env

from memmesh import Memory
from memmesh.config import load_settings
from memmesh.errors import GovernanceDeniedError, PendingApprovalError
from memmesh.model import LOCAL_PRINCIPAL, Principal, Tier

WRITER = Principal(agent_id="writer-1", role="writer", namespaces=["t/*"])
APPROVER = Principal(agent_id="lead-1", role="approver", namespaces=["t/*"])


def put(mem: Memory, content: str, namespace: str, **fields: Any) -> str:
    return mem.service.add({"content": content, "namespace": namespace, **fields}, principal=WRITER).id


def held(mem: Memory, namespace: str) -> list[str]:
    """The contents stored in ``namespace``, sorted."""
    return sorted(m.content for m in mem.service.list(namespace=namespace, limit=100, principal=LOCAL_PRINCIPAL).items)


def denied(rule: str, call: Any) -> GovernanceDeniedError:
    with pytest.raises(GovernanceDeniedError) as refused:
        call()
    assert refused.value.http_status == 403 and refused.value.code == "governance_denied"
    assert refused.value.details["rule"]["action"] == rule
    return refused.value


def queued(call: Any) -> PendingApprovalError:
    with pytest.raises(PendingApprovalError) as waiting:
        call()
    assert waiting.value.http_status == 202
    return waiting.value


def test_a_store_that_updates_a_titled_memory_is_an_update(mem: Memory) -> None:
    mem.set_standard("t/locked", governance={"update": "deny"})
    titled = put(mem, "original", "t/locked", title="doc")
    upsert = {"content": "upserted", "namespace": "t/locked", "title": "doc", "on_conflict": "update"}
    error = denied("update", lambda: mem.service.add(upsert, principal=WRITER))
    assert "governance.update = deny" in error.message
    denied("update", lambda: mem.service.add_many([{"content": "other", "namespace": "t/locked"}, upsert], principal=WRITER))
    assert held(mem, "t/locked") == ["original"] and len(mem.service.store.history(titled)) == 1
    # storing the same content again with a tag it lacks adds the tag: an update too
    denied("update", lambda: mem.service.add({"content": "original", "namespace": "t/locked", "tags": ["new"]}, principal=WRITER))
    assert mem.service.store.get(titled).tags == []  # type: ignore[union-attr]
    # a new title, or the same content again, updates nothing: a plain write, allowed
    assert put(mem, "fresh", "t/locked", title="new doc", on_conflict="update")
    assert put(mem, "original", "t/locked", title="doc", on_conflict="update") == titled


def test_a_store_that_updates_under_approve_waits_and_its_approval_updates_it(mem: Memory) -> None:
    mem.set_standard("t/review", governance={"update": "approve"})
    titled = put(mem, "original", "t/review", title="doc", tags=["a"])
    upsert = {"content": "upserted", "namespace": "t/review", "title": "doc", "on_conflict": "update", "tags": ["b"], "priority": 7}
    waiting = queued(lambda: mem.service.add(upsert, principal=WRITER))
    assert waiting.details["action"] == "update"
    assert held(mem, "t/review") == ["original"]
    assert mem.service.governance.approve(waiting.details["pending_id"], principal=APPROVER).status == "applied"
    updated = mem.service.store.get(titled)
    assert updated is not None and (updated.content, updated.tags, updated.priority) == ("upserted", ["b"], 7)
    assert held(mem, "t/review") == ["upserted"]


def test_a_store_with_update_over_http_is_refused_and_changes_nothing(http_server: Any) -> None:
    http = http_server.http()
    assert http.put("/api/v1/namespaces/t/locked/standard", json={"governance": {"update": "deny"}}).status_code == 200
    first = http.post("/api/v1/memories", json={"content": "original", "namespace": "t/locked", "title": "doc"})
    assert first.status_code == 201, first.text
    upsert = {"content": "upserted", "namespace": "t/locked", "title": "doc", "on_conflict": "update"}
    single = http.post("/api/v1/memories", json=upsert)
    batch = http.post("/api/v1/memories/batch", json={"items": [upsert]})
    for answer in (single, batch):
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "governance_denied", answer.text
    assert http.get(f"/api/v1/memories/{first.json()['id']}").json()["content"] == "original"


def test_a_consolidation_is_a_delete_of_its_sources_and_a_write_of_its_summary(mem: Memory) -> None:
    mem.set_standard("t/locked", governance={"delete": "deny"})
    mem.set_standard("t/nowrite", governance={"write": "deny"})
    a, b = put(mem, "fact a", "t/locked"), put(mem, "fact b", "t/locked")
    consolidate = mem.service.lifecycle.consolidate
    denied("delete", lambda: consolidate([a, b], "a+b", namespace="t/free", principal=WRITER))
    d, e = put(mem, "fact d", "t/free"), put(mem, "fact e", "t/free")
    denied("write", lambda: consolidate([d, e], "d+e", namespace="t/nowrite", principal=WRITER))
    assert (held(mem, "t/locked"), held(mem, "t/free"), held(mem, "t/nowrite")) == (["fact a", "fact b"], ["fact d", "fact e"], [])
    # keeping the sources deletes nothing there: allowed
    assert consolidate([a, b], "a+b", namespace="t/free", keep_sources=True, principal=WRITER).content == "a+b"


def test_a_consolidation_under_approve_waits_and_its_approval_consolidates(mem: Memory) -> None:
    mem.set_standard("t/review", governance={"delete": "approve"})
    a, b = put(mem, "fact a", "t/review"), put(mem, "fact b", "t/review")
    waiting = queued(lambda: mem.service.lifecycle.consolidate([a, b], "a+b", title="sum", tags=["x"], principal=WRITER))
    assert waiting.details["action"] == "delete" and held(mem, "t/review") == ["fact a", "fact b"]
    done = mem.service.governance.approve(waiting.details["pending_id"], principal=APPROVER)
    assert done.status == "applied"
    summary = mem.service.store.get(done.result["memory_id"])  # type: ignore[index]
    assert summary is not None and (summary.title, summary.tags, summary.metadata["consolidated_from"]) == ("sum", ["x"], [a, b])
    assert held(mem, "t/review") == ["a+b"]


def test_invalidating_a_link_is_a_link_action(mem: Memory, clock: FakeClock) -> None:
    a, b = put(mem, "fact a", "t/graph"), put(mem, "fact b", "t/graph")
    mem.service.link(a, b, "part_of", principal=WRITER)
    mem.set_standard("t/graph", governance={"link": "deny"})
    invalidate = mem.service.lifecycle.invalidate_link
    denied("link", lambda: invalidate(a, b, "part_of", principal=WRITER))
    assert [link.valid_until for link in mem.service.links(a, principal=LOCAL_PRINCIPAL)] == [None]
    mem.set_standard("t/graph", governance={"link": "approve"})
    until = clock() + timedelta(hours=1)
    waiting = queued(lambda: invalidate(a, b, "part_of", at=until, principal=WRITER))
    assert [link.valid_until for link in mem.service.links(a, principal=LOCAL_PRINCIPAL)] == [None]
    assert mem.service.governance.approve(waiting.details["pending_id"], principal=APPROVER).status == "applied"
    assert [link.valid_until for link in mem.service.links(a, principal=LOCAL_PRINCIPAL)] == [until]


def test_a_raise_to_tier_long_is_a_promote(mem: Memory) -> None:
    mem.set_standard("t/np", governance={"promote": "deny"})  # update stays allowed
    g = put(mem, "fact g", "t/np")
    denied("promote", lambda: mem.service.update(g, {"tier": "long"}, principal=WRITER))
    assert mem.service.store.get(g).tier == Tier.mid  # type: ignore[union-attr]
    assert mem.service.update(g, {"tier": "short"}, principal=WRITER).tier == Tier.short  # a lower tier is an update
    mem.set_standard("t/np", governance={"promote": "approve"})
    waiting = queued(lambda: mem.service.update(g, {"tier": "long", "content": "fact g, kept"}, principal=WRITER))
    assert waiting.details["action"] == "promote" and mem.service.store.get(g).tier == Tier.short  # type: ignore[union-attr]
    assert mem.service.governance.approve(waiting.details["pending_id"], principal=APPROVER).status == "applied"
    promoted = mem.service.store.get(g)
    assert promoted is not None and (promoted.tier, promoted.content, promoted.expires_at) == (Tier.long, "fact g, kept", None)


def test_an_expiry_at_or_before_now_is_a_delete(mem: Memory, clock: FakeClock) -> None:
    mem.set_standard("t/np", governance={"delete": "deny"})  # update stays allowed
    g = put(mem, "fact g", "t/np")
    for when in (clock(), clock() - timedelta(minutes=1)):
        denied("delete", lambda when=when: mem.service.update(g, {"expires_at": when}, principal=WRITER))
    assert held(mem, "t/np") == ["fact g"]
    later = clock() + timedelta(days=1)
    assert mem.service.update(g, {"expires_at": later}, principal=WRITER).expires_at == later  # a future expiry is an update


def test_a_move_must_pass_the_target_namespaces_write_rule(mem: Memory) -> None:
    mem.set_standard("t/nowrite", governance={"write": "deny"})
    f = put(mem, "fact f", "t/free")
    denied("write", lambda: mem.service.update(f, {"namespace": "t/nowrite"}, principal=WRITER))
    assert (held(mem, "t/free"), held(mem, "t/nowrite")) == (["fact f"], [])
    mem.set_standard("t/nowrite", governance={"write": "approve"})
    waiting = queued(lambda: mem.service.update(f, {"namespace": "t/nowrite"}, principal=WRITER))
    assert waiting.details["action"] == "write" and held(mem, "t/nowrite") == []
    assert mem.service.governance.approve(waiting.details["pending_id"], principal=APPROVER).status == "applied"
    assert (held(mem, "t/free"), held(mem, "t/nowrite")) == ([], ["fact f"])


def test_consolidate_and_kg_invalidate_over_mcp_are_refused_and_change_nothing(tmp_path: Path) -> None:
    env = keyword_mcp_env(tmp_path, tmp_path / "mcp.db")
    settings = load_settings(None, overrides={"data_dir": str(tmp_path / "py"), "embeddings": {"provider": "none"}}, env={})
    with Memory(f"sqlite:///{env.db}", settings) as mem:
        a, b = mem.add("fact a", namespace="t/locked").id, mem.add("fact b", namespace="t/locked").id
        mem.service.link(a, b, "part_of", principal=LOCAL_PRINCIPAL)
        mem.set_standard("t/locked", governance={"delete": "deny", "link": "deny"})

    async def scenario() -> None:
        async with env.client("--profile", "full") as c:
            merged = await c.call("memory_consolidate", ids=[a, b], content="a+b", namespace="t/free")
            ended = await c.call("memory_kg_invalidate", source_id=a, target_id=b, relation="part_of")
        for answer, rule in ((merged, "governance.delete = deny"), (ended, "governance.link = deny")):
            assert answer.is_error and rule in answer.text, answer.text

    asyncio.run(scenario())
    with Memory(f"sqlite:///{env.db}", settings) as mem:
        assert held(mem, "t/locked") == ["fact a", "fact b"] and held(mem, "t/free") == []
        assert [link.valid_until for link in mem.links(a)] == [None]


def test_a_retried_write_into_an_approve_namespace_is_one_pending_action(mem: Memory) -> None:
    """A client that retries (its answer was lost) with the same id used to queue a second
    action: an approver saw two, and approving both stored it once and failed the other."""
    mem.set_standard("t/review", governance={"write": "approve"})
    first = queued(lambda: mem.service.add({"content": "a fact", "namespace": "t/review", "id": "client-1"}, principal=WRITER))
    again = queued(lambda: mem.service.add({"content": "a fact", "namespace": "t/review", "id": "client-1"}, principal=WRITER))
    assert again.details["pending_id"] == first.details["pending_id"]
    other = queued(lambda: mem.service.add({"content": "another fact", "namespace": "t/review", "id": "client-2"}, principal=WRITER))
    assert other.details["pending_id"] != first.details["pending_id"]
    assert len(mem.service.governance.pending(principal=LOCAL_PRINCIPAL)) == 2
    assert mem.service.governance.approve(first.details["pending_id"], principal=APPROVER).status == "applied"
    assert held(mem, "t/review") == ["a fact"]
