"""memmesh over the Model Context Protocol: ``memmesh mcp`` (stdio) and ``/mcp`` (HTTP).

The ``mcp`` SDK takes seconds to import, so this package imports it only when a server is
really built: :mod:`.mount` (what the HTTP app mounts) and :mod:`.catalog` stay light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["McpHttpApp", "McpMount", "create_server", "http_app", "run_stdio"]


def __getattr__(name: str) -> Any:
    if name in ("McpHttpApp", "create_server", "http_app", "run_stdio"):
        from memmesh.interfaces.mcp import server

        return getattr(server, name)
    if name == "McpMount":
        from memmesh.interfaces.mcp.mount import McpMount

        return McpMount
    raise AttributeError(name)
