"""Probe of session 6's on-disk surfaces through the CLI: the saved HNSW graph beside a
SQLite file is a cache, so a hostile or mismatched one must be rebuilt, never trusted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TEXTS = [
    "Alice moved to Berlin last spring with her dog",
    "Bob drinks his coffee black without sugar",
    "The quarterly report is due on Friday",
    "Carol is allergic to peanuts and shellfish",
    "Dave plays jazz piano in a band on weekends",
    "The database migration runs every night at two",
    "Erin plans a hiking trip to Patagonia in March",
    "Frank repairs vintage motorcycles in his garage",
]
QUERIES = ["where does Alice live now?", "food allergies"]


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update(
        {
            "MEMMESH_DATA_DIR": str(tmp_path / "data"),
            "MEMMESH_CONFIG": str(tmp_path / "absent.toml"),
            "MEMMESH_EMBEDDINGS_PROVIDER": "minilm",
            "MEMMESH_RECALL_ANN_THRESHOLD": "1",
        }
    )
    (tmp_path / "absent.toml").write_text("")
    cmd = [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", str(tmp_path / "m.db"), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _answers(tmp_path: Path) -> list[list[str]]:
    found = []
    for query in QUERIES:
        done = _cli(tmp_path, "recall", query, "--mode", "vector", "--top-k", "3", "--json")
        assert done.returncode == 0, done.stderr
        found.append([hit["memory"]["content"] for hit in json.loads(done.stdout)["hits"]])
    return found


def _graph(tmp_path: Path) -> tuple[Path, Path]:
    (graph,) = tmp_path.glob("m.db.hnsw-*.usearch")
    return graph, graph.with_suffix(".json")


def test_a_saved_graph_whose_description_was_tampered_with_is_rebuilt_not_trusted(tmp_path: Path) -> None:
    for text in TEXTS:
        assert _cli(tmp_path, "store", text).returncode == 0
    expected = _answers(tmp_path)  # the first recall builds the graph and saves it
    assert expected[0][0] == TEXTS[0] and expected[1][0] == TEXTS[3]
    graph, meta_path = _graph(tmp_path)

    meta = json.loads(meta_path.read_text())
    meta["ids"] = meta["ids"][1:] + meta["ids"][:1]  # same ids, same count, every key shifted to another memory
    meta_path.write_text(json.dumps(meta))
    assert _answers(tmp_path) == expected
    assert json.loads(meta_path.read_text())["ids"] != meta["ids"]  # refused and saved again from the store

    for hostile in ({**meta, "seq": 10**15}, {**meta, "ids": "../../etc/passwd"}, {"format": 1}, []):
        meta_path.write_text(json.dumps(hostile))
        assert _answers(tmp_path) == expected
    graph.write_bytes(os.urandom(graph.stat().st_size))  # garbage of the size the description names
    assert _answers(tmp_path) == expected
