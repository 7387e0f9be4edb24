"""Online backups and verified restores, for both backends.

A backup is one snapshot file plus ``<snapshot>.manifest.json`` (docs/backup.md):
``{format_version, created_at, node_id, schema_version, backend, memories, links, sha256, bytes}``.

The store writes the snapshot itself (:meth:`memmesh.store.base.Store.snapshot_to`), so this
module never guesses the backend from a URL nor opens the database behind the store's back:

- SQLite: ``sqlite3.Connection.backup`` on the store's own connection copies the database in
  one step from a read transaction, so writers in other processes carry on (WAL) and the
  copy is one consistent moment. The snapshot is a plain SQLite file (journal mode DELETE).
- PostgreSQL: a logical dump in memmesh's own portable JSON Lines (``memmesh-snapshot``, see
  :mod:`memmesh.store.logical`: memories with history and vector, links, tombstones,
  archive), read inside one REPEATABLE READ transaction so it is consistent too. It
  restores into any backend.

``created_at`` is taken before the copy starts: every write acknowledged before it is in
the snapshot. Restore checks the manifest first (size, sha256, format and schema
version) and refuses a damaged, truncated, edited or newer snapshot before touching the
target. A matching manifest proves only that the file is the one the manifest describes,
and both can be edited together, so every record is then held to the write rules
(:mod:`memmesh.records`: namespace, text, sizes, a ``content_hash`` that matches, no
clock in the future); a record that breaks one is reported (kind, id, reason) and not
restored, nor its history, vector or links. The copy itself is
:func:`memmesh.io.migrate.migrate`, so it is exact and idempotent, and newer data already
in the target is never overwritten. A SQLite snapshot is opened on a private copy in the
temp folder, removed on every path, failures included.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing, nullcontext, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from memmesh.errors import CorruptDatabaseError, InvalidInputError, MemmeshError, StorageError
from memmesh.io.migrate import MigrateReport, migrate
from memmesh.model import ArchivedMemory, HistoryEntry, Link, Memory, Tombstone
from memmesh.records import (
    RecordRules,
    archived_problems,
    history_problems,
    link_problems,
    memory_problems,
    tombstone_problems,
)
from memmesh.store.base import Filter, Store, VectorRow, key_rows
from memmesh.store.extra_tables import CARRIED
from memmesh.store.logical import FORMAT_VERSION, SNAPSHOT_FORMAT

PREFIX = "memmesh-"
MANIFEST_SUFFIX = ".manifest.json"


class Manifest(BaseModel):
    """What a snapshot holds and how to check it is intact."""

    format_version: int
    created_at: datetime
    node_id: str
    schema_version: int
    backend: str
    memories: int
    links: int
    sha256: str
    bytes: int


class BackupResult(BaseModel):
    """What ``backup`` made and which old snapshots retention removed."""

    snapshot: str
    manifest: Manifest
    removed: list[str]
    created_folder: str | None = None
    """The backup folder, when this backup had to create it (None: it existed)."""
    warnings: list[str] = Field(default_factory=list)
    """What went wrong after the snapshot was complete, which the backup survives: its
    ``admin.backup`` audit entry could not be recorded (the store's disk is full), an old
    snapshot could not be removed. The snapshot and its manifest are valid all the same."""


class Rejected(BaseModel):
    """A snapshot record that breaks a write rule and so was not restored."""

    kind: Literal["memory", "tombstone", "link", "history", "archived"]
    id: str
    reason: str


class RestoreReport(MigrateReport):
    """The migrate report of the copy, plus which snapshot it came from and what it refused."""

    snapshot: str
    verified: bool = True
    rejected: int = 0
    rejects: list[Rejected] = Field(default_factory=list)
    api_keys_not_restored: int = 0
    """Key rows the snapshot held: never copied (a tampered snapshot could plant an admin key);
    when non-zero the target is marked to require keys from the start."""
    agents_not_restored: int = 0
    """Registered agents the snapshot held: never copied (an agent's role and namespaces are
    access control, as a key is); the target keeps the agents it has."""
    agents_missing: list[str] | None = None
    """Ids of the snapshot's agents the target does not have (register them again to use
    them there); None when the snapshot holds only their count (a PostgreSQL snapshot)."""


def manifest_path(snapshot: Path) -> Path:
    return snapshot.with_name(snapshot.name + MANIFEST_SUFFIX)


# -- backup -----------------------------------------------------------------------------------


def backup(
    store: Store, to_dir: Path, *, node_id: str, now: datetime, retain: int | None = None, make_parents: bool = False
) -> BackupResult:
    """Write a consistent snapshot of ``store`` into ``to_dir`` and keep the newest ``retain``.

    The store writes the snapshot itself (:meth:`Store.snapshot_to`), so nothing here knows
    the backend. ``to_dir`` is created when missing only if its parent exists (one level,
    like ``mkdir``), and the result says so (``created_folder``): a typo in ``--to`` must not
    scatter folders over the disk. ``make_parents`` (the default backup folder) lifts that.
    """
    if retain is not None and retain < 1:
        raise InvalidInputError(f"--retain must be at least 1 (got {retain})")
    to_dir = to_dir.expanduser()
    created = _backup_folder(to_dir, make_parents)
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    partial = to_dir / f"{PREFIX}{stamp}-{node_id[:8]}.partial"
    snapshot = partial
    try:
        partial.open("wb").close()  # can we write there at all? (else the error names the folder, not the source)
        partial.unlink()  # the store's snapshot writer makes the file itself
        info = store.snapshot_to(partial, node_id=node_id, now=now)
        digest, size = _digest(partial)
        snapshot = partial.with_suffix(info.suffix)
        os.replace(partial, snapshot)
    except OSError as exc:
        raise StorageError(f"cannot write the backup into {to_dir}: {exc.strerror or exc}; no snapshot was made") from None
    finally:
        with suppress(OSError):  # e.g. a read-only file system: never hide the cause above
            partial.unlink(missing_ok=True)
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        created_at=now,
        node_id=node_id,
        schema_version=info.schema_version,
        backend=info.backend,
        memories=info.memories,
        links=info.links,
        sha256=digest,
        bytes=size,
    )
    try:
        _write_atomically(manifest_path(snapshot), manifest.model_dump_json(indent=2))
    except OSError as exc:
        with suppress(OSError):
            snapshot.unlink()
        raise StorageError(f"cannot write the backup manifest into {to_dir}: {exc.strerror or exc}; no snapshot was made") from None
    _sync_folder(to_dir)  # the snapshot and its manifest are durable before any older one goes
    removed, warnings = prune(to_dir, retain, keep=snapshot) if retain else ([], [])
    return BackupResult(
        snapshot=str(snapshot), manifest=manifest, removed=removed, created_folder=str(to_dir) if created else None, warnings=warnings
    )


def _sync_folder(folder: Path) -> None:
    """Make the snapshot's and the manifest's names durable (their contents are synced by
    their writers): a power loss after retention removed older snapshots must not take the
    new one with it. Not every system can open a folder to sync it; those skip this."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _backup_folder(to_dir: Path, make_parents: bool) -> bool:
    """Make sure the backup folder exists; True when this call created it."""
    if to_dir.is_dir():
        return False
    if to_dir.exists():
        raise InvalidInputError(f"the backup folder {to_dir} is a file, not a folder; give a folder with --to")
    if not make_parents and not to_dir.parent.is_dir():
        raise InvalidInputError(
            f"cannot create the backup folder {to_dir}: its parent {to_dir.parent} does not exist; "
            "create it first or fix the path (nothing was written)"
        )
    try:
        to_dir.mkdir(parents=make_parents, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the backup folder {to_dir}: {exc.strerror}") from exc
    return True


def _digest(path: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    finally:
        with suppress(OSError):
            partial.unlink(missing_ok=True)


def prune(folder: Path, retain: int, *, keep: Path) -> tuple[list[str], list[str]]:
    """Delete all but the newest ``retain`` snapshots (by manifest ``created_at``) in ``folder``,
    never ``keep`` (the snapshot just made, one of the ``retain`` whatever the clock says: an
    older snapshot dated later, by a clock that was ahead or a copy from elsewhere, used to
    outrank it and have it deleted right after it was made). Returns the removed snapshots
    and, for each one that could not be removed, a warning (the backup itself is done)."""
    found = []
    for path in folder.glob(f"{PREFIX}*{MANIFEST_SUFFIX}"):
        try:
            found.append((path != manifest_path(keep), Manifest.model_validate_json(path.read_text(encoding="utf-8")).created_at, path))
        except (OSError, ValidationError):
            continue  # not ours or unreadable: never delete what we cannot identify
    found.sort(key=lambda item: (not item[0], item[1]), reverse=True)  # the new one first, then newest first
    removed: list[str] = []
    warnings: list[str] = []
    for _, _, manifest_file in found[retain:]:
        snapshot = manifest_file.with_name(manifest_file.name[: -len(MANIFEST_SUFFIX)])
        try:
            snapshot.unlink(missing_ok=True)
            manifest_file.unlink(missing_ok=True)
        except OSError as exc:
            warnings.append(f"could not remove the old snapshot {snapshot}: {exc.strerror or exc}")
            continue
        removed.append(str(snapshot))
    return removed, warnings


# -- restore ----------------------------------------------------------------------------------


def verify(snapshot: Path, *, supported_schema: int) -> Manifest:
    """The snapshot's manifest, once size, checksum and versions check out; else a clear refusal."""
    if snapshot.is_dir():
        raise InvalidInputError(_folder_problem(snapshot))
    if not snapshot.is_file():
        raise InvalidInputError(f"snapshot {snapshot} does not exist; check the path (nothing was changed)")
    mpath = manifest_path(snapshot)
    try:
        manifest = Manifest.model_validate_json(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptDatabaseError(
            f"snapshot {snapshot} has no manifest ({mpath.name}); refusing to restore an unverifiable snapshot, nothing was changed"
        ) from None
    except (OSError, ValidationError, ValueError) as exc:
        raise CorruptDatabaseError(f"manifest {mpath} is unreadable or damaged ({exc.__class__.__name__}); nothing was changed") from None
    if manifest.format_version > FORMAT_VERSION:
        raise CorruptDatabaseError(
            f"snapshot {snapshot.name} has format version {manifest.format_version}, newer than this "
            f"memmesh reads ({FORMAT_VERSION}); upgrade memmesh; nothing was changed"
        )
    if manifest.schema_version > supported_schema:
        raise CorruptDatabaseError(
            f"snapshot {snapshot.name} has schema version {manifest.schema_version}, newer than this "
            f"memmesh supports ({supported_schema}); upgrade memmesh; nothing was changed"
        )
    digest, size = _digest(snapshot)
    if size != manifest.bytes or digest != manifest.sha256:
        what = "truncated or extended" if size != manifest.bytes else "changed since it was made"
        raise CorruptDatabaseError(
            f"snapshot {snapshot.name} is damaged ({what}: sha256 or size differs from its manifest); "
            "refusing to restore, nothing was changed"
        )
    return manifest


def _folder_problem(folder: Path) -> str:
    """What to say when restore is given a folder: a backup is one file (plus its manifest);
    name the newest snapshot in the folder when there is one."""
    try:
        found = sorted(p for p in folder.glob(f"{PREFIX}*{MANIFEST_SUFFIX}") if p.is_file())
    except OSError:
        found = []
    if found:
        newest = found[-1].with_name(found[-1].name[: -len(MANIFEST_SUFFIX)])
        return (
            f"{folder} is a folder; restore takes one snapshot file, not the folder of backups: "
            f"e.g. the newest, {newest} (nothing was changed)"
        )
    return (
        f"{folder} is a folder with no memmesh snapshot in it (no {PREFIX}*{MANIFEST_SUFFIX}); "
        "restore takes one snapshot file made by `memmesh backup` (nothing was changed)"
    )


def restore(
    snapshot: Path,
    target: Store | Callable[[], Store],
    *,
    now: datetime,
    progress: Any = None,
    manifest: Manifest | None = None,
    rules: RecordRules | None = None,
) -> RestoreReport:
    """Verify ``snapshot`` (unless ``manifest`` is what :func:`verify` just returned), check
    every record against the write rules (``rules``; default limits otherwise) and copy the
    ones that pass into ``target`` (any backend). Nothing is written unless every record
    could be read; the report lists each refused record with its reason. ``target`` may be
    a function that opens (creates) the store: it is called only once every record was read,
    so a refused snapshot never leaves an empty new database behind."""
    if callable(target) and manifest is None:
        raise TypeError("restore into a target opened on demand needs the manifest verify() returned")
    manifest = manifest or verify(snapshot, supported_schema=target.schema_version)  # type: ignore[union-attr]
    rules = rules or RecordRules(now=now)
    with _open_snapshot(snapshot, manifest) as opened:
        source = CheckedSource(opened, rules)
        keys, agents, agent_ids = _access_rows(opened)
        if callable(target):  # every record was read and checked: only now may the target exist
            target = target()
        report = migrate(source, target, now=now, progress=progress, keys_left=keys)  # type: ignore[arg-type]
        present = {agent.agent_id for agent in target.agents()}
    return RestoreReport(
        **report.model_dump(),
        snapshot=str(snapshot),
        rejected=len(source.rejects),
        rejects=source.rejects,
        api_keys_not_restored=keys,
        agents_not_restored=agents,
        agents_missing=None if agent_ids is None else [agent_id for agent_id in agent_ids if agent_id not in present],
    )


def _access_rows(opened: Any) -> tuple[int, int, list[str] | None]:
    """How many API key rows (revoked included) and agents the snapshot holds, and the agents'
    ids (None when only their count is known); a snapshot of a store that was itself restored
    or migrated from a keyed one counts the keys recorded then."""
    if isinstance(opened, LogicalSnapshot):
        return opened.api_keys, opened.agents, None
    agent_ids = sorted(agent.agent_id for agent in opened.agents())
    return key_rows(opened), len(agent_ids), agent_ids


class CheckedSource:
    """A snapshot as :func:`memmesh.io.migrate.migrate` reads it, minus the records that break
    a write rule. All records are checked (and must be readable) before migrate writes
    anything; the refused ones, and the history, vectors and links that hang off a refused
    memory, are left out and listed in :attr:`rejects`."""

    def __init__(self, source: Any, rules: RecordRules) -> None:
        self.source = source
        self.url = source.url
        self.schema_version = source.schema_version
        self.rejects: list[Rejected] = []
        self._bad: set[str] = set()
        self._bad_history: set[int] = set()
        self._bad_links: set[int] = set()
        self._bad_tombstones: set[str] = set()
        self._bad_archive: set[str] = set()
        self._table = "memories"
        try:
            self._check_all(rules)
        except MemmeshError:
            raise
        except (ValueError, TypeError, KeyError, sqlite3.Error, UnicodeError) as exc:
            row = _unreadable_row(source, self._table, rules.now)
            at = f", row {row[:80]!r}" if row else ""
            column = _bad_json_column(source, self._table, row) if row and isinstance(exc, json.JSONDecodeError) else None
            at += f", column {column}" if column else ""
            raise CorruptDatabaseError(
                f"snapshot {self.url.removeprefix('snapshot:')}: table {self._table}{at}: {_field_problem(exc)}; "
                "refusing to restore, nothing was changed"
            ) from None

    def _reject(self, kind: Any, record_id: str, problems: list[str]) -> None:
        self.rejects.append(Rejected(kind=kind, id=record_id, reason="; ".join(problems)))

    def _check_all(self, rules: RecordRules) -> None:
        for memory in self.source.iter_memories(batch=500):
            problems = memory_problems(memory, rules)
            if problems:
                self._bad.add(memory.id)
                self._reject("memory", memory.id, problems)
        self._table = "tombstones"
        for tombstone in self.source.tombstones_since(0):
            problems = tombstone_problems(tombstone, rules)
            if problems:
                self._bad_tombstones.add(tombstone.id)
                self._reject("tombstone", tombstone.id, problems)
        self._table = "history"
        for index, entry in enumerate(self.source.iter_history()):
            problems = history_problems(entry, rules)
            if problems:
                self._bad_history.add(index)
                self._reject("history", entry.memory_id, problems)
        self._table = "links"
        for index, link in enumerate(self.source.iter_links()):
            problems = link_problems(link, rules)
            if problems:
                self._bad_links.add(index)
                self._reject("link", f"{link.source_id}->{link.target_id}", problems)
        self._table = "archive"
        for item in self.source.archived(Filter(now=rules.now, include_expired=True), 10**9):
            problems = archived_problems(item, rules)
            if problems:
                self._bad_archive.add(item.memory.id)
                self._reject("archived", item.memory.id, problems)

    def iter_memories(self, batch: int = 500) -> Iterator[Memory]:
        return (m for m in self.source.iter_memories(batch=batch) if m.id not in self._bad)

    def iter_history(self) -> Iterator[HistoryEntry]:
        return (
            e
            for i, e in enumerate(self.source.iter_history())
            if i not in self._bad_history and e.memory_id not in self._bad and e.memory_id not in self._bad_tombstones
        )

    def iter_links(self) -> Iterator[Link]:
        return (
            link
            for i, link in enumerate(self.source.iter_links())
            if i not in self._bad_links and link.source_id not in self._bad and link.target_id not in self._bad
        )

    def tombstones_since(self, seq: int) -> list[Tombstone]:
        return [t for t in self.source.tombstones_since(seq) if t.id not in self._bad_tombstones]

    def get_vectors(self, ids: list[str]) -> list[VectorRow]:
        rows: list[VectorRow] = self.source.get_vectors([i for i in ids if i not in self._bad])
        return rows

    def archived(self, flt: Filter, limit: int) -> list[ArchivedMemory]:
        return [a for a in self.source.archived(flt, limit) if a.memory.id not in self._bad_archive]


def _field_problem(exc: BaseException) -> str:
    """One short line saying which field could not be read and why (never a whole dump)."""
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "record"
        return f"field {field}: {first['msg']}"
    if isinstance(exc, json.JSONDecodeError):
        return f"a JSON field is not valid JSON ({exc.msg} at character {exc.pos})"
    return f"{exc.__class__.__name__}: {str(exc)[:120]}"


def _unreadable_row(source: Any, table: str, now: datetime) -> str | None:
    """The id of the first row of ``table`` memmesh cannot read (SQLite snapshots), found by
    reading the rows one at a time; None when it cannot be told apart."""
    path = getattr(source, "path", None)
    if not isinstance(path, str) or not hasattr(source, "get"):
        return None
    reads: dict[str, tuple[str, Callable[[str], object]]] = {
        "memories": ("SELECT id FROM memories ORDER BY id", source.get),
        "history": ("SELECT DISTINCT memory_id FROM history ORDER BY memory_id", source.history),
        "archive": (
            "SELECT id FROM archive ORDER BY id",
            lambda i: source.archived(Filter(now=now, ids=(i,), include_expired=True), 1),
        ),
        "links": ("SELECT DISTINCT source_id FROM links ORDER BY source_id", source.links),
    }
    if table not in reads:
        return None
    query, read = reads[table]
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            ids = [row[0] for row in conn.execute(query)]
    except sqlite3.Error:
        return None
    for row_id in ids:
        try:
            read(str(row_id))
        except Exception:  # any failure to read this one row is the answer
            return str(row_id)
    return None


_JSON_COLUMNS = {"memories": ("id", ("tags", "metadata", "version")), "archive": ("id", ("data",))}


def _bad_json_column(source: Any, table: str, row_id: str) -> str | None:
    """Which JSON column of that row does not parse (so the refusal names the field)."""
    if table not in _JSON_COLUMNS:
        return None
    key, columns = _JSON_COLUMNS[table]
    try:
        with closing(sqlite3.connect(f"file:{source.path}?mode=ro", uri=True)) as conn:
            values = conn.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE {key} = ?", (row_id,)).fetchone()
    except sqlite3.Error:
        return None
    for column, value in zip(columns, values or (), strict=False):
        try:
            if value is not None:
                json.loads(value)
        except ValueError:
            return column
    return None


class _SqliteSnapshotSource:
    """A SQLite snapshot opened on a private copy (opening may upgrade its schema).

    The copy lives in a fresh folder under the temp dir and is removed on every path: if
    the copy or the open fails (not a database, a symlink to something else, a full
    disk), the folder goes before the error propagates.
    """

    def __init__(self, snapshot: Path) -> None:
        from memmesh.store.sqlite import SQLiteStore

        self.tmpdir = Path(tempfile.mkdtemp(prefix="memmesh-restore-"))
        try:
            copy = self.tmpdir / "snapshot.db"
            shutil.copyfile(snapshot, copy)
            self.store = SQLiteStore(f"sqlite:///{copy}")
        except BaseException as exc:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            if isinstance(exc, OSError):
                raise StorageError(f"cannot read snapshot {snapshot.name}: {exc.strerror or exc}; nothing was changed") from None
            if isinstance(exc, MemmeshError):  # its message names the private copy: say what it means instead
                raise CorruptDatabaseError(
                    f"snapshot {snapshot.name} is not a readable memmesh SQLite database "
                    f"({exc.message.replace(str(copy), 'the snapshot')}); nothing was changed"
                ) from None
            raise
        self.store.url = f"snapshot:{snapshot.name}"

    def __enter__(self) -> Store:
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def _open_snapshot(snapshot: Path, manifest: Manifest) -> Any:
    if manifest.backend == "sqlite":
        return _SqliteSnapshotSource(snapshot)
    return nullcontext(LogicalSnapshot.load(snapshot))


def _record_label(line: str) -> str:
    """`` (memory 01…)`` for a readable JSON line naming its kind and id, else nothing."""
    with suppress(ValueError, TypeError, AttributeError):
        record = json.loads(line)
        kind = record["type"]
        body = record.get(kind) or {}
        ident = body.get("id") or (body.get("memory") or {}).get("id")
        return f" ({kind} {str(ident)[:80]})" if ident else f" ({kind})"
    return ""


class LogicalSnapshot:
    """A ``memmesh-snapshot`` JSONL file read back with the Store read methods migrate uses."""

    def __init__(self, name: str, schema_version: int) -> None:
        self.url = f"snapshot:{name}"
        self.schema_version = schema_version
        self.memories: list[Memory] = []
        self.history: list[HistoryEntry] = []
        self.links: list[Link] = []
        self.tombstones: list[Tombstone] = []
        self.vectors: dict[str, VectorRow] = {}
        self.archive: list[ArchivedMemory] = []
        self.rows: dict[str, list[tuple[Any, ...]]] = {}
        """Feature-table rows (``"type": "row"``), carried by :mod:`memmesh.io.extras`."""
        self.api_keys = 0  # counts from the header: key rows and agents are never in the file
        self.agents = 0

    @classmethod
    def load(cls, path: Path) -> LogicalSnapshot:
        snap: LogicalSnapshot | None = None
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if snap is None:
                        if record.get("type") != "header" or record.get("format") != SNAPSHOT_FORMAT:
                            raise InvalidInputError(f"{path.name} is not a {SNAPSHOT_FORMAT} file")
                        snap = cls(path.name, int(record["schema_version"]))
                        snap.api_keys, snap.agents = int(record.get("api_keys", 0)), int(record.get("agents", 0))
                        continue
                    snap._add(record)
                except (ValueError, KeyError, TypeError, ValidationError) as exc:
                    raise CorruptDatabaseError(
                        f"snapshot {path.name} line {number}{_record_label(line)} is damaged ({_field_problem(exc)}); nothing was changed"
                    ) from None
        if snap is None:
            raise CorruptDatabaseError(f"snapshot {path.name} is empty; nothing was changed")
        return snap

    def _add(self, record: dict[str, Any]) -> None:
        kind = record["type"]
        if kind == "memory":
            memory = Memory.model_validate(record["memory"])
            self.memories.append(memory)
            self.history += [HistoryEntry.model_validate(h) for h in record.get("history", [])]
            if record.get("vector"):
                vec = np.frombuffer(base64.b64decode(record["vector"]["float32"]), dtype=np.float32).copy()
                self.vectors[memory.id] = VectorRow(memory.id, record["vector"]["model"], vec)
        elif kind == "link":
            self.links.append(Link.model_validate(record["link"]))
        elif kind == "tombstone":
            self.tombstones.append(Tombstone.model_validate(record["tombstone"]))
            self.history += [HistoryEntry.model_validate(h) for h in record.get("history", [])]
        elif kind == "archived":
            self.archive.append(ArchivedMemory.model_validate(record["archived"]))
        elif kind == "row":
            table, values = record["table"], record["row"]
            if table not in CARRIED or not isinstance(values, list) or len(values) != len(CARRIED[table]):
                raise ValueError(f"a row of an unknown table or of the wrong width ({str(table)[:40]!r})")
            self.rows.setdefault(table, []).append(tuple(values))
        else:
            raise ValueError(f"unknown record type {kind!r}")

    def iter_memories(self, batch: int = 500) -> Iterator[Memory]:
        return iter(self.memories)

    def iter_history(self) -> Iterator[HistoryEntry]:
        return iter(self.history)

    def iter_links(self) -> Iterator[Link]:
        return iter(self.links)

    def tombstones_since(self, seq: int) -> list[Tombstone]:
        return list(self.tombstones)

    def get_vectors(self, ids: list[str]) -> list[VectorRow]:
        return [self.vectors[i] for i in ids if i in self.vectors]

    def archived(self, flt: Filter, limit: int) -> list[ArchivedMemory]:
        return self.archive[:limit]

    def extra_rows(self, table: str) -> list[tuple[Any, ...]]:
        return self.rows.get(table, [])
