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


def test_appends_of_another_process_between_ours_keep_the_chain_whole(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    memory = open_memory(db)
    try:
        memory.add("first here", namespace="mine")  # this process now holds a committed head
        for round_ in range(5):
            done = other_process(db, f"round {round_}", 3)
            assert done.wait(120) == 0
            # at once (well within the cache's second): the head this process remembers is stale
            memory.add(f"here after round {round_}", namespace="mine")
            memory.add(f"and again after round {round_}", namespace="mine")
        check_chain(memory, 1 + 5 * 2 + 5 * 3)
    finally:
        memory.close()


def test_concurrent_writers_in_separate_processes_keep_the_chain_whole(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    memory = open_memory(db)
    try:
        memory.add("before the others", namespace="mine")
        others = [other_process(db, f"proc {n}", 60) for n in range(2)]
        for i in range(60):
            memory.add(f"mine {i}", namespace="mine")
        assert [p.wait(300) for p in others] == [0, 0]
        memory.add("after the others", namespace="mine")
        check_chain(memory, 2 + 60 + 2 * 60)
    finally:
        memory.close()
