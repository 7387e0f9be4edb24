"""Probe of session 6's on-disk surfaces through the CLI: the saved HNSW graph beside a
SQLite file is a cache, so a hostile or mismatched one must be rebuilt, never trusted."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memmesh.store.migrations import load_migrations

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


def _env(tmp_path: Path, provider: str = "minilm") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update(
        {
            "MEMMESH_DATA_DIR": str(tmp_path / "data"),
            "MEMMESH_CONFIG": str(tmp_path / "absent.toml"),
            "MEMMESH_EMBEDDINGS_PROVIDER": provider,
            "MEMMESH_RECALL_ANN_THRESHOLD": "1",
        }
    )
    (tmp_path / "absent.toml").write_text("")
    return env


def _cli(tmp_path: Path, *args: str, provider: str = "minilm") -> subprocess.CompletedProcess[str]:
    env = _env(tmp_path, provider)
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


@pytest.mark.slow  # long: started first (tests/conftest.py)
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


OLD_MAIN = "73ea171"
"""main before schemas 20-22 (replicated standards/pending, bus chats in the feed, leases)."""


def _old_store(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A store written by the old release's own code (its sources from git), not a rewound one."""
    repo = Path(__file__).resolve().parents[1]
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", OLD_MAIN, "src"], capture_output=True, check=True, timeout=120)
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True, timeout=120)
    db = tmp_path / "m.db"
    env = {**_env(tmp_path), "MEMMESH_EMBEDDINGS_PROVIDER": "none", "PYTHONPATH": str(old / "src")}
    made = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("probe7_make_old_store.py")), str(db)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("19",)
    return db, json.loads(made.stdout.strip().splitlines()[-1])


def test_a_store_made_by_main_before_schema_20_upgrades_with_nothing_lost(tmp_path: Path) -> None:
    db, old = _old_store(tmp_path)

    def cli(*args: str) -> Any:
        done = _cli(tmp_path, *args, provider="none")
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout) if "--json" in args else done.stdout

    doctor = cli("doctor")
    latest = max(number for number, _name, _sql in load_migrations("sqlite"))
    assert f"schema {latest}" in doctor and "integrity: ok" in doctor
    with sqlite3.connect(db) as conn:  # the old run lease is carried over, still held
        assert conn.execute("SELECT name, holder FROM leases").fetchall() == [("curator", "old-process-1234")]
    ids = sorted(m["id"] for m in cli("list", "--json")["items"])
    assert ids == old["memories"]
    standards = cli("namespace", "list", "--json")
    assert sorted(s["namespace"] for s in (standards["standards"] if isinstance(standards, dict) else standards)) == ["legal", "ops"]
    pending = cli("pending", "list", "--status", "all", "--json")
    rows = pending["pending"] if isinstance(pending, dict) else pending
    assert {p["id"]: p["status"] for p in rows} == {old["pending_open"]: "pending", old["pending_applied"]: "applied"}
    transcript = cli("bus", "transcript", old["chat"], "--token", old["chat_token"], "--json")
    assert [(m["sender"], m["body"]) for m in transcript["messages"]] == [
        ("alice", "hello bob"),
        ("bob", "hi alice"),
        ("alice", "ship it?"),
    ]

    approved = cli("pending", "approve", old["pending_open"], "--json")  # a pre-schema-20 record decided after the upgrade
    assert approved["status"] == "applied"
    (written,) = approved["result"]["memory_ids"]
    assert sorted(m["id"] for m in cli("list", "--json", "--limit", "100")["items"]) == sorted([*old["memories"], written])
