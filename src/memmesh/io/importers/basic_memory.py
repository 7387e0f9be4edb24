"""Import a basic-memory project: a folder of Markdown notes that form a knowledge graph.

basic-memory (basicmachines-co/basic-memory) keeps each entity as one ``.md`` file:

- YAML front matter between ``---`` lines: ``title`` (default: the file name), ``type``
  (default ``note``), ``tags`` (a list or a comma-separated string), ``permalink`` (default:
  the file's path in the project, slugged);
- observations, list items ``- [category] text #tag (context)`` (a line with only ``#tags``
  and no category is an observation too; ``[ ]``/``[x]`` task boxes are not);
- relations, list items ``- relation_type [[Target]] (context)`` (a quoted type may hold
  spaces), and ``[[Target]]`` anywhere else in prose (basic-memory's ``links_to``).

It becomes:

- each note → an entity memory (tags ``entity``, ``alias:<title>``, its type and its tags;
  content = title and prose, without the observation and relation lines), id
  ``bm:<namespace digest>:<permalink>``;
  the original relations (type, target, context) are kept in its metadata;
- each observation → a memory ``"<title>: <text>"`` tagged with its category and #tags,
  id ``<note id>:<hash>``, linked ``part_of`` its note (not imported when the note fails);
- each relation → a link from the note to the target note (found by title, permalink or
  file name), on memmesh's relation of the same name or an obvious synonym, else
  ``related_to``. A target that is not in the project (basic-memory allows forward
  references) is reported as skipped, not failed.

A note that cannot be read (not UTF-8, front matter never closed or not valid YAML, a title
or tags of the wrong shape, a permalink another file already uses) is counted as failed with
its file and reason; the other notes are imported. Hidden files and folders (``.git``,
``.obsidian``) are not read, nor is a symbolic link to a file outside the project folder
(counted as failed, naming the link). Ids come from the namespace, permalinks and observation text,
so a re-run writes nothing, a re-run after edits adds or updates only what changed, and the
same project imported into two namespaces gives two independent copies (an older version's
``bm:<permalink>`` ids in the same namespace are still found).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from memmesh.entities import ALIAS_PREFIX, ENTITY_TAG
from memmesh.errors import InvalidInputError
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
from memmesh.io.importers.mcp_memory import known_entities, map_relation
from memmesh.model import MAX_TAG_CHARS, MAX_TAGS, Principal, Relation
from memmesh.service import Service

FORMAT = "basic-memory"
DEFAULT_NAMESPACE = "basic-memory"
MAX_NOTE_BYTES = 8 * 1024 * 1024
"""Larger files are not notes (basic-memory syncs attachments too): reported, not read."""
MAX_FRONT_MATTER_VALUES = 10_000

_FENCE = re.compile(r"^\s*(```|~~~)")
_LIST_ITEM = re.compile(r"^\s*[-*+]\s+(.*\S)\s*$")
_CATEGORY = re.compile(r"^\[([^\[\]()]+)\]\s+(.+)$")
_TIMESTAMP = re.compile(r"^\d{1,3}:\d{2}(?::\d{2})?(?:[.,]\d{1,3})?$")
_WIKI_LINK = re.compile(r"\[\[([^\[\]]+)\]\]")
_SLUG_UNSAFE = re.compile(r"[^\w/.-]+")


@dataclass
class Observation:
    category: str | None
    text: str
    tags: list[str]
    context: str | None


@dataclass
class NoteRelation:
    type: str
    target: str
    context: str | None


@dataclass
class Note:
    """One parsed note; ``path`` is relative to the project folder (the key in the report)."""

    path: str
    title: str
    type: str
    permalink: str
    tags: list[str]
    prose: str
    observations: list[Observation] = field(default_factory=list)
    relations: list[NoteRelation] = field(default_factory=list)


class NoteError(ValueError):
    """Why one file is not a readable note (it is reported as failed, the others go on)."""


# -- finding and reading the project ---------------------------------------------------------------


def note_files(root: Path) -> Iterator[Path]:
    """The project's ``.md`` files in path order, skipping hidden files and folders."""
    for path in sorted(root.rglob("*.md")):
        relative = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            yield path


def leaves_project(path: Path, root: Path) -> bool:
    """True when ``path`` is a symbolic link to a file outside the project folder: such a
    file is not part of the project, and importing it would copy whatever it points at
    (``~/.ssh/…``) into memories other agents may read."""
    return path.is_symlink() and not path.resolve().is_relative_to(root.resolve())


