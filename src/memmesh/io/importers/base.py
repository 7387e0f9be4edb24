"""What every importer shares: the items a source yields, one idempotent write path, one report.

An importer only reads its source and turns each record into an :data:`Item`; the
:class:`Writer` applies items through the service, so every rule (namespace syntax, size
limits, de-duplication) is the service's, checked once. Idempotence comes from ids: each
memory gets a deterministic id derived from the source's own id and from the namespace it is
imported into (``mcp:<namespace digest>:<entity>``, ``mem0:<namespace digest>:<id>``,
``legacy:<table>:<namespace digest>:<id>``; see :func:`scoped_id`), so a re-run finds what it wrote and writes
nothing, the same source imported into two namespaces gives two independent sets of
memories, and an import learns nothing about ids held in namespaces its key cannot see. An
item whose content already exists in its namespace (by content hash) is skipped rather than
stored twice.

Older versions named imports after the source id alone (``mcp:<entity>``, ``mem0:<id>``,
``bm:<permalink>``, ``legacy:<table>:<id>``): a :class:`Candidate` carries that ``legacy_id``, and a
memory holding it in the record's own namespace is updated or skipped as before (see
:meth:`Writer._resolve`), so re-importing into a store those versions filled duplicates
nothing. A part (an observation) names its whole (its entity) as ``parent``: when the whole
fails, the part is not written either.

Each imported memory records where it came from in ``metadata["imported_from"]``, with a
digest of the source state (``sha``). A re-run compares against it: unchanged in the source
→ skipped (even if someone edited the memmesh copy since); changed in the source → updated.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from memmesh.entities import alias_key
from memmesh.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from memmesh.io.importers.reports import Outcome, SpotCheck
from memmesh.io.migrate import batched
from memmesh.model import Memory, NewMemory, Principal
from memmesh.service import Service, content_hash

IMPORTED_FROM = "imported_from"
"""The metadata key that records an imported memory's origin and source digest."""

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._@-]+")

Progress = Callable[[int], None]


