"""``memmesh session append|rehydrate|list``: long sessions kept as memories."""

from __future__ import annotations

import sys

import typer

from memmesh.interfaces.cli.context import JSON_OPTION, TextTable, app, console, id_column, print_json, state
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.service import Service
from memmesh.wording import count

session_app = typer.Typer(help="Sessions: store turns in order, pick a long session back up within a token budget.", no_args_is_help=True)
app.add_typer(session_app, name="session")


@session_app.command("append")
def append(
    session_id: str = typer.Argument(..., help="The session's id, e.g. shard-1 or 2026-01-31-planning."),
    content: str = typer.Argument(None, help="The turn's text; '-' or none reads it from stdin."),
    role: str = typer.Option("user", "--role", help="user | assistant | system | tool (any short lowercase word)."),
    agent: str = typer.Option(None, "--agent", help="The agent the turn is recorded for."),
    namespace: str = typer.Option(None, "--namespace", "-n", help="Root the session lives under (default sessions.namespace)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Store one turn at the end of a session (a kind=message memory)."""
    text = sys.stdin.read() if content in (None, "-") else content

    def make(service: Service) -> object:
        return service.sessions.append(session_id, role=role, content=text, agent_id=agent, namespace=namespace, principal=LOCAL_PRINCIPAL)

    turn = make(state.writing_service(rehearse=make))
    print_json(turn) if as_json else console.print(f"turn {turn.turn} stored ({turn.memory_id})", markup=False)  # type: ignore[attr-defined]


@session_app.command("rehydrate")
def rehydrate(
    session_id: str = typer.Argument(..., help="The session's id."),
    budget_tokens: int = typer.Option(4000, "--budget-tokens", help="Most tokens the context may use."),
    query: str = typer.Option(None, "--query", help="What comes next: memories relevant to it are included."),
    namespace: str = typer.Option(None, "--namespace", "-n", help="The session's root, when the id is used under several."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Print the context to continue a session: summary, relevant memories, recent turns."""
    sessions = state.service().sessions
    found = sessions.rehydrate(session_id, budget_tokens=budget_tokens, query=query, namespace=namespace, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(found)
    else:
        sys.stdout.write(found.context + "\n")
        console.print(
            f"({found.tokens_used} of {found.budget_tokens} tokens; {count(found.turns_total, 'turn')})", markup=False, style="dim"
        )


@session_app.command("list")
def list_sessions(limit: int = typer.Option(100, "--limit"), as_json: bool = JSON_OPTION) -> None:
    """Sessions, most recently active first."""
    found = state.service().sessions.list(limit=limit, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json({"sessions": found})
        return
    table = TextTable()
    id_column(table, [s.session_id for s in found], "session")
    for name in ("turns", "last turn", "namespace"):
        table.add_column(name)
    for s in found:
        table.add_row(s.session_id, str(s.turns), s.updated_at.isoformat(timespec="seconds"), s.namespace)
    console.print(table)
