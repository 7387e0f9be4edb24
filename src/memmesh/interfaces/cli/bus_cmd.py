"""``memmesh bus open|send|unread|ack|list`` and the task-queue verbs (claim, heartbeat,
complete, fail, tasks): a thin face on :class:`memmesh.bus.core.Bus`.

The conversation token may come from ``--token`` or, better, ``$MEMMESH_BUS_TOKEN`` (then
it never shows in a process list or shell history). It is never printed except by ``open``.
"""

from __future__ import annotations

import sys

import typer

from memmesh.bus.model import Delivery
from memmesh.interfaces.cli.context import JSON_OPTION, TextTable, app, console, err_console, id_column, print_json, state
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.service import Service

bus_app = typer.Typer(help="Message bus between agents: conversations, unread/ack, task queues with leases.", no_args_is_help=True)
app.add_typer(bus_app, name="bus")

TOKEN = typer.Option(..., "--token", envvar="MEMMESH_BUS_TOKEN", help="The conversation token `bus open` printed.", show_envvar=True)
CONV = typer.Argument(..., help="Conversation id (from `bus open`).")
WAIT = typer.Option(0.0, "--wait", min=0.0, help="Long-poll: wait up to this many seconds for a message.")
ATTEMPT = typer.Argument(..., help="The attempt token the claim returned.")
"""The attempt a heartbeat, completion or failure is for (the lease's fencing token)."""
WORKER = typer.Option(..., "--worker")


def _service() -> Service:
    return state.service()


