"""``audit verify`` of a long SQLite log is split over processes (issue 24: 1 M entries ≤ 10 s).

The split is forced onto small logs here (``MIN_ENTRIES`` 1, three or more workers, so ranges
are a few entries long and checkpoints fall inside, at and across range edges). A log that
holds must verify with the same report as the one-process pass, its checkpoints' roots
recomputed exactly; a tampered log must get exactly the one-process pass's findings (the
split never decides a finding, it only vouches for a log that holds)."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memmesh import Memory
from memmesh.audit import chain, parallel
from memmesh.audit.notes import init_key
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.store.sqlite import register_functions

ODD = ["plain", 'quote " and \\ backslash', "tab\tnew\nline\x01", "ünïcødé ✓ 日本", "emoji 🧠", ""]


@pytest.fixture
def opened(tmp_path: Path, clock: Any) -> Iterator[Callable[[], Memory]]:
    key = tmp_path / "signing.key"
    init_key(key, "test-audit")
    made: list[Memory] = []

    def open_() -> Memory:
        audit = {"signing_key_file": str(key), "checkpoint_dir": str(tmp_path / "checkpoints")}
        settings = load_settings(None, overrides={"embeddings": {"provider": "none"}, "audit": audit}, env={"MEMMESH_CONFIG": ""})
        memory = Memory(f"sqlite:///{tmp_path / 'audit.db'}", settings, clock=clock)
        made.append(memory)
        return memory

    yield open_
    for memory in made:
        memory.close()


def split_on(monkeypatch: pytest.MonkeyPatch, workers: int = 3) -> None:
    monkeypatch.setattr(parallel, "MIN_ENTRIES", 1)
    monkeypatch.setattr(parallel, "default_workers", lambda: workers)


def report_of(mem: Memory) -> dict[str, Any]:
    found = mem.service.audit.verify(principal=LOCAL_PRINCIPAL).as_dict()
    return found


def serial_report(mem: Memory, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    with monkeypatch.context() as m:
        m.setattr(parallel, "default_workers", lambda: 1)
        return report_of(mem)


def fill(mem: Memory, n: int, rng: random.Random, checkpoint_every: int = 0) -> None:
    for i in range(n):
        text = rng.choice(ODD)
        mem.service.audit.record(
            "test.append", principal=LOCAL_PRINCIPAL, target=f"{text} {i}", namespace=rng.choice([None, text, "ns/a"]), detail={"t": text}
        )
        if checkpoint_every and (i + 1) % checkpoint_every == 0:
            mem.service.audit.checkpoint()


def raw(tmp_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    register_functions(conn)
    return conn


def without_workers(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "workers"}


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_a_log_that_holds_verifies_split_with_the_one_process_report(opened, monkeypatch, workers):
    mem = opened()
    fill(mem, 97, random.Random(workers), checkpoint_every=1)  # a checkpoint at every size: on every range edge too
    fill(mem, 40, random.Random(7), checkpoint_every=9)
    fill(mem, 5, random.Random(8))  # newer than the last checkpoint
    split_on(monkeypatch, workers)
    split = report_of(mem)
    one = serial_report(mem, monkeypatch)
    assert split["ok"] and split["size"] == 142 and split["checkpoints_checked"] == 97 + 4
    assert split["workers"] >= 2 and one["workers"] == 1
    assert without_workers(split) == without_workers(one)


def test_the_split_starts_from_a_prune_anchor_off_a_range_edge(opened, monkeypatch, clock):
    mem = opened()
    fill(mem, 13, random.Random(1))
    mem.service.audit.checkpoint()  # 13: the cut, not a power of two
    clock.advance(days=10)
    fill(mem, 60, random.Random(2), checkpoint_every=7)
    assert mem.service.audit.prune(older_than_days=5).below == 13
    fill(mem, 30, random.Random(3), checkpoint_every=4)
    split_on(monkeypatch, 4)
    split = report_of(mem)
    one = serial_report(mem, monkeypatch)
    assert split["ok"] and split["first_index"] == 13 and split["workers"] >= 2
    assert without_workers(split) == without_workers(one)


def _modify(conn: sqlite3.Connection, n: int, rng: random.Random) -> None:
    field = rng.choice(["at", "actor", "action", "namespace", "target", "detail", "hash"])
    conn.execute(f"UPDATE audit_log SET {field} = ? WHERE idx = ?", ("tampered", rng.randrange(n)))


def _delete(conn: sqlite3.Connection, n: int, rng: random.Random) -> None:
    conn.execute("DELETE FROM audit_log WHERE idx = ?", (rng.randrange(n - 1),))


def _truncate(conn: sqlite3.Connection, n: int, rng: random.Random) -> None:
    conn.execute("DELETE FROM audit_log WHERE idx >= ?", (rng.randrange(1, n - 1),))


def _retype(conn: sqlite3.Connection, n: int, rng: random.Random) -> None:
    field = rng.choice(["at", "actor", "detail", "hash"])  # SQLite keeps whatever type is written
    conn.execute(f"UPDATE audit_log SET {field} = CAST({field} AS BLOB) WHERE idx = ?", (rng.randrange(n),))


def _swap(conn: sqlite3.Connection, n: int, rng: random.Random) -> None:
    i = rng.randrange(n - 1)
    conn.execute("UPDATE audit_log SET idx = -1 WHERE idx = ?", (i,))
    conn.execute("UPDATE audit_log SET idx = ? WHERE idx = ?", (i, i + 1))
    conn.execute("UPDATE audit_log SET idx = ? WHERE idx = -1", (i + 1,))


def _rewrite(conn: sqlite3.Connection, n: int, rng: random.Random) -> None:
    """A full rewrite from a random index on, every hash recomputed: only the signed roots catch it."""
    start = rng.randrange(n)
    rows = conn.execute("SELECT idx, at, actor, action, namespace, target, detail, hash FROM audit_log ORDER BY idx").fetchall()
    prev = bytes.fromhex(rows[start - 1][7]) if start else chain.GENESIS
    for idx, at, actor, action, namespace, target, detail, _ in rows[start:]:
        actor = "someone else" if idx == start else actor
        prev = chain.entry_hash(prev, idx, at, actor, action, namespace, target, detail)
        conn.execute("UPDATE audit_log SET actor = ?, hash = ? WHERE idx = ?", (actor, prev.hex(), idx))


@pytest.mark.parametrize("tamper", [_modify, _delete, _truncate, _retype, _swap, _rewrite])
def test_a_tampered_log_gets_the_one_process_findings(opened, monkeypatch, tmp_path, tamper):
    mem = opened()
    fill(mem, 64, random.Random(11), checkpoint_every=3)
    split_on(monkeypatch, 3)
    assert report_of(mem)["workers"] >= 2
    conn = raw(tmp_path)
    kept = conn.execute("SELECT * FROM audit_log ORDER BY idx").fetchall()
    rng = random.Random(tamper.__name__)
    for trial in range(6):
        with conn:
            conn.execute("BEGIN")
            tamper(conn, 64, rng)
        split = report_of(mem)
        one = serial_report(mem, monkeypatch)
        assert not split["ok"], (trial, split)
        assert split["workers"] == 1 or tamper is _truncate  # findings are the one-process pass's (a cut tail: the shared length check)
        assert without_workers(split) == without_workers(one)
        with conn:
            conn.execute("BEGIN")
            conn.execute("DELETE FROM audit_log")
            conn.executemany("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)", kept)
    assert report_of(mem)["ok"]
    conn.close()


def test_a_range_that_starts_on_an_empty_slot_is_not_vouched_for(opened, monkeypatch, tmp_path):
    """The hash a range chains from is read from the row before it: when that row is gone,
    the range cannot be vouched for (the range before reports the gap)."""
    mem = opened()
    fill(mem, 40, random.Random(5), checkpoint_every=10)
    split_on(monkeypatch, 2)
    _, ranges = parallel.split(0, 40, 2)
    edge = ranges[1][0]
    conn = raw(tmp_path)
    conn.execute("DELETE FROM audit_log WHERE idx = ?", (edge - 1,))
    report = report_of(mem)
    assert report["problems"][0]["kind"] == "missing" and report["first_bad_index"] == edge - 1
    conn.close()


def test_split_cuts_at_multiples_of_a_power_of_two() -> None:
    assert parallel.split(0, 1_000_000, 2) == (524_288, [(0, 524_288), (524_288, 1_000_000)])
    chunk, ranges = parallel.split(13, 100, 4)
    assert chunk == 32 and ranges == [(13, 32), (32, 64), (64, 96), (96, 100)]
    assert all(a % chunk == 0 for a, _ in ranges[1:])
