"""Import the official MCP memory server's knowledge graph (``memory.jsonl``).

The server (modelcontextprotocol/servers, ``src/memory``) keeps one JSON object per line:
``{"type": "entity", "name", "entityType", "observations": [...]}`` and
``{"type": "relation", "from", "to", "relationType"}``. It becomes:

- each entity → an entity memory (memmesh's entity convention: tags ``entity`` and
  ``alias:<name>``, metadata ``entity``/``aliases``), tag = its entityType, id
  ``mcp:<namespace digest>:<name>`` (:func:`entity_id`);
  its outgoing relations, with their original types, are kept in its metadata;
- each observation → a memory ``"<entity>: <observation>"`` (the entity named in the text,
  so recall finds "what does Alice drink?"), id ``<entity id>:<hash of the observation>``,
  linked ``part_of`` its entity (and not imported when its entity is refused);
- each relation → a link between the two entity memories, ``related_to`` unless the
  relationType is obviously one of memmesh's relations (``part_of``, ``is part of``, …).

Ids come from entity names and observation text, not positions, so a re-import after the
graph grew adds only the new parts; the namespace's digest in every id keeps two namespaces'
imports of one file apart (an older version's ``mcp:<name>`` in the same namespace is still
found and refreshed). An entity already registered in the namespace (same
alias) is reused rather than duplicated. Malformed lines are reported, not fatal.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from memmesh.entities import ALIAS_PREFIX, ENTITY_TAG, entity_of
from memmesh.io.importers.base import (
    Item,
    PlannedLink,
    Present,
    Rejected,
    entity_alias,
    id_part,
    imported_candidate,
    scoped_id,
)
from memmesh.model import MAX_TAG_CHARS, Principal, Relation
from memmesh.service import Service

FORMAT = "mcp-memory"
DEFAULT_NAMESPACE = "mcp"

_RELATION_SYNONYMS = {
    "relates_to": Relation.related_to,
    "related": Relation.related_to,
    "replaces": Relation.supersedes,
    "derives_from": Relation.derived_from,
    "based_on": Relation.derived_from,
    "refers_to": Relation.mentions,
    "mentioned": Relation.mentions,
}


@dataclass
class Entity:
    name: str
    entity_type: str
    observations: list[str] = field(default_factory=list)
    relations: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Graph:
    """The parsed file: entities by name, relations, and the lines that could not be read."""

    entities: dict[str, Entity] = field(default_factory=dict)
    relations: list[tuple[str, str, str]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def map_relation(relation_type: str) -> Relation:
    """memmesh's relation for an MCP relationType: the same name (``is_`` or spaces allowed),
    an obvious synonym, else ``related_to`` (the original is kept in the entity's metadata)."""
    name = re.sub(r"[\s-]+", "_", relation_type.strip().lower())
    for candidate in (name, name.removeprefix("is_")):
        if candidate in Relation.__members__:
            return Relation(candidate)
    return _RELATION_SYNONYMS.get(name, Relation.related_to)


def parse_graph(lines: Iterable[str], namespace: str) -> Graph:
    """Read every line; a bad line is a Rejected item (with its line number), not an error."""
    graph = Graph()
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            graph.rejected.append(Rejected(f"line {number}", namespace, f"not JSON ({exc.msg})"))
            continue
        except RecursionError:  # JSON nested thousands deep: hostile, not an entity
            graph.rejected.append(Rejected(f"line {number}", namespace, "JSON nested too deeply"))
            continue
        problem = _read_record(record, graph)
        if problem:
            graph.rejected.append(Rejected(f"line {number}", namespace, problem))
    return graph


def _read_record(record: Any, graph: Graph) -> str | None:
    if not isinstance(record, dict):
        return "not a JSON object"
    kind = record.get("type")
    if kind == "entity":
        name, entity_type, observations = record.get("name"), record.get("entityType", ""), record.get("observations", [])
        if not isinstance(name, str) or not name.strip():
            return "entity without a name"
        if not isinstance(entity_type, str) or not isinstance(observations, list) or not all(isinstance(o, str) for o in observations):
            return f"entity {name!r}: entityType must be a string and observations a list of strings"
        entity = graph.entities.setdefault(name, Entity(name, entity_type))
        entity.observations.extend(o for o in observations if o not in entity.observations)
        return None
    if kind == "relation":
        ends = [record.get(k) for k in ("from", "to", "relationType")]
        texts = [v for v in ends if isinstance(v, str) and v.strip()]
        if len(texts) != 3:
            return "relation needs non-empty strings from, to and relationType"
        graph.relations.append((texts[0], texts[1], texts[2]))
        return None
    return f"unknown type {kind!r} (entity, relation)"


def entity_id(name: str, namespace: str) -> str:
    """An entity's memory id in ``namespace``: ``mcp:<namespace digest>:<name part>``."""
    return scoped_id("mcp", namespace, id_part(name))


def observation_id(name: str, observation: str, namespace: str) -> str:
    return f"{entity_id(name, namespace)}:{_observation_digest(observation)}"


def legacy_entity_id(name: str) -> str:
    """The id versions before namespace-derived ids gave an entity (found, not written)."""
    return f"mcp:{id_part(name)}"


def _legacy_observation_id(name: str, observation: str) -> str:
    return f"{legacy_entity_id(name)}:{_observation_digest(observation)}"


def _observation_digest(observation: str) -> str:
    return hashlib.sha256(observation.encode()).hexdigest()[:12]


def plan(
    service: Service,
    graph: Graph,
    namespace: str,
    *,
    tier: str = "long",
    principal: Principal,
) -> tuple[list[Item], list[PlannedLink]]:
    """The items and links for a parsed graph (entities first, so links find their ends)."""
    for source, target, relation_type in graph.relations:
        if source in graph.entities:
            graph.entities[source].relations.append({"type": relation_type, "to": target})
    items: list[Item] = list(graph.rejected)
    links: list[PlannedLink] = []
    known = known_entities(service, namespace, principal)
    for entity in graph.entities.values():
        items.append(_entity_item(known, entity, namespace, tier))
        for index, observation in enumerate(entity.observations):
            items.append(_observation_item(entity, index, observation, namespace, tier))
            links.append(
                PlannedLink(observation_id(entity.name, observation, namespace), entity_id(entity.name, namespace), Relation.part_of.value)
            )
    for source, target, relation_type in graph.relations:
        if source not in graph.entities or target not in graph.entities:
            items.append(
                Rejected(
                    f"relation {source} -{relation_type}-> {target}",
                    namespace,
                    f"entity {source if source not in graph.entities else target!r} is not in the file",
                )
            )
            continue
        links.append(PlannedLink(entity_id(source, namespace), entity_id(target, namespace), map_relation(relation_type).value))
    return items, links


def known_entities(service: Service, namespace: str, principal: Principal) -> dict[str, str]:
    """Alias → entity memory id for the entities already in the namespace (one paged scan)."""
    known: dict[str, str] = {}
    cursor = None
    while True:
        page = service.list(limit=1000, cursor=cursor, tags=[ENTITY_TAG], namespace=namespace, principal=principal)
        for memory in page.items:
            if memory.namespace == namespace:
                for alias in entity_of(memory).aliases:
                    known.setdefault(alias, memory.id)
        if page.next_cursor is None:
            return known
        cursor = page.next_cursor


def _entity_item(known: dict[str, str], entity: Entity, namespace: str, tier: str) -> Item:
    key = f"entity {entity.name}"
    alias = entity_alias(entity.name)
    holder = known.get(alias) if alias else None
    planned = entity_id(entity.name, namespace)
    if holder is not None and holder not in (planned, legacy_entity_id(entity.name)):
        return Present(key, namespace, "entity already registered", holder, planned, namespace)
    type_tag = entity.entity_type.strip().lower()[:MAX_TAG_CHARS]
    content = f"{entity.name} ({entity.entity_type})" if entity.entity_type.strip() else entity.name
    tags = [ENTITY_TAG, *([ALIAS_PREFIX + alias] if alias else []), *([type_tag] if type_tag else [])]
    meta: dict[str, Any] = {
        "entity": entity.name,
        "aliases": [alias] if alias else [],
        "entity_type": entity.entity_type,
        "relations": entity.relations,
    }
    return imported_candidate(
        key,
        namespace,
        memory_id=planned,
        content=content,
        tags=tags,
        meta=meta,
        tier=tier,
        origin={"format": FORMAT, "id": entity.name},
        legacy_id=legacy_entity_id(entity.name),
    )


def _observation_item(entity: Entity, index: int, observation: str, namespace: str, tier: str) -> Item:
    key = f"{entity.name} observation {index + 1}"
    if not observation.strip():
        return Rejected(key, namespace, "empty observation")
    content = f"{entity.name}: {observation}"
    type_tag = entity.entity_type.strip().lower()[:MAX_TAG_CHARS]
    tags = [type_tag] if type_tag else []
    meta: dict[str, Any] = {"entity": entity.name, "entity_type": entity.entity_type}
    return imported_candidate(
        key,
        namespace,
        memory_id=observation_id(entity.name, observation, namespace),
        content=content,
        tags=tags,
        meta=meta,
        tier=tier,
        origin={"format": FORMAT, "id": f"{entity.name}#{index + 1}"},
        legacy_id=_legacy_observation_id(entity.name, observation),
        parent=entity_id(entity.name, namespace),
    )


__all__ = ["DEFAULT_NAMESPACE", "FORMAT", "Graph", "entity_id", "legacy_entity_id", "map_relation", "observation_id", "parse_graph", "plan"]
