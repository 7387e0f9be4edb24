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
from memmesh.store import open_store
from memmesh.store.sqlite import register_functions

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


def _cut(manifest: dict[str, object]) -> int:
    """The snapshot's moment, in the writer's nanoseconds."""
    return int(datetime.fromisoformat(str(manifest["created_at"]).replace("Z", "+00:00")).timestamp() * 1_000_000) * 1000


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
        if made.returncode == 0:  # the burst goes on after the snapshot: waited for, not a fixed 0.3 s
            deadline = time.monotonic() + 60
            while not any(at >= _cut(json.loads(made.stdout)["manifest"]) for _, at in acked(log)):
                assert time.monotonic() < deadline and proc.poll() is None, "no write was acknowledged after the snapshot"
                time.sleep(0.05)
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

    cut = _cut(manifest)
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
        tx.put_vector(a.id, "m-4", np.array([0.5, -0.25, 0.125, 3.0], dtype=np.float32), tx.next_seq())
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
    # SQLite keeps 8-bit codes with a per-vector scale (schema 16): equal to within one step
    assert vec.model == "m-4" and np.allclose(vec.vector, [0.5, -0.25, 0.125, 3.0], atol=3.0 / 254)


def test_a_postgres_snapshot_of_a_store_holding_only_the_keys_mark_restores_closed(
    pg_database: str, tmp_path: Path, open_memory: Callable[..., Memory]
) -> None:
    """A migrated copy holds the keys-required mark and no key row: its logical dump must carry
    the mark (the header's key count), so the copy restored from it requires keys too."""
    live = f"sqlite:///{tmp_path / 'live.db'}"
    assert run_cli(tmp_path, "keys", "create", "--agent", "root", "--role", "admin", db=live).returncode == 0
    assert run_cli(tmp_path, "migrate", "--from", live, "--to", pg_database).returncode == 0
    made = run_cli(tmp_path, "backup", "--to", str(tmp_path / "snaps"), "--json", db=pg_database)
    assert made.returncode == 0, made.stderr
    snapshot = json.loads(made.stdout)["snapshot"]
    assert json.loads(Path(snapshot).read_text().splitlines()[0])["api_keys"] == 1
    target = f"sqlite:///{tmp_path / 'from-pg.db'}"
    restored = run_cli(tmp_path, "restore", snapshot, "--to", target, "--json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["api_keys_not_restored"] == 1
    assert open_memory(target).service.keys_required()


# -- hostile snapshots (issue 12, finding 4) ---------------------------------------------------


def _reseal(snapshot: Path) -> None:
    """Recompute the manifest's checksum and size, as an attacker who edited the snapshot would."""
    import hashlib

    manifest_file = Path(str(snapshot) + ".manifest.json")
    manifest = json.loads(manifest_file.read_text())
    data = snapshot.read_bytes()
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    manifest_file.write_text(json.dumps(manifest))


def _restore_json(tmp_path: Path, snapshot: Path, target_url: str, tmpdir: Path) -> tuple[subprocess.CompletedProcess[str], dict]:
    result = run_cli_env(tmp_path, {"TMPDIR": str(tmpdir)}, "restore", str(snapshot), "--to", target_url, "--json")
    return result, json.loads(result.stdout) if result.stdout.strip() else {}


def run_cli_env(tmp_path: Path, extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    (tmp_path / "none.toml").write_text("")
    env.update(
        {"MEMMESH_CONFIG": str(tmp_path / "none.toml"), "MEMMESH_DATA_DIR": str(tmp_path / "data"), "MEMMESH_EMBEDDINGS_PROVIDER": "none"}
    )
    env.update(extra)
    return subprocess.run([sys.executable, "-m", "memmesh.interfaces.cli.app", *args], capture_output=True, text=True, env=env, timeout=300)


def test_edited_sqlite_snapshot_restores_only_records_that_pass_the_write_rules(tmp_path: Path, open_memory: Callable[..., Memory]) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'src.db'}"
    source = open_memory(url)
    good = source.add("a good fact", namespace="team", tier="long")
    future = source.add("stamped in the future", namespace="team", tier="long")
    edited = source.add("original content", namespace="team", tier="long")
    escaped = source.add("tries to leave its namespace", namespace="team", tier="long")
    huge = source.add("will be made huge", namespace="team", tier="long")
    source.link(escaped.id, good.id, "related_to")
    made = json.loads(run_cli(tmp_path, "backup", "--to", str(tmp_path / "snaps"), "--json", db=url).stdout)
    snapshot = Path(made["snapshot"])

    conn = sqlite3.connect(snapshot)
    register_functions(conn)  # the index triggers call them (an attacker would drop the triggers)
    with conn:
        conn.execute("UPDATE memories SET updated_at = '2999-01-01T00:00:00.000000Z' WHERE id = ?", (future.id,))
        conn.execute("UPDATE memories SET content = 'tampered content' WHERE id = ?", (edited.id,))
        conn.execute("UPDATE memories SET namespace = '../../etc' WHERE id = ?", (escaped.id,))
        conn.execute("UPDATE memories SET content = ? WHERE id = ?", ("x" * 200_000, huge.id))
    conn.close()
    _reseal(snapshot)

    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    result, report = _restore_json(tmp_path, snapshot, target_url, tmpdir)
    assert result.returncode == 1, result.stderr
    assert report["rejected"] == 4 and report["memories_written"] == 1
    reasons = {r["id"]: r["reason"] for r in report["rejects"] if r["kind"] == "memory"}
    assert set(reasons) == {future.id, edited.id, escaped.id, huge.id}
    assert "updated_at 2999-01-01" in reasons[future.id] and "future" in reasons[future.id]
    assert "content_hash does not match" in reasons[edited.id]
    assert "'.' or '..'" in reasons[escaped.id]
    assert "200000 bytes; the limit is 65536" in reasons[huge.id]
    assert f"rejected memory {future.id}:" in result.stderr and "4 records of" in result.stderr
    assert list(tmpdir.iterdir()) == []

    restored = open_memory(target_url)
    assert [m.id for m in restored.get_all()] == [good.id]
    assert restored.links(good.id) == []  # the link to the refused memory did not come along
    assert restored.service.store.history(escaped.id) == []


def test_forged_logical_snapshot_is_checked_record_by_record(tmp_path: Path, open_memory: Callable[..., Memory]) -> None:
    from memmesh.service import content_hash

    mem = open_memory(f"sqlite:///{tmp_path / 'model.db'}")
    model = mem.add("a genuine memory", namespace="team", tier="long").model_dump(mode="json")

    def forged(**changes: object) -> dict:
        record = {**model, **changes}
        record["content_hash"] = content_hash(record["namespace"], record["content"])  # a careful forger recomputes it
        return record

    records = {
        "ok-1": forged(id="ok-1", content="restored as is"),
        "big-1": forged(id="big-1", content="y" * 200_000),
        "etc-1": forged(id="etc-1", namespace="../../etc"),
        "dot-1": forged(id="dot-1", namespace="team/."),
        "nl-1": forged(id="nl-1", namespace="team\nevil"),
        "hlc-1": forged(id="hlc-1", content="future clock", version={"clock": {"n": 1}, "node": "n", "hlc": "9999999999999.00000"}),
        "late-1": forged(id="late-1", content="future update", updated_at="2999-01-01T00:00:00Z"),
        "hash-1": {**forged(id="hash-1", content="hash is stale"), "content_hash": "0" * 64},
    }
    header = {
        "type": "header",
        "format": "memmesh-snapshot",
        "version": 1,
        "schema_version": 1,
        "node_id": "forger",
        "created_at": "2026-01-01T00:00:00Z",
    }
    lines = [header] + [{"type": "memory", "memory": r, "history": []} for r in records.values()]
    snapshot = tmp_path / "snaps" / "memmesh-20260101T000000000000Z-forger.jsonl"
    snapshot.parent.mkdir()
    snapshot.write_text("".join(json.dumps(line) + "\n" for line in lines))
    Path(str(snapshot) + ".manifest.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "created_at": "2026-01-01T00:00:00Z",
                "node_id": "forger",
                "schema_version": 1,
                "backend": "postgresql",
                "memories": len(records),
                "links": 0,
                "sha256": "0",
                "bytes": 0,
            }
        )
    )
    _reseal(snapshot)

    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    result, report = _restore_json(tmp_path, snapshot, target_url, tmpdir)
    assert result.returncode == 1, result.stderr
    assert {r["id"] for r in report["rejects"]} == set(records) - {"ok-1"}
    assert report["rejected"] == len(records) - 1 and report["memories_written"] == 1
    target = open_memory(target_url)
    assert [m.id for m in target.get_all()] == ["ok-1"]
    assert list(tmpdir.iterdir()) == []


