"""Shared fixtures: real SQLite files in tmp_path, keyword-only settings, a movable clock, the CLI."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from memmesh import Memory
from memmesh.config import Settings, load_settings


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """How many pytest-xdist workers ``-n auto`` (the default in pyproject.toml) starts: one
    more than the CPUs this process may use. Most tests spend their time waiting on a
    subprocess or a server, so a third worker on two CPUs cut the suite from ~70 to ~40
    minutes; ``-n 0`` runs everything in this one process."""
    return len(os.sched_getaffinity(0)) + 1 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) + 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked ``slow`` (the longest ones: minutes each under load) first, the rest in
    their usual order: pytest-xdist hands tests out from the front of the list, so a long test
    starts while the others still run beside it instead of alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


class FakeClock:
    """A clock tests move by hand (TTL expiry, promotion, retention)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def keyword_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings for a keyword-only store in tmp_path (no model load: fast tests)."""
    data = {"data_dir": str(tmp_path), "embeddings": {"provider": "none"}}
    data.update(overrides)  # type: ignore[arg-type]
    return load_settings(None, overrides=data, env={"MEMMESH_CONFIG": ""})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[Any]:
    """A real ``memmesh`` HTTP server on 127.0.0.1 with the HTTP tests' settings (keyword-only
    recall, a store under ``tmp_path``), for tests of other concerns that go through HTTP."""
    from tests.http.http_support import ThreadServer, http_settings

    server = ThreadServer(http_settings(tmp_path))
    running = server.start()
    yield running
    running.close_clients()
    server.stop()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "memmesh.db"


@pytest.fixture
def mem(tmp_path: Path, db_path: Path, clock: FakeClock) -> Iterator[Memory]:
    memory = Memory(f"sqlite:///{db_path}", keyword_settings(tmp_path), clock=clock)
    yield memory
    memory.close()


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(tmp_path: Path, db_path: Path):
    """Run the real ``memmesh`` console entry point in a subprocess against db_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMMESH_")}
    env.update(
        {
            "MEMMESH_DB": str(db_path),
            "MEMMESH_DATA_DIR": str(tmp_path / "data"),
            "MEMMESH_CONFIG": str(tmp_path / "absent.toml"),
            "MEMMESH_EMBEDDINGS_PROVIDER": "none",
            "COLUMNS": "200",
        }
    )
    (tmp_path / "absent.toml").write_text("")

    def run(*args: str, input: str | None = None, extra_env: dict[str, str] | None = None) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", "memmesh.interfaces.cli.app", *args],
            input=input,
            capture_output=True,
            text=True,
            env={**env, **(extra_env or {})},
            timeout=120,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


# An in-process twin of the ``cli`` fixture, for tests that make many CLI calls: the same
# entry point (``memmesh.interfaces.cli.app.main``: the same exit codes and one-line errors),
# the same clean environment, no Python start per call (a subprocess costs 1-2 s of CPU; on a
# busy 2-core machine 3-8 s of wall time each). Keep one real-subprocess test per CLI family.
@pytest.fixture
def cli_in_process(tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    (tmp_path / "absent.toml").write_text("")
    env = {
        "MEMMESH_DB": str(db_path),
        "MEMMESH_DATA_DIR": str(tmp_path / "data"),
        "MEMMESH_CONFIG": str(tmp_path / "absent.toml"),
        "MEMMESH_EMBEDDINGS_PROVIDER": "none",
        "COLUMNS": "200",
    }

    def run(*args: str, input: str | None = None, extra_env: dict[str, str] | None = None) -> CliResult:
        from memmesh.interfaces.cli.app import main
        from memmesh.interfaces.cli.context import state

        out, err = io.StringIO(), io.StringIO()
        code = 0
        with monkeypatch.context() as patch:
            for name in [k for k in os.environ if k.startswith("MEMMESH_")]:
                patch.delenv(name)
            for name, value in {**env, **(extra_env or {})}.items():
                patch.setenv(name, value)
            patch.setattr(sys, "argv", ["memmesh", *args])
            patch.setattr(sys, "stdin", io.StringIO(input or ""))
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    main()
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            service, state._service = state._service, None  # a process would exit here: close what the command opened
            if service is not None:
                service.close()
        return CliResult(code, out.getvalue(), err.getvalue())

    return run
