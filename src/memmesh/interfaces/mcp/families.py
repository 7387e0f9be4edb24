"""Every MCP tool family together: :class:`MemoryTools`, the governance tools attached to
it and the bus's :class:`BusTools`.

The families import :mod:`memmesh.interfaces.mcp.tools` (for ``MemoryTools`` and ``tool``);
collecting them here, not in ``tools``, keeps the imports one-way (no cycle between the
family modules), and importing this module is what attaches the governance tools.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memmesh.interfaces.mcp import (
    curator_tools,  # noqa: F401  (attaches the curator family's tools)
    governance_tools,  # noqa: F401  (attaches the governance family's tools)
    subscription_tools,  # noqa: F401  (attaches the subscriptions and inbox tools)
)
from memmesh.interfaces.mcp.bus_tools import BusTools
from memmesh.interfaces.mcp.tools import MemoryTools, ToolInfo

__all__ = ["BusTools", "MemoryTools", "tool_methods"]


def tool_methods(tools: MemoryTools) -> dict[str, tuple[Callable[..., Any], ToolInfo]]:
    """Every tool method by name with its info, in class order."""
    found: dict[str, tuple[Callable[..., Any], ToolInfo]] = {}
    for owner, cls in ((tools, MemoryTools), (BusTools(tools), BusTools)):
        for name in vars(cls):
            info = getattr(getattr(cls, name), "__mcp_tool__", None)
            if info is not None:
                found[name] = (getattr(owner, name), info)
    return found
