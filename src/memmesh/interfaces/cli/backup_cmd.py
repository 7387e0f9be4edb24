"""``memmesh backup`` and ``memmesh restore`` (thin over :mod:`memmesh.transfer`)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import typer

from memmesh.clock import system_clock
from memmesh.compose import build_store
from memmesh.config import db_override
from memmesh.interfaces.cli.context import JSON_OPTION, announce_created, app, console, counting_progress, err_console, print_json, state
from memmesh.interfaces.cli.migrate_cmd import also_carried, open_url, say_keys_left_behind, target_transfer
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.records import RecordRules
from memmesh.store.base import latest_schema
from memmesh.transfer import restore_snapshot, verify_snapshot
from memmesh.wording import agree, count


@app.command("backup")
def backup_command(
    to: Path = typer.Option(None, "--to", help="Folder for the snapshot (default: <data dir>/backups)."),
    retain: int = typer.Option(None, "--retain", min=1, help="Keep only the newest N snapshots in that folder."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Snapshot the database while it stays in use, with a checksummed manifest.

    A --to folder is created when missing only if its parent exists (and the output says so).
    """
    result = state.service().transfer.backup(to, retain=retain, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(result)
        return
    if result.created_folder:
        err_console.print(f"created the backup folder {result.created_folder}", markup=False, highlight=False)
    console.print(
        f"snapshot {result.snapshot}: {count(result.manifest.memories, 'memory')}, {count(result.manifest.links, 'link')}, "
        f"{result.manifest.bytes:,} bytes, sha256 {result.manifest.sha256[:16]}…"
    )
    for path in result.removed:
        console.print(f"removed old snapshot {path}")
    for warning in result.warnings:
        err_console.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)


@app.command("restore")
def restore_command(
    snapshot_arg: str = typer.Argument(
        ..., metavar="snapshot", help="A snapshot made by `memmesh backup` (its .manifest.json must sit beside it)."
    ),
    to: str = typer.Option(None, "--to", help="Store URL to restore into (default: the configured database)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Verify a snapshot (checksum, schema version) and copy it into a store of any backend.

    A damaged or newer snapshot is refused before anything is written or created.
    """
    settings = state.settings()
    url = db_override(to)["storage"]["url"] if to else settings.storage_url
    manifest = verify_snapshot(snapshot_arg, supported_schema=latest_schema(url))  # refuse before the target exists
    snapshot = Path(snapshot_arg).expanduser()
    opened: list[Any] = []

    def open_target() -> Any:
        """Called by restore only once every record of the snapshot was read and checked."""
        target = open_url(to, create=True) if to else build_store(settings, create=True)
        opened.append(target)
        if not to:
            announce_created(target)
        return target

    try:
        rules = RecordRules(
            now=system_clock(),
            max_content_bytes=settings.limits.max_content_bytes,
            max_clock_skew=timedelta(seconds=settings.limits.max_clock_skew_seconds),
        )
        with counting_progress(as_json) as bar:
            task = bar.add_task("restoring", total=manifest.memories)
            report = restore_snapshot(snapshot, open_target, manifest=manifest, rules=rules, progress=lambda n: bar.advance(task, n))
        for target in opened:  # audited on the target, as a restore through the service is
            target_transfer(target, to).record_restored(report, snapshot, principal=LOCAL_PRINCIPAL)
    finally:
        for target in opened:
            target.close()
    if as_json:
        print_json(report)
    else:
        console.print(
            f"restored {count(report.memories_written, 'memory')}, {count(report.links_written, 'link')}, "
            f"{count(report.tombstones_written, 'tombstone')} from {snapshot.name} into {report.to_url}{also_carried(report)}"
        )
    say_keys_left_behind(report, "the snapshot", "restored", "the restored store")
    if report.agents_not_restored:
        err_console.print(agents_line(report.agents_not_restored, report.agents_missing), markup=False, highlight=False)
    for rejected in report.rejects:
        err_console.print(f"rejected {rejected.kind} {rejected.id}: {rejected.reason}", markup=False, highlight=False)
    if report.rejects:
        err_console.print(
            f"{count(report.rejected, 'record')} of {snapshot.name} {agree(report.rejected, 'breaks', 'break')} the write rules "
            f"and {agree(report.rejected, 'was', 'were')} not restored",
            markup=False,
            highlight=False,
        )
    for error in report.errors:
        err_console.print(f"skipped: {error}", markup=False, highlight=False)
    if report.errors or report.rejects:
        raise typer.Exit(1)


SHOWN_AGENTS = 10
"""How many missing agents the restore line names (``--json`` lists them all)."""


def agents_line(held: int, missing: list[str] | None) -> str:
    """What a restore says of the snapshot's registered agents, which it never copies: that
    the target has them already, which ones it lacks, or (a snapshot that holds only their
    count) to register any it lacks. Restored into the store it was taken from, the old line
    "they are not restored; register them again" sent people to register agents they had."""
    head = f"the snapshot held {count(held, 'registered agent')}; agents are not restored"
    if missing is None:
        return f"{head}: register any this store lacks with `memmesh agents register`"
    if not missing:
        return f"{head}, and this store has {agree(held, 'it', 'them all')} already"
    names = ", ".join(missing[:SHOWN_AGENTS]) + (", …" if len(missing) > SHOWN_AGENTS else "")
    lacks = agree(len(missing), "it", "them") if len(missing) == held else f"{len(missing)} of them"
    return f"{head}, and this store lacks {lacks} ({names}): register {agree(len(missing), 'it', 'them')} with `memmesh agents register`"
