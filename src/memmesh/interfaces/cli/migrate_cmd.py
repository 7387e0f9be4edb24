"""``memmesh migrate``: copy a store into another backend (thin over :mod:`memmesh.transfer`)."""

from __future__ import annotations

from typing import Any

import typer

from memmesh.clock import system_clock
from memmesh.compose import build, build_store
from memmesh.config import db_override
from memmesh.errors import NotFoundError
from memmesh.interfaces.cli.context import JSON_OPTION, announce_created, app, console, counting_progress, err_console, print_json, state
from memmesh.io.migrate import report_dict
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.redact import redact_url
from memmesh.store.base import Store
from memmesh.store.open import open_store
from memmesh.transfer import Transfer, check_distinct, migrate_stores
from memmesh.wording import agree, count


def open_url(url: str, *, create: bool) -> Store:
    """A store for a URL (or SQLite file path), with the rest of the configured storage
    settings; ``create`` as in :func:`memmesh.store.open.open_store` (announced once)."""
    settings = state.settings()
    storage = settings.storage.model_copy(update={"url": db_override(url)["storage"]["url"]})
    store = build_store(settings.model_copy(update={"storage": storage}), create=create)
    announce_created(store)
    return store


def _dry_run_target(url: str) -> Store:
    """The target of a dry run, opened without creating it; a missing one is stood in for by
    an empty in-memory store, so the report counts everything as to be written."""
    try:
        return open_url(url, create=False)
    except NotFoundError:
        stand_in = open_store("sqlite:///:memory:")
        stand_in.url = redact_url(db_override(url)["storage"]["url"])
        return stand_in


def target_transfer(target: Store, url: str | None) -> Transfer:
    """The transfer core over a service on ``target`` (``url``: its URL; None: the configured
    database), for the audit entry a copy into it appends. No embedder: opening it must not
    start embedding what the target still owes."""
    settings = state.settings()
    update: dict[str, Any] = {"embeddings": settings.embeddings.model_copy(update={"provider": "none"})}
    if url is not None:
        update["storage"] = settings.storage.model_copy(update={"url": db_override(url)["storage"]["url"]})
    return Transfer(build(settings.model_copy(update=update), store=target))


@app.command("migrate")
def migrate_command(
    from_url: str = typer.Option(..., "--from", help="Source store URL (sqlite:///… or postgresql://…) or SQLite file; must exist."),
    to_url: str = typer.Option(..., "--to", help="Target store URL or SQLite file (created and migrated if needed)."),
    batch_size: int = typer.Option(500, "--batch-size", min=1, max=100_000, help="Memories per target transaction."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Read and count everything; write nothing, create nothing."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Copy every memory, its history, links, tombstones, archive and vectors to another store.

    Exact (ids, timestamps, versions kept) and idempotent: a re-run writes only what is
    missing, so an interrupted migration is resumed by running it again.
    """
    check_distinct(db_override(from_url)["storage"]["url"], db_override(to_url)["storage"]["url"])  # before anything is opened
    source = open_url(from_url, create=False)
    try:
        target = _dry_run_target(to_url) if dry_run else open_url(to_url, create=True)
    except BaseException:
        source.close()
        raise
    try:
        now = system_clock()
        total = source.stats(now, now).total
        with counting_progress(as_json) as bar:
            task = bar.add_task("migrating" + (" (dry run)" if dry_run else ""), total=total)
            report = migrate_stores(
                source, target, now=now, batch_size=batch_size, dry_run=dry_run, progress=lambda n: bar.advance(task, n)
            )
        if not dry_run:
            target_transfer(target, to_url).record_migrated_in(report, principal=LOCAL_PRINCIPAL)
    finally:
        source.close()
        target.close()
    if as_json:
        print_json(report_dict(report))
    else:
        verb = "would write" if dry_run else "wrote"
        console.print(
            f"read {count(report.memories_read, 'memory')} in {count(report.batches, 'batch')}; {verb} "
            f"{count(report.memories_written, 'memory')}, {count(report.links_written, 'link')}, "
            f"{count(report.history_written, 'history entry')}, {count(report.tombstones_written, 'tombstone')}, "
            f"{count(report.vectors_written, 'vector')}{also_carried(report)}"
        )
        for error in report.errors:
            err_console.print(f"skipped: {error}", markup=False, highlight=False)
    if not dry_run:
        say_keys_left_behind(report, "the source", "copied", "the copy")
    if report.errors:
        raise typer.Exit(1)


def also_carried(report: Any) -> str:
    """The feature-table rows a migrate or restore wrote beside the memories (the bus, webhooks,
    inboxes…), as the tail of its one-line summary: a user sees what came along."""
    rows = [f"{n} {table}" for table, n in report.extras_written.items() if n]
    return f"; also {', '.join(rows)}" if rows else ""


def say_keys_left_behind(report: Any, holder: str, verb: str, result: str) -> None:
    """The stderr line of a migrate or restore that left the source's API keys behind: the
    target's own keys still work, or (none) new ones must be made before anyone can use it."""
    if not report.api_keys_not_copied:
        return
    then = (
        f"this store's own {count(report.target_api_keys, 'key')} still {agree(report.target_api_keys, 'works', 'work')}"
        if report.target_api_keys
        else f"create new ones with `memmesh keys create` ({result} requires keys from the start)"
    )
    they = agree(report.api_keys_not_copied, "it is", "they are")
    err_console.print(
        f"{holder} held {count(report.api_keys_not_copied, 'API key')}; {they} not {verb}; {then}", markup=False, highlight=False
    )
