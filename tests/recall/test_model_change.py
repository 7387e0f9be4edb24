"""A model change never mixes vectors: recall says what lacks a vector, `memmesh reindex` fixes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.recall.conftest import HashEmbedder

from memmesh import Memory


def test_model_change_notice_and_cli_reindex(open_memory: Callable[..., Memory], tmp_path: Path, shared_data_dir: Path) -> None:
    old = open_memory()
    old.service.embedder = HashEmbedder("fake-model-v1")  # the store was written by another model
    written = old.add_many(
        [{"content": t, "namespace": "kb"} for t in ["Alice moved to Berlin", "Bob drinks black coffee", "Backups run nightly"]],
        wait=True,
    )
    assert old.service.store.vector_models() == {"fake-model-v1": 3}
    old.close()

    mem = open_memory()
    current = mem.service.embedder
    assert current is not None and current.model_id != "fake-model-v1"
    result = mem.recall("where does Alice live?", touch=False)
    assert result.mode == "hybrid"
    assert any("3 memories in scope have no vector from all-MiniLM-L6-v2" in n and "memmesh reindex" in n for n in result.notices)
    assert [h.memory.id for h in result.hits][:1] == [written[0].id]  # still found, by keyword
    assert mem.recall("where does Alice live?", mode="vector", touch=False).hits == []  # never the other model's vectors
    other_scope = mem.recall("Alice", namespace="elsewhere", touch=False)
    assert not any("no vector" in n for n in other_scope.notices)

    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    (tmp_path / "cfg.toml").write_text("")
    env.update(
        {"MEMMESH_DB": str(tmp_path / "memmesh.db"), "MEMMESH_DATA_DIR": str(shared_data_dir), "MEMMESH_CONFIG": str(tmp_path / "cfg.toml")}
    )
    proc = subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "reindex", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"reindexed": 3}

    assert mem.service.store.vector_models() == {current.model_id: 3}
    after = mem.recall("where does Alice live?", mode="vector", touch=False)
    assert after.notices == [] and after.hits[0].memory.id == written[0].id
    again = subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "reindex", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert again.returncode == 0 and json.loads(again.stdout) == {"reindexed": 0}


def test_reindex_embeds_memories_stored_while_the_embedder_failed(open_memory: Callable[..., Memory]) -> None:
    from tests.recall.conftest import FailingEmbedder

    mem = open_memory()
    real = mem.service.embedder
    mem.service.embedder = FailingEmbedder()
    stored = mem.add("The VPN certificate expires in March", wait=True)  # embedded now, by the failing embedder
    mem.service.embedder = real
    assert any("1 memory in scope has no vector" in n for n in mem.recall("VPN certificate", touch=False).notices)
    assert mem.reindex() == 1
    result = mem.recall("when does the VPN certificate expire", mode="vector", touch=False)
    assert result.notices == [] and result.hits[0].memory.id == stored.id