def is_project(root: Path) -> bool:
    """A folder is a basic-memory project when one of its notes has front matter, an
    observation or a relation (a folder of arbitrary Markdown is not)."""
    for path in note_files(root):
        if leaves_project(path, root):
            continue
        try:
            with path.open("rb") as handle:
                head = handle.read(65_536).decode("utf-8", errors="replace").lstrip("\ufeff")
        except OSError:
            continue
        if head.startswith("---") or any(_observation(item) or _relation(item) for item in _list_items(head)):
            return True
    return False


def check_project(source: str | Path) -> Path:
    """The project folder, or one clear error saying why ``source`` is not one."""
    root = Path(source)
    if not root.exists():
        raise InvalidInputError(f"{source}: no such folder; give the basic-memory project folder (e.g. ~/basic-memory)")
    if not root.is_dir():
        raise InvalidInputError(f"{source} is a file: --format basic-memory takes the project folder (e.g. ~/basic-memory)")
    if not any(True for _ in note_files(root)):
        raise InvalidInputError(f"{source} is not a basic-memory project: it holds no Markdown notes (*.md); nothing was imported")
    if not is_project(root):
        raise InvalidInputError(
            f"{source} is not a basic-memory project: none of its Markdown files has front matter (---), "
            "an observation (- [category] text) or a relation (- type [[Target]]); nothing was imported"
        )
    return root


def read_project(root: Path, namespace: str | None = None) -> tuple[list[Note], list[Rejected]]:
    """Every note of the project; a file that cannot be read is a Rejected item naming it."""
    notes: list[Note] = []
    rejected: list[Rejected] = []
    by_permalink: dict[str, str] = {}
    for path in note_files(root):
        relative = path.relative_to(root).as_posix()
        if leaves_project(path, root):
            rejected.append(Rejected(relative, namespace, "a symbolic link to a file outside the project folder: not read"))
            continue
        try:
            note = read_note(path, relative)
        except NoteError as exc:
            rejected.append(Rejected(relative, namespace, str(exc)))
            continue
        holder = by_permalink.setdefault(note.permalink.lower(), relative)
        if holder != relative:
            rejected.append(Rejected(relative, namespace, f"permalink {note.permalink!r} is already used by {holder}"))
            continue
        notes.append(note)
    return notes, rejected


def read_note(path: Path, relative: str) -> Note:
    """Parse one file (raises :class:`NoteError` with the reason)."""
    try:
        if path.stat().st_size > MAX_NOTE_BYTES:
            raise NoteError(f"file is larger than {MAX_NOTE_BYTES // (1024 * 1024)} MB, not a note")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError(f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise NoteError(f"cannot be read: {exc.strerror}") from None
    text = text.lstrip("\ufeff").replace("\x00", "")
    meta, body = split_front_matter(text)
    stem = Path(relative).stem
    title = _text_field(meta, "title") or stem
    note = Note(
        path=relative,
        title=" ".join(title.split()),
        type=_text_field(meta, "type") or "note",
        permalink=_text_field(meta, "permalink") or slug(relative.removesuffix(".md")),
        tags=_tags(meta.get("tags")),
        prose="",
    )
    prose: list[str] = []
    for line, in_code in _body_lines(body):
        if not in_code and _parse_line(note, line):
            continue
        prose.append(line)
    note.prose = _prose("\n".join(prose), note.title)
    for target in _WIKI_LINK.findall(note.prose):
        note.relations.append(NoteRelation("links_to", target.strip(), None))
    return note


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """The YAML front matter (``{}`` when there is none) and the body after it."""
    lines = text.split("\n")
    if not lines or lines[0].rstrip() != "---":
        return {}, text
    for index in range(1, len(lines)):
        if lines[index].rstrip() == "---":
            raw, body = "\n".join(lines[1:index]), "\n".join(lines[index + 1 :])
            break
    else:
        raise NoteError("front matter opened with --- on line 1 is never closed (no second --- line)")
    try:
        meta = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise NoteError(f"front matter is not valid YAML{where}: {problem}") from None
    if meta is None:
        return {}, body
    if not isinstance(meta, dict):
        raise NoteError(f"front matter is a YAML {type(meta).__name__}, not key: value lines")
    budget = [MAX_FRONT_MATTER_VALUES]
    return {str(k): _plain(v, budget) for k, v in meta.items()}, body


def slug(path: str) -> str:
    """basic-memory's default permalink: the path, lower case, runs of other characters as ``-``."""
    return _SLUG_UNSAFE.sub("-", path.strip().lower()).strip("-") or "note"


def _plain(value: Any, budget: list[int]) -> Any:
    """YAML dates and numbers as strings (basic-memory does the same), so digests are stable.

    ``budget`` counts the values visited: YAML aliases can make a few lines expand into
    billions of values ("billion laughs"), which is refused rather than walked.
    """
    budget[0] -= 1
    if budget[0] < 0:
        raise NoteError(f"front matter expands to more than {MAX_FRONT_MATTER_VALUES} values (YAML aliases?)")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, list):
        return [_plain(v, budget) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, budget) for k, v in value.items()}
    return value


