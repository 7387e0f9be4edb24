"""`memmesh doctor` reports every component's health and names what is broken (issue 17).

Real breakage, in real processes: an embedding server that does not answer (the model is
unavailable), and a worker the `memmesh workers run` supervisor gave up on. The store is
fine, so doctor says ``degraded`` (exit 0) and names both components, each with its reason,
and the embedder's API key never shows in the output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SECRET = "sk-health-check-secret-8f3a9c"


def _env(tmp_path: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update({"MEMMESH_CONFIG": str(config), "MEMMESH_DATA_DIR": str(tmp_path / "data"), "MM_HEALTH_KEY": SECRET})
    return env


def _cli(tmp_path: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", *args], capture_output=True, text=True, env=_env(tmp_path, config), timeout=120
    )


def test_doctor_names_an_unreachable_embedder_and_a_failed_worker(tmp_path: Path) -> None:
    workers = tmp_path / "workers.toml"
    workers.write_text('[[worker]]\nname = "ghost-shard"\ncommand = ["/nonexistent/shard-binary"]\n')
    status_file = tmp_path / "workers.status.json"
    config = tmp_path / "memmesh.toml"
    config.write_text(
        "[embeddings]\n"
        'provider = "openai"\nurl = "http://127.0.0.1:1"\nmodel = "absent-model"\ndim = 8\napi_key_env = "MM_HEALTH_KEY"\ntimeout_s = 2\n'
        f'[bus]\nworkers_status_file = "{status_file}"\n'
    )
    db = tmp_path / "health.db"
    assert _cli(tmp_path, config, "--db", str(db), "init").returncode == 0

    # before the supervisor ever ran: the workers component says so
    early = json.loads(_cli(tmp_path, config, "--db", str(db), "doctor", "--json").stdout)
    assert early["components"]["workers"]["status"] == "degraded" and "workers run" in early["components"]["workers"]["reason"]

    supervisor = subprocess.Popen(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", "workers", "run", "--config", str(workers)],
        env=_env(tmp_path, config),
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if status_file.exists() and '"failed"' in status_file.read_text():
                break
            time.sleep(0.1)
        result = _cli(tmp_path, config, "--db", str(db), "doctor", "--json")
        text = _cli(tmp_path, config, "--db", str(db), "doctor")
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(15)

    assert result.returncode == 0, result.stderr  # degraded is reported, not a failure
    report = json.loads(result.stdout)
    assert report["status"] == "degraded"
    parts = report["components"]
    assert set(parts) == {"store", "writes", "vector_index", "embedder", "peers", "outbox", "workers", "bus", "audit"}
    assert parts["store"]["status"] == "ok" and parts["bus"]["status"] == "ok" and parts["audit"]["status"] == "ok"
    assert parts["embedder"]["status"] == "degraded" and "127.0.0.1:1" in parts["embedder"]["reason"]
    assert "unreachable" in parts["embedder"]["reason"]
    assert parts["workers"]["status"] == "degraded" and "ghost-shard" in parts["workers"]["reason"]
    assert "degraded" in text.stdout and "ghost-shard" in text.stdout
    for output in (result.stdout, result.stderr, text.stdout, text.stderr):
        assert SECRET not in output
