"""The core behind the MCP lifecycle/graph/entity/survey tools, through the Python API:
rules, scopes and refusals (the MCP tests cover the happy paths end to end)."""

from __future__ import annotations

import pytest

from memmesh.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from memmesh.interfaces.mcp.catalog import ALL_TOOLS, FAMILIES, resolve_profile
from memmesh.interfaces.mcp.render import truncate
from memmesh.model import LOCAL_PRINCIPAL, Principal
from memmesh.survey import build_tree, jaccard


def test_profiles_resolve_to_families() -> None:
    assert resolve_profile(None) == ["core"]
    assert resolve_profile("graph") == ["core", "graph", "entities"]
    assert resolve_profile(" archive , agents ") == ["core", "archive", "agents"]
    assert resolve_profile("full") == list(FAMILIES)
    assert len(ALL_TOOLS) == len(set(ALL_TOOLS)) >= 36
    with pytest.raises(InvalidInputError, match="unknown MCP profile or tool family 'nope'"):
        resolve_profile("core,nope")


def test_truncate_marks_long_text() -> None:
    assert truncate("short") == "short"
    cut = truncate("x" * 1000, 10)
    assert cut.startswith("x" * 10 + "…") and "1000 chars" in cut and "memory_get" in cut


def test_taxonomy_tree_and_jaccard_are_pure() -> None:
    tree = build_tree({"a/b": 2, "a": 1, "c": 5, "a/b/c": 1})
    assert [(n.path, n.count, n.total) for n in tree] == [("c", 5, 5), ("a", 1, 4)]
    assert [(n.path, n.total) for n in tree[1].children] == [("a/b", 3)]
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert jaccard(set(), set()) == 0.0


def test_forget_needs_a_filter_and_dry_run_changes_nothing(mem) -> None:
    for i in range(3):
        mem.add(f"note {i}", namespace="scratch")
    mem.add("keep me", namespace="keep")
    with pytest.raises(InvalidInputError):
        mem.service.lifecycle.forget(principal=LOCAL_PRINCIPAL)
    preview = mem.service.lifecycle.forget(namespace="scratch", dry_run=True, principal=LOCAL_PRINCIPAL)
    assert (preview.matched, preview.deleted) == (3, 0) and len(mem.get_all(namespace="scratch")) == 3
    done = mem.service.lifecycle.forget(namespace="scratch", principal=LOCAL_PRINCIPAL)
    assert done.deleted == 3 and mem.get_all(namespace="scratch") == [] and len(mem.get_all()) == 1


def test_restore_refuses_live_and_clashing_memories(mem) -> None:
    kept = mem.add("alpha", namespace="n")
    with pytest.raises(ConflictError, match="not deleted"):
        mem.service.lifecycle.restore(kept.id, principal=LOCAL_PRINCIPAL)
    mem.delete(kept.id)
    twin = mem.add("alpha", namespace="n")
    with pytest.raises(ConflictError, match="already has this content"):
        mem.service.lifecycle.restore(kept.id, principal=LOCAL_PRINCIPAL)
    mem.delete(twin.id)
    back = mem.service.lifecycle.restore(kept.id, principal=LOCAL_PRINCIPAL)
    assert back.id == kept.id and [e.event.value for e in mem.history(kept.id)] == ["add", "delete", "restore"]
    with pytest.raises(NotFoundError):
        mem.service.lifecycle.restore("never-existed", principal=LOCAL_PRINCIPAL)


def test_scopes_hold_for_graph_entities_and_lifecycle(mem) -> None:
    mine = mem.add("team fact", namespace="team")
    secret = mem.add("hr fact", namespace="hr")
    mem.link(mine.id, secret.id, "related_to")
    team = Principal(agent_id="t", role="writer", namespaces=["team"])
    assert mem.service.graph.query(mine.id, principal=team).nodes == []
    with pytest.raises(NotFoundError):
        mem.service.graph.timeline(secret.id, principal=team)
    with pytest.raises(NotFoundError):
        mem.service.lifecycle.promote(secret.id, principal=team)
    with pytest.raises(ForbiddenError):
        mem.service.lifecycle.forget(namespace="hr", principal=team)
    with pytest.raises(ForbiddenError):
        mem.service.lifecycle.archive_purge(everything=True, principal=team)
    reader = Principal(agent_id="r", role="reader", namespaces=["*"])
    with pytest.raises(ForbiddenError):
        mem.service.entities.register("X", namespace="team", principal=reader)


def test_links_are_queried_as_of_a_time(mem, clock) -> None:
    a, b = mem.add("a", namespace="g"), mem.add("b", namespace="g")
    mem.link(a.id, b.id, "related_to")
    clock.advance(hours=1)
    before = clock.now
    clock.advance(hours=1)
    mem.service.lifecycle.invalidate_link(a.id, b.id, "related_to", principal=LOCAL_PRINCIPAL)
    assert mem.service.graph.query(a.id, principal=LOCAL_PRINCIPAL).nodes == []
    assert [n.memory.id for n in mem.service.graph.query(a.id, as_of=before, principal=LOCAL_PRINCIPAL).nodes] == [b.id]
    with pytest.raises(NotFoundError):
        mem.service.lifecycle.invalidate_link(a.id, b.id, "supersedes", principal=LOCAL_PRINCIPAL)
    with pytest.raises(InvalidInputError):
        mem.service.graph.find_paths(a.id, a.id, principal=LOCAL_PRINCIPAL)


def test_entity_aliases_are_unique_per_namespace(mem) -> None:
    alice = mem.service.entities.register("Alice", aliases=["Ally"], namespace="people", principal=LOCAL_PRINCIPAL)
    with pytest.raises(ConflictError, match="already names entity"):
        mem.service.entities.register("Alicia", aliases=["ally"], namespace="people", principal=LOCAL_PRINCIPAL)
    merged = mem.service.entities.register("Alice", aliases=["A."], namespace="people", principal=LOCAL_PRINCIPAL)
    assert merged.id == alice.id and merged.aliases == ["alice", "ally", "a."]
    other = mem.service.entities.register("Ally", namespace="elsewhere", principal=LOCAL_PRINCIPAL)
    assert {e.id for e in mem.service.entities.lookup("ally", principal=LOCAL_PRINCIPAL)} == {alice.id, other.id}


def test_archive_purge_needs_a_selector(mem) -> None:
    with pytest.raises(InvalidInputError, match="archive purge needs"):
        mem.service.lifecycle.archive_purge(principal=LOCAL_PRINCIPAL)
    with pytest.raises(NotFoundError):
        mem.service.lifecycle.archive_restore("nothing-archived", principal=LOCAL_PRINCIPAL)
