"""``memmesh workers run``: keep shard worker processes alive (issue 17, issue 24).

Each worker is a command (anything that talks to the bus). The supervisor starts them,
watches them, and restarts them:

- **crash**: a worker that exits with a non-zero code (or dies of a signal) is restarted
  after a back-off of ``backoff_initial_s`` doubling per consecutive crash up to
  ``backoff_max_s`` (1 s, 2 s, 4 s … 60 s by default). A worker that ran longer than
  ``period_s`` before crashing starts the series again.
- **hang**: with ``hang_after_s`` > 0, a worker must touch the file named by
  ``$MEMMESH_WORKER_HEARTBEAT_FILE`` (``memmesh.workers.beat()`` does it) at least that
  often; a silent worker is killed and restarted like a crash.
- **intensity**: more than ``intensity`` restarts within ``period_s`` and the worker is
  marked ``failed`` and left stopped: a crash loop must not burn the machine. A command that
  cannot be started at all (not found, not executable) is ``failed`` at once.
- A worker that exits 0 finished its work and is ``exited``; it is not restarted.

Task safety does not depend on the supervisor: a task leased by a dead worker returns to
the queue when its lease runs out (see :mod:`memmesh.bus.core`), and a late completion from
a worker that lost its lease is refused.

State goes to a JSON status file (written atomically each change and every second) that
``memmesh workers status`` and the HTTP server's ``/metrics`` read.

Workers never outlive their supervisor unnoticed: one supervisor per status file (a
``flock`` on ``<status file>.lock``, freed by the kernel however the holder died); on Linux
each worker gets SIGTERM when its supervisor dies, even of SIGKILL (``PR_SET_PDEATHSIG``);
and a supervisor starting where a dead one left stops the process groups that one recorded
and that still run (a worker that ignored the signal, or any other OS), so a restarted
supervisor never runs a second set of workers beside the first.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from memmesh.errors import ConfigError, ConflictError

HEARTBEAT_ENV = "MEMMESH_WORKER_HEARTBEAT_FILE"
NAME_ENV = "MEMMESH_WORKER_NAME"
STOP_GRACE_S = 5.0
PR_SET_PDEATHSIG = 1
"""prctl option: the signal a process gets when its parent dies (Linux)."""


class SupervisorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backoff_initial_s: float = Field(1.0, gt=0, description="first restart delay after a crash")
    backoff_max_s: float = Field(60.0, gt=0, description="restart delay cap")
    intensity: int = Field(5, ge=0, description="restarts allowed within period_s before the worker is failed")
    period_s: float = Field(60.0, gt=0, description="window for intensity; a worker up this long is stable again")
    hang_after_s: float = Field(0.0, ge=0, description="kill a worker whose heartbeat file is older than this (0 = off)")
    tick_s: float = Field(0.1, gt=0, le=5, description="how often the supervisor looks at its workers")
    status_file: Path | None = Field(None, description="status JSON (default: <config>.status.json)")
    state_dir: Path | None = Field(None, description="where heartbeat files live (default: beside the status file)")


class WorkerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    command: list[str]
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None
    replicas: int = Field(1, ge=1, le=256)

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = shlex.split(value)
        if not value:
            raise ValueError("command is empty: give the program and its arguments")
        return value


class WorkersConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    supervisor: SupervisorSettings = Field(default_factory=SupervisorSettings)
    worker: list[WorkerSpec] = Field(default_factory=list)


def load_config(path: Path) -> WorkersConfig:
    """workers.toml → WorkersConfig, with one clear ConfigError for anything wrong."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no workers config at {path}: create it (see docs/bus.md, 'Workers')") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        config = WorkersConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None
    if not config.worker:
        raise ConfigError(f"{path} has no [[worker]] entries: add one with a name and a command")
    names = [w.name for w in config.worker]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: worker names must be unique (got {', '.join(names)})")
    base = path.parent
    sup = config.supervisor
    status = sup.status_file or path.with_suffix(".status.json")
    sup.status_file = status if status.is_absolute() else base / status
    state_dir = sup.state_dir or sup.status_file.parent / (path.stem + ".heartbeats")
    sup.state_dir = state_dir if state_dir.is_absolute() else base / state_dir
    for w in config.worker:
        if w.cwd is not None and not w.cwd.is_absolute():
            w.cwd = base / w.cwd
    return config


def status_path(config_path: Path) -> Path:
    return load_config(config_path).supervisor.status_file  # type: ignore[return-value]


def beat() -> None:
    """Called by a worker to say it is alive (touches ``$MEMMESH_WORKER_HEARTBEAT_FILE``)."""
    path = os.environ.get(HEARTBEAT_ENV)
    if path:
        Path(path).touch()


