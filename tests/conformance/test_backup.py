"""``memmesh backup`` / ``memmesh restore`` through the real CLI, while another process writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from memmesh import Memory
from memmesh.store.base import open_store

WRITER = textwrap.dedent("""
    import sys, time
    from memmesh import Memory
    from memmesh.config import load_settings
    url, log_path, data_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    settings = load_settings(None, overrides={"data_dir": data_dir, "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    with Memory(url, settings) as mem, open(log_path, "a", buffering=1) as log:
        i = 0
        while True:
            m = mem.add(f"burst write {i}", namespace="burst", tier="long")
            log.write(f"{m.id}\\t{time.time_ns()}\\n")   # acknowledged: stored and committed
            i += 1
""")


def run_cli(tmp_path: Path, *args: str, db: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    (tmp_path / "none.toml").write_text("")
    env.update(
        {"MEMMESH_CONFIG": str(tmp_path / "none.toml"), "MEMMESH_DATA_DIR": str(tmp_path / "data"), "MEMMESH_EMBEDDINGS_PROVIDER": "none"}
    )
    if db:
        env["MEMMESH_DB"] = db
    return subprocess.run([sys.executable, "-m", "memmesh.interfaces.cli.app", *args], capture_output=True, text=True, env=env, timeout=300)


def acked(log: Path) -> list[tuple[str, int]]:
    rows = []
    for line in log.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[1].isdigit():
            rows.append((parts[0], int(parts[1])))
    return rows


def start_writer(tmp_path: Path, url: str) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    log = tmp_path / "acks.log"
    proc = subprocess.Popen(
        [sys.executable, str(script), url, str(log), str(tmp_path / "writer-data")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or len(acked(log)) < 30):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    return proc, log


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_backup_during_a_write_burst_keeps_every_acknowledged_write(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}" if backend == "sqlite" else request.getfixturevalue("pg_database")
    open_store(url).close()  # create the schema before the writer and the backup race for it
    proc, log = start_writer(tmp_path, url)
    try:
        made = run_cli(tmp_path, "backup", "--to", str(tmp_path / "snaps"), "--json", db=url)
        time.sleep(0.3)  # the burst goes on after the snapshot
    finally:
        stop(proc)
    assert made.returncode == 0, made.stderr
    result = json.loads(made.stdout)
    manifest = result["manifest"]
    snapshot = Path(result["snapshot"])
    assert set(manifest) == {"format_version", "created_at", "node_id", "schema_version", "backend", "memories", "links", "sha256", "bytes"}
    assert manifest["backend"] == ("sqlite" if backend == "sqlite" else "postgresql")
    assert snapshot.stat().st_size == manifest["bytes"]
    assert json.loads(Path(str(snapshot) + ".manifest.json").read_text()) == manifest

    cut = int(datetime.fromisoformat(manifest["created_at"].replace("Z", "+00:00")).timestamp() * 1_000_000) * 1000
    writes = acked(log)
    before = {mid for mid, at in writes if at < cut}
    assert before and len(before) < len(writes), "the backup must fall inside the burst"

    restored_url = f"sqlite:///{tmp_path / 'restored.db'}"
    back = run_cli(tmp_path, "restore", str(snapshot), "--to", restored_url, "--json")
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["memories_written"] == manifest["memories"]
    restored = open_store(restored_url)
    try:
        present = {m.id for m in restored.iter_memories()}
        assert before <= present
        assert len(present) == manifest["memories"]
        assert restored.integrity_check() == "ok"
    finally:
        restored.close()


def test_damaged_truncated_or_newer_snapshots_are_refused(tmp_path: Path, open_memory: Callable[..., Memory]) -> None:
    url = f"sqlite:///{tmp_path / 'src.db'}"
    source = open_memory(url)
    source.add_many([{"content": f"fact {i}", "tier": "long"} for i in range(20)])
    made = json.loads(run_cli(tmp_path, "backup", "--to", str(tmp_path / "snaps"), "--json", db=url).stdout)
    snapshot = Path(made["snapshot"])
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    target = open_memory(target_url)
    target.add("already here", tier="long")

    def refused(path: Path, expect: str) -> None:
        result = run_cli(tmp_path, "restore", str(path), "--to", target_url)
        assert result.returncode == 1, result.stdout
        assert result.stderr.startswith("error:") and expect in result.stderr and "nothing was changed" in result.stderr
        assert [m.content for m in target.get_all()] == ["already here"]

    data = snapshot.read_bytes()
    manifest = json.loads(Path(str(snapshot) + ".manifest.json").read_text())

    truncated = tmp_path / "bad" / snapshot.name
    truncated.parent.mkdir()
    truncated.write_bytes(data[: len(data) // 2])
    Path(str(truncated) + ".manifest.json").write_text(json.dumps(manifest))
    refused(truncated, "damaged")

    edited = bytearray(data)
    edited[len(edited) // 2] ^= 0xFF
    truncated.write_bytes(bytes(edited))
    refused(truncated, "damaged")

    truncated.write_bytes(data)
    Path(str(truncated) + ".manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    refused(truncated, "newer")

    Path(str(truncated) + ".manifest.json").unlink()
    refused(truncated, "no manifest")

    ok = run_cli(tmp_path, "restore", str(snapshot), "--to", target_url, "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["memories_written"] == 20
    assert len(target.get_all()) == 21
    again = json.loads(run_cli(tmp_path, "restore", str(snapshot), "--to", target_url, "--json").stdout)
    assert again["memories_written"] == 0


def test_retention_keeps_the_newest_snapshots(tmp_path: Path, open_memory: Callable[..., Memory]) -> None:
    url = f"sqlite:///{tmp_path / 'src.db'}"
    open_memory(url).add("something", tier="long")
    folder = tmp_path / "snaps"
    made = [json.loads(run_cli(tmp_path, "backup", "--to", str(folder), "--retain", "2", "--json", db=url).stdout) for _ in range(3)]
    kept = sorted(p.name for p in folder.iterdir())
    expected = sorted([Path(m["snapshot"]).name for m in made[1:]] + [Path(m["snapshot"]).name + ".manifest.json" for m in made[1:]])
    assert kept == expected
    assert made[2]["removed"] == [made[0]["snapshot"]]
    bad = run_cli(tmp_path, "backup", "--to", str(folder), "--retain", "0", db=url)
    assert bad.returncode == 2


def test_postgres_snapshot_restores_into_sqlite_with_vectors_and_links(
    pg_database: str, tmp_path: Path, open_memory: Callable[..., Memory]
) -> None:
    import numpy as np

    mem = open_memory(pg_database)
    a = mem.add("alpha fact", tier="long", metadata={"z": 1, "a": [1, 2]})
    b = mem.add("beta fact", tier="long")
    mem.link(a.id, b.id, "contradicts")
    gone = mem.add("to be deleted", tier="long")
    mem.delete(gone.id)
    with mem.service.store.write() as tx:
        tx.put_vector(a.id, "m-4", np.array([0.5, -0.25, 1e-8, 3.0], dtype=np.float32), tx.next_seq())
    made = run_cli(tmp_path, "backup", "--to", str(tmp_path / "snaps"), "--json", db=pg_database)
    assert made.returncode == 0, made.stderr
    result = json.loads(made.stdout)
    assert result["snapshot"].endswith(".jsonl") and result["manifest"]["links"] == 1
    target_url = f"sqlite:///{tmp_path / 'from-pg.db'}"
    assert run_cli(tmp_path, "restore", result["snapshot"], "--to", target_url).returncode == 0
    restored = open_memory(target_url)
    assert restored.get(a.id) == a and restored.get(b.id) == b
    assert [(x.source_id, x.target_id) for x in restored.links(a.id)] == [(a.id, b.id)]
    assert [t.id for t in restored.service.store.tombstones_since(0)] == [gone.id]
    assert [e.event.value for e in restored.history(gone.id)] == ["add", "delete"]
    vec = restored.service.store.get_vectors([a.id])[0]
    assert vec.model == "m-4" and vec.vector.tobytes() == np.array([0.5, -0.25, 1e-8, 3.0], dtype=np.float32).tobytes()
