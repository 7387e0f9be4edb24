"""Imported ids are derived from the namespace imported into as well as the source's ids.

So the same file imported into two namespaces (by two keys that each see only their own)
gives two independent sets of memories, and an import says nothing about what another
namespace holds; a store an older version filled (ids from the source alone: ``mcp:<name>``,
``mem0:<id>``) still re-imports without duplicates; and an entity that is refused brings none
of its new observations in.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import CliResult
from tests.importers.conftest import MCP_ENTITIES, MCP_OBSERVATIONS, MCP_RELATIONS, Mem0History, mcp_lines, sqlite_url

from memmesh import Memory
from memmesh.io.importers import import_mcp_memory, import_mem0, import_mem0_history, mcp_memory, mem0
from memmesh.io.importers.base import Candidate, Item, PlannedLink, Writer
from memmesh.model import LOCAL_PRINCIPAL, Principal

GROWN = [{**MCP_ENTITIES[0], "observations": [*MCP_ENTITIES[0]["observations"], "Moved to Lisbon"]}, *MCP_ENTITIES[1:]]


def _json(result: CliResult) -> Any:
    assert result.out, result.err
    return json.loads(result.out)


def _key(cli, *namespaces: str) -> str:
    args = [arg for ns in namespaces for arg in ("-n", ns)]
    return _json(cli("keys", "create", "--agent", f"importer-{namespaces[0]}", "--role", "writer", *args, "--json"))["key"]


@pytest.mark.parametrize("fmt", ["mcp-memory", "mem0"])
def test_two_scoped_keys_import_the_same_file_into_their_own_namespaces(cli, tmp_path: Path, fmt: str, mem0_export) -> None:
    """Key b's import used to fail every record that namespace a already held ("no memory
    with id mcp:John_Smith is visible to this key"): it learnt that a holds them and could
    never import those names itself."""
    export = [r for r in mem0_export["results"] if "agent_id" not in r]  # a key imports only its own agent's memories
    source = tmp_path / "source.json"
    source.write_text(mcp_lines(MCP_ENTITIES, MCP_RELATIONS) if fmt == "mcp-memory" else json.dumps({"results": export}))
    keys = {team: _key(cli, team) for team in ("a", "b")}
    reports = {}
    for team in ("a", "b"):
        result = cli("import", str(source), "--format", fmt, "-n", f"{team}/kg", "--key", keys[team], "--json")
        reports[team] = _json(result)
        assert result.code == 0, result.out + result.err
    assert "visible" not in json.dumps(reports["b"]) and "a/kg" not in json.dumps(reports["b"])
    assert reports["b"]["totals"] == reports["a"]["totals"] and reports["b"]["failures"] == []
    expected = reports["a"]["totals"]["added"]
    assert expected == (len(MCP_ENTITIES) + MCP_OBSERVATIONS if fmt == "mcp-memory" else len(export))
    again = _json(cli("import", str(source), "--format", fmt, "-n", "b/kg", "--key", keys["b"], "--json"))
    assert again["failures"] == [] and again["totals"]["added"] == again["totals"]["updated"] == 0
    assert again["totals"]["skipped"] == expected
    listed = _json(cli("list", "--json", "--limit", "100"))["items"]
    assert len(listed) == 2 * expected and len({m["id"] for m in listed}) == 2 * expected
    assert sum(m["namespace"].startswith("a/kg") for m in listed) == expected


def _old_import(mem: Memory, items: list[Item], links: list[PlannedLink]) -> None:
    """Write what a version before namespace-derived ids wrote: the same memories under the
    ids it gave them (``mcp:<name>``, ``mem0:<id>``), which a Candidate keeps as legacy_id."""
    old = {str(i.fields["id"]): getattr(i, "legacy_id", None) or str(i.fields["id"]) for i in items if isinstance(i, Candidate)}
    items = [replace(i, fields={**i.fields, "id": old[str(i.fields["id"])]}) if isinstance(i, Candidate) else i for i in items]
    writer = Writer(mem.service, principal=LOCAL_PRINCIPAL)
    writer.apply(items)
    writer.link([PlannedLink(old.get(ln.source_id, ln.source_id), old.get(ln.target_id, ln.target_id), ln.relation) for ln in links])


def _old_mcp_import(mem: Memory, namespace: str) -> None:
    graph = mcp_memory.parse_graph(mcp_lines(MCP_ENTITIES, MCP_RELATIONS).splitlines(), namespace)
    _old_import(mem, *mcp_memory.plan(mem.service, graph, namespace, principal=LOCAL_PRINCIPAL))


def _digest(text: str, chars: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def test_a_store_an_older_version_filled_reimports_into_the_same_memories(mem: Memory) -> None:
    _old_mcp_import(mem, "kg")
    total = mem.stats().total
    assert mem.get("mcp:John_Smith").namespace == "kg"

    again = import_mcp_memory(mem.service, mcp_lines(MCP_ENTITIES, MCP_RELATIONS), namespace="kg", principal=LOCAL_PRINCIPAL)
    assert again.written == 0 and again.skipped_reasons == {"already imported": total} and mem.stats().total == total

    grown = import_mcp_memory(mem.service, mcp_lines(GROWN, MCP_RELATIONS), namespace="kg", principal=LOCAL_PRINCIPAL)
    assert (grown.totals.added, grown.totals.updated, grown.failures) == (1, 0, [])
    new_id = f"mcp:{_digest('kg', 16)}:John_Smith:{_digest('Moved to Lisbon', 12)}"  # the new, namespace-derived id
    assert mem.get(new_id).content == "John_Smith: Moved to Lisbon"
    assert ("mcp:John_Smith", "part_of") in {(link.target_id, link.relation.value) for link in mem.links(new_id)}
    assert mem.stats().total == total + 1


def test_an_older_import_in_a_namespace_the_key_cannot_see_is_as_if_absent(mem: Memory) -> None:
    _old_mcp_import(mem, "a/kg")
    team_b = Principal(agent_id="b", role="writer", namespaces=["b/*"])
    for dry_run in (True, False):
        report = import_mcp_memory(mem.service, mcp_lines(MCP_ENTITIES, MCP_RELATIONS), namespace="b/kg", dry_run=dry_run, principal=team_b)
        assert report.failures == [] and report.totals.added == len(MCP_ENTITIES) + MCP_OBSERVATIONS
    assert {m.namespace for m in mem.list(limit=100).items} == {"a/kg", "b/kg"}
    assert mem.get("mcp:John_Smith").namespace == "a/kg"


def test_mem0_export_and_history_find_an_older_versions_ids(mem: Memory, tmp_path: Path, mem0_export: dict[str, Any]) -> None:
    _old_import(mem, mem0.plan_export(mem0.export_records(mem0_export), "mem0"), [])
    total, kept, doomed = mem.stats().total, mem0_export["results"][0], mem0_export["results"][3]
    assert import_mem0(mem.service, json.dumps(mem0_export), principal=LOCAL_PRINCIPAL).written == 0
    history = Mem0History(tmp_path / "history.db")
    history.add(kept["memory"], memory_id=kept["id"])
    history.update(kept["id"], kept["memory"], "Likes to play cricket and squash")
    history.add(doomed["memory"], memory_id=doomed["id"])
    history.delete(doomed["id"], doomed["memory"])
    report = import_mem0_history(mem.service, history.path, principal=LOCAL_PRINCIPAL)
    assert (report.totals.updated, report.totals.deleted, report.totals.added) == (1, 1, 0)
    assert mem.get(f"mem0:{kept['id']}").content == "Likes to play cricket and squash"  # in its user namespace still
    assert mem.get(f"mem0:{kept['id']}").namespace == mem0.namespace_for("mem0", kept)
    assert mem.service.store.get(f"mem0:{doomed['id']}") is None and mem.stats().total == total - 1


def test_an_older_history_import_moves_to_its_user_when_the_export_comes(mem: Memory, tmp_path: Path, mem0_export) -> None:
    """An older version imported mem0's history db first (into the base ``mem0``, the db
    records no user); the export then moves each memory to its user, still without duplicates."""
    kept = mem0_export["results"][0]
    history = Mem0History(tmp_path / "history.db")
    history.add(kept["memory"], memory_id=kept["id"])
    _old_import(mem, mem0.read_history(history.path, "mem0"), [])
    assert mem.get(f"mem0:{kept['id']}").namespace == "mem0"
    report = import_mem0(mem.service, json.dumps({"results": [kept]}), principal=LOCAL_PRINCIPAL)
    assert (report.totals.updated, report.totals.added, report.failures) == (1, 0, [])
    assert mem.get(f"mem0:{kept['id']}").namespace == mem0.namespace_for("mem0", kept) and mem.stats().total == 1


def test_a_refused_entity_brings_none_of_its_new_observations(mem: Memory) -> None:
    """John's entity was moved out of the namespace after the import, so re-importing it is
    refused; its new observation used to be imported anyway, without its entity."""
    import_mcp_memory(mem.service, mcp_lines(MCP_ENTITIES, MCP_RELATIONS), namespace="kg", principal=LOCAL_PRINCIPAL)
    john = mem.service.entities.lookup("john_smith", namespace="kg", principal=LOCAL_PRINCIPAL)[0]
    mem.update(john.id, namespace="kg/moved")
    total = mem.stats().total
    report = import_mcp_memory(mem.service, mcp_lines(GROWN, MCP_RELATIONS), namespace="kg", principal=LOCAL_PRINCIPAL)
    assert not [m for m in mem.list(limit=100).items if "Lisbon" in m.content]
    assert report.totals.added == 0 and mem.stats().total == total
    reasons = {f.id: f.reason for f in report.failures}
    assert reasons["John_Smith observation 4"] == "not imported because 'entity John_Smith', which it is part of, was not"
    assert "it was moved there since it was imported into 'kg'" in reasons["entity John_Smith"]
    assert report.skipped_reasons == {"already imported": MCP_OBSERVATIONS + len(MCP_ENTITIES) - 1}  # all but John: unchanged


def test_two_scoped_keys_import_tables_with_the_same_row_ids(cli, tmp_path: Path) -> None:
    """Rows of two teams' tables that share ids and the table name: b's import used to fail
    each row a had imported ("no memory with id legacy:notes:1 is visible to this key")."""
    keys = {team: _key(cli, team) for team in ("a", "b")}
    for team in ("a", "b"):
        path = tmp_path / f"{team}.db"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE notes (id INTEGER, content TEXT)")
            conn.executemany("INSERT INTO notes VALUES (?, ?)", [(1, f"{team} first note"), (2, f"{team} second note")])
        conn.close()
        args = ("import", sqlite_url(path), "--table", "notes", "--namespace", f"{team}/legacy", "--key", keys[team], "--json")
        result = cli(*args)
        assert result.code == 0 and "visible" not in result.out, result.out + result.err
        assert _json(result)["totals"]["added"] == 2
        assert _json(cli(*args))["totals"]["skipped"] == 2  # a re-run finds them
    assert sorted(m["content"] for m in _json(cli("list", "--json"))["items"]) == [
        "a first note",
        "a second note",
        "b first note",
        "b second note",
    ]
