"""``memmesh migrate``: SQLite → PostgreSQL → SQLite round trip through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from memmesh import Memory
from memmesh.store.base import Store
from memmesh.store.open import open_store

pytestmark = pytest.mark.postgres


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    (tmp_path / "none.toml").write_text("")
    env.update(
        {"MEMMESH_CONFIG": str(tmp_path / "none.toml"), "MEMMESH_DATA_DIR": str(tmp_path / "data"), "MEMMESH_EMBEDDINGS_PROVIDER": "none"}
    )
    return subprocess.run([sys.executable, "-m", "memmesh.interfaces.cli.app", *args], capture_output=True, text=True, env=env, timeout=300)


def snapshot_of(store: Store) -> dict[str, object]:
    """Everything a migration must carry, in a backend-independent, order-independent form."""
    memories = sorted((m.model_dump(mode="json") for m in store.iter_memories()), key=lambda m: m["id"])
    history: dict[str, list[str]] = {}
    for entry in store.iter_history():
        history.setdefault(entry.memory_id, []).append(entry.model_dump_json())
    ids = [m["id"] for m in memories]
    return {
        "memories": memories,
        "hashes": sorted(m["content_hash"] for m in memories),
        "links": sorted(link.model_dump_json() for link in store.iter_links()),
        "history": history,
        "tombstones": sorted(t.model_dump_json() for t in store.tombstones_since(0)),
        "vectors": sorted((r.memory_id, r.model, _codes(r.vector)) for r in store.get_vectors(ids)),
    }


def _codes(vector: np.ndarray) -> tuple[int, ...]:
    """A vector as its 8-bit codes (``round(x / (max|x| / 127))``): vectors are stored compactly
    (8-bit with a scale on SQLite, float16 on PostgreSQL; schema 16), so a copy between
    backends equals the original to float16's precision, not bit for bit, and keeps its codes."""
    peak = float(np.max(np.abs(vector))) if vector.size else 0.0
    return tuple(int(c) for c in np.rint(vector / (peak / 127))) if peak > 0 else (0,) * int(vector.size)


def build_source(url: str, open_memory: Callable[..., Memory]) -> Memory:
    mem = open_memory(url)
    made = mem.add_many(
        [
            {
                "content": f"memory {i}: fact about topic {i % 13}",
                "namespace": f"team/{i % 4}",
                "tags": [f"t{i % 3}"],
                "metadata": {"n": i, "note": "ünïcödé"},
                "tier": "long",
            }
            for i in range(1000)
        ]
    )
    for i in range(0, 60, 2):
        mem.link(made[i].id, made[i + 1].id, "derived_from")
    for i in range(60, 80):
        mem.update(made[i].id, content=f"memory {i}: revised", priority=9)
    for i in range(80, 90):
        mem.delete(made[i].id)
    with mem.service.store.write() as tx:
        seq = tx.next_seq()
        for i in range(90, 100):
            tx.put_vector(made[i].id, "test-model-8d", np.linspace(0, 1, 8, dtype=np.float32) * i, seq)
    return mem


