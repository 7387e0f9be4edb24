"""``memmesh mcp``: the MCP server on stdio, for Claude Desktop, Claude Code, Cursor and others."""

from __future__ import annotations

import typer

from memmesh.config import db_override
from memmesh.interfaces.cli.context import announce_created, app, state


@app.command("mcp")
def mcp(
    ctx: typer.Context,
    profile: str = typer.Option(
        None,
        "--profile",
        help="Tools to offer: core (default), graph, admin, power, full, or a comma list of families "
        "(env MEMMESH_MCP_PROFILE, config \\[mcp] profile).",
    ),
    agent_id: str = typer.Option(
        None,
        "--agent-id",
        help="Agent id recorded as the writer of every memory (env MEMMESH_MCP_AGENT_ID, config \\[mcp] agent_id).",
    ),
    db: str = typer.Option(None, "--db", help="Database URL or SQLite file path (overrides the global --db)."),
    config: str = typer.Option(None, "--config", help="Config file (overrides the global --config)."),
) -> None:
    """Serve memory over MCP on stdin/stdout until the client closes the connection.

    Every request read before stdin closes is answered before the process exits.
    """
    from memmesh.interfaces.mcp import create_server, run_stdio
    from memmesh.interfaces.mcp.catalog import resolve_profile
    from memmesh.model import Principal

    # Accepted after the subcommand too, like ``serve --db``: client configs put every
    # argument after ``mcp`` (``"args": ["mcp", "--db", …]``).
    if config is not None:
        state.config = config
    if profile is not None:
        resolve_profile(profile, flag="--profile")  # a bad flag is a usage error, before any store is opened
    state.extra_overrides.update(db_override(db))
    state.set_from_options(ctx, {"profile": "mcp.profile", "agent_id": "mcp.agent_id"})
    settings = state.settings()
    principal = Principal(agent_id=settings.mcp.agent_id or None)
    # Rehearsed on a stand-in first, so a bad profile on a new store creates nothing.
    service = state.writing_service(rehearse=lambda stand_in: create_server(stand_in, settings, principal))
    server = create_server(service, settings, principal)
    announce_created(service.store)  # now, not at exit: this command runs until the client leaves
    service.engine.warm_up()  # the vector index loads now, not in the first recall
    try:
        run_stdio(server)
    finally:
        service.close()  # queued embeddings first, then the store
