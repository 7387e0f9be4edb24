"""memmesh over the Model Context Protocol: ``memmesh mcp`` (stdio) and ``/mcp`` (HTTP).

Imports the ``mcp`` SDK, so only the commands that serve MCP import this package.
"""

from memmesh.interfaces.mcp.server import McpHttpApp, create_server, http_app

__all__ = ["McpHttpApp", "create_server", "http_app"]
