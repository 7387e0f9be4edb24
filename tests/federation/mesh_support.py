"""Real ``memmesh serve`` nodes on 127.0.0.1 for federation tests: start, kill -9, restart.

The nodes and the fault-injecting proxy live in :mod:`memmesh.chaos.nodes`, shared with
``memmesh chaos``; these are the tests' short names for them.
"""

from __future__ import annotations

from pathlib import Path

from memmesh.chaos.nodes import NAMES, Node, Proxy, start_mesh, wait_for

__all__ = ["Node", "Proxy", "mesh", "proxied_mesh", "start_mesh", "wait_for"]


def mesh(tmp_path: Path, count: int, *extra: str, names: tuple[str, ...] = NAMES) -> list[Node]:
    """``count`` nodes, each with every other one as a peer, started and introduced."""
    nodes, _ = start_mesh(tmp_path, count, *extra, names=names)
    return nodes


def proxied_mesh(tmp_path: Path, count: int, *extra: str) -> tuple[list[Node], dict[tuple[str, str], Proxy]]:
    """Like :func:`mesh`, but every node reaches every other through its own :class:`Proxy`."""
    return start_mesh(tmp_path, count, *extra, proxied=True)
