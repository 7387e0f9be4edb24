"""The audit chain head is reused between appends instead of read each time (issue 24: audit
overhead per write). Other processes append to the same file in between: the chain must stay
whole, dense and verifying, and no write may fail for it. Real processes, real SQLite files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from memmesh import Memory
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL

WRITER = textwrap.dedent(
    """
    import sys
    from memmesh import Memory
    from memmesh.config import load_settings
    db, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = load_settings(None, overrides={"embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    with Memory(f"sqlite:///{db}", settings) as memory:
        for i in range(count):
            memory.add(f"{tag} write {i}", namespace="other")
    """
)


def open_memory(db: Path) -> Memory:
    settings = load_settings(None, overrides={"embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    return Memory(f"sqlite:///{db}", settings)


def other_process(db: Path, tag: str, count: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(db), tag, str(count)], env=env)


def check_chain(memory: Memory, expected_targets: int) -> None:
    report = memory.service.audit.verify(principal=LOCAL_PRINCIPAL)
    assert report.ok, report.problems
    entries = list(memory.service.audit.iter_entries(principal=LOCAL_PRINCIPAL))
    assert [e.index for e in entries] == list(range(len(entries)))  # dense: no index skipped or taken twice
    assert len({e.target for e in entries if e.action == "memory.add"}) == expected_targets


def test_writers_in_other_processes_between_ours_keep_the_chain_whole(tmp_path: Path) -> None:
    """This process writes without pause for as long as two other processes write: its
    remembered head goes stale again and again (each time another process appended within
    the second the head is reused), and every write must still succeed and chain correctly."""
    db = tmp_path / "shared.db"
    memory = open_memory(db)
    try:
        memory.add("before the others", namespace="mine")
        others = [other_process(db, f"proc {n}", 150) for n in range(2)]
        mine = 0
        while any(p.poll() is None for p in others):
            memory.add(f"mine {mine}", namespace="mine")
            mine += 1
        assert [p.wait(300) for p in others] == [0, 0]
        memory.add("after the others", namespace="mine")
        audit = memory.service.audit
        assert audit._head is not None  # the head is being reused (white-box: what this test exercises)
        check_chain(memory, 2 + mine + 2 * 150)
    finally:
        memory.close()
