"""``memmesh subscribe add|list|remove|deliveries|deliver`` and ``memmesh notify`` /
``memmesh inbox``: webhook subscriptions and agent inboxes.

Only parsing and rendering: every rule (the SSRF guard, signing, retries, who sees what) is
``service.subscriptions``' and ``service.inbox``'s.
"""

from __future__ import annotations

import typer

from memmesh.interfaces.cli.context import JSON_OPTION, TextTable, app, console, id_column, print_json, state
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.subscriptions import CreatedSubscription, InboxMessage
from memmesh.subscriptions.model import EVENTS

subscribe_app = typer.Typer(
    help="Webhook subscriptions to namespace changes: add, list, remove, deliveries, deliver.", no_args_is_help=True
)
app.add_typer(subscribe_app, name="subscribe")


@subscribe_app.command("add")
def add(
    url: str = typer.Argument(..., help="The http(s) URL that receives a signed POST per change."),
    namespace: str = typer.Option(..., "--namespace", "-n", help="Namespace to watch (everything below it too)."),
    events: str = typer.Option(None, "--events", help="Comma list of memory.created, memory.updated, memory.deleted (default all)."),
    secret: str = typer.Option(None, "--secret", help="HMAC secret (16-256 chars); left out, one is made and printed."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Subscribe URL to changes in a namespace; prints the signing secret (again for a repeat of the same subscription)."""

    def make(service: object) -> CreatedSubscription:
        return service.subscriptions.subscribe(namespace, url, events=events, secret=secret, principal=LOCAL_PRINCIPAL)  # type: ignore[attr-defined, no-any-return]

    created = make(state.writing_service(rehearse=make))
    if as_json:
        print_json(created)
        return
    already = "already subscribed: " if created.existed else ""
    console.print(f"{already}subscription {created.id}: {created.namespace} → {created.url} ({', '.join(created.events)})", markup=False)
    label = "secret (the subscription's own, unchanged)" if created.existed else "secret (keep it: the receiver checks signatures with it)"
    console.print(f"{label}: {created.secret}", markup=False, highlight=False)


@subscribe_app.command("list")
def list_(as_json: bool = JSON_OPTION) -> None:
    """Subscriptions in this store."""
    found = state.service().subscriptions.list(principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(found)
        return
    # ids and URLs are what people copy into `remove`/`deliveries` and compare with their
    # receiver: never cut (the id) or ellipsised (the URL folds onto more lines)
    table = TextTable()
    id_column(table, [s.id for s in found])
    table.add_column("namespace", overflow="fold", min_width=9)
    table.add_column("url", overflow="fold", min_width=12)
    table.add_column("events", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("owner", overflow="fold", min_width=5)
    for sub in found:
        events = "all" if len(sub.events) == len(EVENTS) else ",".join(e.removeprefix("memory.") for e in sub.events)
        table.add_row(sub.id, sub.namespace, sub.url, events, sub.state, sub.owner_agent or "local")
    console.print(table)


@subscribe_app.command("remove")
def remove(subscription_id: str = typer.Argument(..., help="The subscription's id."), as_json: bool = JSON_OPTION) -> None:
    """Remove a subscription and its queued deliveries."""
    removed = state.service().subscriptions.unsubscribe(subscription_id, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(removed)
        return
    console.print(f"removed subscription {removed.id} ({removed.namespace} → {removed.url})", markup=False)


@subscribe_app.command("deliveries")
def deliveries(
    subscription_id: str = typer.Argument(..., help="The subscription's id."),
    delivery_state: str = typer.Option(None, "--state", help="Only pending, delivered or dead (the dead-letter list)."),
    limit: int = typer.Option(100, "--limit", help="At most this many, newest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """A subscription's deliveries: state, attempts and the last error."""
    found = state.service().subscriptions.deliveries(subscription_id, state=delivery_state, limit=limit, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(found)
        return
    table = TextTable()
    id_column(table, [d.id for d in found])
    for name in ("event", "memory", "state", "attempts", "last error"):
        table.add_column(name, overflow="fold")
    for d in found:
        table.add_row(d.id, d.event, d.memory_id or "", d.state, str(d.attempts), d.last_error or "")
    console.print(table)


@subscribe_app.command("deliver")
def deliver(as_json: bool = JSON_OPTION) -> None:
    """Queue new changes and call the webhooks that are due, once (serve does it continuously)."""
    run = state.service().subscriptions.run_once(principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(run)
        return
    console.print(f"queued {run.queued}, delivered {run.delivered}, to retry {run.retried}, dead-lettered {run.dead}", markup=False)


@app.command("notify")
def notify(
    to: str = typer.Argument(..., help="The agent to notify."),
    body: str = typer.Argument(..., help="The text of the notification."),
    subject: str = typer.Option(None, "--subject", help="A short subject line."),
    namespace: str = typer.Option(None, "--namespace", "-n", help="A namespace it is about: only readers of it see the note."),
    memory_id: str = typer.Option(None, "--memory", help="A memory it is about."),
    sender: str = typer.Option(None, "--from", help="Who it is from (default: local)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Leave a notification in another agent's inbox."""

    def make(service: object) -> InboxMessage:
        return service.inbox.notify(  # type: ignore[attr-defined, no-any-return]
            to, body, subject=subject, namespace=namespace, memory_id=memory_id, sender=sender, principal=LOCAL_PRINCIPAL
        )

    sent = make(state.writing_service(rehearse=make))
    if as_json:
        print_json(sent)
        return
    console.print(f"notified {sent.recipient} ({sent.id})", markup=False)


@app.command("inbox")
def inbox(
    agent: str = typer.Option(..., "--agent", "-a", help="Whose inbox to read."),
    include_read: bool = typer.Option(False, "--all", help="Also show notifications already read."),
    peek: bool = typer.Option(False, "--peek", help="Leave them unread."),
    limit: int = typer.Option(50, "--limit", help="At most this many, oldest first."),
    as_json: bool = JSON_OPTION,
) -> None:
    """An agent's notifications, oldest first; unread ones are marked read (unless --peek)."""
    found = state.service().inbox.read(
        agent=agent, unread_only=not include_read, mark_read=not peek, limit=limit, principal=LOCAL_PRINCIPAL
    )
    if as_json:
        print_json(found)
        return
    for m in found:
        about = f" [{m.namespace}]" if m.namespace else ""
        line = f"{m.created_at.isoformat(timespec='seconds')} from {m.sender}{about}: {m.subject or ''} {m.body}"
        console.print(line.strip(), markup=False)
    if not found:
        console.print("no notifications", markup=False)
