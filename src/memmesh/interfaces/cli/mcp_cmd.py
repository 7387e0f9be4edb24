"""``memmesh mcp``: the MCP server on stdio, for Claude Desktop, Claude Code, Cursor and others."""

from __future__ import annotations

import typer

from memmesh.interfaces.cli.context import announce_created, app, state


@app.command("mcp")
def mcp(
    profile: str = typer.Option(
        None,
        "--profile",
        help="Tools to offer: core (default), graph, admin, power, full, or a comma list of families "
        "(env MEMMESH_MCP_PROFILE, config [mcp] profile).",
    ),
    agent_id: str = typer.Option(
        None,
        "--agent-id",
        help="Agent id recorded as the writer of every memory (env MEMMESH_MCP_AGENT_ID, config [mcp] agent_id).",
    ),
) -> None:
    """Serve memory over MCP on stdin/stdout until the client closes the connection."""
    from memmesh.interfaces.mcp import create_server
    from memmesh.model import Principal

    state.extra_overrides["mcp"] = {"profile": profile, "agent_id": agent_id}
    settings = state.settings()
    principal = Principal(agent_id=settings.mcp.agent_id or None)
    # Rehearsed on a stand-in first, so a bad profile on a new store creates nothing.
    service = state.writing_service(rehearse=lambda stand_in: create_server(stand_in, settings, principal))
    server = create_server(service, settings, principal)
    announce_created(service.store)  # now, not at exit: this command runs until the client leaves
    try:
        server.run("stdio")
    finally:
        service.store.close()
