"""memmesh.pin_to_one_cpu: a many-threaded process keeps its Python threads on one CPU, while
the embedder's native thread pool keeps every CPU. Each case runs in a fresh interpreter, so
the test process itself is never pinned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import memmesh
from memmesh.affinity import pinned_cpu

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")


def run_python(code: str) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON line, returned parsed."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_pinning_keeps_every_python_thread_on_one_cpu_until_unpinned() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    target = cpus[-1]
    seen = run_python(
        f"""
        import json, os, threading
        import memmesh
        stop = threading.Event()
        before = threading.Thread(target=stop.wait); before.start()
        cpu = memmesh.pin_to_one_cpu({target})
        after = threading.Thread(target=stop.wait); after.start()
        pinned = [sorted(os.sched_getaffinity(t.native_id)) for t in (threading.main_thread(), before, after)]
        memmesh.unpin()
        freed = [sorted(os.sched_getaffinity(t.native_id)) for t in (threading.main_thread(), before, after)]
        stop.set()
        print(json.dumps({{"cpu": cpu, "pinned": pinned, "freed": freed}}))
        """
    )
    assert seen["cpu"] == target
    assert seen["pinned"] == [[target]] * 3  # threads alive before the pin, and those started after it
    assert seen["freed"] == [cpus] * 3


def test_a_pinned_process_still_embeds_on_every_cpu() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs to tell a pinned thread from a free one")
    seen = run_python(
        """
        import json, os, tempfile, threading
        import memmesh
        from memmesh import Memory

        def native():
            python = {t.native_id for t in threading.enumerate()}
            return {int(t) for t in os.listdir("/proc/self/task")} - python

        folder = tempfile.mkdtemp()
        memmesh.pin_to_one_cpu()
        mem = Memory(f"sqlite:///{folder}/m.db")
        mem.add("the deploy key rotates every Monday")
        old = native()
        hits = mem.recall("when does the key rotate").hits  # loads the MiniLM embedder: onnxruntime starts its pool
        made = {t: sorted(os.sched_getaffinity(t)) for t in native() - old}
        print(json.dumps({"hits": len(hits), "made": list(made.values()), "main": sorted(os.sched_getaffinity(0))}))
        mem.close()
        """
    )
    assert seen["hits"] == 1
    assert len(seen["main"]) == 1
    assert cpus in seen["made"], f"no thread the embedder started may use every CPU: {seen['made']}"


@pytest.mark.parametrize("cpu", [10_000, -1, True, "0"])
def test_a_cpu_the_process_may_not_use_is_refused_with_the_ones_it_may(cpu: object) -> None:
    free = os.sched_getaffinity(0)
    with pytest.raises(memmesh.ConfigError, match=r"is not one this process may use: give one of \["):
        memmesh.pin_to_one_cpu(cpu)  # type: ignore[arg-type]
    assert os.sched_getaffinity(0) == free  # nothing was pinned
    assert pinned_cpu() is None