def _text_field(meta: dict[str, Any], name: str) -> str | None:
    value = meta.get(name)
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = ", ".join(value)
    if not isinstance(value, str):
        raise NoteError(f"front matter {name!r} must be text, not a {type(value).__name__}")
    return value.strip() or None


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NoteError("front matter 'tags' must be a list or a comma-separated string")
    return [t.strip().lstrip("#") for t in value if t.strip().lstrip("#")]


def _body_lines(body: str) -> Iterator[tuple[str, bool]]:
    """Each body line and whether it is inside a fenced code block (where nothing is parsed)."""
    in_code = False
    for line in body.split("\n"):
        if _FENCE.match(line):
            in_code = not in_code
            yield line, True
            continue
        yield line, in_code


def _list_items(text: str) -> Iterator[str]:
    for line in text.split("\n"):
        match = _LIST_ITEM.match(line)
        if match:
            yield match.group(1)


def _parse_line(note: Note, line: str) -> bool:
    """Record the line as a relation or an observation; False when it is prose."""
    match = _LIST_ITEM.match(line)
    if not match:
        return False
    item = match.group(1)
    relation = _relation(item)
    if relation is not None:
        note.relations.append(relation)
        return True
    observation = _observation(item)
    if observation is not None:
        note.observations.append(observation)
        return True
    return False


def _relation(item: str) -> NoteRelation | None:
    """``type [[Target]] (context)``; a line with more prose after the link is not one."""
    before, sep, rest = item.partition("[[")
    label = before.strip()
    if not sep or not label:
        return None
    if label[0] in "'\"" and label.endswith(label[0]) and len(label) > 1:
        label = label[1:-1].strip()
    elif any(c.isspace() for c in label):
        return None
    target, closed, after = rest.partition("]]")
    after = after.strip()
    if not closed or not label or not target.strip():
        return None
    if after and not (after.startswith("(") and after.endswith(")")):
        return None
    return NoteRelation(label, target.strip(), after[1:-1].strip() or None if after else None)


def _observation(item: str) -> Observation | None:
    """``[category] text #tag (context)``, or text with #tags; not a task box or a link."""
    if item[:3] in ("[ ]", "[x]", "[X]", "[-]") or re.match(r"^\[.*?\]\(.*?\)$", item) or re.match(r"^\[\[.*\]\]$", item):
        return None
    category = None
    text = item
    match = _CATEGORY.match(item)
    if match and not _TIMESTAMP.match(match.group(1).strip()) and (len(match.group(1).strip()) > 1 or match.group(1).isalnum()):
        category, text = match.group(1).strip(), match.group(2).strip()
    tags = [t for word in text.split() if word.startswith("#") for t in word.split("#") if t]
    if category is None and not tags:
        return None
    context = None
    if text.endswith(")") and "(" in text:
        start = text.rfind("(")
        context, text = text[start + 1 : -1].strip() or None, text[:start].strip()
    return Observation(category, text, tags, context) if text else None


def _prose(text: str, title: str) -> str:
    """The note's prose: blank runs squeezed, a leading ``# Title`` heading dropped."""
    lines = text.strip().split("\n")
    if lines and lines[0].lstrip("#").strip().lower() == title.lower() and lines[0].startswith("#"):
        lines = lines[1:]
    out = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return re.sub(r"(?m)^#{1,6}\s+(Observations|Relations)\s*$\n?", "", out).strip()


# -- turning notes into items --------------------------------------------------------------------------


def note_id(permalink: str, namespace: str) -> str:
    """A note's memory id in ``namespace``: ``bm:<namespace digest>:<permalink part>``."""
    return scoped_id("bm", namespace, id_part(permalink, 64))


def observation_id(permalink: str, observation: Observation, namespace: str) -> str:
    return f"{note_id(permalink, namespace)}:{_observation_digest(observation)}"


def legacy_note_id(permalink: str) -> str:
    """The id versions before namespace-derived ids gave a note (found, not written)."""
    return f"bm:{id_part(permalink, 64)}"


def _observation_digest(observation: Observation) -> str:
    return hashlib.sha256(f"{observation.category or ''}\x00{observation.text}".encode()).hexdigest()[:12]


