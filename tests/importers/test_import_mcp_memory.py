"""The MCP memory server's memory.jsonl: entities, observations and relations → memories + links."""

from __future__ import annotations

from pathlib import Path

from tests.importers.conftest import MCP_ENTITIES, MCP_OBSERVATIONS, MCP_RELATIONS, mcp_lines

from memmesh import Memory
from memmesh.io.importers import detect_text_format, import_mcp_memory
from memmesh.io.importers.mcp_memory import entity_id, map_relation, observation_id
from memmesh.model import LOCAL_PRINCIPAL


def test_graph_becomes_entity_and_observation_memories_with_links(mem: Memory, mcp_file: Path) -> None:
    report = import_mcp_memory(mem.service, mcp_file.read_text(), namespace="kg", principal=LOCAL_PRINCIPAL)
    assert report.totals.added == len(MCP_ENTITIES) + MCP_OBSERVATIONS
    assert report.totals.failed == 0 and report.tenants[0].tenant == "kg"
    assert report.totals.links_written == MCP_OBSERVATIONS + len(MCP_RELATIONS)

    john = mem.get(entity_id("John_Smith", "kg"))
    assert john.namespace == "kg" and john.tier.value == "long"
    assert {"entity", "alias:john_smith", "person"} <= set(john.tags)
    assert {"type": "works_at", "to": "Anthropic"} in john.metadata["relations"]
    # memmesh's entity lookup finds the imported entity by its name
    assert [e.id for e in mem.service.entities.lookup("john_smith", namespace="kg", principal=LOCAL_PRINCIPAL)] == [john.id]

    spanish = mem.get(observation_id("John_Smith", "Speaks fluent Spanish", "kg"))
    assert spanish.content == "John_Smith: Speaks fluent Spanish"
    assert spanish.metadata["entity"] == "John_Smith" and "person" in spanish.tags

    links = {(link.source_id, link.target_id, link.relation.value) for link in mem.links(john.id)}
    assert (john.id, entity_id("Anthropic", "kg"), "related_to") in links  # works_at has no memmesh twin
    assert (spanish.id, john.id, "part_of") in links  # observation → its entity
    falcon_links = {(link.target_id, link.relation.value) for link in mem.links(entity_id("Project Falcon", "kg"))}
    assert (entity_id("Anthropic", "kg"), "part_of") in falcon_links  # "is part of" maps to part_of

    hits = mem.search("Which language does John speak?", namespace="kg")
    assert hits and hits[0].memory.id == spanish.id
    assert report.spot_check is not None and report.spot_check.found == report.spot_check.sampled > 0


def test_reimport_writes_nothing_and_a_grown_graph_adds_only_the_new_parts(mem: Memory, mcp_file: Path) -> None:
    import_mcp_memory(mem.service, mcp_file.read_text(), principal=LOCAL_PRINCIPAL)
    total = mem.stats().total
    again = import_mcp_memory(mem.service, mcp_file.read_text(), principal=LOCAL_PRINCIPAL)
    assert again.written == 0 and again.totals.skipped == total
    assert again.skipped_reasons == {"already imported": total} and again.totals.links_skipped > 0

    grown = [dict(e) for e in MCP_ENTITIES]
    grown[0] = {**grown[0], "observations": [*grown[0]["observations"], "Moved to Lisbon"]}
    grown.append({"name": "Lisbon", "entityType": "city", "observations": []})
    relations = [*MCP_RELATIONS, {"from": "John_Smith", "to": "Lisbon", "relationType": "lives_in"}]
    third = import_mcp_memory(mem.service, mcp_lines(grown, relations), principal=LOCAL_PRINCIPAL)
    # the new observation, the new entity, and John's entity (its relations changed) are written
    assert (third.totals.added, third.totals.updated) == (2, 1)
    assert third.totals.links_written == 2
    assert {"type": "lives_in", "to": "Lisbon"} in mem.get(entity_id("John_Smith", "mcp")).metadata["relations"]


def test_dry_run_reports_the_same_counts_and_writes_nothing(mem: Memory, mcp_file: Path) -> None:
    dry = import_mcp_memory(mem.service, mcp_file.read_text(), dry_run=True, principal=LOCAL_PRINCIPAL)
    assert mem.stats().total == 0 and mem.stats().links_count == 0
    real = import_mcp_memory(mem.service, mcp_file.read_text(), principal=LOCAL_PRINCIPAL)
    assert dry.dry_run and dry.totals.model_dump() == real.totals.model_dump()
    assert dry.spot_check is None


def test_malformed_lines_are_reported_and_the_rest_is_imported(mem: Memory) -> None:
    text = (
        mcp_lines(MCP_ENTITIES[:1], [])
        + "\n"
        + "\n".join(
            [
                "{not json",
                '{"type":"entity","entityType":"person","observations":["no name"]}',
                '{"type":"entity","name":"Bob","entityType":"person","observations":"not a list"}',
                '{"type":"relation","from":"John_Smith","to":"Nobody","relationType":"knows"}',
                '{"type":"widget","name":"x"}',
                '{"type":"entity","name":"Eve","entityType":"person","observations":["' + "y" * 70_000 + '"]}',
            ]
        )
    )
    report = import_mcp_memory(mem.service, text, principal=LOCAL_PRINCIPAL)
    reasons = {f.id: f.reason for f in report.failures}
    assert reasons["line 2"].startswith("not JSON")
    assert reasons["line 3"] == "entity without a name"
    assert "observations a list" in reasons["line 4"]
    assert reasons["line 6"].startswith("unknown type 'widget'")
    assert "'Nobody' is not in the file" in reasons["relation John_Smith -knows-> Nobody"]
    assert "limit is 65536" in reasons["Eve observation 1"]
    assert report.totals.failed == 6
    # John's entity + 3 observations, and Eve's entity: the rest is unaffected
    assert report.totals.added == 5 and mem.stats().total == 5


def test_an_entity_registered_by_hand_is_reused_not_duplicated(mem: Memory, mcp_file: Path) -> None:
    mine = mem.service.entities.register("Anthropic", namespace="mcp", description="AI safety company", principal=LOCAL_PRINCIPAL)
    report = import_mcp_memory(mem.service, mcp_file.read_text(), principal=LOCAL_PRINCIPAL)
    assert report.skipped_reasons == {"entity already registered": 1}
    assert [e.id for e in mem.service.entities.lookup("anthropic", namespace="mcp", principal=LOCAL_PRINCIPAL)] == [mine.id]
    targets = {link.target_id for link in mem.links(mine.id)}
    assert entity_id("John_Smith", "mcp") in {link.source_id for link in mem.links(mine.id)}
    assert observation_id("Anthropic", "Builds Claude", "mcp") in {link.source_id for link in mem.links(mine.id)} | targets


def test_relation_types_map_only_when_obvious() -> None:
    assert map_relation("part_of") == map_relation("is part of") == map_relation("Is-Part-Of")
    assert map_relation("is part of").value == "part_of"
    assert map_relation("supersedes").value == "supersedes" and map_relation("replaces").value == "supersedes"
    assert map_relation("works_at").value == "related_to" and map_relation("causes").value == "related_to"


def test_format_detection_tells_the_three_text_formats_apart(mcp_file: Path) -> None:
    assert detect_text_format(mcp_file.read_text()) == "mcp-memory"
    assert detect_text_format('{"results": [{"id": "1", "memory": "x"}]}') == "mem0"
    assert detect_text_format('{"type": "header", "format": "memmesh-jsonl", "version": 1}\n') == "jsonl"
    assert detect_text_format("hello\n") == "jsonl"  # its parser names the bad line
