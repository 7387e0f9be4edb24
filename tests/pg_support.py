"""A fresh PostgreSQL database for a test, on the server ``scripts/pg_test_server.py`` keeps
(built once and cached on the machine). A test that needs PostgreSQL fails, not skips, when
the server cannot start: the assertion below says why."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

PG_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pg_test_server.py"


@contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """A memmesh URL of a new, empty database named ``<prefix>_<random>`` (dropped afterwards);
    every libpq option of the server's admin DSN rides along as a query parameter."""
    import psycopg

    done = subprocess.run([sys.executable, str(PG_SCRIPT), "ensure"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    admin = done.stdout.strip().splitlines()[-1]
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(admin).items() if k != "dbname" and v not in (None, "")}
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(params.items()))
    try:
        yield f"postgresql:///{name}" + (f"?{query}" if query else "")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