@pytest.mark.parametrize("how", ["garbage", "symlink", "unreadable-record"])
def test_failed_restores_leave_nothing_in_the_temp_folder(tmp_path: Path, open_memory: Callable[..., Memory], how: str) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'src.db'}"
    open_memory(url).add("something", tier="long")
    made = json.loads(run_cli(tmp_path, "backup", "--to", str(tmp_path / "snaps"), "--json", db=url).stdout)
    snapshot = Path(made["snapshot"])
    if how == "garbage":
        snapshot.write_bytes(b"not a database at all, but the manifest will match\n" * 100)
    elif how == "symlink":
        secret = tmp_path / "secret.txt"
        secret.write_text("a file the snapshot link points at\n" * 50)
        snapshot.unlink()
        snapshot.symlink_to(secret)
    else:
        conn = sqlite3.connect(snapshot)
        with conn:
            conn.execute("UPDATE memories SET tier = 'forever'")
        conn.close()
    _reseal(snapshot)
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    target = open_memory(target_url)
    target.add("already here", tier="long")

    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    result = run_cli_env(tmp_path, {"TMPDIR": str(tmpdir)}, "restore", str(snapshot), "--to", target_url)
    assert result.returncode == 1, result.stdout
    assert result.stderr.strip().startswith("error:") and "Traceback" not in result.stderr, result.stderr
    assert "nothing was changed" in result.stderr and str(tmpdir) not in result.stderr
    assert list(tmpdir.iterdir()) == []
    assert [m.content for m in target.get_all()] == ["already here"]


def test_backup_into_a_read_only_file_system_says_why_in_one_line(tmp_path: Path, open_memory: Callable[..., Memory]) -> None:
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a read-only file system without privileges")
    url = f"sqlite:///{tmp_path / 'src.db'}"
    open_memory(url).add("something", tier="long")
    folder = tmp_path / "ro"
    folder.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro tmpfs {folder}"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {probe.stderr.strip()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    (tmp_path / "none.toml").write_text("")
    env.update(
        {"MEMMESH_CONFIG": str(tmp_path / "none.toml"), "MEMMESH_DATA_DIR": str(tmp_path / "data"), "MEMMESH_EMBEDDINGS_PROVIDER": "none"}
    )
    env["MEMMESH_DB"] = url
    command = f"mount -t tmpfs -o ro tmpfs {folder} && exec {sys.executable} -m memmesh.interfaces.cli.app backup --to {folder}"
    result = subprocess.run(["unshare", "-rm", "sh", "-c", command], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write the backup into") and "Read-only file system" in lines[0], lines
