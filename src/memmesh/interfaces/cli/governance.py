"""``memmesh namespace set-standard|get-standard|clear-standard|list`` and
``memmesh pending list|approve|reject``: namespace standards and the approval queue.

Only parsing and rendering: every rule (what a governance JSON may say, who may decide,
deciding once) is the governance core's, reached through ``service.governance``.
"""

from __future__ import annotations

import typer
from rich.table import Table

from memmesh.governance import ACTIONS, EffectiveStandard, PendingAction, Standard
from memmesh.interfaces.cli.context import JSON_OPTION, TextTable, app, console, err_console, id_column, print_json, state
from memmesh.interfaces.cli.render import value_text
from memmesh.model import LOCAL_PRINCIPAL

namespace_app = typer.Typer(
    help="Namespace standards: governance per action, default tier, TTL, retention, required tags.", no_args_is_help=True
)
pending_app = typer.Typer(help="Actions a namespace standard queued for approval: list, approve, reject.", no_args_is_help=True)
app.add_typer(namespace_app, name="namespace")
app.add_typer(pending_app, name="pending")


@namespace_app.command("set-standard")
def set_standard(
    namespace: str = typer.Option(..., "--namespace", "-n", help="The namespace the standard is set on (applies below it too)."),
    governance: str = typer.Option(
        None, "--governance", help='JSON object of action → allow|approve|deny, e.g. \'{"write":"approve","delete":"deny"}\'.'
    ),
    default_tier: str = typer.Option(None, "--default-tier", help="Tier for memories stored without one: short | mid | long."),
    ttl_seconds: int = typer.Option(None, "--ttl", help="Seconds until memories stored without their own TTL expire (not long ones)."),
    retention_days: int = typer.Option(None, "--retention", help="Days to keep: gc forgets memories older than that."),
    required_tags: str = typer.Option(None, "--required-tags", help="Comma list of tags every new memory must carry."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Set (replace) the standard of a namespace."""

    def make(service: object) -> Standard:
        return service.governance.set_standard(  # type: ignore[attr-defined, no-any-return]
            namespace,
            governance=governance,
            default_tier=default_tier,
            ttl_seconds=ttl_seconds,
            retention_days=retention_days,
            required_tags=required_tags,
            principal=LOCAL_PRINCIPAL,
        )

    standard = make(state.writing_service(rehearse=make))
    if as_json:
        print_json(standard)
        return
    console.print(f"standard set on {standard.namespace}", markup=False, highlight=False)
    _standard_lines(standard)


@namespace_app.command("get-standard")
def get_standard(
    namespace: str = typer.Option(..., "--namespace", "-n", help="The namespace to show the standard of."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show the standard that applies in a namespace: its own and what it inherits."""
    view = state.service().governance.get_standard(namespace, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(view)
        return
    _effective_lines(view)


@namespace_app.command("clear-standard")
def clear_standard(
    namespace: str = typer.Option(..., "--namespace", "-n", help="The namespace whose own standard is removed."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Remove a namespace's own standard (standards set above it still apply)."""
    removed = state.service().governance.clear_standard(namespace, principal=LOCAL_PRINCIPAL)
    print_json(removed) if as_json else console.print(f"standard of {removed.namespace} cleared", markup=False, highlight=False)


@namespace_app.command("list")
def list_standards(as_json: bool = JSON_OPTION) -> None:
    """List the namespaces that have a standard of their own."""
    found = state.service().governance.list_standards(principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(found)
        return
    table = Table("namespace", "governance", "default tier", "ttl (s)", "retention (d)", "required tags")
    for s in found:
        table.add_row(
            s.namespace,
            ", ".join(f"{a}={d}" for a, d in s.governance.items()),
            s.default_tier.value if s.default_tier else "",
            str(s.ttl_seconds or ""),
            str(s.retention_days or ""),
            ", ".join(s.required_tags),
        )
    console.print(table)


@pending_app.command("list")
def list_pending(
    status: str = typer.Option("pending", "--status", help="pending | approved | applied | rejected | failed | advisory | all"),
    limit: int = typer.Option(100, "--limit", help="At most this many, oldest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List pending actions (by default those still awaiting a decision)."""
    found = state.service().governance.pending(status=status, limit=limit, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(found)
        return
    table = TextTable()
    id_column(table, [p.id for p in found])
    for name in ("action", "namespace", "rule set on", "requested by", "requested", "status", "decided by"):
        table.add_column(name)
    for p in found:
        table.add_row(
            p.id,
            p.action,
            p.namespace,
            p.rule_namespace,
            p.requested_by or "local",
            p.requested_at.isoformat(timespec="seconds"),
            p.status,
            p.decided_by or "",
        )
    console.print(table)


@pending_app.command("approve")
def approve(
    pending_id: str = typer.Argument(..., help="The pending action's id (see `memmesh pending list`)."),
    reason: str = typer.Option(None, "--reason", help="Why (recorded with the decision)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Approve a pending action: it is applied at once, exactly once, as its requester."""
    decided = state.service().governance.approve(pending_id, reason=reason, principal=LOCAL_PRINCIPAL)
    _decided(decided, as_json)


@pending_app.command("reject")
def reject(
    pending_id: str = typer.Argument(..., help="The pending action's id (see `memmesh pending list`)."),
    reason: str = typer.Option(None, "--reason", help="Why (recorded with the decision)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Reject a pending action: nothing is written; the decision is recorded."""
    decided = state.service().governance.reject(pending_id, reason=reason, principal=LOCAL_PRINCIPAL)
    _decided(decided, as_json)


def _decided(decided: PendingAction, as_json: bool) -> None:
    """Print the decision; an approved action whose write was refused exits 1 with the reason."""
    if as_json:
        print_json(decided)
    elif decided.status == "applied":
        console.print(f"pending action {decided.id} approved and applied: {value_text(decided.result)}", markup=False, highlight=False)
    elif decided.status == "rejected":
        console.print(f"pending action {decided.id} rejected", markup=False, highlight=False)
    if decided.status == "failed":
        err_console.print(
            f"error: pending action {decided.id} was approved but applying it failed: {decided.error}", markup=False, highlight=False
        )
        raise typer.Exit(1)


def _standard_lines(standard: Standard) -> None:
    for action in ACTIONS:
        if action in standard.governance:
            console.print(f"  {action}: {standard.governance[action]}", markup=False, highlight=False)
    for name, value in (
        ("default tier", standard.default_tier.value if standard.default_tier else None),
        ("ttl seconds", standard.ttl_seconds),
        ("retention days", standard.retention_days),
        ("required tags", ", ".join(standard.required_tags) or None),
    ):
        if value is not None:
            console.print(f"  {name}: {value}", markup=False, highlight=False)


def _effective_lines(view: EffectiveStandard) -> None:
    own = "has its own standard" if view.standard else "has no standard of its own"
    console.print(f"namespace {view.namespace} {own}", markup=False, highlight=False)
    rows = [(a, view.governance[a]) for a in ACTIONS]
    rows += [("default tier", view.default_tier), ("ttl seconds", view.ttl_seconds), ("retention days", view.retention_days)]
    rows += [("required tags", view.required_tags)]
    for name, found in rows:
        value = ", ".join(found.value) if isinstance(found.value, list) else found.value
        where = f"(set on {found.set_on})" if found.set_on else "(default)"
        console.print(f"  {name}: {value if value is not None else '-'} {where}", markup=False, highlight=False)