def id_part(value: object, max_chars: int = 48) -> str:
    """A source identifier as one segment of a memmesh id.

    Safe identifiers are kept as they are (``42``, a UUID); anything else has its unsafe
    characters replaced and a short hash of the original appended, so two distinct source
    ids never map to the same memmesh id.
    """
    text = str(value)
    if text and len(text) <= max_chars and not _UNSAFE_ID_CHARS.search(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    safe = _UNSAFE_ID_CHARS.sub("_", text).strip("_")[: max_chars - 11]
    return f"{safe}-{digest}" if safe else digest


def namespace_digest(namespace: str) -> str:
    """16 hex of the namespace's SHA-256: the part of an imported id that keeps two
    namespaces' imports of one source apart (64 bits: no namespace name is found to match
    another's by trying)."""
    return hashlib.sha256(namespace.encode()).hexdigest()[:16]


def scoped_id(prefix: str, namespace: str, source_id: str) -> str:
    """An imported memory's id: ``<prefix>:<namespace digest>:<source id part>``."""
    return f"{prefix}:{namespace_digest(namespace)}:{source_id}"


def source_digest(*parts: Any) -> str:
    """A short, stable digest of a source record's state (what a re-run compares)."""
    raw = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


# -- what a source yields ------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A source record to store as one memory.

    ``fields`` are :class:`NewMemory` fields, with the deterministic ``id`` set.
    ``keep_namespace``: when the memory already exists, leave it in its namespace and
    compare content only (the source does not know the namespace, e.g. mem0's history db).
    ``legacy_id``: the id an older version gave this record (see :meth:`Writer._resolve`).
    ``parent``: the id of the record this one is a part of; it is not imported without it.
    """

    key: str
    tenant: str | None
    fields: dict[str, Any]
    sha: str
    keep_namespace: bool = False
    legacy_id: str | None = None
    parent: str | None = None


def imported_candidate(
    key: str,
    namespace: str,
    *,
    memory_id: str,
    content: str,
    tags: list[str],
    meta: dict[str, Any],
    tier: str,
    origin: dict[str, Any],
    legacy_id: str | None = None,
    parent: str | None = None,
) -> Candidate:
    """A source record as a memory candidate: its digest over content, tags and metadata,
    and ``metadata.imported_from`` = ``origin`` (format, id, …) plus that digest. Every
    importer builds its memories this one way, so re-runs compare the same digest."""
    sha = source_digest(content, tags, meta)
    meta[IMPORTED_FROM] = {**origin, "sha": sha}
    fields = {
        "id": memory_id,
        "namespace": namespace,
        "content": content,
        "tier": tier,
        "kind": "fact",
        "tags": tags,
        "source": "import",
        "metadata": meta,
    }
    return Candidate(key, namespace, fields, sha, legacy_id=legacy_id, parent=parent)


def entity_alias(name: str) -> str | None:
    """An entity's alias tag key, or None when the name is too long to be a tag."""
    try:
        return alias_key(name)
    except InvalidInputError:
        return None


@dataclass(frozen=True)
class Rejected:
    """A source record that cannot be imported; ``reason`` says why."""

    key: str
    tenant: str | None
    reason: str


@dataclass(frozen=True)
class Present:
    """A source record that needs no write (already migrated, or held by another memory)."""

    key: str
    tenant: str | None
    reason: str
    memory_id: str | None = None
    alias_of: str | None = None
    """The deterministic id this record would have had; links to it go to ``memory_id``."""
    namespace: str | None = None


@dataclass(frozen=True)
class Removal:
    """A record the source has deleted: its memmesh copy (if any) is deleted too."""

    key: str
    tenant: str | None
    memory_id: str
    legacy_id: str | None = None
    """The id an older version gave the record, found under the tenant's namespace."""


Item = Candidate | Rejected | Present | Removal


@dataclass(frozen=True)
class PlannedLink:
    """A link between two source records, named by their deterministic ids."""

    source_id: str
    target_id: str
    relation: str


# -- the write path ---------------------------------------------------------------------------


@dataclass
class Writer:
    """Applies items through the service, idempotently; with ``dry_run`` it only decides.

    ``ids`` maps each deterministic id to the memmesh memory that now holds that record
    (itself, or an existing memory with the same content), so links land on the right ends.
    """

    service: Service
    dry_run: bool = False
    principal: Principal = field(kw_only=True)  # the caller is never implicit
    progress: Progress | None = None
    ids: dict[str, str] = field(default_factory=dict)
    links_written: int = 0
    links_skipped: int = 0
    _planned: dict[tuple[str, str], str] = field(default_factory=dict)
    _handled: set[str] = field(default_factory=set)
    _used: dict[str, str] = field(default_factory=dict)
    """A planned id → the older id that holds its record (see :meth:`_resolve`)."""
    _failed: dict[str, str] = field(default_factory=dict)
    """The planned id of each record that failed → its key (its parts fail too)."""

    def apply(self, items: Iterable[Item], batch_size: int = 200) -> list[Outcome]:
        """Apply items in batches (one transaction per batch of new memories)."""
        outcomes: list[Outcome] = []
        for batch in batched(items, batch_size):
            outcomes.extend(self._apply_batch(batch))
            if self.progress:
                self.progress(len(batch))
        return outcomes

    def _apply_batch(self, batch: list[Item]) -> list[Outcome]:
        wanted = [i for item in batch if isinstance(item, Candidate) for i in (item.fields.get("id"), item.legacy_id)]
        existing = {m.id: m for m in self.service.store.get_many([i for i in wanted if isinstance(i, str)])}
        outcomes: list[Outcome | None] = []
        adds: list[tuple[int, Candidate, NewMemory]] = []
        for item in batch:
            if isinstance(item, Candidate):
                decided = self._plan(item, existing)
                if isinstance(decided, NewMemory):
                    adds.append((len(outcomes), item, decided))
                    outcomes.append(None)
                    continue
                if decided.action == "failed":
                    self._failed[str(item.fields.get("id"))] = item.key
                outcomes.append(decided)
            elif isinstance(item, Rejected):
                outcomes.append(Outcome(item.key, item.tenant, "failed", item.reason))
            elif isinstance(item, Present):
                if item.alias_of and item.memory_id:
                    self.ids[item.alias_of] = item.memory_id
                outcomes.append(Outcome(item.key, item.tenant, "skipped", item.reason, item.memory_id, item.namespace))
            else:
                outcomes.append(self._remove(item))
        for index, outcome in self._add(adds):
            outcomes[index] = outcome
        return [o for o in outcomes if o is not None]

    def _plan(self, item: Candidate, existing: dict[str, Memory]) -> Outcome | NewMemory:
        """Decide what one candidate needs: nothing (an Outcome says why), an update, or an add."""
        item = self._resolve(item, existing)
        try:
            new = self.service.check_new(item.fields, principal=self.principal)
            self.service.governance.admit_import(self.principal, [new.namespace])
            assert new.id is not None
            # An id held (live, deleted or archived) in a namespace the key cannot see fails
            # as the API's add does: the report must not confirm it exists or name its namespace.
            self.service.kernel.check_exact_target(self.principal, new.id)
        except (InvalidInputError, ForbiddenError, NotFoundError) as exc:  # out of the key's scope: this record only
            return Outcome(item.key, item.tenant, "failed", exc.message)
        if new.id in self._handled:
            return Outcome(item.key, item.tenant, "failed", f"source id {item.key!r} appears more than once (memmesh id {new.id})")
        self._handled.add(new.id)
        current = existing.get(new.id)
        if current is not None:
            return self._refresh(item, new, current)
        if self.service.store.history(new.id):
            return Outcome(
                item.key, item.tenant, "skipped", "deleted or archived in memmesh since an earlier import", new.id, new.namespace
            )
        digest = content_hash(new.namespace, new.content)
        holder = self._planned.get((new.namespace, digest))
        if holder is None:
            found = self.service.store.find_by_hash(new.namespace, digest)
            holder = found.id if found is not None else None
        if holder is not None:
            self.ids[new.id] = holder
            return Outcome(item.key, item.tenant, "skipped", "same content already stored", holder, new.namespace)
        refused = self._parent_failed(item)
        if refused is not None:
            return refused
        self._planned[(new.namespace, digest)] = new.id
        return new

    def _parent_failed(self, item: Candidate) -> Outcome | None:
        """A part whose whole failed is not written (added or updated): an observation without
        its entity would land in a graph that does not hold it, and a refused entity must not
        bring its parts in. Parts already imported and unchanged are still reported skipped."""
        whole = self._failed.get(item.parent) if item.parent else None
        if whole is None:
            return None
        return Outcome(item.key, item.tenant, "failed", f"not imported because {whole!r}, which it is part of, was not")

    def _resolve(self, item: Candidate, existing: dict[str, Memory]) -> Candidate:
        """The candidate under the id that holds its record: the planned (namespace-derived)
        id, or the ``legacy_id`` an older version gave it when a memory holds that id in the
        record's own namespace (or, for a source that does not know the namespace, under it)
        and the key can see it; live or deleted/archived there (then it stays skipped).
        A legacy id held anywhere else is ignored, exactly as if nothing held it."""
        planned, legacy = item.fields.get("id"), item.legacy_id
        if not legacy or not isinstance(planned, str) or planned in existing:
            return item
        current = existing.get(legacy)
        if current is not None:
            places = {current.namespace}
        else:
            places = self.service.kernel.former_namespaces(None, legacy)
            if not places or self.service.store.history(planned):
                return item
        if all(self._ours(item, ns, current) for ns in places):
            self._used[planned] = legacy
            return replace(item, fields={**item.fields, "id": legacy})
        return item

    def _ours(self, item: Candidate | Removal, namespace: str, memory: Memory | None = None) -> bool:
        """Whether an older import of ``item`` into ``namespace`` is this record's to refresh:
        the record's namespace; under it, for a source that does not know the namespace; or
        above it, for a memory such a source placed (mem0's history db, then its export)."""
        wanted = str(item.fields.get("namespace")) if isinstance(item, Candidate) else str(item.tenant)
        under = (isinstance(item, Removal) or item.keep_namespace) and namespace.startswith(wanted + "/")
        recorded = memory.metadata.get(IMPORTED_FROM) if memory is not None else None
        above = isinstance(recorded, dict) and bool(recorded.get("namespace_unknown")) and wanted.startswith(namespace + "/")
        return (namespace == wanted or under or above) and self.principal.covers(namespace)

    def _refresh(self, item: Candidate, new: NewMemory, current: Memory) -> Outcome:
        """The record was imported before: skip it if the source is unchanged, else update."""
        assert new.id is not None
        recorded = current.metadata.get(IMPORTED_FROM, {})
        recorded = recorded if isinstance(recorded, dict) else {}
        move = not item.keep_namespace and current.namespace != new.namespace
        if move and not recorded.get("namespace_unknown"):
            return Outcome(item.key, item.tenant, "failed", _held_elsewhere(new, current))
        self.ids[new.id] = current.id
        origin = dict(new.metadata.get(IMPORTED_FROM, {}))
        fmt = str(origin.get("format"))
        seen = _seen_digests(recorded)
        if seen.get(fmt) == item.sha or (item.keep_namespace and current.content == new.content):
            return Outcome(item.key, item.tenant, "skipped", "already imported", current.id, current.namespace)
        refused = self._parent_failed(item)
        if refused is not None:
            return refused
        if item.keep_namespace:
            placed_by_known_source = bool(recorded) and not recorded.get("namespace_unknown")
            origin = {**recorded, **origin}
            if placed_by_known_source:
                origin.pop("namespace_unknown", None)
        origin["shas"] = {**seen, fmt: item.sha}
        metadata = {**(current.metadata if item.keep_namespace else {}), **new.metadata, IMPORTED_FROM: origin}
        patch: dict[str, Any] = {"content": new.content, "metadata": metadata}
        if new.tags or not item.keep_namespace:
            patch["tags"] = list(dict.fromkeys([*current.tags, *new.tags])) if item.keep_namespace else new.tags
        if move:
            patch["namespace"] = new.namespace
        if not self.dry_run:
            try:
                self.service.update(current.id, patch, principal=self.principal)
            except (InvalidInputError, ConflictError) as exc:
                return Outcome(item.key, item.tenant, "failed", exc.message, current.id, current.namespace)
        return Outcome(item.key, item.tenant, "updated", "changed in the source", current.id, patch.get("namespace", current.namespace))

    def _add(self, adds: list[tuple[int, Candidate, NewMemory]]) -> Iterator[tuple[int, Outcome]]:
        """Store new memories in one transaction; if that fails, one by one to find the bad ones."""
        if not adds:
            return
        if self.dry_run:
            for index, item, new in adds:
                self.ids[new.id or ""] = new.id or ""
                yield index, Outcome(item.key, item.tenant, "added", None, new.id, new.namespace)
            return
        try:
            stored = self.service.add_many([new for _, _, new in adds], principal=self.principal)
        except (InvalidInputError, ConflictError):
            for index, item, new in adds:
                outcome = self._parent_failed(item) or self._add_one(item, new)
                if outcome.action == "failed":
                    self._failed[str(item.fields.get("id"))] = item.key
                yield index, outcome
            return
        for (index, item, new), memory in zip(adds, stored, strict=True):
            yield index, self._added(item, new, memory)

    def _add_one(self, item: Candidate, new: NewMemory) -> Outcome:
        try:
            memory = self.service.add(new, principal=self.principal)
        except (InvalidInputError, ConflictError) as exc:
            return Outcome(item.key, item.tenant, "failed", exc.message, None, new.namespace)
        return self._added(item, new, memory)

    def _added(self, item: Candidate, new: NewMemory, memory: Memory) -> Outcome:
        self.ids[new.id or memory.id] = memory.id
        if memory.id != new.id:
            return Outcome(item.key, item.tenant, "skipped", "same content already stored", memory.id, memory.namespace)
        return Outcome(item.key, item.tenant, "added", None, memory.id, memory.namespace)

    def _remove(self, item: Removal) -> Outcome:
        current = self.service.store.get(item.memory_id)
        if current is None and item.legacy_id:
            older = self.service.store.get(item.legacy_id)
            current = older if older is not None and self._ours(item, older.namespace) else None
        if current is None or not self.principal.covers(current.namespace):  # one the key cannot see: as if absent
            return Outcome(item.key, item.tenant, "skipped", "deleted in the source")
        if not self.dry_run:
            try:
                self.service.delete(current.id, principal=self.principal)
            except NotFoundError:
                return Outcome(item.key, item.tenant, "skipped", "deleted in the source")
        return Outcome(item.key, item.tenant, "deleted", "deleted in the source", current.id, current.namespace)

    def link(self, links: Iterable[PlannedLink]) -> None:
        """Write links whose two ends were imported (or already held); existing links are kept."""
        for planned in links:
            source_id, target_id = (self._used.get(i, i) for i in (planned.source_id, planned.target_id))
            source, target = self.ids.get(source_id), self.ids.get(target_id)
            if not source or not target or source == target or self._has_link(source, target, planned.relation):
                self.links_skipped += 1
                continue
            if not self.dry_run:
                try:
                    self.service.link(source, target, planned.relation, principal=self.principal)
                except (NotFoundError, ForbiddenError):
                    self.links_skipped += 1
                    continue
            self.links_written += 1

    def _has_link(self, source: str, target: str, relation: str) -> bool:
        return any(
            link.source_id == source and link.target_id == target and link.relation.value == relation
            for link in self.service.store.links(source)
        )


def check_scope(principal: Principal, namespaces: Iterable[str]) -> None:
    """Refuse, before anything is written, an import whose key may not write or whose
    namespaces cover none of the source's; a key covering part of it imports that part and
    each record outside is counted as failed (see :meth:`Writer._plan`)."""
    if not principal.has_role("writer"):
        raise ForbiddenError(f"this key's role {principal.role!r} may not import: it needs a writer or admin key; nothing was imported")
    if principal.prefixes() is None:
        return
    wanted = sorted(set(namespaces))
    if wanted and not any(principal.covers(ns) for ns in wanted):
        shown = ", ".join(wanted[:5]) + (f" and {len(wanted) - 5} more" if len(wanted) > 5 else "")
        raise ForbiddenError(
            f"this key's namespaces ({', '.join(principal.namespaces)}) cover none of the source's ({shown}); nothing was imported"
        )


def spot_check(service: Service, outcomes: Sequence[Outcome], sample: int, principal: Principal) -> SpotCheck:
    """Recall a spread-out sample of the records now in memmesh by their own words.

    A record counts as found when recall (in its namespace, top 10, not counted as an
    access) returns its memory: proof that the import is searchable, not just stored.
    """
    held = [o for o in outcomes if o.memory_id and o.namespace and o.action in ("added", "updated", "skipped")]
    if sample <= 0 or not held:
        return SpotCheck(sampled=0, found=0)
    step = max(1, len(held) // sample)
    chosen = held[::step][:sample]
    found, missing = 0, []
    for outcome in chosen:
        memory = service.store.get(outcome.memory_id or "")
        hits = []
        if memory is not None:
            query = " ".join(memory.content.split()[:32])
            hits = service.recall(query, namespace=memory.namespace, top_k=10, touch=False, principal=principal).hits
        if any(hit.memory.id == outcome.memory_id for hit in hits):
            found += 1
        else:
            missing.append(outcome.key)
    return SpotCheck(sampled=len(chosen), found=found, missing=missing)


def _held_elsewhere(new: NewMemory, current: Memory) -> str:
    """Why a record whose id names a memory of another namespace (one the key can see) is not
    imported, and what to do. Imported ids include the namespace, so that memory was moved
    since it was imported."""
    return (
        f"id {new.id} already names a memory in namespace {current.namespace!r}, not {new.namespace!r}: it was moved "
        f"there since it was imported into {new.namespace!r}; move it back (memmesh update {new.id} --namespace "
        f"{new.namespace}) to import into {new.namespace!r} again"
    )


def _seen_digests(recorded: dict[str, Any]) -> dict[str, str]:
    """The source digest last imported from each format (a record may come from several,
    e.g. mem0's export and its history db): a source unchanged since then is skipped."""
    seen = recorded.get("shas")
    found = {str(k): str(v) for k, v in seen.items()} if isinstance(seen, dict) else {}
    if recorded.get("format") and recorded.get("sha") and str(recorded["format"]) not in found:
        found[str(recorded["format"])] = str(recorded["sha"])
    return found


__all__ = [
    "IMPORTED_FROM",
    "Candidate",
    "Item",
    "Outcome",
    "PlannedLink",
    "Present",
    "Rejected",
    "Removal",
    "Writer",
    "check_scope",
    "entity_alias",
    "id_part",
    "imported_candidate",
    "namespace_digest",
    "scoped_id",
    "source_digest",
    "spot_check",
]
