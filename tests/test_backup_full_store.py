"""Retention never costs the snapshot a backup just made (``memmesh backup --retain``)."""

from __future__ import annotations

import json
from pathlib import Path


def test_retention_never_removes_the_snapshot_it_just_made(tmp_path, db_path, cli) -> None:
    """An older snapshot dated later than now (a clock that was ahead, a copy from elsewhere)
    used to outrank the new one: `--retain 1` deleted the snapshot it had just made and kept
    the old one, while the output named the deleted file as the backup."""
    assert cli("store", "Deploys are frozen on Fridays", "-n", "ops").code == 0
    folder = tmp_path / "backups"
    old = json.loads(cli("backup", "--to", str(folder), "--json").out)["snapshot"]
    manifest = Path(f"{old}.manifest.json")
    dated = json.loads(manifest.read_text())
    dated["created_at"] = "2099-01-01T00:00:00Z"
    manifest.write_text(json.dumps(dated))
    done = cli("backup", "--to", str(folder), "--retain", "1", "--json")
    assert done.code == 0, done.err
    made = json.loads(done.out)
    assert Path(made["snapshot"]).is_file() and Path(f"{made['snapshot']}.manifest.json").is_file()
    assert made["removed"] == [old] and not Path(old).exists()
