"""A process that ends with its embedding queue still busy stops promptly and cleanly.

Found in a user trial: a script that stored 20,000 memories and ended without ``close()``
was aborted (SIGABRT, "terminate called without an active exception") after 80 s. The
at-exit drain waited 30 s for the queue, then 30 s for a worker that never looked at its
stop flag while work was queued, and the interpreter ended while the worker was inside
onnxruntime. Now the worker finishes the batch in progress and starts no other once the
close wait (``embeddings.close_wait_s``) is over; what is left keeps its pending marks, a
warning names how many, and the next process that opens the store embeds them.

The child is a real process (the bug is in interpreter exit) using the public API only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import PIPE

import pytest

from memmesh import Memory
from memmesh.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
WRITES = 600
"""Far more than the worker embeds in the close wait (a second) on any machine, yet few
enough that the next process embeds the rest in well under a minute on 2 slow cores."""

LEFTOVER = 3000
"""Owed vectors left by an earlier process: minutes of embedding on 2 slow cores, ~15 s on a
fast machine, far more than a short command lives."""

EXIT_BOUND_S = 15.0
"""Close wait (1 s) plus one batch of 8 texts plus interpreter teardown, with room for a
loaded machine; the old code waited up to 60 s here, or until the queue was empty."""


@pytest.mark.slow
def test_a_script_ending_with_a_busy_queue_exits_promptly_and_the_next_open_embeds_the_rest(
    open_memory: Callable[..., Memory], shared_data_dir: Path, tmp_path: Path
) -> None:
    db = "busy.db"
    url = f"sqlite:///{tmp_path / db}"
    open_memory(db).close()  # the store exists (and the model is cached) before the child writes
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / "src")!r})
        from memmesh import Memory
        from memmesh.config import load_settings
        data = {json.dumps({"data_dir": str(shared_data_dir), "embeddings": {"provider": "minilm"}})}
        env = {{"MEMMESH_CONFIG": "", "MEMMESH_EMBEDDINGS_CLOSE_WAIT_S": "1", "MEMMESH_EMBEDDINGS_BATCH_SIZE": "8"}}
        m = Memory({url!r}, load_settings(None, overrides=data, env=env))
        m.add_many([f"Note {{i}}: the staging database of team {{i % 17}} rotates its password every Friday" for i in range({WRITES})])
        print("stored", flush=True)
        # no close(): interpreter exit stops the background embedder
    """)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=PIPE, stderr=PIPE, text=True, env=child_env)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().strip() == "stored", proc.stderr.read()
        stored_at = time.monotonic()
        _, err = proc.communicate(timeout=120)
        exit_s = time.monotonic() - stored_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert "terminate called" not in err
    assert proc.returncode == 0, err
    assert exit_s < EXIT_BOUND_S, f"exit took {exit_s:.1f} s"
    # the queue was still busy at exit: the warning names what is left and what embeds it
    left = re.search(r"(\d+) memor(?:y|ies) (?:is|are) still waiting for (?:its|their) vectors", err)
    assert left is not None, err
    assert 0 < int(left.group(1)) <= WRITES
    assert "the next process that opens this store embeds them" in err and "memmesh reindex" in err

    # the next process to open the store embeds every memory left pending
    mem = open_memory(db)
    assert mem.service.await_vectors(timeout=150)
    assert mem.stats().total == WRITES
    assert mem.reindex() == 0  # every memory has a vector from the current model


@pytest.mark.slow
def test_a_short_command_after_a_large_leftover_embeds_its_own_write_and_does_not_wait_for_the_rest(
    open_memory: Callable[..., Memory], shared_data_dir: Path, tmp_path: Path
) -> None:
    """Found in a user trial: after an import left thousands of vectors owed, every later CLI
    command spent its whole close wait (10 s) embedding them at exit, again and again. A
    command now embeds what it wrote itself first, does not wait for what earlier processes
    left, and says how to embed that (`memmesh reindex`, or a long-running serve)."""
    db = "leftover.db"
    url = f"sqlite:///{tmp_path / db}"
    mem = open_memory(db)
    leftover = [m.id for m in mem.add_many([f"Imported note {i}: rota of team {i % 13}, week {i}" for i in range(LEFTOVER)])]
    assert mem.service.background is not None
    mem.service.background.stop(0)  # they stay owed, as after an import killed before embedding
    mem.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update(
        {
            "MEMMESH_DB": url,
            "MEMMESH_DATA_DIR": str(shared_data_dir),
            "MEMMESH_CONFIG": str(tmp_path / "absent.toml"),
            "MEMMESH_EMBEDDINGS_PROVIDER": "minilm",
            "MEMMESH_EMBEDDINGS_CLOSE_WAIT_S": "300",  # were the leftover waited for, the command would take minutes
            "MEMMESH_EMBEDDINGS_BATCH_SIZE": "8",
        }
    )
    (tmp_path / "absent.toml").write_text("")
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "memmesh", "store", "The night ferry leaves pier 4 at 23:40", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    took = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    assert took < 120, f"the command took {took:.0f} s: it waited for other processes' leftover"
    assert "written by earlier processes" in run.stderr and "memmesh reindex" in run.stderr, run.stderr
    own = json.loads(run.stdout)["id"]

    looking = {"data_dir": str(shared_data_dir), "embeddings": {"provider": "none"}}  # looks, embeds nothing
    again = Memory(url, load_settings(tmp_path / "absent.toml", overrides=looking, env={}))
    assert len(again.service.store.get_vectors([own])) == 1  # its own write was embedded before it ended
    assert len(again.service.store.get_vectors(leftover)) < len(leftover)  # the leftover was not all waited for
    again.close()
