"""``memmesh keys create|list|revoke``: API keys for the HTTP (and MCP over HTTP) server."""

from __future__ import annotations

import typer

from memmesh.interfaces.cli.context import JSON_OPTION, TextTable, app, console, id_column, print_json, state, warn_if_shell_expanded
from memmesh.model import LOCAL_PRINCIPAL, CreatedKey
from memmesh.service import Service

keys_app = typer.Typer(help="Create, list and revoke API keys (stored hashed; a key is shown once).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def create(
    agent_id: str = typer.Option(..., "--agent", help="The agent the key acts as (registered if new)."),
    role: str = typer.Option(
        "writer", "--role", help="reader | writer | approver (decides pending actions) | admin | peer (a mesh node's sync key)"
    ),
    namespace: list[str] = typer.Option(
        None,
        "--namespace",
        "-n",
        help="Namespace pattern the key may use: '*' (quoted: a shell expands a bare *), 'team' or 'team/*'; repeatable.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a key and print it once; only its hash is stored."""

    warn_if_shell_expanded(namespace)

    def make(service: Service) -> CreatedKey:
        return service.create_key(agent_id, role=role, namespaces=namespace or None, principal=LOCAL_PRINCIPAL)

    created = make(state.writing_service(rehearse=make))  # rehearsed: a refused key creates no store
    if as_json:
        print_json(
            {"key": created.key, "id": created.id, "agent_id": created.agent_id, "role": created.role, "namespaces": created.namespaces}
        )
        return
    console.print(created.key, markup=False, highlight=False)
    console.print(
        f"key {created.id} for agent {created.agent_id} ({created.role}, namespaces {', '.join(created.namespaces)}); "
        "store it now: it cannot be shown again",
        style="dim",
        markup=False,
        highlight=False,
    )


@keys_app.command("list")
def list_keys(
    include_revoked: bool = typer.Option(False, "--all", help="Also list revoked keys."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List keys (ids, agents, roles, namespaces, the keys that made them; never the secrets)."""
    found = state.service().keys(include_revoked=include_revoked, principal=LOCAL_PRINCIPAL)
    if as_json:
        print_json(found)
        return
    table = TextTable()
    id_column(table, [key.id for key in found])
    id_column(table, [key.agent_id for key in found], "agent")  # what `keys create --agent` and `agents` take
    for name in ("role", "namespaces", "created", "revoked"):
        table.add_column(name)
    minted = any(key.created_by for key in found)  # only keys made over HTTP/MCP have a creator: no empty column otherwise
    if minted:
        id_column(table, [key.created_by or "" for key in found], "created by")
    for key in found:
        row = [
            key.id,
            key.agent_id,
            key.role,
            ", ".join(key.namespaces),
            key.created_at.isoformat(timespec="seconds"),
            key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
        ]
        table.add_row(*row, *([key.created_by or ""] if minted else []))  # empty: the local caller made it
    console.print(table)


@keys_app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="The key's id (see `memmesh keys list`)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    revoked = state.service().revoke_key(key_id, principal=LOCAL_PRINCIPAL)
    print_json(revoked) if as_json else console.print(f"revoked key {revoked.id} of agent {revoked.agent_id}")
