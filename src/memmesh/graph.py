"""Questions over the link graph: neighbourhoods, timelines and paths, as of a time.

Links carry world-time validity (``valid_from``/``valid_until``), so a fact can be
invalidated without being deleted; every query here takes ``as_of`` (default: now) and
only walks links valid at that moment. The caller sees only memories it may read:
anything outside its namespaces, or expired, is skipped as if absent. Reached as
``service.graph``; reads only, so nothing here touches a write transaction.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from memmesh.errors import InvalidInputError
from memmesh.kernel import CoreCalls, Kernel, authorize
from memmesh.model import LOCAL_PRINCIPAL, Link, Memory, Principal, Relation
from memmesh.values import enum_value, parse_time

Direction = Literal["out", "in", "both"]
MAX_DEPTH = 6
MAX_NODES = 500
MAX_PATHS = 50
MAX_EXPANSIONS = 20_000


class GraphNode(BaseModel):
    """A memory reached from the root, how far away, and the link that first reached it."""

    memory: Memory
    depth: int
    via: Link | None = None


class GraphResult(BaseModel):
    """The neighbourhood of a memory: nodes by distance and the valid links walked."""

    root: str
    as_of: datetime
    nodes: list[GraphNode]
    links: list[Link]
    truncated: bool = False


class TimelineEntry(BaseModel):
    """One link of a memory in world-time order; ``at`` is its valid_from (else created_at)."""

    at: datetime
    direction: Literal["out", "in"]
    link: Link
    other: Memory
    current: bool


class GraphPath(BaseModel):
    """A chain of links from one memory to another: ``ids`` are the memories along it."""

    ids: list[str]
    links: list[Link]


def valid_at(link: Link, moment: datetime) -> bool:
    """True when the link held at ``moment`` (open ends count as always)."""
    return (link.valid_from is None or link.valid_from <= moment) and (link.valid_until is None or link.valid_until > moment)


class Graph:
    """Graph reads over one service (``service.graph``)."""

    def __init__(self, kernel: Kernel, core: CoreCalls) -> None:
        self.kernel = kernel
        self.core = core

    def query(
        self,
        memory_id: str,
        *,
        relations: Sequence[str] | str | None = None,
        depth: int = 1,
        direction: Direction = "both",
        as_of: datetime | str | None = None,
        limit: int = 100,
        principal: Principal,
    ) -> GraphResult:
        """Memories within ``depth`` links of ``memory_id`` (breadth first, nearest first)."""
        walk = self._walker(relations, direction, as_of, principal)
        depth = _bounded(depth, "depth", MAX_DEPTH)
        limit = _bounded(limit, "limit", MAX_NODES)
        self.core.get(memory_id, principal=walk.who)
        seen = {memory_id}
        nodes: list[GraphNode] = []
        walked: dict[tuple[str, str, str], Link] = {}
        frontier = deque([(memory_id, 0)])
        truncated = False
        while frontier:
            current, distance = frontier.popleft()
            if distance >= depth:
                continue
            for other, link in walk.neighbours(current):
                walked[(link.source_id, link.target_id, link.relation.value)] = link
                if other.id in seen:
                    continue
                if len(nodes) >= limit:
                    truncated = True
                    continue
                seen.add(other.id)
                nodes.append(GraphNode(memory=other, depth=distance + 1, via=link))
                frontier.append((other.id, distance + 1))
        return GraphResult(root=memory_id, as_of=walk.moment, nodes=nodes, links=list(walked.values()), truncated=truncated)

    def timeline(
        self,
        memory_id: str,
        *,
        relations: Sequence[str] | str | None = None,
        principal: Principal,
    ) -> list[TimelineEntry]:
        """Every link of a memory (valid or invalidated), oldest world time first: the
        story of an entity, with ``current`` marking what still holds now."""
        walk = self._walker(relations, "both", None, principal)
        self.core.get(memory_id, principal=walk.who)
        entries = [
            TimelineEntry(
                at=link.valid_from or link.created_at,
                direction="out" if link.source_id == memory_id else "in",
                link=link,
                other=other,
                current=valid_at(link, walk.moment),
            )
            for other, link in walk.neighbours(memory_id, only_valid=False)
        ]
        return sorted(entries, key=lambda e: (e.at, e.other.id))

    def find_paths(
        self,
        source_id: str,
        target_id: str,
        *,
        max_depth: int = 4,
        relations: Sequence[str] | str | None = None,
        direction: Direction = "both",
        as_of: datetime | str | None = None,
        limit: int = 10,
        principal: Principal,
    ) -> list[GraphPath]:
        """Simple paths (no memory twice) from source to target over valid links, shortest
        first, at most ``max_depth`` links long."""
        if source_id == target_id:
            raise InvalidInputError("source and target are the same memory; give two different ids")
        walk = self._walker(relations, direction, as_of, principal)
        max_depth = _bounded(max_depth, "max_depth", MAX_DEPTH)
        limit = _bounded(limit, "limit", MAX_PATHS)
        self.core.get(source_id, principal=walk.who)
        self.core.get(target_id, principal=walk.who)
        paths: list[GraphPath] = []
        queue: deque[tuple[list[str], list[Link]]] = deque([([source_id], [])])
        expansions = 0
        while queue and len(paths) < limit and expansions < MAX_EXPANSIONS:
            ids, links = queue.popleft()
            expansions += 1
            for other, link in walk.neighbours(ids[-1]):
                if other.id in ids:
                    continue
                if other.id == target_id:
                    paths.append(GraphPath(ids=[*ids, other.id], links=[*links, link]))
                    if len(paths) >= limit:
                        break
                elif len(links) + 1 < max_depth:
                    queue.append(([*ids, other.id], [*links, link]))
        return paths

    def _walker(
        self, relations: Sequence[str] | str | None, direction: Direction, as_of: datetime | str | None, principal: Principal
    ) -> _Walker:
        if direction not in ("out", "in", "both"):
            raise InvalidInputError(f"unknown direction {direction!r}: use out, in or both")
        if isinstance(relations, str):
            relations = [r for r in relations.split(",") if r.strip()]
        wanted = frozenset(str(enum_value(Relation, r.strip(), "relation")) for r in relations or [])
        who = authorize(principal, "reader")
        moment = parse_time(as_of, "as_of") or self.kernel.clock()
        return _Walker(self.kernel, who, wanted, direction, moment)


class _Walker:
    """Neighbour lookup with the caller's visibility, relation filter and moment; cached."""

    def __init__(self, kernel: Kernel, who: Principal, relations: frozenset[str], direction: Direction, moment: datetime) -> None:
        self.kernel = kernel
        self.who = who or LOCAL_PRINCIPAL
        self.relations = relations
        self.direction = direction
        self.moment = moment
        self._cache: dict[tuple[str, bool], list[tuple[Memory, Link]]] = {}

    def neighbours(self, memory_id: str, *, only_valid: bool = True) -> list[tuple[Memory, Link]]:
        key = (memory_id, only_valid)
        if key not in self._cache:
            self._cache[key] = self._load(memory_id, only_valid)
        return self._cache[key]

    def _load(self, memory_id: str, only_valid: bool) -> list[tuple[Memory, Link]]:
        chosen: list[tuple[str, Link]] = []
        for link in self.kernel.store.links(memory_id):
            outgoing = link.source_id == memory_id
            if (self.direction == "out" and not outgoing) or (self.direction == "in" and outgoing):
                continue
            if self.relations and link.relation.value not in self.relations:
                continue
            if only_valid and not valid_at(link, self.moment):
                continue
            chosen.append((link.target_id if outgoing else link.source_id, link))
        now = self.kernel.clock()
        visible = {
            m.id: m
            for m in self.kernel.store.get_many(list(dict.fromkeys(other for other, _ in chosen)))
            if self.who.covers(m.namespace) and (m.expires_at is None or m.expires_at > now)
        }
        return [(visible[other], link) for other, link in chosen if other in visible]


def _bounded(value: int, name: str, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value > maximum:
        raise InvalidInputError(f"{name} must be between 1 and {maximum} (got {value!r})", usage=True, field=name)
    return value


__all__ = ["Graph", "GraphNode", "GraphPath", "GraphResult", "TimelineEntry", "valid_at"]
