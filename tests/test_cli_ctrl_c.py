"""Ctrl-C while a ``memmesh`` command is still loading its imports: exit 130 without a
traceback (docs/cli.md, exit codes). A real subprocess, signalled early."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.signal_support import AS_FROM_A_TERMINAL

HELD_WHILE_LOADING = """
import sys, time

class HoldAtTyper:
    def find_spec(self, name, path=None, target=None):
        if name == "typer":
            sys.meta_path.remove(self)
            print("loading", flush=True)
            time.sleep(30)
        return None

sys.meta_path.insert(0, HoldAtTyper())
from memmesh.interfaces.cli.app import main
sys.argv[0] = "memmesh"
main()
"""


@pytest.mark.parametrize("args", [["stats"], ["serve", "--port", "0"]], ids=["stats", "serve"])
def test_ctrl_c_while_the_cli_loads_exits_130_quietly(tmp_path: Path, args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update({"MEMMESH_DATA_DIR": str(tmp_path), "MEMMESH_CONFIG": str(tmp_path / "absent.toml"), "MEMMESH_EMBEDDINGS_PROVIDER": "none"})
    # what the `memmesh` console script runs, held inside its imports: a hook says when the CLI
    # starts importing typer (after startup.py took Ctrl-C) and waits there, so the signal lands
    # while the CLI loads however fast this machine imports (a fixed sleep raced a fast one)
    command = [sys.executable, "-c", HELD_WHILE_LOADING]
    proc = subprocess.Popen(
        [*command, "--db", str(tmp_path / "none.db"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=AS_FROM_A_TERMINAL,  # a test run started in the background ignores SIGINT (signal_support.py)
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"loading\n"
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=60)[1].decode()
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-2000:]
    assert len(stderr.strip().splitlines()) <= 1, stderr
    assert proc.returncode == 130, (proc.returncode, stderr[-2000:])
    assert not (tmp_path / "none.db").exists()
