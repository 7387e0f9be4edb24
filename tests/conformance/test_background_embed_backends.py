"""Embedding off the write path on both backends (issue 19): a write commits with its vector
owed, the background worker stores it, and a process SIGKILLed before embedding leaves the
debt in the store, where the next process to open it finds and pays it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from memmesh import Memory

ROOT = Path(__file__).resolve().parents[2]
MINILM = {"embeddings": {"provider": "minilm"}}


def owed(mem: Memory) -> list[str]:
    with mem.service.store.write() as tx:
        return tx.pending_vector_ids(100)


def test_writes_are_embedded_after_commit(backend_url: str, open_memory: Callable[..., Memory]) -> None:
    mem = open_memory(backend_url, **MINILM)
    assert mem.service.background is not None
    stored = mem.add_many([f"Shipment {i} of oranges arrives at the harbour on Tuesday" for i in range(5)])
    hits = mem.recall("when does the citrus delivery come in?", mode="vector", touch=False, top_k=5).hits
    assert {h.memory.id for h in hits} == {m.id for m in stored}
    assert owed(mem) == [] and len(mem.service.store.get_vectors([m.id for m in stored])) == 5


def test_a_process_killed_before_embedding_is_embedded_by_the_next(
    backend_url: str, open_memory: Callable[..., Memory], tmp_path: Path
) -> None:
    open_memory(backend_url, **MINILM).close()  # the store exists before the child writes
    script = textwrap.dedent(f"""
        import sys, threading
        sys.path.insert(0, {str(ROOT)!r})
        from memmesh import Memory
        from memmesh.config import load_settings
        data = {json.dumps({"data_dir": str(tmp_path), **MINILM})}
        m = Memory({backend_url!r}, load_settings(None, overrides=data, env={{"MEMMESH_CONFIG": ""}}))
        real = m.service.embedder

        class Stuck:
            model_id, dim = real.model_id, real.dim
            def embed(self, texts):
                threading.Event().wait(600)  # never answers: the process dies first

        m.service.embedder = Stuck()
        stored = m.add("The lighthouse lamp is serviced every second Thursday", namespace="coast")
        print(stored.id, flush=True)  # committed; its vector is still owed
        threading.Event().wait(600)
    """)
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")},
    )
    try:
        assert proc.stdout is not None
        memory_id = proc.stdout.readline().strip()
        assert memory_id, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    mem = open_memory(backend_url, **MINILM)
    hits = mem.recall("when is the beacon maintained?", mode="vector", touch=False).hits
    assert [h.memory.id for h in hits][:1] == [memory_id]
    assert owed(mem) == [] and len(mem.service.store.get_vectors([memory_id])) == 1
