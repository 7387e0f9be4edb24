"""What a new user following docs/subscriptions.md tripped over in the CLI: each test fails
on the code before its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    (tmp_path / "absent.toml").write_text("")
    env.update(
        {
            "MEMMESH_DB": str(tmp_path / "cli.db"),
            "MEMMESH_DATA_DIR": str(tmp_path / "data"),
            "MEMMESH_CONFIG": str(tmp_path / "absent.toml"),
            "MEMMESH_EMBEDDINGS_PROVIDER": "none",
            "COLUMNS": "80",  # a plain terminal, or output piped
        }
    )
    return subprocess.run([sys.executable, "-m", "memmesh.interfaces.cli.app", *args], env=env, capture_output=True, text=True, timeout=120)


def test_subscribe_list_shows_whole_ids_and_urls_on_an_80_column_terminal(tmp_path: Path) -> None:
    # Before: at 80 columns the table cut the id to "01a2…-6c3e…" and the URL to "http://8.8.…",
    # so the id printed could not be pasted into `memmesh subscribe remove`/`deliveries`.
    url = "http://8.8.4.4/a-rather-long/path/for/the/hook?x=1"
    made = _cli(tmp_path, "subscribe", "add", url, "-n", "team/ops", "--events", "memory.created", "--json")
    assert made.returncode == 0, made.stderr
    sub_id = json.loads(made.stdout)["id"]
    listed = _cli(tmp_path, "subscribe", "list")
    assert listed.returncode == 0, listed.stderr
    assert sub_id in listed.stdout, listed.stdout
    assert "…" not in listed.stdout, listed.stdout
    cells = "".join(line.split("│")[3].strip() for line in listed.stdout.splitlines() if line.count("│") > 3)
    assert cells == url, listed.stdout  # the URL folds onto several lines, whole
    assert "created" in listed.stdout
    deliveries = _cli(tmp_path, "subscribe", "deliveries", sub_id)
    assert deliveries.returncode == 0, deliveries.stderr
    assert _cli(tmp_path, "subscribe", "remove", sub_id).returncode == 0