@bus_app.command("open")
def open_conversation(
    participants: str = typer.Option(..., "--participants", help="Comma-separated agent names, e.g. a,b."),
    kind: str = typer.Option("chat", "--kind", help="chat (everyone reads every message) or queue (tasks for workers)."),
    topic: str = typer.Option(None, "--topic", help="What the conversation is about."),
    timeout: float = typer.Option(
        None, "--timeout", help="Archive after this many idle seconds (default bus.conversation_timeout_s, 3 h)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Open a conversation; prints its id and token (shown only now: keep it)."""

    def make(service: Service) -> object:
        return service.bus.open(participants.split(","), kind=kind, topic=topic, timeout_s=timeout, principal=LOCAL_PRINCIPAL)  # type: ignore[arg-type]

    opened = make(state.writing_service(rehearse=make))
    if as_json:
        print_json(opened)
    else:
        console.print(f"conversation {opened.id}\ntoken {opened.token}", markup=False)  # type: ignore[attr-defined]


@bus_app.command("send")
def send(
    conversation: str = CONV,
    text: str = typer.Argument(None, help="The message; '-' or none reads it from stdin."),
    sender: str = typer.Option(..., "--from", help="The sending agent (a participant)."),
    to: str = typer.Option(None, "--to", help="Only this participant receives it (default: all others; a task queue refuses it)."),
    token: str = TOKEN,
    as_json: bool = JSON_OPTION,
) -> None:
    """Post a message to a conversation (or a task to a queue)."""
    body = sys.stdin.read() if text in (None, "-") else text
    message = _service().bus.send(conversation, body, sender=sender, to=to, token=token, principal=LOCAL_PRINCIPAL)
    print_json(message) if as_json else console.print(f"sent {message.id} (#{message.seq})", markup=False)


@bus_app.command("unread")
def unread(
    conversation: str = CONV,
    agent: str = typer.Option(..., "--agent", help="The reading agent (a participant)."),
    token: str = TOKEN,
    limit: int = typer.Option(100, "--limit", help="At most this many messages."),
    wait: float = WAIT,
    as_json: bool = JSON_OPTION,
) -> None:
    """Messages the agent has not acked yet, oldest first (again until acked)."""
    found = _service().bus.unread(conversation, agent=agent, token=token, limit=limit, wait_s=wait, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json({"messages": found.messages, "acked_seq": found.acked_seq, "more": found.more})
        return
    if not found.messages:
        console.print("no unread messages", markup=False)
    for m in found.messages:
        console.print(f"#{m.seq} {m.id} {m.sender}{' → ' + m.to if m.to else ''}: {m.body}", markup=False, highlight=False)


@bus_app.command("transcript")
def transcript(
    conversation: str = CONV,
    token: str = TOKEN,
    after: str = typer.Option(None, "--after", help="Continue after this message id (the last one printed)."),
    limit: int = typer.Option(100, "--limit", help="At most this many messages."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Every message of a conversation in mesh order (hlc, node, id): the same on every node. Moves no cursor."""
    found = _service().bus.transcript(conversation, token=token, after=after, limit=limit, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(found)
        return
    if not found.messages:
        console.print("no messages", markup=False)
    for m in found.messages:
        console.print(f"{m.hlc} {m.node} {m.id} {m.sender}{' → ' + m.to if m.to else ''}: {m.body}", markup=False, highlight=False)
    if found.more:
        console.print(f"more: --after {found.messages[-1].id}", markup=False)


@bus_app.command("ack")
def ack(
    conversation: str = CONV,
    ids: list[str] = typer.Argument(None, help="Message ids: each and everything before it is acked."),
    agent: str = typer.Option(..., "--agent", help="The agent acking its messages."),
    token: str = TOKEN,
    every: bool = typer.Option(False, "--all", help="Ack every message `unread` has returned."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Mark messages read for the agent (its cursor only moves forward)."""
    done = _service().bus.ack(conversation, agent=agent, token=token, ids=ids or [], all=every, principal=LOCAL_PRINCIPAL)
    print_json(done) if as_json else console.print(f"acked {done.acked}; cursor at #{done.acked_seq}", markup=False)


@bus_app.command("list")
def list_conversations(
    archived: bool = typer.Option(False, "--archived", help="List archived conversations instead of open ones."),
    agent: str = typer.Option(None, "--agent", help="Only conversations this agent takes part in."),
    limit: int = typer.Option(100, "--limit"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Conversations, most recently active first (archives those past their timeout)."""
    found = _service().bus.list(archived=archived, agent=agent, limit=limit, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json({"conversations": found})
        return
    table = TextTable()
    id_column(table, [c.id for c in found])
    for name in ("kind", "participants", "messages", "last activity", "expires" if not archived else "archived"):
        table.add_column(name)
    for c in found:
        end = c.archived_at if archived else c.expires_at
        table.add_row(
            c.id,
            c.kind,
            ", ".join(c.participants),
            str(c.messages),
            c.last_activity_at.isoformat(timespec="seconds"),
            end.isoformat(timespec="seconds"),  # type: ignore[union-attr]
        )
    console.print(table)


@bus_app.command("claim")
def claim(
    conversation: str = CONV,
    worker: str = typer.Option(..., "--worker", help="The worker taking the task (a participant)."),
    token: str = TOKEN,
    lease: float = typer.Option(None, "--lease", help="Lease seconds (default bus.lease_s); heartbeat before it ends."),
    wait: float = WAIT,
    limit: int = typer.Option(1, "--limit", help="Lease up to this many ready tasks in one write (1-100), each with its own token."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Lease the oldest ready task of a queue (or up to --limit of them); exit code 3 when there is none."""
    got = _service().bus.claim_many(
        conversation, worker=worker, token=token, limit=limit, lease_s=lease, wait_s=wait, principal=LOCAL_PRINCIPAL
    )
    if not got:
        print_json({"delivery": None} if limit == 1 else {"deliveries": []}) if as_json else console.print("no task ready", markup=False)
        raise typer.Exit(3)
    if as_json:
        print_json(got[0] if limit == 1 else {"deliveries": got})
        return
    for delivery in got:
        _print_delivery(delivery)


def _print_delivery(got: Delivery) -> None:
    console.print(f"task {got.message.id} attempt {got.attempt} token {got.attempt_token}\n{got.message.body}", markup=False)


@bus_app.command("heartbeat")
def heartbeat(
    conversation: str = CONV,
    attempt_token: str = ATTEMPT,
    worker: str = WORKER,
    token: str = TOKEN,
    lease: float = typer.Option(None, "--lease", help="New lease length from now (default bus.lease_s)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Extend a held lease (refused, exit 1, once the lease is lost)."""
    got = _service().bus.heartbeat(conversation, attempt_token, worker=worker, token=token, lease_s=lease, principal=LOCAL_PRINCIPAL)
    print_json(got) if as_json else console.print(f"lease until {got.lease_expires_at.isoformat()}", markup=False)


@bus_app.command("complete")
def complete(
    conversation: str = CONV,
    attempt_tokens: list[str] = typer.Argument(..., help="The attempt token the claim returned; several complete them in one write."),
    worker: str = WORKER,
    token: str = TOKEN,
    result: str = typer.Option(None, "--result", help="The task's result (with several tokens: each task's)."),
    claim_next: bool = typer.Option(False, "--claim-next", help="Also lease the next ready task to this worker, in the same write."),
    lease: float = typer.Option(None, "--lease", help="The next task's lease with --claim-next (default bus.lease_s)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Mark the task done (only the attempt holding the lease may). Several tokens complete
    their tasks in one write, each checked alone: exit code 1 when any was refused."""
    bus = _service().bus
    if len(attempt_tokens) > 1:
        if claim_next:
            raise typer.BadParameter("--claim-next takes one attempt token: complete a batch, then `bus claim --limit N`")
        batch = [{"attempt_token": attempt, "result": result} for attempt in attempt_tokens]
        done = bus.complete_many(conversation, batch, worker=worker, token=token, principal=LOCAL_PRINCIPAL)
        if as_json:
            print_json(done)
        else:
            for outcome in done.outcomes:
                if outcome.task is not None:
                    console.print(f"task {outcome.task.id} done", markup=False)
                elif outcome.error is not None:
                    err_console.print(
                        f"attempt {outcome.attempt_token} refused ({outcome.error.code}): {outcome.error.message}", markup=False
                    )
        if done.refused:
            raise typer.Exit(1)
        return
    task = bus.complete(
        conversation,
        attempt_tokens[0],
        worker=worker,
        token=token,
        result=result,
        principal=LOCAL_PRINCIPAL,
        claim_next=claim_next,
        lease_s=lease,
    )
    if as_json:
        print_json(task)
        return
    console.print(f"task {task.id} done", markup=False)
    if task.next is not None:
        _print_delivery(task.next)
    elif claim_next:
        console.print("no task ready", markup=False)


@bus_app.command("fail")
def fail(
    conversation: str = CONV,
    attempt_token: str = ATTEMPT,
    worker: str = WORKER,
    token: str = TOKEN,
    reason: str = typer.Option("worker reported failure", "--reason"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Give the task back: delivered again, or dead-lettered after bus.max_deliveries."""
    task = _service().bus.fail(conversation, attempt_token, worker=worker, token=token, reason=reason, principal=LOCAL_PRINCIPAL)
    print_json(task) if as_json else console.print(f"task {task.id} is {task.state}", markup=False)


@bus_app.command("tasks")
def tasks(
    conversation: str = CONV,
    token: str = TOKEN,
    task_state: str = typer.Option(None, "--state", help="ready | leased | done | dead (the dead-letter list)."),
    limit: int = typer.Option(100, "--limit"),
    as_json: bool = JSON_OPTION,
) -> None:
    """A queue's tasks with state, attempts and (dead letters) reason and history."""
    found = _service().bus.tasks(conversation, token=token, state=task_state, limit=limit, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json({"tasks": found})
        return
    table = TextTable("#")
    id_column(table, [t.id for t in found])
    for name in ("state", "attempts", "worker", "reason / result"):
        table.add_column(name)
    for t in found:
        table.add_row(str(t.seq), t.id, t.state, str(t.attempts), t.worker or "", t.dead_reason or t.result or "")
    console.print(table)
