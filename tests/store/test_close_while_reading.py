"""Closing a SQLite store while other threads read from it (session 5): the close used to pull
each thread's connection from under a running query, which crashed the interpreter
(segmentation fault) — seen when a background extraction searched while its store closed.
Now a close waits for reads in flight, and later reads get a clear "closed" error."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_closing_while_threads_search_neither_crashes_nor_hangs(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, threading, time
        sys.path.insert(0, {str(ROOT / "src")!r})
        from memmesh.config import load_settings
        from memmesh.compose import build
        from memmesh.errors import StorageError
        from memmesh.model import LOCAL_PRINCIPAL
        settings = load_settings(None, overrides={{"data_dir": {str(tmp_path)!r}, "embeddings": {{"provider": "none"}},
            "storage": {{"url": "sqlite:///{tmp_path / "close.db"}"}}}}, env={{}})
        service = build(settings)
        items = [{{"content": f"memory number {{i}} about harbours and lighthouses"}} for i in range(3000)]
        service.add_many(items, principal=LOCAL_PRINCIPAL)
        errors, started = [], threading.Barrier(5)
        def search():
            started.wait()
            while True:
                try:
                    service.search("harbours lighthouses", top_k=50, mode="keyword", principal=LOCAL_PRINCIPAL)
                except StorageError as exc:
                    errors.append(str(exc))
                    return
        threads = [threading.Thread(target=search) for _ in range(4)]
        for t in threads:
            t.start()
        started.wait()
        time.sleep(0.3)
        service.store.close()
        for t in threads:
            t.join(30)
        print(len(errors), errors[0] if errors else "", flush=True)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    count, _, message = done.stdout.strip().partition(" ")
    assert count == "4" and "is closed; open it again" in message, done.stdout
