"""Full-text segments merged in the background when a store is opened (issue 19 latency):
a store written in many transactions holds many FTS5 segments, and every query term is
probed in each; opening it merges them into one, in short writes, without changing what
keyword search finds."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from tests.conftest import keyword_settings

from memmesh import Memory


def _segments(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(DISTINCT segid) FROM memories_fts_idx").fetchone()[0])


def _fill(db: Path, tmp_path: Path, batches: int, per_batch: int) -> None:
    with Memory(f"sqlite:///{db}", keyword_settings(tmp_path)) as mem:
        for b in range(batches):
            mem.add_many([{"content": f"note {b}-{i} about topic{i % 37} and item{(b * i) % 101}"} for i in range(per_batch)])


def test_opening_a_store_merges_its_keyword_segments_and_keeps_results(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    _fill(db, tmp_path, batches=12, per_batch=200)
    before = _segments(db)
    assert before >= 4  # one segment per transaction, merged only by level
    # The merge starts when the store opens; the results must not change while or after it runs.
    with Memory(f"sqlite:///{db}", keyword_settings(tmp_path)) as mem:
        first = [(h.memory.id, round(h.score, 6)) for h in mem.search("topic5 item7", top_k=50)]
        deadline = time.monotonic() + 60
        while _segments(db) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _segments(db) == 1
        assert [(h.memory.id, round(h.score, 6)) for h in mem.search("topic5 item7", top_k=50)] == first
        added = mem.add("a fresh note about topic5 after the merge")
        assert added.id in {h.memory.id for h in mem.search("topic5", top_k=100)}


def test_small_store_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "small.db"
    _fill(db, tmp_path, batches=8, per_batch=5)
    before = _segments(db)
    assert before >= 4
    with Memory(f"sqlite:///{db}", keyword_settings(tmp_path)) as mem:
        assert mem.search("topic1", top_k=5)
        time.sleep(0.5)
    assert _segments(db) == before
