"""Commands that look after a store: init, stats, gc, reindex, doctor."""

from __future__ import annotations

import typer

from memmesh.interfaces.cli import render
from memmesh.interfaces.cli.context import JSON_OPTION, app, console, counting_progress, print_json, state
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.wording import count


@app.command("init")
def init(as_json: bool = JSON_OPTION) -> None:
    """Create (or upgrade) the database and show where it lives."""
    settings = state.settings()
    service = state.service(create=True)
    info = {
        "url": settings.display_url,
        "schema_version": service.store.schema_version,
        "node_id": service.node_id,
        "config_file": str(settings.config_file) if settings.config_file else None,
    }
    if as_json:
        print_json(info)
    else:
        console.print(f"memmesh database ready at {info['url']} (schema {info['schema_version']})")


@app.command("stats")
def stats(as_json: bool = JSON_OPTION) -> None:
    """Counts by tier and namespace, links, memories expiring soon, size on disk."""
    result = state.service().stats(principal=LOCAL_PRINCIPAL)
    print_json(result) if as_json else render.stats_view(result)


@app.command("gc")
def gc(as_json: bool = JSON_OPTION) -> None:
    """Archive expired memories and purge old tombstones."""
    report = state.service().gc(principal=LOCAL_PRINCIPAL)
    print_json(report) if as_json else console.print(
        f"archived {count(report.archived, 'expired memory')}, purged {count(report.tombstones_purged, 'tombstone')}, "
        f"forgot {report.retention_forgotten} past their namespace's retention"
    )


@app.command("reindex")
def reindex(as_json: bool = JSON_OPTION) -> None:
    """Embed every memory that has no vector from the current embedding model."""
    service = state.service()
    pending = len(service.reindex_pending(principal=LOCAL_PRINCIPAL))
    with counting_progress(as_json or pending == 0) as bar:
        task = bar.add_task("embedding", total=pending)
        done = service.reindex(progress=lambda n: bar.advance(task, n), principal=LOCAL_PRINCIPAL)
    print_json({"reindexed": done}) if as_json else console.print(f"re-embedded {count(done, 'memory')}")


@app.command("doctor")
def doctor(as_json: bool = JSON_OPTION) -> None:
    """Print the resolved configuration and check every component.

    Exits 1 when a check fails or the store is down; a degraded component (no model, an
    unreachable peer, a failed worker) is named with its reason but does not fail."""
    from rich.markup import escape

    from memmesh.interfaces.cli.checks import health_report, run_checks

    settings = state.settings()
    checks = run_checks(settings, state.service)
    health = health_report(state.service)
    config = settings.model_dump(mode="json")
    if config["storage"]["url"]:
        config["storage"]["url"] = settings.display_url
    report = {"config": config, "storage_url": settings.display_url, **health, "checks": checks}
    if as_json:
        print_json(report)
    else:
        # paths, URLs and details are text, not Rich markup: "memmesh[postgres]" must stay whole
        console.print(f"config file: {escape(str(settings.config_file or '(none, defaults)'))}", highlight=False)
        console.print(f"store: {escape(settings.display_url)}", highlight=False)
        for check in checks:
            mark = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}[check["status"]]
            console.print(f"{mark:>14} {escape(check['name'])}: {escape(str(check['detail']))}", highlight=False)
        console.print(f"health: {health['status']}")
        for name, component in health["components"].items():
            mark = {"ok": "[green]ok[/]", "degraded": "[yellow]degraded[/]", "down": "[red]DOWN[/]"}[component["status"]]
            console.print(f"{mark:>18} {name}: {escape(component['reason'])}", highlight=False)
    if any(c["status"] == "fail" for c in checks) or health["status"] == "down":
        raise typer.Exit(1)