@pytest.mark.slow
def test_round_trip_sqlite_postgres_sqlite_is_exact_and_idempotent(
    tmp_path: Path, pg_database: str, open_memory: Callable[..., Memory]
) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    back_url = f"sqlite:///{tmp_path / 'back.db'}"
    source = build_source(source_url, open_memory)
    expected = snapshot_of(source.service.store)
    assert len(expected["memories"]) == 990 and len(expected["vectors"]) == 10  # type: ignore[arg-type]

    # A dry run reads and counts, and writes nothing.
    dry = run_cli(tmp_path, "migrate", "--from", source_url, "--to", pg_database, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    dry_report = json.loads(dry.stdout)
    assert dry_report["dry_run"] is True and dry_report["memories_written"] == 990
    with _closing(open_store(pg_database)) as target:
        assert target.stats(_now(), _now()).total == 0 and list(target.iter_history()) == []

    first = run_cli(tmp_path, "migrate", "--from", source_url, "--to", pg_database, "--batch-size", "200", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert set(report) >= {"from_url", "to_url", "batches", "dry_run", "memories_read", "memories_written", "links_written", "errors"}
    assert (report["memories_read"], report["memories_written"], report["links_written"], report["batches"]) == (990, 990, 30, 5)
    assert (report["tombstones_written"], report["vectors_written"], report["errors"]) == (10, 10, [])

    again = json.loads(run_cli(tmp_path, "migrate", "--from", source_url, "--to", pg_database, "--json").stdout)
    assert again["memories_written"] == again["links_written"] == again["history_written"] == 0
    assert again["tombstones_written"] == again["vectors_written"] == 0

    back = run_cli(tmp_path, "migrate", "--from", pg_database, "--to", back_url, "--json")
    assert back.returncode == 0, back.stderr
    with _closing(open_store(pg_database)) as middle, _closing(open_store(back_url)) as final:
        assert snapshot_of(middle) == expected
        assert snapshot_of(final) == expected
    assert json.loads(run_cli(tmp_path, "migrate", "--from", pg_database, "--to", back_url, "--json").stdout)["memories_written"] == 0


def test_resumes_after_an_interruption(tmp_path: Path, open_memory: Callable[..., Memory]) -> None:
    from memmesh.io.migrate import migrate

    source = open_memory(f"sqlite:///{tmp_path / 'a.db'}")
    source.add_many([{"content": f"note {i}", "tier": "long"} for i in range(50)])
    target = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        calls = {"n": 0}

        def crash_after_two_batches(_: int) -> None:
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            migrate(source.service.store, target, now=_now(), batch_size=10, progress=crash_after_two_batches)
        assert target.stats(_now(), _now()).total == 20
        rest = migrate(source.service.store, target, now=_now(), batch_size=10)
        assert (rest.memories_read, rest.memories_written) == (50, 30)
        assert sorted(m.id for m in target.iter_memories()) == sorted(m.id for m in source.service.store.iter_memories())
    finally:
        target.close()


def test_bad_arguments_exit_1_and_write_nothing(tmp_path: Path) -> None:
    same = run_cli(tmp_path, "migrate", "--from", str(tmp_path / "x.db"), "--to", f"sqlite:///{tmp_path / 'x.db'}")
    assert same.returncode == 1 and "same store" in same.stderr
    missing = run_cli(tmp_path, "migrate", "--from", str(tmp_path / "x.db"), "--to", str(tmp_path / "y.db"))
    assert missing.returncode == 1 and f"no memmesh database at {tmp_path / 'x.db'}" in missing.stderr
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "y.db").exists()
    open_store(f"sqlite:///{tmp_path / 'x.db'}").close()
    unreachable = run_cli(
        tmp_path, "migrate", "--from", str(tmp_path / "x.db"), "--to", "postgresql://u@127.0.0.1:1/db?connect_timeout=3", "--json"
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("error: cannot connect to PostgreSQL at u@127.0.0.1:1/db")
    usage = run_cli(tmp_path, "migrate", "--from", str(tmp_path / "x.db"))
    assert usage.returncode == 2


def _now():
    from memmesh.clock import system_clock

    return system_clock()


class _closing:
    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> Store:
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


LIVE_WRITER = """
import sys, time
from memmesh import Memory
from memmesh.config import load_settings
url, data_dir, ids_file = sys.argv[1], sys.argv[2], sys.argv[3]
ids = open(ids_file).read().split()
settings = load_settings(None, overrides={"data_dir": data_dir, "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
with Memory(url, settings) as mem:
    i = 0
    while True:
        i += 1
        mem.add(f"live write {i}", namespace="live", title=f"live {i}")
        mem.update(ids[i % len(ids)], content=f"revised live {i}")
        print(i, flush=True)
"""


def _replayed_content(entries: list) -> str | None:
    """The content a memory's add/update history leads to (None: no add entry)."""
    content = None
    for entry in entries:
        if entry.event.value == "add" or (entry.event.value == "update" and content is not None and "content" in (entry.new or {})):
            content = entry.new["content"]
    return content


@pytest.mark.slow
def test_migrate_from_a_live_postgres_copies_one_point_in_time_and_a_rerun_repairs(
    tmp_path: Path, pg_database: str, open_memory: Callable[..., Memory]
) -> None:
    """Writes go on while migrate reads PostgreSQL. Every copied memory comes with the history
    that led to it (read from one snapshot), the report is clean, and once writes stop a
    re-run makes the target equal to the source memory by memory, history by history."""
    source = open_memory(pg_database)
    made = source.add_many([{"content": f"seed {i}", "namespace": f"team/{i % 3}", "tier": "long"} for i in range(1500)])
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(m.id for m in made[:200]))
    script = tmp_path / "writer.py"
    script.write_text(LIVE_WRITER)
    writer = subprocess.Popen([sys.executable, str(script), pg_database, str(tmp_path), str(ids_file)], stdout=subprocess.PIPE, text=True)
    target_url = f"sqlite:///{tmp_path / 'copy.db'}"
    try:
        assert writer.stdout is not None and writer.stdout.readline()  # writing has begun
        first = run_cli(tmp_path, "migrate", "--from", pg_database, "--to", target_url, "--batch-size", "100", "--json")
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["errors"] == []
    finally:
        writer.kill()
        writer.wait()
    copy = open_store(target_url)
    try:
        history: dict[str, list] = {}
        for entry in copy.iter_history():
            history.setdefault(entry.memory_id, []).append(entry)
        copied = list(copy.iter_memories())
        assert len(copied) >= 1500
        for memory in copied:  # a consistent point in time: each memory agrees with its own history
            assert _replayed_content(history.get(memory.id, [])) == memory.content, memory.id
    finally:
        copy.close()
    # The writer is stopped: a re-run brings everything written since, and the two agree exactly.
    again = run_cli(tmp_path, "migrate", "--from", pg_database, "--to", target_url, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["errors"] == []
    pg, back = open_store(pg_database), open_store(target_url)
    try:
        want, got = snapshot_of(pg), snapshot_of(back)
        assert [m["id"] for m in got["memories"]] == [m["id"] for m in want["memories"]]
        for a, b in zip(want["memories"], got["memories"], strict=True):
            assert a == b
        assert got["history"] == want["history"]
    finally:
        pg.close()
        back.close()


def test_a_rerun_repairs_a_copy_with_missing_history(tmp_path: Path, pg_database: str, open_memory: Callable[..., Memory]) -> None:
    """A target whose memories lack history entries (as an unsnapshotted copy of a live
    database left them) is repaired by the next run, though no memory changed."""
    source = open_memory(pg_database)
    made = source.add_many([f"fact {i}" for i in range(20)])
    for memory in made[:5]:
        source.update(memory.id, content=f"{memory.content} revised")
    target_url = f"sqlite:///{tmp_path / 'copy.db'}"
    assert run_cli(tmp_path, "migrate", "--from", pg_database, "--to", target_url, "--json").returncode == 0
    import sqlite3

    conn = sqlite3.connect(tmp_path / "copy.db")
    with conn:
        conn.execute("DELETE FROM history WHERE memory_id IN (?, ?, ?)", (made[0].id, made[1].id, made[10].id))
    conn.close()
    rerun = run_cli(tmp_path, "migrate", "--from", pg_database, "--to", target_url, "--json")
    report = json.loads(rerun.stdout)
    assert report["errors"] == [] and report["memories_written"] == 0 and report["history_written"] == 2 + 2 + 1
    pg, back = open_store(pg_database), open_store(target_url)
    try:
        assert snapshot_of(back)["history"] == snapshot_of(pg)["history"]
    finally:
        pg.close()
        back.close()
