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
from memmesh.store.base import Store, open_store

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
        "vectors": sorted((r.memory_id, r.model, r.vector.tobytes()) for r in store.get_vectors(ids)),
    }


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
