"""A rule added after data was written must not lock that data: a memory stored before the
tag character rule (session 6) with a tag the rule now refuses still takes new tags when
its content is stored again."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from memmesh import Memory
from memmesh.config import load_settings
from memmesh.errors import InvalidInputError
from memmesh.store.sqlite import register_functions


def test_an_old_memory_with_a_now_refused_tag_still_merges_new_tags(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    settings = load_settings(None, overrides={"data_dir": str(tmp_path), "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    with Memory(f"sqlite:///{db}", settings) as mem:
        stored = mem.add("the staging database lives on host db-7", tags=["infra"])
    with sqlite3.connect(db) as conn:  # as an older version would have stored it
        register_functions(conn)
        conn.execute("UPDATE memories SET tags = ? WHERE id = ?", (json.dumps(["infra", "old\u202etag"]), stored.id))
    with Memory(f"sqlite:///{db}", settings) as mem:
        again = mem.add("the staging database lives on host db-7", tags=["staging"])
        assert again.id == stored.id
        assert again.tags == ["infra", "old\u202etag", "staging"]
        with pytest.raises(InvalidInputError, match="U\\+202E"):
            mem.add("another fact", tags=["new\u202etag"])
