"""Entities: named memories with aliases, for "everything about X" questions.

An entity is an ordinary memory (kind ``fact``, tier ``long``) titled with the entity's
name, whose metadata is ``{"entity": name, "aliases": [...]}``; each alias (and the name)
is also a tag ``alias:<lower-case alias>``, so a lookup by alias is an indexed tag query
and entities replicate, export and restore like any memory. Within one namespace an alias
names at most one entity; registering a known name again merges the aliases.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel

from memmesh.errors import ConflictError, InvalidInputError
from memmesh.kernel import CoreCalls
from memmesh.model import DEFAULT_NAMESPACE, MAX_TAG_CHARS, Memory, Principal, normalize_namespace

ENTITY_TAG = "entity"
ALIAS_PREFIX = "alias:"
MAX_ALIASES = 24


class Entity(BaseModel):
    """An entity as tools show it: its name, aliases and the memory that holds it."""

    id: str
    name: str
    aliases: list[str]
    namespace: str
    memory: Memory


def alias_key(alias: str) -> str:
    """How aliases compare: trimmed, lower case, inner whitespace collapsed."""
    if not isinstance(alias, str):
        raise InvalidInputError(f"alias {alias!r} is not a string")
    key = re.sub(r"\s+", " ", alias).strip().lower()
    if not key:
        raise InvalidInputError("an alias (or entity name) is empty")
    if len(ALIAS_PREFIX) + len(key) > MAX_TAG_CHARS:
        raise InvalidInputError(f"alias {key[:20]!r}… is {len(key)} characters; the limit is {MAX_TAG_CHARS - len(ALIAS_PREFIX)}")
    return key


def entity_of(memory: Memory) -> Entity:
    meta = memory.metadata
    return Entity(
        id=memory.id,
        name=str(meta.get("entity") or memory.title or ""),
        aliases=list(meta.get("aliases", [])),
        namespace=memory.namespace,
        memory=memory,
    )


class Entities:
    """Entity registration and lookup over one service (``service.entities``)."""

    def __init__(self, core: CoreCalls) -> None:
        self.core = core

    def register(
        self,
        name: str,
        *,
        aliases: Sequence[str] = (),
        namespace: str = DEFAULT_NAMESPACE,
        description: str | None = None,
        principal: Principal,
    ) -> Entity:
        """Create an entity, or add aliases (and a new description) to an existing one."""
        name = re.sub(r"\s+", " ", name or "").strip()
        keys = list(dict.fromkeys(alias_key(a) for a in [name, *aliases]))
        if len(keys) > MAX_ALIASES:
            raise InvalidInputError(f"{len(keys)} aliases given; the limit is {MAX_ALIASES}")
        namespace = normalize_namespace(namespace)
        existing = self._named(name, namespace, principal)
        for key in keys:
            for owner in self.lookup(key, namespace=namespace, principal=principal, exact_namespace=True):
                if existing is None or owner.id != existing.id:
                    raise ConflictError(
                        f"alias {key!r} already names entity {owner.name!r} ({owner.id}) in {namespace!r}",
                        details={"existing_id": owner.id},
                    )
        if existing is None:
            memory = self.core.add(
                {
                    "content": description or f"{name} (entity)",
                    "namespace": namespace,
                    "title": name,
                    "tier": "long",
                    "kind": "fact",
                    "tags": [ENTITY_TAG, *(ALIAS_PREFIX + k for k in keys)],
                    "metadata": {"entity": name, "aliases": keys},
                },
                principal=principal,
            )
            return entity_of(memory)
        merged = list(dict.fromkeys([*existing.aliases, *keys]))
        if len(merged) > MAX_ALIASES:
            raise InvalidInputError(f"entity {name!r} would have {len(merged)} aliases; the limit is {MAX_ALIASES}")
        other_tags = [t for t in existing.memory.tags if not t.startswith(ALIAS_PREFIX) and t != ENTITY_TAG]
        patch = {
            "tags": [ENTITY_TAG, *other_tags, *(ALIAS_PREFIX + k for k in merged)],
            "metadata": {**existing.memory.metadata, "aliases": merged},
        }
        if description:
            patch["content"] = description
        return entity_of(self.core.update(existing.id, patch, principal=principal))

    def lookup(self, alias: str, *, namespace: str | None = None, principal: Principal, exact_namespace: bool = False) -> list[Entity]:
        """Entities with this alias (or name), in ``namespace`` and below it (or anywhere visible)."""
        page = self.core.list(limit=100, tags=[ALIAS_PREFIX + alias_key(alias)], namespace=namespace, principal=principal)
        found = [entity_of(m) for m in page.items if ENTITY_TAG in m.tags]
        return [e for e in found if e.namespace == namespace] if exact_namespace else found

    def _named(self, name: str, namespace: str, principal: Principal) -> Entity | None:
        for entity in self.lookup(name, namespace=namespace, principal=principal, exact_namespace=True):
            if entity.memory.title == name or entity.name == name:
                return entity
        return None


__all__ = ["Entities", "Entity", "alias_key"]