@dataclass
class Slot:
    """One running (or waiting, or failed) worker process."""

    name: str
    spec: WorkerSpec
    state: str = "starting"
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    next_start: float = 0.0
    restarts: int = 0
    consecutive: int = 0
    recent: list[float] = field(default_factory=list)
    last_exit: int | None = None
    last_error: str | None = None
    heartbeat_file: Path | None = None

    def view(self, now: float) -> dict[str, Any]:
        beat_at = None
        if self.heartbeat_file is not None and self.heartbeat_file.exists():
            beat_at = self.heartbeat_file.stat().st_mtime
        return {
            "name": self.name,
            "state": self.state,
            "pid": self.proc.pid if self.proc is not None and self.proc.poll() is None else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "last_error": self.last_error,
            "up_s": round(now - self.started_at, 3) if self.state == "running" else None,
            "next_start_in_s": round(max(0.0, self.next_start - now), 3) if self.state == "backoff" else None,
            "last_heartbeat_age_s": round(time.time() - beat_at, 3) if beat_at else None,
        }


class Supervisor:
    """Runs the workers of one config until told to stop (SIGTERM / SIGINT)."""

    def __init__(self, config: WorkersConfig, *, log: Any = None) -> None:
        self.config = config
        self.sup = config.supervisor
        self.slots: list[Slot] = []
        for spec in config.worker:
            for i in range(spec.replicas):
                name = spec.name if spec.replicas == 1 else f"{spec.name}-{i + 1}"
                self.slots.append(Slot(name=name, spec=spec))
        self._stopping = False
        self._log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self._last_write = 0.0

    def backoff(self, consecutive: int) -> float:
        """Delay before restart number ``consecutive`` of a crash series: 1, 2, 4 … cap."""
        return min(self.sup.backoff_initial_s * (2.0 ** max(0, consecutive - 1)), self.sup.backoff_max_s)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.sup.state_dir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        with self._sole_supervisor():
            self._stop_orphans()
            for slot in self.slots:
                self._start(slot)
            self._write_status(force=True)
            try:
                while not self._stopping:
                    self.tick(time.monotonic())
                    time.sleep(self.sup.tick_s)
            finally:
                self.stop()
        return 0

    @contextlib.contextmanager
    def _sole_supervisor(self) -> Iterator[TextIO]:
        """Hold ``<status file>.lock`` while running: a second supervisor of the same workers
        is refused (it would start a second set). The kernel frees the lock when this process
        ends, whatever ends it."""
        path = self.sup.status_file.with_name(self.sup.status_file.name + ".lock")  # type: ignore[union-attr]
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+", encoding="utf-8") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "unknown"
                raise ConflictError(
                    f"another supervisor (pid {holder}) already runs the workers of {self.sup.status_file}; "
                    "stop it first (SIGTERM), or give this config its own status_file"
                ) from None
            lock.truncate(0)
            lock.write(str(os.getpid()))
            lock.flush()
            yield lock

    def _stop_orphans(self) -> None:
        """Stop the workers a dead supervisor of this status file left running: SIGTERM to each
        recorded process group that still runs, then SIGKILL after STOP_GRACE_S. A recorded
        pid counts only while it still leads its own session (as the workers were started),
        so a pid the system has since given to an unrelated process is left alone."""
        found = read_status(self.sup.status_file)  # type: ignore[arg-type]
        if found.get("running"):
            return  # its supervisor lives: the lock above says it is not ours to judge
        orphans = [w["pid"] for w in found.get("workers", []) if _session_leader(w.get("pid"))]
        for pid in orphans:
            self._log(f"worker pid {pid}: left running by a supervisor that died; stopping it")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for pid in orphans:
            while _session_leader(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _session_leader(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._stopping = True

    def _start(self, slot: Slot) -> None:
        hb = self.sup.state_dir / f"{slot.name}.heartbeat"  # type: ignore[operator]
        hb.touch()
        slot.heartbeat_file = hb
        env = {**os.environ, **slot.spec.env, HEARTBEAT_ENV: str(hb), NAME_ENV: slot.name}
        try:
            slot.proc = subprocess.Popen(
                slot.spec.command, env=env, cwd=slot.spec.cwd, start_new_session=True, preexec_fn=_die_with(os.getpid())
            )
        except OSError as exc:
            slot.state = "failed"
            slot.proc = None
            slot.last_error = f"cannot start {shlex.join(slot.spec.command)}: {exc.strerror or exc}; fix the command in the workers config"
            self._log(f"worker {slot.name}: {slot.last_error}")
            self._write_status(force=True)
            return
        slot.state = "running"
        slot.started_at = time.monotonic()
        self._log(f"worker {slot.name}: started (pid {slot.proc.pid})")
        self._write_status(force=True)

    def tick(self, now: float) -> None:
        """One look at every worker: reap exits, kill hung ones, start those due."""
        for slot in self.slots:
            if slot.state == "running" and slot.proc is not None:
                code = slot.proc.poll()
                if code is None and self._hung(slot):
                    self._log(f"worker {slot.name}: no heartbeat for {self.sup.hang_after_s:g} s; killing it")
                    self._kill(slot.proc)
                    code = slot.proc.wait()
                    slot.last_error = f"hung: no heartbeat for {self.sup.hang_after_s:g} s"
                elif code is not None:
                    slot.last_error = None if code == 0 else f"exited with code {code}"
                if code is not None:
                    self._exited(slot, code, now)
            elif slot.state == "backoff" and now >= slot.next_start:
                self._start(slot)
        self._write_status()

    def _hung(self, slot: Slot) -> bool:
        if self.sup.hang_after_s <= 0 or slot.heartbeat_file is None:
            return False
        try:
            age = time.time() - slot.heartbeat_file.stat().st_mtime
        except FileNotFoundError:
            return True
        return age > self.sup.hang_after_s

    def _exited(self, slot: Slot, code: int, now: float) -> None:
        slot.last_exit = code
        slot.proc = None
        if code == 0 and slot.last_error is None:
            slot.state = "exited"
            self._log(f"worker {slot.name}: finished (exit 0)")
            return
        if now - slot.started_at >= self.sup.period_s:
            slot.consecutive = 0
        slot.recent = [t for t in slot.recent if now - t < self.sup.period_s]
        if len(slot.recent) >= self.sup.intensity:
            slot.state = "failed"
            slot.last_error = f"{slot.last_error}; restarted {len(slot.recent)} times within {self.sup.period_s:g} s: given up"
            self._log(f"worker {slot.name}: failed ({slot.last_error})")
            self._write_status(force=True)
            return
        slot.consecutive += 1
        slot.restarts += 1
        slot.recent.append(now)
        delay = self.backoff(slot.consecutive)
        slot.state = "backoff"
        slot.next_start = now + delay
        self._log(f"worker {slot.name}: {slot.last_error}; restarting in {delay:g} s")
        self._write_status(force=True)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker's whole process group (a hung worker may ignore SIGTERM)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Ask every worker to stop (SIGTERM), then kill those still running after a grace."""
        running = [s for s in self.slots if s.proc is not None and s.proc.poll() is None]
        for slot in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(slot.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + STOP_GRACE_S
        for slot in running:
            try:
                slot.proc.wait(max(0.0, deadline - time.monotonic()))  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                self._kill(slot.proc)  # type: ignore[arg-type]
                slot.proc.wait()  # type: ignore[union-attr]
            slot.state = "stopped"
        for slot in self.slots:
            if slot.state in ("running", "backoff", "starting"):
                slot.state = "stopped"
        self._write_status(force=True, running=False)

    def status(self, running: bool = True) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "supervisor_pid": os.getpid(),
            "running": running,
            "updated_at": time.time(),
            "workers": [s.view(now) for s in self.slots],
        }

    def _write_status(self, *, force: bool = False, running: bool = True) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < 1.0:
            return
        self._last_write = now
        write_status(self.sup.status_file, self.status(running))  # type: ignore[arg-type]


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Atomically replace the status file (readers never see half a document)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any]:
    """The supervisor's status, marked stale when its process is gone."""
    try:
        status: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"running": False, "workers": [], "error": f"no status at {path}: is `memmesh workers run` started with this config?"}
    except (OSError, json.JSONDecodeError) as exc:
        return {"running": False, "workers": [], "error": f"cannot read {path}: {exc}"}
    pid = status.get("supervisor_pid")
    if status.get("running") and not _alive(pid):
        status["running"] = False
        status["error"] = f"the supervisor (pid {pid}) is not running; its workers' last known state is shown"
    return status


def _die_with(parent: int) -> Callable[[], None] | None:
    """Linux: a ``preexec_fn`` that makes the worker get SIGTERM when ``parent`` (this
    supervisor) dies, however it dies; a parent already gone before that is in force ends
    the worker at once. None elsewhere (the next supervisor's orphan sweep covers it)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def _session_leader(pid: Any) -> bool:
    """Whether ``pid`` runs and leads its own session (how the supervisor starts workers)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        return os.getsid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def summarize(status: dict[str, Any]) -> dict[str, int]:
    """Workers per state (for /metrics and health)."""
    counts = {state: 0 for state in ("running", "backoff", "failed", "exited", "stopped")}
    for worker in status.get("workers", []):
        counts[worker.get("state", "stopped")] = counts.get(worker.get("state", "stopped"), 0) + 1
    return counts
