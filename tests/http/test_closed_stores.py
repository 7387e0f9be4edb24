"""A restored store never comes back open (security probe, issue 12 follow-up): key rows are
not copied from a snapshot, but a snapshot that held keys makes the target require keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
from http_support import server_env


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", *args], capture_output=True, text=True, env=server_env(tmp_path), timeout=120
    )


def _snapshot_of(tmp_path: Path, db: Path, *, keys: int) -> Path:
    for n in range(keys):
        assert _cli(tmp_path, "--db", str(db), "keys", "create", "--agent", f"root{n}", "--role", "admin").returncode == 0
    assert _cli(tmp_path, "--db", str(db), "store", "the vault code is 4711").returncode == 0
    made = _cli(tmp_path, "--db", str(db), "backup", "--to", str(tmp_path / "snaps"), "--json")
    assert made.returncode == 0, made.stderr
    return Path(json.loads(made.stdout)["snapshot"])


def test_a_snapshot_with_keys_restores_into_a_closed_store(spawn, tmp_path):
    snapshot = _snapshot_of(tmp_path, tmp_path / "live.db", keys=2)
    target = tmp_path / "restored.db"
    restored = _cli(tmp_path, "restore", str(snapshot), "--to", str(target))
    assert restored.returncode == 0, restored.stderr
    assert "the snapshot held 2 API keys; they are not restored; create new ones with `memmesh keys create`" in restored.stderr
    server = spawn(target)
    assert "auth: open" not in server.log.read_text()
    response = httpx.get(server.url + "/api/v1/memories", timeout=10)
    assert response.status_code == 401, response.text
    assert "4711" not in response.text
    keys = _cli(tmp_path, "--db", str(target), "keys", "list", "--all", "--json")
    assert keys.returncode == 0 and json.loads(keys.stdout) == []  # no key row came from the snapshot


def test_a_restore_into_a_store_with_its_own_key_says_that_key_still_works(spawn, tmp_path):
    snapshot = _snapshot_of(tmp_path, tmp_path / "live.db", keys=2)
    target = tmp_path / "other.db"
    made = _cli(tmp_path, "--db", str(target), "keys", "create", "--agent", "ops", "--role", "admin", "--json")
    assert made.returncode == 0, made.stderr
    own_key = json.loads(made.stdout)["key"]
    restored = _cli(tmp_path, "restore", str(snapshot), "--to", str(target), "--json")
    assert restored.returncode == 0, restored.stderr
    assert "the snapshot held 2 API keys; they are not restored; this store's own 1 key still works" in restored.stderr
    assert "create new ones" not in restored.stderr
    report = json.loads(restored.stdout)
    assert report["api_keys_not_restored"] == 2 and report["target_api_keys"] == 1
    server = spawn(target)
    assert httpx.get(server.url + "/api/v1/memories", timeout=10).status_code == 401
    listed = httpx.get(server.url + "/api/v1/memories", headers={"Authorization": f"Bearer {own_key}"}, timeout=10)
    assert listed.status_code == 200 and "4711" in listed.text


def test_a_snapshot_without_keys_restores_open_as_before(spawn, tmp_path):
    snapshot = _snapshot_of(tmp_path, tmp_path / "live.db", keys=0)
    target = tmp_path / "restored.db"
    restored = _cli(tmp_path, "restore", str(snapshot), "--to", str(target))
    assert restored.returncode == 0 and "API keys" not in restored.stderr
    server = spawn(target)
    assert httpx.get(server.url + "/api/v1/memories", timeout=10).status_code == 200


def test_a_migrated_copy_of_a_store_with_keys_is_closed_too(spawn, tmp_path):
    """``migrate`` copies no key rows either (docs/backup.md); its target must not come up
    open on loopback, serving every memory without a key, while the source required one.
    Nor may a store restored from such a snapshot (which holds the flag, not the keys) pass
    on an open copy through a second migrate or backup and restore."""
    live = tmp_path / "live.db"
    _snapshot_of(tmp_path, live, keys=1)
    first = tmp_path / "first.db"
    copied = _cli(tmp_path, "migrate", "--from", str(live), "--to", str(first), "--json")
    assert copied.returncode == 0, copied.stderr
    assert json.loads(copied.stdout)["api_keys_not_copied"] == 1
    assert "the source held 1 API key; it is not copied; create new ones with `memmesh keys create`" in copied.stderr
    dry = _cli(tmp_path, "migrate", "--from", str(live), "--to", str(tmp_path / "never.db"), "--dry-run")
    assert dry.returncode == 0 and not (tmp_path / "never.db").exists()
    second = tmp_path / "second.db"
    assert _cli(tmp_path, "migrate", "--from", str(first), "--to", str(second)).returncode == 0  # the copy holds no key row
    made = _cli(tmp_path, "--db", str(second), "backup", "--to", str(tmp_path / "snaps2"), "--json")
    third = tmp_path / "third.db"
    restored = _cli(tmp_path, "restore", json.loads(made.stdout)["snapshot"], "--to", str(third))
    assert restored.returncode == 0, restored.stderr
    for target in (first, second, third):
        server = spawn(target)
        assert "auth: open" not in server.log.read_text(), target
        response = httpx.get(server.url + "/api/v1/memories", timeout=10)
        assert response.status_code == 401 and "4711" not in response.text, (target, response.text)
        server.terminate()


def test_a_migrate_into_a_store_with_its_own_key_says_that_key_still_works(tmp_path):
    live = tmp_path / "live.db"
    _snapshot_of(tmp_path, live, keys=2)
    target = tmp_path / "other.db"
    assert _cli(tmp_path, "--db", str(target), "keys", "create", "--agent", "ops", "--role", "admin").returncode == 0
    copied = _cli(tmp_path, "migrate", "--from", str(live), "--to", str(target), "--json")
    assert copied.returncode == 0, copied.stderr
    assert "the source held 2 API keys; they are not copied; this store's own 1 key still works" in copied.stderr
    report = json.loads(copied.stdout)
    assert report["api_keys_not_copied"] == 2 and report["target_api_keys"] == 1


def test_the_start_banner_says_closed_after_every_key_was_revoked(spawn, tmp_path):
    db = tmp_path / "live.db"
    made = _cli(tmp_path, "--db", str(db), "keys", "create", "--agent", "root", "--role", "admin", "--json")
    assert made.returncode == 0, made.stderr
    assert _cli(tmp_path, "--db", str(db), "keys", "revoke", json.loads(made.stdout)["id"]).returncode == 0
    server = spawn(db)
    banner = next(line for line in server.log.read_text().splitlines() if "auth:" in line)
    assert "auth: closed — every API key was revoked; create one with `memmesh keys create" in banner, banner
    assert httpx.get(server.url + "/api/v1/memories", timeout=10).status_code == 401


def test_metrics_on_loopback_need_a_key_once_keys_are_required_and_are_scoped(serve):
    from memmesh.model import LOCAL_PRINCIPAL

    running = serve()
    svc = running.service
    assert running.http().get("/metrics").status_code == 200  # truly open: no key was ever made
    svc.add({"content": "mine", "namespace": "a"}, principal=LOCAL_PRINCIPAL)
    svc.add({"content": "theirs", "namespace": "b"}, principal=LOCAL_PRINCIPAL)
    scoped = svc.create_key("ra", role="reader", namespaces=["a"], principal=LOCAL_PRINCIPAL)
    revoked = svc.create_key("gone", role="admin", principal=LOCAL_PRINCIPAL)
    svc.revoke_key(revoked.id, principal=LOCAL_PRINCIPAL)
    for key in (None, revoked.key, "mm_000000000000_wrong"):
        response = running.http(key).get("/metrics")
        assert response.status_code == 401, (key, response.text)
        assert "memmesh_store_memories" not in response.text
    metrics = running.http(scoped.key).get("/metrics")
    assert metrics.status_code == 200
    assert "memmesh_store_memories 1.0" in metrics.text and "memmesh_store_size_bytes 0.0" in metrics.text


def test_metrics_need_a_key_with_require_auth_on_loopback(serve):
    running = serve(auth={"require_auth": True})
    assert running.http().get("/metrics").status_code == 401


def _tamper(snapshot: Path, sql: str) -> None:
    """Edit a SQLite snapshot and its manifest together, as an attacker could."""
    import hashlib
    import sqlite3

    with sqlite3.connect(snapshot) as conn:
        conn.execute(sql)
    conn.close()
    manifest = Path(f"{snapshot}.manifest.json")
    data = json.loads(manifest.read_text())
    data.update(sha256=hashlib.sha256(snapshot.read_bytes()).hexdigest(), bytes=snapshot.stat().st_size)
    manifest.write_text(json.dumps(data))


def test_an_unreadable_record_refuses_the_restore_before_the_target_exists(tmp_path):
    db = tmp_path / "live.db"
    snapshot = _snapshot_of(tmp_path, db, keys=0)
    memory_id = json.loads(_cli(tmp_path, "--db", str(db), "list", "--json").stdout)["items"][0]["id"]
    _tamper(snapshot, "UPDATE memories SET metadata = '{not json'")
    target = tmp_path / "restored.db"
    refused = _cli(tmp_path, "restore", str(snapshot), "--to", str(target))
    assert refused.returncode == 1
    assert not target.exists() and "created a new memmesh database" not in refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, refused.stderr
    assert "table memories" in lines[0] and memory_id in lines[0] and "column metadata" in lines[0] and "nothing was changed" in lines[0]
    assert "JSONDecodeError" not in lines[0]


def test_a_naive_timestamp_is_a_one_line_reject_naming_the_field(tmp_path):
    db = tmp_path / "live.db"
    snapshot = _snapshot_of(tmp_path, db, keys=0)
    memory_id = json.loads(_cli(tmp_path, "--db", str(db), "list", "--json").stdout)["items"][0]["id"]
    _tamper(snapshot, "UPDATE memories SET updated_at = '2026-01-01T00:00:00'")
    restored = _cli(tmp_path, "restore", str(snapshot), "--to", str(tmp_path / "restored.db"))
    assert restored.returncode == 1
    assert "TypeError" not in restored.stderr and "offset-naive" not in restored.stderr
    assert f"rejected memory {memory_id}: updated_at 2026-01-01T00:00:00 has no UTC offset" in restored.stderr, restored.stderr
