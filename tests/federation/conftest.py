"""Federation tests spawn real nodes; every node is stopped after its test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.federation.mesh_support import Node, mesh


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Node]]:
    """Three nodes, W = 2, every node a peer of the others."""
    nodes = mesh(tmp_path, 3, "--quorum-writes", "2", "--quorum-timeout-ms", "3000")
    yield nodes
    for node in nodes:
        node.stop()
