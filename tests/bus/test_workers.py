"""``memmesh workers run|status`` with real processes: crash and hang → restart with back-off,
a dead worker's task leased again within lease + a heartbeat, no lost or duplicated task,
crash loops given up past the intensity limit, commands that cannot start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memmesh import Memory
from memmesh.clock import system_clock
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.workers.supervisor import Supervisor, load_config

WORKER = Path(__file__).with_name("shard_worker.py")


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env["MEMMESH_CONFIG"] = str(tmp_path / "absent.toml")
    (tmp_path / "absent.toml").write_text("")
    return env


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", *args], capture_output=True, text=True, env=_env(tmp_path), timeout=60
    )


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start ``memmesh workers run`` on a config text; SIGTERM it (by pid) at the end."""
    started: list[subprocess.Popen[str]] = []

    def run(config: str) -> subprocess.Popen[str]:
        path = tmp_path / "workers.toml"
        path.write_text(config)
        proc = subprocess.Popen(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", "workers", "run", "--config", str(path)],
            env=_env(tmp_path),
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield run
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _status(tmp_path: Path) -> dict[str, Any]:
    result = _cli(tmp_path, "workers", "status", "--config", str(tmp_path / "workers.toml"), "--json")
    return {**json.loads(result.stdout), "exit_code": result.returncode}


def _wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_crashed_and_hung_workers_restart_and_their_tasks_come_back_once(tmp_path: Path, supervise: Any) -> None:
    """Scaled-down rescue bar: heartbeats every 0.5 s and a 1 s lease stand for 5 s / 10 s, so
    'back in the queue within 11 s' reads 'leased again within 1.1 s' (plus 0.4 s of slack
    for a shared, loaded test machine)."""
    db = tmp_path / "bus.db"
    settings = load_settings(None, overrides={"data_dir": str(tmp_path), "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""})
    mem = Memory(f"sqlite:///{db}", settings, clock=system_clock)
    bus = mem.service.bus
    queue = bus.open(["coord", "shard-1", "shard-2", "shard-3"], kind="queue", principal=P)
    bodies = [f"task {i}" for i in range(12)] + ["crash me", "hang me"]
    for body in bodies:
        bus.send(queue.id, body, sender="coord", token=queue.token, principal=P)
    log = tmp_path / "events.jsonl"
    proc = supervise(
        f"""
[supervisor]
backoff_initial_s = 0.2
backoff_max_s = 1.0
intensity = 5
period_s = 60
hang_after_s = 2.0

[[worker]]
name = "shard"
replicas = 3
command = ["{sys.executable}", "{WORKER}"]
[worker.env]
BUS_URL = "sqlite:///{db}"
BUS_DATA = "{tmp_path}"
BUS_CONV = "{queue.id}"
MEMMESH_BUS_TOKEN = "{queue.token}"
BUS_LEASE = "1.0"
BUS_BEAT = "0.5"
BUS_WORK = "0.05"
BUS_LOG = "{log}"
"""
    )

    def all_done() -> bool:
        tasks = bus.tasks(queue.id, token=queue.token, principal=P)
        return len(tasks) == len(bodies) and all(t.state == "done" for t in tasks)

    _wait_for(all_done, 60, "every task done")
    tasks = bus.tasks(queue.id, token=queue.token, principal=P)
    assert sorted(t.body for t in tasks) == sorted(bodies)
    events = _events(log)
    completed = [e["task"] for e in events if e["event"] == "completed"]
    assert sorted(completed) == sorted(bodies), "each task completed exactly once"
    for body in ("crash me", "hang me"):
        task = next(t for t in tasks if t.body == body)
        assert task.attempts == 2
        delivered = [e for e in task.history if e["event"] == "delivered"]
        assert delivered[0]["worker"] != delivered[1]["worker"] or body == "crash me"
    crash = next(e for e in events if e["event"] == "crashing")
    again = next(e for e in events if e["event"] == "claimed" and e["task"] == "crash me" and e["attempt"] == 2)
    assert again["at"] - crash["at"] <= 1.1 + 0.4, f"the dead worker's task came back after {again['at'] - crash['at']:.2f} s"
    status = _wait_for(lambda: (s := _status(tmp_path)) and sum(w["restarts"] for w in s["workers"]) >= 2 and s, 20, "two restarts")
    assert status["running"] and status["healthy"] and status["exit_code"] == 0
    errors = " ".join(w["last_error"] or "" for w in status["workers"])
    assert "exited with code 17" in errors or any(w["restarts"] for w in status["workers"])
    _wait_for(lambda: all(w["state"] == "running" for w in _status(tmp_path)["workers"]), 20, "every worker running again")
    assert "no heartbeat for 2 s; killing it" in _drain_stderr_after_stop(proc)


def _drain_stderr_after_stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out = proc.stderr.read()  # type: ignore[union-attr]
    assert proc.wait(15) == 0
    return out


def test_a_crash_loop_backs_off_and_is_reported_failed(tmp_path: Path, supervise: Any) -> None:
    proc = supervise(
        f"""
[supervisor]
backoff_initial_s = 0.2
backoff_max_s = 0.8
intensity = 4
period_s = 60

[[worker]]
name = "flaky"
command = ["{sys.executable}", "-c", "import sys; sys.exit(3)"]

[[worker]]
name = "steady"
command = ["{sys.executable}", "-c", "import time; time.sleep(600)"]
"""
    )
    status = _wait_for(lambda: (s := _status(tmp_path)) and s["workers"] and s["workers"][0]["state"] == "failed" and s, 30, "failed")
    flaky, steady = status["workers"]
    assert flaky["restarts"] == 4 and flaky["last_exit"] == 3
    assert "exited with code 3" in flaky["last_error"] and "given up" in flaky["last_error"]
    assert steady["state"] == "running", "one failing worker does not stop the others"
    assert not status["healthy"] and status["exit_code"] == 1
    stopped = _drain_stderr_after_stop(proc)
    delays = [float(line.rsplit("restarting in ", 1)[1].split(" ")[0]) for line in stopped.splitlines() if "restarting in" in line]
    assert delays == [0.2, 0.4, 0.8, 0.8]
    final = _status(tmp_path)
    assert final["running"] is False and final["workers"][1]["state"] == "stopped"


def test_backoff_doubles_from_one_second_to_a_sixty_second_cap(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text('[[worker]]\nname = "a"\ncommand = "true"\n')
    sup = Supervisor(load_config(path))
    assert [sup.backoff(n) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_a_command_that_cannot_start_is_failed_at_once_and_a_bad_config_is_one_clear_error(
    tmp_path: Path, supervise: Any, cli_in_process: Any
) -> None:
    """The bad configs go through the CLI in-process (same entry point, no Python start each);
    ``workers status`` and ``workers run`` stay real subprocesses."""
    supervise('[[worker]]\nname = "ghost"\ncommand = ["/nonexistent/shard-binary", "--go"]\n')
    status = _wait_for(lambda: (s := _status(tmp_path)) and s["workers"] and s["workers"][0]["state"] == "failed" and s, 20, "failed")
    assert "cannot start /nonexistent/shard-binary --go" in status["workers"][0]["last_error"]
    assert status["workers"][0]["restarts"] == 0
    bad = tmp_path / "bad.toml"
    for text, expected in [
        ("[[worker]]\nname = 'x'\n", "command"),
        ("[supervisor]\nbackoff_initial_s = -1\n[[worker]]\nname = 'x'\ncommand = 'true'\n", "backoff_initial_s"),
        ("[supervisor]\n", "no [[worker]]"),
        ("this is not toml", "not valid TOML"),
    ]:
        bad.write_text(text)
        refused = cli_in_process("workers", "run", "--config", str(bad))
        assert refused.code != 0 and expected in refused.err and refused.err.startswith("error:"), refused.err
    missing = cli_in_process("workers", "status", "--config", str(tmp_path / "missing.toml"))
    assert missing.code != 0 and "no workers config" in missing.err


def _running(pid: int) -> bool:
    try:
        return os.getsid(pid) == pid
    except ProcessLookupError:
        return False


def test_workers_never_outlive_a_killed_supervisor_nor_run_twice(tmp_path: Path, supervise: Any) -> None:
    """SIGKILL the supervisor: its workers stop with it (Linux: PR_SET_PDEATHSIG), and one that
    ignores SIGTERM is stopped by the next supervisor before it starts its own set; a second
    supervisor of the same workers beside a live one is refused."""
    config = f"""
[[worker]]
name = "polite"
command = ["{sys.executable}", "-c", "import time; time.sleep(600)"]

[[worker]]
name = "stubborn"
command = ["{sys.executable}", "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"]
"""
    first = supervise(config)
    status = _wait_for(lambda: (s := _status(tmp_path)) and len([w for w in s["workers"] if w["pid"]]) == 2 and s, 20, "two workers")
    polite, stubborn = (w["pid"] for w in status["workers"])

    twin = _cli(tmp_path, "workers", "run", "--config", str(tmp_path / "workers.toml"))
    assert twin.returncode == 1 and "another supervisor" in twin.stderr and str(first.pid) in twin.stderr, twin.stderr
    assert _running(polite) and _running(stubborn), "the refused twin touched the running workers"

    first.kill()
    first.wait(10)
    if sys.platform.startswith("linux"):
        _wait_for(lambda: not _running(polite), 10, "the polite worker to stop with its supervisor")
    assert _running(stubborn), "the stubborn worker ignores SIGTERM: the next supervisor must stop it"

    second = supervise(config)
    _wait_for(lambda: not _running(stubborn) and not _running(polite), 20, "the orphans to be stopped")
    status = _wait_for(lambda: (s := _status(tmp_path)) and s["running"] and all(w["pid"] for w in s["workers"]) and s, 20, "a new set")
    assert {w["pid"] for w in status["workers"]}.isdisjoint({polite, stubborn})
    assert "left running by a supervisor that died" in _drain_stderr_after_stop(second)