def plan(
    service: Service,
    root: Path,
    namespace: str,
    *,
    tier: str = "long",
    principal: Principal,
) -> tuple[list[Item], list[PlannedLink]]:
    """The items and links for a project (notes first, so links find their ends)."""
    notes, rejected = read_project(root, namespace)
    items: list[Item] = list(rejected)
    links: list[PlannedLink] = []
    known = known_entities(service, namespace, principal)
    lookup = _lookup(notes)
    ours = {i for note in notes for i in (note_id(note.permalink, namespace), legacy_note_id(note.permalink))}
    claimed: dict[str, str] = {}
    for note in notes:
        items.append(_note_item(known, ours, claimed, note, namespace, tier))
        seen: set[str] = set()
        for index, observation in enumerate(note.observations):
            oid = observation_id(note.permalink, observation, namespace)
            if oid in seen:
                continue
            seen.add(oid)
            items.append(_observation_item(note, index, observation, namespace, tier))
            links.append(PlannedLink(oid, note_id(note.permalink, namespace), Relation.part_of.value))
        for relation in note.relations:
            target = lookup.get(_norm(relation.target))
            if target is None:
                key = f"{note.path}: {relation.type} [[{relation.target}]]"
                items.append(Present(key, namespace, "relation target is not a note in the project"))
                continue
            relation_value = Relation.mentions if relation.type == "links_to" else map_relation(relation.type)
            links.append(PlannedLink(note_id(note.permalink, namespace), note_id(target.permalink, namespace), relation_value.value))
    return items, links


def _norm(name: str) -> str:
    return " ".join(name.split()).lower()


def _lookup(notes: list[Note]) -> dict[str, Note]:
    """Notes by what a ``[[link]]`` may name: permalink, title, path, file name (first wins)."""
    found: dict[str, Note] = {}
    for kind in ("permalink", "title", "path", "stem"):
        for note in notes:
            name = {
                "permalink": note.permalink,
                "title": note.title,
                "path": note.path.removesuffix(".md"),
                "stem": Path(note.path).stem,
            }[kind]
            found.setdefault(_norm(name), note)
    return found


def _tag_list(*groups: list[str]) -> list[str]:
    """Tags that fit memmesh's limits (too long ones are dropped; the originals stay in metadata)."""
    out: dict[str, None] = {}
    for group in groups:
        for tag in group:
            clean = tag.strip().lower()
            if clean and len(clean) <= MAX_TAG_CHARS:
                out[clean] = None
    return list(out)[:MAX_TAGS]


def _note_item(known: dict[str, str], ours: set[str], claimed: dict[str, str], note: Note, namespace: str, tier: str) -> Item:
    """The note's entity memory; an entity of the same name that another source registered
    is reused, and of two notes with one title the first (in path order) holds the name."""
    nid = note_id(note.permalink, namespace)
    alias = entity_alias(note.title)
    holder = known.get(alias) if alias else None
    if holder is not None and holder not in ours:
        return Present(note.path, namespace, "entity already registered", holder, nid, namespace)
    if alias and claimed.setdefault(alias, nid) != nid:
        alias = None
    content = f"{note.title}\n\n{note.prose}" if note.prose else f"{note.title} ({note.type} {note.permalink})"
    tags = _tag_list([ENTITY_TAG], [ALIAS_PREFIX + alias] if alias else [], [note.type], note.tags)
    meta: dict[str, Any] = {
        "entity": note.title,
        "aliases": [alias] if alias else [],
        "entity_type": note.type,
        "permalink": note.permalink,
        "file": note.path,
        "tags": note.tags,
        "relations": [{"type": r.type, "target": r.target, **({"context": r.context} if r.context else {})} for r in note.relations],
    }
    return imported_candidate(
        note.path,
        namespace,
        memory_id=nid,
        content=content,
        tags=tags,
        meta=meta,
        tier=tier,
        origin={"format": FORMAT, "id": note.permalink, "file": note.path},
        legacy_id=legacy_note_id(note.permalink),
    )


def _observation_item(note: Note, index: int, observation: Observation, namespace: str, tier: str) -> Item:
    content = f"{note.title}: {observation.text}" + (f" ({observation.context})" if observation.context else "")
    tags = _tag_list([observation.category] if observation.category else [], observation.tags)
    meta: dict[str, Any] = {
        "entity": note.title,
        "permalink": note.permalink,
        "category": observation.category,
        "tags": observation.tags,
        "context": observation.context,
    }
    return imported_candidate(
        f"{note.path} observation {index + 1}",
        namespace,
        memory_id=observation_id(note.permalink, observation, namespace),
        content=content,
        tags=tags,
        meta=meta,
        tier=tier,
        origin={"format": FORMAT, "id": f"{note.permalink}#{index + 1}", "file": note.path},
        legacy_id=f"{legacy_note_id(note.permalink)}:{_observation_digest(observation)}",
        parent=note_id(note.permalink, namespace),
    )


__all__ = ["DEFAULT_NAMESPACE", "FORMAT", "Note", "check_project", "is_project", "note_id", "observation_id", "plan", "read_note"]
