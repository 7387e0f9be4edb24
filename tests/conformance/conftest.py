"""Backends for the conformance suite: a SQLite file in tmp_path, and a real PostgreSQL.

PostgreSQL is ``$MEMMESH_TEST_PG_DSN`` when set (any server with pgvector 0.8+), else the
cached cluster that ``scripts/pg_test_server.py`` provides: the system PostgreSQL with a
pgvector built from ``vendor/`` when none works (installing the packages as root when
missing). Each test gets its own fresh database on that server, dropped afterwards.

If no server can be provided the PostgreSQL tests FAIL with the reason: CI must never go
green without them. ``MEMMESH_TEST_PG=skip`` is the explicit opt-out (they are skipped).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memmesh import Memory
from memmesh.config import Settings, load_settings

BACKENDS = ("sqlite", "postgres")


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    """Keyword-only settings in tmp_path (the embedder can be switched back on per test)."""
    data: dict[str, Any] = {"data_dir": str(tmp_path), "embeddings": {"provider": "none"}}
    data.update(overrides)
    return load_settings(None, overrides=data, env={"MEMMESH_CONFIG": ""})


class PgServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.admin_dsn, autocommit=True)

    def dsn_for(self, dbname: str) -> str:
        """A memmesh URL for ``dbname`` on this server (every libpq option as a query parameter)."""
        from urllib.parse import quote

        from psycopg.conninfo import conninfo_to_dict

        params = {k: str(v) for k, v in conninfo_to_dict(self.admin_dsn).items() if k != "dbname" and v not in (None, "")}
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(params.items()))
        return f"postgresql:///{dbname}" + (f"?{query}" if query else "")

    def create_database(self, prefix: str = "mm") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def execute(self, dbname: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.dsn_for(dbname), autocommit=True) as conn:
            cur = conn.execute(sql, params or None)
            return cur.fetchall() if cur.description else []


PG_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pg_test_server.py"


def run_pg_script(*args: str) -> str:
    """Run the set-up script; its DSN (last stdout line). Fails the test with its error."""
    proc = subprocess.run([sys.executable, str(PG_SCRIPT), *args], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(
            f"no PostgreSQL with a working pgvector for the tests ({PG_SCRIPT.name} {' '.join(args)}):\n{proc.stderr.strip()}\n"
            "set MEMMESH_TEST_PG_DSN to a server with pgvector 0.8+, or MEMMESH_TEST_PG=skip to skip these tests",
            pytrace=False,
        )
    lines = proc.stdout.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> PgServer:
    """One PostgreSQL for the whole session: $MEMMESH_TEST_PG_DSN, else the cached test cluster."""
    if os.environ.get("MEMMESH_TEST_PG", "").strip().lower() == "skip":
        pytest.skip("PostgreSQL tests switched off by MEMMESH_TEST_PG=skip")
    dsn = os.environ.get("MEMMESH_TEST_PG_DSN")
    if dsn:
        return PgServer(dsn)
    # On a fresh machine the set-up installs packages and builds pgvector (minutes): that is
    # not the first test's time, so its per-test timeout is lifted (the script has its own).
    item = getattr(request, "_pyfuncitem", None)
    hook = request.config.pluginmanager.hook
    if item is not None and hasattr(hook, "pytest_timeout_cancel_timer"):
        hook.pytest_timeout_cancel_timer(item=item)
    return PgServer(run_pg_script("ensure"))


class PrivateCluster(PgServer):
    """A PostgreSQL of one test's own, for tests that stop and restart the server."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        super().__init__(run_pg_script("ensure", "--dir", str(folder)))

    def stop(self) -> None:
        run_pg_script("stop", "--dir", str(self.folder))

    def start(self) -> None:
        run_pg_script("start", "--dir", str(self.folder))


@pytest.fixture
def pg_private(pg_server: PgServer) -> Iterator[PrivateCluster]:
    """A private cluster (needs the same installation as ``pg_server``), stopped and removed after."""
    if os.environ.get("MEMMESH_TEST_PG_DSN"):
        pytest.skip("a private cluster needs the local set-up (MEMMESH_TEST_PG_DSN points elsewhere)")
    folder = Path(f"/var/tmp/memmesh-test-pg-private-{uuid.uuid4().hex[:10]}")
    cluster = PrivateCluster(folder)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_database(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database; its memmesh URL."""
    name = pg_server.create_database()
    yield pg_server.dsn_for(name)
    pg_server.drop_database(name)


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty store on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'conformance.db'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def open_memory(tmp_path: Path, clock: Any) -> Iterator[Callable[..., Memory]]:
    """Open ``Memory`` objects on a URL (keyword-only unless told), closed after the test."""
    opened: list[Memory] = []

    def open_(url: str, **overrides: Any) -> Memory:
        use_clock = overrides.pop("clock", clock)
        memory = Memory(url, settings_for(tmp_path, **overrides), clock=use_clock)
        opened.append(memory)
        return memory

    yield open_
    for memory in opened:
        memory.close()


@pytest.fixture
def mem_on(backend_url: str, open_memory: Callable[..., Memory]) -> Memory:
    """A keyword-only Memory on the backend under test, driven by the test's FakeClock."""
    return open_memory(backend_url)
