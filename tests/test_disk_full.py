"""A full disk never costs an acknowledged write (issue 18/24, found by ``memmesh chaos``).

The rule: a write the node acknowledges (201) is on that node; a write that could not commit
there is refused (503 ``storage_error``) and leaves nothing behind; once the disk has room
again the node writes again, without a restart.

The disk is "full" by the soft ``RLIMIT_FSIZE`` of a real process (``prlimit``, exactly as
``memmesh chaos --disk-method rlimit`` does): every write past byte 1 of any file fails with
``EFBIG`` and SQLite answers "disk I/O error", and for a write large enough to spill SQLite's
page cache it rolls the *whole* transaction back on its own — the group commit's transaction
with the other callers' already-finished writes in it. Before the fix those callers were
told their write committed (the HTTP server answered 201, and a mesh would ship it to its
peers) while the node itself kept nothing.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from tests.http.http_support import SpawnedServer, free_port, server_env

BIG = "x" * 60_000
"""Content near the 64 KB limit: 30 of them fill a batch body and spill SQLite's page cache."""


def _limit(pid: int, soft: int | None) -> None:
    """Lower (soft=1) or lift (None) the file-size limit of a running process."""
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard if soft is None else soft, hard))


def _write(http: httpx.Client, worker: int, i: int) -> tuple[list[str], int, str]:
    """One write (a small single add, or a large batch), with ids of our own to look for later."""
    if i % 3 == 0:
        ids = [f"w{worker}-{i}-{k}" for k in range(30)]
        items = [{"id": mid, "namespace": "disk", "content": f"{mid} {BIG}"} for mid in ids]
        answer = http.post("/api/v1/memories/batch", json={"items": items})
    else:
        ids = [f"w{worker}-{i}"]
        answer = http.post("/api/v1/memories", json={"id": ids[0], "namespace": "disk", "content": f"note {ids[0]}"})
    code = answer.json().get("error", {}).get("code", "") if answer.status_code != 201 else ""
    return ids, answer.status_code, code


def _stored_ids(http: httpx.Client) -> set[str]:
    stored: set[str] = set()
    cursor = None
    while True:
        params = {"namespace": "disk", "limit": 200, **({"cursor": cursor} if cursor else {})}
        page = http.get("/api/v1/memories", params=params).json()
        stored |= {item["id"] for item in page["items"]}
        cursor = page.get("next_cursor")
        if not cursor:
            return stored


