"""The audit log on both backends: every change audited in its own transaction, tampering of
every kind named at its exact index, rewrites caught by signed checkpoints, split views,
rollbacks, retention, and a ``memmesh serve`` killed with SIGKILL mid-append."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conformance.conftest import settings_for

from memmesh import Memory
from memmesh.access import split_key
from memmesh.audit import chain
from memmesh.audit.notes import LOG_FILE, Checkpoint, Signer, append_checkpoint, init_key, make_note
from memmesh.errors import ConflictError, ForbiddenError, StorageError
from memmesh.model import LOCAL_PRINCIPAL, Principal

COLUMNS = "idx, at, actor, action, namespace, target, detail, hash"


# -- helpers ---------------------------------------------------------------------------------


class Raw:
    """Direct SQL on the store's database, bypassing memmesh (the attacker's view)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            from memmesh.store.sqlite import register_functions

            self.conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            register_functions(self.conn)
            self.conn.execute("PRAGMA synchronous = OFF")  # the trials restore rows 500 times
            self.mark = "?"
        else:
            import psycopg

            self.conn = psycopg.connect(url, autocommit=True)
            self.mark = "%s"

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(sql.replace("?", self.mark), params)
        return list(cur.fetchall()) if cur.description else []

    def many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if self.mark == "?":
            self.conn.executemany(sql, rows)
        else:
            with self.conn.cursor() as cur:
                cur.executemany(sql.replace("?", "%s"), rows)

    def rows(self) -> list[tuple[Any, ...]]:
        return self.run(f"SELECT {COLUMNS} FROM audit_log ORDER BY idx")

    def replace_all(self, rows: list[tuple[Any, ...]]) -> None:
        self.run("BEGIN")
        self.run("DELETE FROM audit_log")
        self.many(f"INSERT INTO audit_log ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.run("COMMIT")

    def close(self) -> None:
        self.conn.close()


def rechain(rows: list[tuple[Any, ...]], start_hash: bytes = chain.GENESIS) -> list[tuple[Any, ...]]:
    """What an attacker with database access does: recompute every hash so the chain holds."""
    out, prev = [], start_hash
    for idx, at, actor, action, namespace, target, detail, _ in rows:
        digest = chain.entry_hash(prev, idx, at, actor, action, namespace, target, detail)
        out.append((idx, at, actor, action, namespace, target, detail, digest.hex()))
        prev = digest
    return out


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    folder.mkdir()
    init_key(folder / "signing.key", "test-audit")
    return folder / "signing.key"


@pytest.fixture
def audited(backend_url: str, tmp_path: Path, keyfile: Path, clock: Any) -> Iterator[Callable[..., Memory]]:
    """Open Memory objects on the backend under test with signed checkpoints configured."""
    opened: list[Memory] = []

    def open_(**audit: Any) -> Memory:
        settings = settings_for(
            tmp_path, audit={"signing_key_file": str(keyfile), "checkpoint_dir": str(tmp_path / "checkpoints"), **audit}
        )
        memory = Memory(backend_url, settings, clock=clock)
        opened.append(memory)
        return memory

    yield open_
    for memory in opened:
        memory.close()


@pytest.fixture
def raw(backend_url: str) -> Iterator[Raw]:
    handle = Raw(backend_url)
    yield handle
    handle.close()


def verify(mem: Memory) -> Any:
    return mem.service.audit.verify(principal=LOCAL_PRINCIPAL)


def actions(mem: Memory) -> list[str]:
    return [e.action for e in mem.service.audit.iter_entries(principal=LOCAL_PRINCIPAL)]


# -- what gets audited -------------------------------------------------------------------------


def test_every_change_is_appended_with_actor_and_chain(audited, backend_url):
    mem = audited()
    svc = mem.service
    a = mem.add("the deploy runs on fridays", namespace="ops", title="deploy")
    b = mem.add("the database is postgres", namespace="ops")
    svc.update(a.id, {"content": "the deploy runs on mondays"}, principal=LOCAL_PRINCIPAL)
    svc.link(a.id, b.id, principal=LOCAL_PRINCIPAL)
    created = svc.create_key("bot", role="writer", namespaces=["ops/*"], principal=LOCAL_PRINCIPAL)
    bot = svc.authenticate(created.key)
    c = svc.add({"content": "written by the bot", "namespace": "ops/bot"}, principal=bot)
    svc.revoke_key(created.id, principal=LOCAL_PRINCIPAL)
    svc.delete(b.id, principal=LOCAL_PRINCIPAL)
    svc.lifecycle.restore(b.id, principal=LOCAL_PRINCIPAL)
    svc.audit.record("pending.approve", principal=LOCAL_PRINCIPAL, target="p-1", namespace="ops", detail={"decision": "approve"})

    entries = list(svc.audit.iter_entries(principal=LOCAL_PRINCIPAL))
    assert [e.action for e in entries] == [
        "memory.add",
        "memory.add",
        "memory.update",
        "link.put",
        "agent.put",
        "key.create",
        "memory.add",
        "key.revoke",
        "memory.delete",
        "memory.restore",
        "pending.approve",
    ]
    assert [e.index for e in entries] == list(range(len(entries)))
    bots = [e for e in entries if e.target == c.id]
    assert bots[0].actor == f"key:{created.id} agent:bot" and bots[0].namespace == "ops/bot"
    assert entries[2].detail["fields"] == ["content"] and entries[2].target == a.id
    # a write that fails leaves no entry: the append is part of its transaction
    before = len(entries)
    with pytest.raises(ConflictError):
        mem.add("another deploy text", namespace="ops", title="deploy", on_conflict="error")
    assert len(actions(mem)) == before
    made = svc.backup_now(principal=LOCAL_PRINCIPAL)  # an admin action without a change of data
    last = list(svc.audit.iter_entries(principal=LOCAL_PRINCIPAL))[-1]
    assert (last.action, last.target, last.actor) == ("admin.backup", made.snapshot, "local")
    assert verify(mem).ok


def test_no_secret_in_any_entry(audited, raw, tmp_path):
    mem = audited()
    created = mem.service.create_key("agent-x", role="admin", principal=LOCAL_PRINCIPAL)
    mem.service.revoke_key(created.id, principal=LOCAL_PRINCIPAL)
    mem.service.audit.checkpoint()
    # the secret is base64url, so it may itself hold "_": split the way the server does
    parts = split_key(created.key)
    assert parts is not None and parts[0] == created.id
    secret = parts[1]
    dump = json.dumps([list(map(str, row)) for row in raw.rows()])
    exported = json.dumps([e.model_dump(mode="json") for e in mem.service.audit.iter_entries(principal=LOCAL_PRINCIPAL)])
    files = (tmp_path / "checkpoints" / LOG_FILE).read_text()
    assert created.id in dump and created.id in exported  # the key is named by its id...
    for text in (dump, exported, files):
        assert created.key not in text and secret not in text  # ...never by its secret
    stored = mem.service.store.api_key(created.id)
    assert stored.key_hash not in dump


def test_audit_log_is_for_store_wide_admins_only(audited):
    mem = audited()
    mem.add("x", namespace="a")
    for who in (Principal(role="writer"), Principal(role="admin", namespaces=["a/*"])):
        with pytest.raises(ForbiddenError):
            mem.service.audit.entries(principal=who)
        with pytest.raises(ForbiddenError):
            mem.service.audit.verify(principal=who)
        with pytest.raises(ForbiddenError):
            mem.service.audit.iter_entries(principal=who)
        with pytest.raises(ForbiddenError):
            mem.service.audit.checkpoint(principal=who)
        with pytest.raises(ForbiddenError):
            mem.service.audit.prune(older_than_days=1, principal=who)
    assert len(mem.service.audit.entries(principal=Principal(role="admin")).entries) == 1


# -- tampering ---------------------------------------------------------------------------------

N_ENTRIES = 40
TRIALS = 100


def _build(mem: Memory) -> None:
    for i in range(N_ENTRIES):
        mem.add(f"memory number {i} about topic {i % 7}", namespace=f"ns{i % 3}")
    assert mem.service.audit.checkpoint() is not None


def _tamper_trials(mem: Memory, raw: Raw, kind: str, tamper: Callable[[random.Random, list[tuple[Any, ...]]], int]) -> None:
    pristine = raw.rows()
    assert len(pristine) == N_ENTRIES
    rng = random.Random(f"{kind}-{raw.url[:6]}")
    for trial in range(TRIALS):
        expected = tamper(rng, pristine)
        report = verify(mem)
        assert not report.ok, f"{kind} trial {trial}: not detected"
        assert report.first_bad_index == expected, f"{kind} trial {trial}: {report.problems}"
        raw.replace_all(pristine)
    assert verify(mem).ok


def test_tamper_trials_name_the_exact_first_bad_index(audited, raw):
    mem = audited()
    _build(mem)
    fields = ["at", "actor", "action", "namespace", "target", "detail", "hash"]

    def modify(rng: random.Random, rows: list[tuple[Any, ...]]) -> int:
        i = rng.randrange(len(rows))
        field = rng.choice(fields)
        value = "2030-01-01T00:00:00.000000Z" if field == "at" else f"forged-{rng.random()}"
        if field == "hash":
            value = os.urandom(32).hex()
        raw.run(f"UPDATE audit_log SET {field} = ? WHERE idx = ?", (value, i))
        return i

    def delete(rng: random.Random, rows: list[tuple[Any, ...]]) -> int:
        i = rng.randrange(len(rows) - 1)  # deleting the last one is a truncation (below)
        raw.run("DELETE FROM audit_log WHERE idx = ?", (i,))
        if rng.random() < 0.5:  # and renumber the rest to close the gap
            raw.run("UPDATE audit_log SET idx = -idx WHERE idx > ?", (i,))
            raw.run("UPDATE audit_log SET idx = -idx - 1 WHERE idx < 0")
        return i

    def insert(rng: random.Random, rows: list[tuple[Any, ...]]) -> int:
        i = rng.randrange(len(rows) + 1)
        raw.run("UPDATE audit_log SET idx = -idx - 1 WHERE idx >= ?", (i,))
        raw.run("UPDATE audit_log SET idx = -idx WHERE idx < 0")
        at = rows[min(i, len(rows) - 1)][1]
        raw.run(
            f"INSERT INTO audit_log ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (i, at, "local", "memory.delete", "ns0", "forged", "{}", os.urandom(32).hex()),
        )
        return i

    def reorder(rng: random.Random, rows: list[tuple[Any, ...]]) -> int:
        i, j = sorted(rng.sample(range(len(rows)), 2))
        for idx, source in ((i, rows[j]), (j, rows[i])):
            raw.run(
                "UPDATE audit_log SET at = ?, actor = ?, action = ?, namespace = ?, target = ?, detail = ?, hash = ? WHERE idx = ?",
                (*source[1:], idx),
            )
        return i

    def truncate(rng: random.Random, rows: list[tuple[Any, ...]]) -> int:
        i = rng.randrange(len(rows))
        raw.run("DELETE FROM audit_log WHERE idx >= ?", (i,))
        return i

    for kind, tamper in (("modify", modify), ("delete", delete), ("insert", insert), ("reorder", reorder), ("truncate", truncate)):
        _tamper_trials(mem, raw, kind, tamper)


def test_full_rewrite_with_valid_hashes_fails_where_it_leaves_the_checkpoints(audited, raw):
    mem = audited()
    for i in range(20):
        mem.add(f"entry {i}", namespace="rw")
        mem.service.audit.checkpoint()  # dense checkpoints: the divergence is pinned to one entry
    pristine = raw.rows()
    for j in (0, 7, 19):
        forged = list(pristine)
        forged[j] = (*forged[j][:2], "local", "memory.delete", *forged[j][4:])
        raw.replace_all(rechain(forged))
        report = verify(mem)
        assert [p.kind for p in report.problems] == ["diverged"], report.problems
        assert report.first_bad_index == j
        raw.replace_all(pristine)
    # a forged entry inserted and chained correctly is a rewrite too
    forged = [*pristine[:5], (5, pristine[5][1], "local", "memory.add", "rw", "forged", "{}", "")]
    forged += [(idx + 1, *rest) for idx, *rest in pristine[5:]]
    raw.replace_all(rechain(forged))
    report = verify(mem)
    assert report.first_bad_index == 5 and report.problems[0].kind == "diverged"
    raw.replace_all(pristine)
    assert verify(mem).ok


def test_rewrite_between_sparse_checkpoints_is_pinned_to_the_last_good_one(audited, raw):
    mem = audited()
    for i in range(30):
        mem.add(f"entry {i}", namespace="rw")
        if i % 10 == 9:
            mem.service.audit.checkpoint()  # checkpoints of size 10, 20, 30
    rows = raw.rows()
    rows[14] = (*rows[14][:2], "someone-else", *rows[14][3:])
    raw.replace_all(rechain(rows))
    report = verify(mem)
    assert report.first_bad_index == 10 and "checkpoint 20" in report.problems[0].message


def test_split_view_is_reported(audited, keyfile, tmp_path):
    mem = audited()
    mem.add("one", namespace="s")
    mem.add("two", namespace="s")
    made = mem.service.audit.checkpoint()
    other = make_note(Signer.load(keyfile), made.origin, made.size, chain.merkle_root([os.urandom(32), os.urandom(32)]))
    append_checkpoint(tmp_path / "checkpoints", Checkpoint(made.origin, made.size, b"", other))
    report = verify(mem)
    assert [p.kind for p in report.problems] == ["split_view"]
    assert "split view" in report.problems[0].message and f"size {made.size}" in report.problems[0].message


def test_checkpoint_signed_by_another_key_is_refused(audited, tmp_path):
    mem = audited()
    mem.add("one", namespace="s")
    made = mem.service.audit.checkpoint()
    init_key(tmp_path / "keys" / "intruder.key", "test-audit")  # same name, other key
    forged = make_note(Signer.load(tmp_path / "keys" / "intruder.key"), made.origin, made.size + 5, made.root)
    append_checkpoint(tmp_path / "checkpoints", Checkpoint(made.origin, made.size + 5, b"", forged))
    report = verify(mem)
    assert [p.kind for p in report.problems] == ["bad_signature"]


def test_restoring_an_older_log_is_detected_as_rollback(audited, raw, backend_url, tmp_path):
    mem = audited()
    for i in range(12):
        mem.add(f"entry {i}", namespace="rb")
    mem.service.audit.checkpoint()
    older = raw.rows()
    for i in range(12, 20):
        mem.add(f"entry {i}", namespace="rb")
    mem.service.audit.checkpoint()
    assert verify(mem).ok
    raw.replace_all(older)  # the older copy of the log, as a restored backup holds it
    report = verify(mem)
    assert report.first_bad_index == 12
    assert report.problems[0].kind == "rollback" and "older copy" in report.problems[0].message


def test_checkpointer_refuses_to_sign_a_tampered_log(audited, raw):
    mem = audited()
    mem.add("one", namespace="c")
    mem.service.audit.checkpoint()
    mem.add("two", namespace="c")
    raw.run("UPDATE audit_log SET actor = 'nobody' WHERE idx = 1")
    with pytest.raises(StorageError, match="entry 1 does not match"):
        mem.service.audit.checkpoint()


def test_checkpoints_resume_across_processes_from_the_stored_range(audited, raw):
    first = audited()
    for i in range(5):
        first.add(f"entry {i}", namespace="r")
    first.service.audit.checkpoint()
    first.close()
    second = audited()
    second.add("entry 5", namespace="r")
    made = second.service.audit.checkpoint()
    assert made.size == 6 and made.root == chain.merkle_root([bytes.fromhex(r[7]) for r in raw.rows()])
    assert verify(second).ok and verify(second).checkpoints_checked == 2


# -- retention ---------------------------------------------------------------------------------


def test_retention_prunes_below_a_signed_checkpoint_and_the_rest_verifies(audited, clock, raw):
    mem = audited()
    for i in range(15):
        mem.add(f"old {i}", namespace="ret")
    mem.service.audit.checkpoint()  # size 15
    for i in range(5):
        mem.add(f"older but unsigned {i}", namespace="ret")
    clock.advance(days=10)
    for i in range(5):
        mem.add(f"new {i}", namespace="ret")
    mem.service.audit.checkpoint()  # size 25: its last entry is new, so it cannot be the cut
    report = mem.service.audit.prune(older_than_days=5)
    assert (report.pruned, report.below) == (15, 15)
    entries = list(mem.service.audit.iter_entries(principal=LOCAL_PRINCIPAL))
    assert entries[0].index == 15 and entries[-1].action == "audit.prune" and entries[-1].detail["below"] == 15
    assert verify(mem).ok
    mem.service.audit.checkpoint()
    result = verify(mem)
    assert result.ok and result.first_index == 15 and result.checkpoints_checked >= 2
    # the anchor pruning left is covered by the signatures too
    raw.run("UPDATE audit_anchor SET last_hash = ?", (os.urandom(32).hex(),))
    assert verify(mem).first_bad_index == 15
    raw.run("UPDATE audit_anchor SET last_hash = ?", (raw.rows()[0][7],))  # any other value fails as well
    assert not verify(mem).ok


def test_nothing_is_pruned_without_a_signed_checkpoint_below_the_age(audited, clock):
    mem = audited()
    for i in range(5):
        mem.add(f"old {i}", namespace="ret")
    clock.advance(days=10)
    assert mem.service.audit.prune(older_than_days=5).pruned == 0  # no checkpoint yet
    assert len(actions(mem)) == 5 and verify(mem).ok


# -- kill -9 during appends ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sigkill_of_serve_during_appends_leaves_a_verifying_log(backend_url, tmp_path, keyfile, audited):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update(
        {
            "MEMMESH_DATA_DIR": str(tmp_path / "data"),
            "MEMMESH_CONFIG": str(tmp_path / "absent.toml"),
            "MEMMESH_EMBEDDINGS_PROVIDER": "none",
            "MEMMESH_AUDIT_SIGNING_KEY_FILE": str(keyfile),
            "MEMMESH_AUDIT_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
            "MEMMESH_AUDIT_CHECKPOINT_INTERVAL_S": "0.05",
            "MEMMESH_AUDIT_CHECKPOINT_EVERY": "20",
        }
    )
    (tmp_path / "absent.toml").write_text("")
    acked: list[str] = []
    for round_ in range(3):
        port = _free_port()
        log = (tmp_path / f"serve{round_}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", "serve", "--db", backend_url, "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / f"serve{round_}.log").read_text()
            time.sleep(0.05)
        stop = threading.Event()

        def writer(n: int, base: str = base, round_: int = round_, stop: threading.Event = stop) -> None:
            with httpx.Client(base_url=base, timeout=5) as client:
                i = 0
                while not stop.is_set():
                    try:
                        r = client.post("/api/v1/memories", json={"content": f"r{round_} w{n} #{i}", "namespace": f"kill/{n}"})
                    except httpx.HTTPError:
                        return
                    if r.status_code == 201:
                        acked.append(r.json()["id"])
                    i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0 + random.random())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(10)
        log.close()
    mem = audited()
    report = verify(mem)
    assert report.ok, report.problems
    assert report.checkpoints_checked > 0 and report.latest_checkpoint <= report.size
    audited_targets = {e.target for e in mem.service.audit.iter_entries(principal=LOCAL_PRINCIPAL)}
    assert acked and set(acked) <= audited_targets  # every acknowledged write is in the log


def test_closing_the_python_api_signs_what_it_appended(audited, tmp_path):
    mem = audited(checkpoint_interval_s=600)
    mem.add("one", namespace="close")
    mem.add("two", namespace="close")
    assert not (tmp_path / "checkpoints" / LOG_FILE).exists()
    mem.close()
    lines = (tmp_path / "checkpoints" / LOG_FILE).read_text().splitlines()
    assert [json.loads(line)["note"].split("\n")[1] for line in lines] == ["2"]


def test_an_idle_or_empty_log_gets_no_new_checkpoints(audited, tmp_path):
    mem = audited()
    assert mem.service.audit.checkpoint() is None  # nothing to sign yet
    mem.add("one", namespace="idle")
    assert mem.service.audit.checkpoint().size == 1
    assert mem.service.audit.checkpoint() is None
    assert mem.service.audit.checkpoint(force=True).size == 1
    assert len((tmp_path / "checkpoints" / LOG_FILE).read_text().splitlines()) == 2
