"""Backup, restore, migrate, export and import: the one core every face calls.

Each face (CLI, HTTP, MCP, the Python API) used to reach into :mod:`memmesh.io` on its own,
so the rules (who may back up, which formats a remote caller may send, which record limits a
restore applies) were written once per face. They live here now; the faces parse, call one
of these and render. The heavy lifting stays in :mod:`memmesh.io` (file formats, the copy);
this module decides who may do what and wires the service's policy into it.

Every method takes the caller (``principal``). Store-wide work (backup, restore, migrate, a
JSON Lines restore-style import) needs an admin for every namespace; the importers of other
tools' files run under any writer key and reject, record by record, what falls outside it.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memmesh.errors import InvalidInputError, MemmeshError, StorageError
from memmesh.fileaccess import no_room
from memmesh.kernel import authorize_store_wide
from memmesh.model import Principal
from memmesh.records import RecordRules
from memmesh.store.base import Store
from memmesh.store.open import store_identity

if TYPE_CHECKING:
    from memmesh.io.backup import BackupResult, Manifest, RestoreReport
    from memmesh.io.importers.reports import ImportReport
    from memmesh.io.jsonl import ImportReport as JsonlReport
    from memmesh.io.migrate import MigrateReport
    from memmesh.service import Service

Progress = Callable[[int], None]

TEXT_FORMATS = ("jsonl", "mcp-memory", "mem0")
"""Formats a remote caller (HTTP, MCP) may send as text. Files, folders and database URLs are
read only by a local caller: a server never opens a path a request names."""

FILE_FORMATS = ("auto", *TEXT_FORMATS, "mem0-history", "sql", "basic-memory")


@dataclass(frozen=True)
class ImportOptions:
    """How to import a source (see ``memmesh import --help`` for each option's meaning)."""

    format: str = "auto"
    namespace: str | None = None
    tier: str = "long"
    dry_run: bool = False
    sample: int = 3
    check_only: bool = False
    batch_size: int = 500
    legacy: Any = None
    """A :class:`memmesh.io.importers.LegacyTable` for ``format="sql"``."""


def record_rules(service: Service, *, now: datetime, max_clock_skew_seconds: float | None = None) -> RecordRules:
    """The write rules a restored record is held to, from the service's policy."""
    skew = timedelta(seconds=max_clock_skew_seconds) if max_clock_skew_seconds is not None else RecordRules(now=now).max_clock_skew
    return RecordRules(now=now, max_content_bytes=service.policy.max_content_bytes, max_clock_skew=skew)


def _migrated(report: MigrateReport, direction: str) -> dict[str, Any]:
    """An ``admin.migrate`` entry's detail: what was written, how many errors, which way."""
    written = ("memories", "links", "history", "tombstones", "vectors", "archived")
    detail: dict[str, Any] = {name: getattr(report, f"{name}_written") for name in written}
    detail["errors"] = len(report.errors)
    detail["direction"] = direction
    return detail


class Transfer:
    """Backup, restore, migrate, export and import for one service (``service.transfer``)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    # -- backup and restore -------------------------------------------------------------------

    def backup(self, to_dir: str | Path | None = None, *, retain: int | None = None, principal: Principal) -> BackupResult:
        """Snapshot the whole store into ``to_dir`` (default: the configured backup folder).

        A snapshot holds every namespace, so only an admin for all of them may take one. A
        chosen folder is created only when its parent exists (the result says so); the
        default folder is created with its parents. Once the snapshot and its manifest are
        written, the backup succeeds: an ``admin.backup`` entry the store cannot take (its disk
        is full, the very moment a backup is needed) is a warning in ``warnings``, not an error
        that would leave a valid snapshot behind a failure and make every retry add another."""
        from memmesh.io.backup import backup

        who = authorize_store_wide(principal, "a backup")
        if retain is not None and (not isinstance(retain, int) or isinstance(retain, bool) or retain < 1):
            raise InvalidInputError(f"retain must be a positive integer (got {retain!r})", usage=True)
        if to_dir is None and self.service.policy.backup_dir is None:
            raise InvalidInputError("no backup folder is configured; give one")
        folder = Path(to_dir).expanduser() if to_dir is not None else self.service.policy.backup_dir
        assert folder is not None
        store = self.service.store
        made = backup(store, folder, node_id=self.service.node_id, now=self.service.clock(), retain=retain, make_parents=to_dir is None)
        try:
            self.service.audit.record("admin.backup", principal=who, target=made.snapshot, detail={"removed": len(made.removed)})
        except StorageError as exc:  # the store's disk is full: exactly when its backup must not fail
            made.warnings.append(f"the snapshot is complete, but its admin.backup audit entry could not be recorded: {exc}")
        return made

    def restore(
        self, snapshot: str | Path, *, progress: Progress | None = None, max_clock_skew_seconds: float | None = None, principal: Principal
    ) -> RestoreReport:
        """Verify ``snapshot`` and copy what passes the write rules into this service's store.

        Newer data already here is never overwritten; refused records are listed in the
        report. Store-wide, so an admin for every namespace."""
        authorize_store_wide(principal, "a restore")
        now = self.service.clock()
        rules = record_rules(self.service, now=now, max_clock_skew_seconds=max_clock_skew_seconds)
        manifest = verify_snapshot(snapshot, supported_schema=self.service.store.schema_version)
        report = restore_snapshot(snapshot, lambda: self.service.store, manifest=manifest, rules=rules, progress=progress)
        self.record_restored(report, snapshot, principal=principal)
        return report

    def record_restored(self, report: RestoreReport, snapshot: str | Path, *, principal: Principal) -> None:
        """The ``admin.restore`` entry on this store's chain, in a transaction of its own after
        the restore (also for `memmesh restore`, which restores into a bare store first)."""
        who = authorize_store_wide(principal, "a restore")
        detail = {"written": report.memories_written, "rejected": report.rejected}
        self.service.audit.record("admin.restore", principal=who, target=Path(snapshot).name, detail=detail)

    # -- migrate --------------------------------------------------------------------------------

    def migrate_to(
        self, target: Store, *, batch_size: int = 500, dry_run: bool = False, progress: Progress | None = None, principal: Principal
    ) -> MigrateReport:
        """Copy this whole store into ``target`` (any backend), exactly and idempotently.

        Every memory leaves with it, so the copy is an admin action on this store's chain
        (``admin.migrate`` with ``"direction": "out"``, its target the other store's URL,
        passwords redacted), as a backup is; a dry run copies nothing and appends nothing."""
        who = authorize_store_wide(principal, "a migration")
        report = migrate_stores(
            self.service.store, target, now=self.service.clock(), batch_size=batch_size, dry_run=dry_run, progress=progress
        )
        if not report.dry_run:
            self.service.audit.record("admin.migrate", principal=who, target=report.to_url, detail=_migrated(report, "out"))
        return report

    def record_migrated_in(self, report: MigrateReport, *, principal: Principal) -> None:
        """An ``admin.migrate`` entry on this store's audit chain for a migration *into* it
        (a store's history says where its memories came from, as ``admin.restore`` and
        ``admin.import`` do). The migration itself runs on bare stores (no service is running
        on the target), so the face calls this on a service over the target afterwards, in a
        transaction of its own. A dry run wrote nothing and appends nothing."""
        who = authorize_store_wide(principal, "a migration")
        if report.dry_run:
            return
        self.service.audit.record("admin.migrate", principal=who, target=report.from_url, detail=_migrated(report, "in"))

    # -- export ---------------------------------------------------------------------------------

    def export_lines(self, namespace: str | None = None, *, principal: Principal) -> Iterator[str]:
        """memmesh JSON Lines (header first) of what the caller may see; an admin's call."""
        from memmesh.io.jsonl import export_lines

        return export_lines(self.service, namespace, principal=principal)

    def export(self, out: str | Path, namespace: str | None = None, *, progress: Progress | None = None, principal: Principal) -> int:
        """Write the JSON Lines export to the file ``out`` (replaced atomically only once
        complete, so an interrupted export never leaves half a file); returns the memories
        written."""
        return self.export_file(out, namespace, progress=progress, principal=principal).memories

    def export_file(
        self, out: str | Path, namespace: str | None = None, *, progress: Progress | None = None, principal: Principal
    ) -> ExportWritten:
        """:meth:`export` with what was written (the MCP tool's answer): the path, memories,
        lines and bytes. Every face that writes an export file goes through here, so a bad
        path gets the same message and no face leaves half a file."""
        target = self.check_export_target(out)
        lines = self.export_lines(namespace, principal=principal)  # refused before any file exists
        partial = target.with_name(_partial_name(target.name))
        memories = written = 0
        existed = target.exists()
        try:
            with partial.open("w", encoding="utf-8") as handle:
                for line in lines:
                    handle.write(line + "\n")
                    written += 1
                    if line.startswith('{"type": "memory"'):
                        memories += 1
                        if progress:
                            progress(1)
            partial.replace(target)
            size = target.stat().st_size
        except OSError as exc:
            raise _export_failed(target, exc, existed) from None
        finally:
            with suppress(OSError):  # never hide the cause above
                partial.unlink(missing_ok=True)
        return ExportWritten(path=str(target), memories=memories, lines=written, bytes=size)

    @staticmethod
    def check_export_target(out: str | Path) -> Path:
        """The export file's path (``~`` expanded), refused when it is a folder, its folder
        is missing or the system cannot even look it up (a name over 255 bytes): checked
        before any progress is shown or anything is read."""
        target = Path(out).expanduser()
        try:
            is_folder, folder_exists = target.is_dir(), target.parent.is_dir()
        except OSError as exc:  # Python < 3.14 raises ENAMETOOLONG from is_dir instead of answering False
            raise InvalidInputError(f"cannot write the export to {target}: {exc.strerror or exc}; check the path") from None
        if is_folder:
            raise InvalidInputError(f"cannot write the export to {target}: it is a folder; give a file name")
        if not folder_exists:
            raise InvalidInputError(f"cannot write the export to {target}: the folder {target.parent} does not exist; check the path")
        return target

    def count_exportable(self, *, principal: Principal) -> int:
        """How many memories an export will write (a progress bar's total)."""
        return self.service.stats(principal=principal).total

    # -- import ---------------------------------------------------------------------------------

    def import_text(
        self,
        text: str,
        options: ImportOptions | None = None,
        *,
        source: str = "request",
        progress: Progress | None = None,
        principal: Principal,
    ) -> ImportReport | JsonlReport:
        """Import a source given as text (what HTTP and MCP callers send): memmesh JSON Lines,
        the MCP memory server's ``memory.jsonl`` or mem0's export. Other formats name files
        or databases, which only a local caller may open."""
        from memmesh.io.importers import detect_text_format

        options = options or ImportOptions()
        if options.format not in ("auto", *TEXT_FORMATS):
            raise InvalidInputError(
                f"format {options.format!r} cannot be sent as text; use one of {', '.join(('auto', *TEXT_FORMATS))} "
                "(the other formats are read from local files by `memmesh import`)"
            )
        chosen = options.format if options.format != "auto" else detect_text_format(text)
        return self._audited_import(chosen, self._run_import(chosen, source, options, lambda: text, progress, principal), principal)

    def import_source(
        self,
        source: str | Path,
        options: ImportOptions | None = None,
        *,
        read_text: Callable[[], str] | None = None,
        progress: Progress | None = None,
        principal: Principal,
    ) -> ImportReport | JsonlReport:
        """Import a local file, folder or database URL (the CLI and the Python API).

        ``read_text`` reads the source's text (the CLI passes one that reads stdin for '-');
        by default the file is read as UTF-8."""
        from memmesh.io.importers import detect_format

        options = options or ImportOptions()
        if options.format not in FILE_FORMATS:
            raise InvalidInputError(f"format {options.format!r} is not one of {', '.join(FILE_FORMATS)}")
        name = str(source)
        reader = read_text or _file_reader(name)
        legacy = options.legacy
        chosen = options.format if options.format != "auto" else detect_format(name, table=getattr(legacy, "table", None), read_text=reader)
        return self._audited_import(chosen, self._run_import(chosen, name, options, reader, progress, principal), principal)

    def _audited_import(self, chosen: str, report: ImportReport | JsonlReport, principal: Principal) -> ImportReport | JsonlReport:
        """An ``admin.import`` entry for an import that wrote (each memory it wrote has its own
        ``memory.*`` entry; this one names the import as an admin action, with its count)."""
        from memmesh.io.jsonl import ImportReport as Jsonl

        if not report.dry_run:
            written = report.memories_written + report.links_written if isinstance(report, Jsonl) else report.written
            self.service.audit.record("admin.import", principal=principal, target=chosen, detail={"format": chosen, "written": written})
        return report

    @staticmethod
    def parse_jsonl(text: str) -> list[Any]:
        """Every record of a memmesh JSON Lines export, validated (one error names the first
        bad line; nothing is written). ``len()`` of the result is a progress bar's total."""
        from memmesh.io.jsonl import parse_lines

        return parse_lines(text.splitlines())

    def import_jsonl(
        self, records: list[Any], *, dry_run: bool = False, progress: Progress | None = None, principal: Principal
    ) -> JsonlReport:
        """Import parsed JSON Lines records: a restore of each memory as it was, so an admin's
        call, and all-or-nothing against the caller's namespaces (checked before any write)."""
        from memmesh.io.jsonl import import_records

        return import_records(self.service, records, dry_run=dry_run, progress=progress, principal=principal)

    def _run_import(
        self,
        chosen: str,
        source: str,
        options: ImportOptions,
        read_text: Callable[[], str],
        progress: Progress | None,
        principal: Principal,
    ) -> ImportReport | JsonlReport:
        """One importer, chosen by format; the rules of who may import what live in each."""
        from memmesh.io import importers

        service = self.service
        if chosen == "jsonl":
            if options.namespace:
                raise InvalidInputError("namespace does not apply to a memmesh JSON Lines import: it restores each memory's namespace")
            return self.import_jsonl(self.parse_jsonl(read_text()), dry_run=options.dry_run, progress=progress, principal=principal)
        common: dict[str, Any] = {
            "namespace": options.namespace,
            "tier": options.tier,
            "dry_run": options.dry_run,
            "sample": options.sample,
            "progress": progress,
            "principal": principal,
        }
        if chosen == "mcp-memory":
            return importers.import_mcp_memory(service, read_text(), source=source, **common)
        if chosen == "mem0":
            return importers.import_mem0(service, read_text(), source=source, **common)
        if chosen == "mem0-history":
            return importers.import_mem0_history(service, source, **common)
        if chosen == "basic-memory":
            return importers.import_basic_memory(service, source, **common)
        if chosen == "sql":
            if options.legacy is None:
                raise InvalidInputError("a legacy SQL import needs the table and its columns (--table …)")
            check = options.check_only or options.dry_run
            return importers.import_legacy(
                service,
                options.legacy,
                dry_run=options.dry_run,
                check_only=check,
                batch_size=options.batch_size,
                sample=options.sample,
                progress=progress,
                principal=principal,
            )
        raise InvalidInputError(f"unknown import format {chosen!r}; use one of {', '.join(FILE_FORMATS)}")


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: its mark starts the same way
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def read_import_file(path: Path, shown: str) -> str:
    """The text of a file to import: UTF-8, or any UTF with a byte-order mark (what Windows
    tools write: a UTF-8 BOM, UTF-16). A file in another encoding is refused saying how to
    convert it, not with the codec's own words; an unreadable one with the system's reason."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {shown}: {exc.strerror or exc}") from None
    codec = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{shown} is not {codec.upper().removesuffix('-SIG')} text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            f"save it as UTF-8 and import that, e.g. iconv -f latin1 -t utf-8 {shown} > converted.jsonl"
        ) from None


def _file_reader(source: str) -> Callable[[], str]:
    """Read a file's text once, on first need, with a clear error for an unreadable one."""
    cache: list[str] = []

    def read() -> str:
        if not cache:
            cache.append(read_import_file(Path(source).expanduser(), source))
        return cache[0]

    return read


# -- store-to-store work with a target that may not exist yet (the CLI opens it) ------------------


def verify_snapshot(snapshot: str | Path, *, supported_schema: int) -> Manifest:
    """The snapshot's manifest once it checks out (see :func:`memmesh.io.backup.verify`)."""
    from memmesh.io.backup import verify

    if not str(snapshot).strip():  # an empty $snapshot in a script; Path("") would be read as the folder "."
        raise InvalidInputError("no snapshot given (the path is empty): name the snapshot file `memmesh backup` made (nothing was changed)")
    return verify(Path(snapshot).expanduser(), supported_schema=supported_schema)


def restore_snapshot(
    snapshot: str | Path, open_target: Callable[[], Store], *, manifest: Manifest, rules: RecordRules, progress: Progress | None = None
) -> RestoreReport:
    """Restore a verified snapshot; ``open_target`` is called only once every record was read
    and checked, so a refused snapshot never creates an empty target."""
    from memmesh.io.backup import restore

    return restore(Path(snapshot).expanduser(), open_target, now=rules.now, progress=progress, manifest=manifest, rules=rules)


def check_distinct(source_url: str, target_url: str) -> None:
    """Refuse copying a store onto itself, however the two URLs are spelt (a face checks this
    before opening anything, so a typo creates nothing)."""
    if store_identity(source_url) == store_identity(target_url):
        raise InvalidInputError("--from and --to name the same store; give two different databases")


def migrate_stores(
    source: Store, target: Store, *, now: datetime, batch_size: int = 500, dry_run: bool = False, progress: Progress | None = None
) -> MigrateReport:
    """Copy ``source`` into ``target`` (refusing a store copied onto itself)."""
    from memmesh.io.migrate import migrate

    check_distinct(source.url, target.url)
    return migrate(source, target, now=now, batch_size=batch_size, dry_run=dry_run, progress=progress)


def report_json(report: Any) -> dict[str, Any]:
    """Any transfer report as plain JSON data (for faces that render JSON)."""
    data: dict[str, Any] = json.loads(report.model_dump_json())
    return data


@dataclass(frozen=True)
class ExportWritten:
    """An export file written whole: where, how many memories, lines and bytes."""

    path: str
    memories: int
    lines: int
    bytes: int


NAME_MAX = 255
"""The longest file name (in bytes) the common file systems take."""


def _partial_name(name: str) -> str:
    """The name an export is written under until complete: ``<name>.partial``, or a short
    name derived from it when that would be over :data:`NAME_MAX` (a legal 250-byte file
    name must not fail for its temporary file's sake)."""
    import hashlib

    partial = f"{name}.partial"
    if len(os.fsencode(partial)) <= NAME_MAX:
        return partial
    return f".{hashlib.sha256(os.fsencode(name)).hexdigest()[:32]}.partial"


def _export_failed(target: Path, exc: OSError, existed: bool) -> MemmeshError:
    """The error of an export that could not be written: what went wrong and that nothing
    was (the export is written to ``<target>.partial`` and renamed only once complete, and
    that partial file is removed). A full disk is a storage error, not a bad path."""
    kept = f"{target} is as it was" if existed else f"no {target} was made"
    room = no_room(exc)
    if room is not None:
        return StorageError(
            f"cannot write the export to {target}: {room} ({exc.strerror}); nothing was written ({kept}): "
            "free some space or write the export to another disk"
        )
    return InvalidInputError(f"cannot write the export to {target}: {exc.strerror or exc}; check the path (nothing was written: {kept})")