def test_a_node_whose_disk_fills_under_concurrent_writes_acknowledges_only_what_it_keeps(tmp_path: Path) -> None:
    server = SpawnedServer(tmp_path, tmp_path / "full.db").wait_ready()
    rng = random.Random(18)
    acked: set[str] = set()
    refused: set[str] = set()
    other: list[tuple[int, str]] = []
    answered = threading.Condition()
    stop = threading.Event()

    def writer(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            i = 0
            while not stop.is_set():
                ids, status, code = _write(http, worker, i)
                i += 1
                with answered:
                    if status == 201:
                        acked.update(ids)
                    elif status == 503 and code == "storage_error":
                        refused.update(ids)
                    else:
                        other.append((status, code))
                    answered.notify_all()

    def until(grown: set[str], at_least: float, what: str) -> None:
        """Hold the disk state for ``at_least`` seconds and until ``grown`` has grown, so a slow
        machine still sees both a refusal while full and an acknowledgement once freed."""
        with answered:
            before = len(grown)
        time.sleep(at_least)
        with answered:
            assert answered.wait_for(lambda: len(grown) > before or bool(other), 60), what

    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert _write(http, 99, 1)[1] == 201  # the store file and its WAL exist before the disk fills
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        for _ in range(12):  # the disk fills and frees while writes keep coming
            _limit(server.proc.pid, 1)
            until(refused, rng.uniform(0.2, 0.6), "the disk was full for 60 s and no write was refused")
            _limit(server.proc.pid, None)
            until(acked, rng.uniform(0.05, 0.3), "the disk had room again for 60 s and no write was acknowledged")
        _limit(server.proc.pid, 1)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(120)
        _limit(server.proc.pid, None)

        with httpx.Client(base_url=server.url, timeout=60) as http:
            # Room again: the same process writes again, no restart.
            after = http.post("/api/v1/memories", json={"id": "after-the-disk-freed", "namespace": "disk", "content": "room again"})
            assert after.status_code == 201, after.text
            stored = _stored_ids(http)
        assert other == [], f"answers that were neither 201 nor 503 storage_error: {other[:5]}"
        assert refused, "the disk never filled: the test proved nothing"
        assert acked, "no write was acknowledged: the test proved nothing"
        lost = sorted(acked - stored)
        assert lost == [], f"{len(lost)} acknowledged writes are not on the node: {lost[:10]}"
        kept = sorted(refused & stored)
        assert kept == [], f"{len(kept)} writes answered storage_error were stored anyway: {kept[:10]}"
    finally:
        stop.set()
        server.proc.terminate()
        server.proc.wait(30)


SCRIPT = r"""
import json, random, resource, sys, threading, time
from memmesh import Memory
from memmesh.errors import StorageError
from tests.conftest import keyword_settings
from pathlib import Path

tmp = Path(sys.argv[1])
mem = Memory(f"sqlite:///{tmp / 'threads.db'}", keyword_settings(tmp))
mem.add("exists before the disk fills", id="first")
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
acked, refused, other = set(), set(), []
answered = threading.Condition()
stop = threading.Event()
big = "y" * 60_000

def writer(worker):
    i = 0
    while not stop.is_set():
        i += 1
        try:
            if i % 3 == 0:
                ids = [f"t{worker}-{i}-{k}" for k in range(40)]
                mem.add_many([{"id": m, "content": f"{m} {big}"} for m in ids])
            else:
                ids = [f"t{worker}-{i}"]
                mem.add(f"note {ids[0]}", id=ids[0])
            with answered:
                acked.update(ids)
                answered.notify_all()
        except StorageError:
            with answered:
                refused.update(ids)
                answered.notify_all()
        except Exception as exc:
            with answered:
                other.append(repr(exc))
                answered.notify_all()

def until(grown, at_least, what):
    # hold the disk state at least this long and until a write saw it, however slow the machine
    with answered:
        before = len(grown)
    time.sleep(at_least)
    with answered:
        if not answered.wait_for(lambda: len(grown) > before or bool(other), 60):
            other.append(what)

rng = random.Random(24)
threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
for t in threads:
    t.start()
for _ in range(25):
    resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))
    until(refused, rng.uniform(0.02, 0.1), "full for 60 s and no write was refused")
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    until(acked, rng.uniform(0.01, 0.05), "room again for 60 s and no write was acknowledged")
stop.set()
for t in threads:
    t.join()
after = mem.add("room again", id="after")
mem.close()
reopened = Memory(f"sqlite:///{tmp / 'threads.db'}", keyword_settings(tmp))
stored = {m.id for m in reopened.service.store.iter_memories()}
print(json.dumps({
    "acked": len(acked), "refused": len(refused), "other": other[:5],
    "lost": sorted(acked - stored)[:10], "n_lost": len(acked - stored),
    "kept": sorted(refused & stored)[:10], "after": after.id in stored,
    "integrity": reopened.service.store.integrity_check(),
}))
"""


def test_group_commit_callers_each_get_the_truth_when_sqlite_rolls_the_group_back(tmp_path: Path) -> None:
    """Many threads of one process share group commits while the file-size limit flips:
    every add/add_many that returned is on disk, every one refused with StorageError is not,
    and the store writes again as soon as there is room."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=root, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["other"] == []
    assert report["refused"] > 0, "the disk never filled: the test proved nothing"
    assert report["acked"] > 0, "nothing was acknowledged: the test proved nothing"
    assert report["n_lost"] == 0, f"acknowledged but not stored: {report['lost']}"
    assert report["kept"] == [], f"refused but stored: {report['kept']}"
    assert report["after"] is True
    assert report["integrity"] == "ok"


def test_a_backup_whose_folder_fills_names_the_folder_not_the_store(tmp_path: Path, db_path: Path, cli) -> None:
    """``memmesh backup --to DIR`` on a disk that fills while the snapshot is written: the
    error names the backup folder and says why, and never the store being copied (which is
    fine; it used to read ``database error on <the store>: disk I/O error``)."""
    assert cli("store", "Deploys are frozen on Fridays", "-n", "ops").code == 0
    assert db_path.stat().st_size > 100_000  # the copy cannot fit under the limit below
    folder = tmp_path / "backups"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update({"MEMMESH_DATA_DIR": str(tmp_path / "data"), "MEMMESH_EMBEDDINGS_PROVIDER": "none", "COLUMNS": "200"})

    def disk_fills_at_100_kb() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "--db", str(db_path), "backup", "--to", str(folder)],
        preexec_fn=disk_fills_at_100_kb,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done
    assert done.stderr.startswith(f"error: cannot write the backup into {folder}: "), done.stderr
    assert "a write failed (the disk is full, or a file size limit was reached)" in done.stderr, done.stderr
    assert "no snapshot was made" in done.stderr and str(db_path) not in done.stderr, done.stderr
    assert list(folder.iterdir()) == []  # no partial snapshot left behind
    assert cli("backup", "--to", str(folder)).code == 0  # room again: the same command works


def test_a_write_refused_for_a_full_disk_is_logged_with_its_reason(tmp_path: Path) -> None:
    """The 503 a client gets for a full disk is in the server's log as a WARNING with the
    reason, so an operator reading the log sees why writes fail (it was an INFO access line,
    'POST /api/v1/memories/batch 503', and nothing else). The log goes to a pipe, as to
    journald: a file on the full disk could not take it."""
    proc, port = _serve_piped(tmp_path)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            _until_up(http, proc)
            assert _write(http, 0, 1)[1] == 201  # the store file and its WAL exist before the disk fills
            _limit(proc.pid, 1)
            refused = _write(http, 0, 3)  # a batch large enough to reach the disk
            _limit(proc.pid, None)
            assert refused[1:] == (503, "storage_error")
    finally:
        proc.terminate()
        output = proc.communicate(timeout=60)[0]
    logged = [line for line in output.splitlines() if " WARNING memmesh.http " in line]
    assert any("POST /api/v1/memories/batch answered 503 storage_error: write to " in line for line in logged), output[-3000:]
    assert any(str(tmp_path / "full.db") in line and "disk I/O error" in line for line in logged), logged


def _serve_piped(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    """``memmesh serve`` on a new store, its log to a pipe (as to journald: a file on the full
    disk could not take it)."""
    port = free_port()
    (tmp_path / "absent.toml").write_text("")
    command = [sys.executable, "-m", "memmesh.interfaces.cli.app", "serve", "--db", str(tmp_path / "full.db"), "--port", str(port)]
    proc = subprocess.Popen(command, env=server_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, port


def _until_up(http: httpx.Client, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while True:  # ready: /healthz answers
        assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
        try:
            if http.get("/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)


def _writes_component(http: httpx.Client, status: str) -> dict[str, str]:
    """The ``writes`` component of ``/readyz`` once it has ``status`` (one report serves a
    second of requests, so the next one may be up to a second old)."""
    deadline = time.monotonic() + 30
    while True:
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.text  # degraded, never unready: reads still work
        writes: dict[str, str] = ready.json()["components"]["writes"]
        if writes["status"] == status:
            return writes
        assert time.monotonic() < deadline, writes
        time.sleep(0.1)


def test_a_node_whose_disk_is_full_says_so_in_its_health_and_writes_again_once_it_has_room(tmp_path: Path) -> None:
    """A full disk refuses writes (503) while reads still answer: ``/readyz`` said "ok" all
    along. Now its ``writes`` component is degraded, with the failed write's reason."""
    proc, port = _serve_piped(tmp_path)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            _until_up(http, proc)
            assert _write(http, 0, 1)[1] == 201
            _writes_component(http, "ok")
            _limit(proc.pid, 1)
            refused = _write(http, 0, 3)
            assert refused[1:] == (503, "storage_error")
            degraded = _writes_component(http, "degraded")
            assert "disk I/O error" in degraded["reason"] and "once the disk has room" in degraded["reason"], degraded
            assert http.get("/readyz").json()["status"] == "degraded"
            _limit(proc.pid, None)
            assert _write(http, 0, 5)[1] == 201  # room again: writes resume at once (the report clears a minute later)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def test_doctor_says_writes_are_degraded_under_storage_min_free_mb_and_0_turns_the_check_off(db_path: Path, cli) -> None:
    """``storage.min_free_mb`` is the free space under which ``writes`` warns before a full
    disk refuses every write: set above this disk's free space, doctor names the free space
    and the file (degraded, exit 0: reads still work); 0 checks nothing; a value that is no
    count of MiB is a config error naming the setting."""
    assert cli("store", "Deploys are frozen on Fridays").code == 0
    above = str(shutil.disk_usage(db_path.parent).free // (1024 * 1024) + 1_000_000)
    done = cli("doctor", "--json", extra_env={"MEMMESH_STORAGE_MIN_FREE_MB": above})
    assert done.code == 0, done.err
    report = json.loads(done.out)
    writes = report["components"]["writes"]
    assert report["status"] == "degraded" and writes["status"] == "degraded", writes
    reason = (
        rf"(\d+) MiB free on the disk of {re.escape(str(db_path))}, under storage.min_free_mb \({above} MiB\): "
        "writes will fail when it fills; free some space"
    )
    found = re.fullmatch(reason, writes["reason"])
    assert found and int(found[1]) == writes["free_bytes"] // (1024 * 1024), writes  # one unit, as the setting
    text = cli("doctor", extra_env={"MEMMESH_STORAGE_MIN_FREE_MB": above})
    assert text.code == 0 and re.search(rf"degraded writes: {reason}", text.out), text.out

    off = json.loads(cli("doctor", "--json", extra_env={"MEMMESH_STORAGE_MIN_FREE_MB": "0"}).out)["components"]["writes"]
    assert off["status"] == "ok" and off["reason"] == "no write failed in the last 60 s", off

    for value, why in (("-1", "Input should be greater than or equal to 0"), ("lots", "Input should be a valid integer")):
        bad = cli("doctor", extra_env={"MEMMESH_STORAGE_MIN_FREE_MB": value})
        assert bad.code == 1 and bad.out == "", (value, bad)
        assert bad.err.startswith(f"error: environment variable MEMMESH_STORAGE_MIN_FREE_MB: 'storage.min_free_mb': {why}"), bad.err


def test_a_recall_on_a_full_disk_answers_and_says_the_access_was_not_counted(tmp_path: Path) -> None:
    """A recall counts an access (a write); on a full disk that write fails, and the recall
    failed with it (503) although nothing was wrong with the read. It answers now, with a
    notice that the access was not counted; with room again, accesses are counted again."""
    proc, port = _serve_piped(tmp_path)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            _until_up(http, proc)
            stored = http.post("/api/v1/memories", json={"namespace": "disk", "content": "the cat likes tuna"})
            assert stored.status_code == 201, stored.text
            memory_id = stored.json()["id"]
            query = {"query": "tuna", "filters": {"namespace": "disk"}, "mode": "keyword"}
            _limit(proc.pid, 1)
            recalled = http.post("/api/v1/recall", json=query)
            assert recalled.status_code == 200, recalled.text
            body = recalled.json()
            assert [hit["memory"]["id"] for hit in body["hits"]] == [memory_id]
            assert any("not counted as an access" in notice and "disk" in notice for notice in body["notices"]), body["notices"]
            _limit(proc.pid, None)
            assert http.get(f"/api/v1/memories/{memory_id}").json()["access_count"] == 0
            again = http.post("/api/v1/recall", json=query).json()
            assert not any("not counted" in notice for notice in again["notices"]), again["notices"]
            assert http.get(f"/api/v1/memories/{memory_id}").json()["access_count"] == 1
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
