"""Schema 22 moves the curator's run lease and the scheduled gc's lease out of the curator's
``curator_lease`` into the neutral ``leases`` table (memmesh.schedule.Lease), on both
backends: a lease held during the upgrade is carried over, so its holder keeps its turn."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.schema_rewind import rewind

from memmesh import Memory
from memmesh.errors import ConflictError
from memmesh.schedule import Lease
from memmesh.store.open import open_store
from memmesh.store.sqlite import register_functions

OLD_TABLE = "CREATE TABLE curator_lease (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at {} NOT NULL)"


def _as_schema_21(conn: Any, backend: str, until: float) -> None:
    """What schema 21 held: no ``leases``, the two leases as rows of ``curator_lease``."""
    rewind(conn, 21, backend)
    conn.execute(OLD_TABLE.format("REAL" if backend == "sqlite" else "DOUBLE PRECISION"))
    q = "INSERT INTO curator_lease (name, holder, expires_at) VALUES ({0}, {0}, {0})".format("?" if backend == "sqlite" else "%s")
    conn.execute(q, ("run", "old-server:1:run", until))
    conn.execute(q, ("gc", "old-server:1:gc-turn", until))


def _tables(mem: Memory) -> set[str]:
    with mem.service.store.reading() as conn:
        for probe in ("SELECT name FROM sqlite_master WHERE type = 'table'", "SELECT tablename FROM pg_tables"):
            try:
                return {str(r[0]) for r in conn.execute(probe).fetchall()}
            except (sqlite3.Error, psycopg.Error):
                continue
    raise AssertionError("neither backend answered")


def test_schema_22_carries_held_leases_over_into_the_leases_table(
    backend_url: str, open_memory: Callable[..., Memory], tmp_path: Path
) -> None:
    open_store(backend_url).close()  # a store at the newest schema, then set back to 21
    until = time.time() + 600
    if backend_url.startswith("sqlite"):
        with sqlite3.connect(tmp_path / "conformance.db", isolation_level=None) as conn:
            register_functions(conn)
            _as_schema_21(conn, "sqlite", until)
        backend = "sqlite"
    else:
        with psycopg.connect(backend_url, autocommit=True) as conn:
            _as_schema_21(conn, "postgres", until)
        backend = "postgres"

    mem = open_memory(backend_url)  # opening migrates
    mem.add("The API rate limit is 100 requests per minute.", namespace="ops")
    tables = _tables(mem)
    assert "leases" in tables and "curator_lease" not in tables, (backend, sorted(tables))
    with pytest.raises(ConflictError, match="old-server:1:run"):
        mem.curate()  # the curator's lease kept its holder (now named "curator")
    assert Lease(mem.service.store, "gc").acquire("new-server:gc-turn", time.time(), 1) == "old-server:1:gc-turn"
    assert Lease(mem.service.store, "curator").acquire("x", until + 1, 60) is None  # once it runs out, it is free
    assert mem.curate(dry_run=True).memories_scanned == 1
