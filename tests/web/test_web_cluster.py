"""The Cluster page with federation on (issue 20): on a real ``memmesh serve --peers`` node, the
page shows the node's id and one row per peer (address, lag, last contact, error) from the
core's federation status, and a peer that is down is shown with its error, not hidden."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from web_support import Served, free_port


def test_cluster_page_shows_the_node_and_every_peer(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    other = Served(tmp_path / "b", "--node-id", "node-other")
    down = f"http://127.0.0.1:{free_port()}"
    node = Served(tmp_path / "a", "--node-id", "node-ui", "--peers", f"{other.url},{down}", "--catchup-interval-secs", "0.2")
    try:
        assert httpx.post(node.url + "/api/v1/memories", json={"content": "replicate me"}).status_code == 201
        deadline = time.monotonic() + 30
        while True:  # the first exchange with each peer names it (or its error)
            html = httpx.get(node.url + "/ui/cluster").text
            if "node-other" in html or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "node-ui" in html and "Federation is off" not in html and "No peers." not in html
        assert other.url in html and down in html  # one row per configured peer
        assert "node-other" in html  # the live peer answered and is named
    finally:
        node.stop()
        other.stop()
