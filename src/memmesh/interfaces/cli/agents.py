"""``memmesh agents register|list``: the identities API keys map to."""

from __future__ import annotations

import typer

from memmesh.interfaces.cli.context import JSON_OPTION, TextTable, app, console, id_column, print_json, state, warn_if_shell_expanded
from memmesh.model import LOCAL_PRINCIPAL, Agent
from memmesh.service import Service

agents_app = typer.Typer(help="Register and list agents (identity, role, namespaces).", no_args_is_help=True)
app.add_typer(agents_app, name="agents")


@agents_app.command("register")
def register(
    agent_id: str = typer.Argument(..., help="The agent's id, e.g. planner or team:bot-1."),
    name: str = typer.Option(None, "--name", help="Display name (default: the id)."),
    role: str = typer.Option("writer", "--role", help="reader | writer | admin"),
    namespace: list[str] = typer.Option(
        None, "--namespace", "-n", help="Namespace pattern: '*' (quoted: a shell expands a bare *), 'team' or 'team/*'; repeatable."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Register an agent, or update its name, role and namespaces."""

    warn_if_shell_expanded(namespace)

    def make(service: Service) -> Agent:
        return service.register_agent(agent_id, display_name=name, role=role, namespaces=namespace or None, principal=LOCAL_PRINCIPAL)

    agent = make(state.writing_service(rehearse=make))  # rehearsed: a refused registration creates no store
    print_json(agent) if as_json else console.print(f"registered agent {agent.agent_id} ({agent.role})", markup=False)


@agents_app.command("list")
def list_agents(as_json: bool = JSON_OPTION) -> None:
    """List registered agents."""
    found = state.service().agents(principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(found)
        return
    table = TextTable()
    id_column(table, [a.agent_id for a in found], "agent")
    for name in ("name", "role", "namespaces", "since"):
        table.add_column(name)
    for agent in found:
        table.add_row(
            agent.agent_id, agent.display_name, agent.role, ", ".join(agent.namespaces), agent.created_at.isoformat(timespec="seconds")
        )
    console.print(table)
