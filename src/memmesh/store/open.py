"""Open the store a URL names: the one place that knows every backend.

Kept out of :mod:`memmesh.store.base` (the contract the backends implement) so the
contract never imports a backend; the composition root and the commands that open a
second store (migrate, restore) call :func:`open_store` here, or as
``memmesh.store.open_store``.
"""

from __future__ import annotations

from pathlib import Path

from memmesh.errors import InvalidInputError
from memmesh.redact import redact_url
from memmesh.store.base import Store

POSTGRES_EXTRA_INSTALL = "pip install 'memmesh[postgres]' (from a checkout of memmesh: pip install -e '.[postgres]')"
"""How to add the ``postgres`` extra. memmesh is not on PyPI yet, so the README's install is a
checkout's ``pip install -e .``: its fix is ``pip install -e '.[postgres]'`` (docs/postgres.md)."""


def postgres_extra_missing(needs: str, exc: ImportError) -> InvalidInputError:
    """The error for a PostgreSQL feature on an install without the ``postgres`` extra: what
    it needs, which package is missing and how to install it (never a traceback)."""
    return InvalidInputError(f"{needs} ({exc.name} is missing): {POSTGRES_EXTRA_INSTALL}")


def store_identity(url: str) -> str:
    """A key that is equal for two URLs naming the same store (``~`` and relative SQLite
    paths resolved), so "copy a store onto itself" is caught however it is spelt."""
    if url.startswith("sqlite://"):
        from memmesh.store.sqlite import path_from_url

        path = path_from_url(url)
        return "sqlite:" + (path if path == ":memory:" else str(Path(path).resolve()))
    return url


def open_store(
    url: str,
    *,
    create: bool = True,
    make_parents: bool = False,
    busy_timeout_ms: int = 15_000,
    synchronous: str = "NORMAL",
    pool_size: int = 10,
    ann_index: bool = True,
    statement_timeout_ms: int = 10_000,
    idle_in_transaction_timeout_ms: int = 3_000,
) -> Store:
    """Open the store a URL names, upgrading its schema if needed.

    ``create`` is the caller's intent, stated where the store is opened rather than checked
    by each command: False for reads, migration sources, dry runs and anything that may
    still be refused, so a wrong path is a :class:`NotFoundError` naming the absolute path
    looked at and nothing is left on disk; True for writes, which create a missing store
    (``store.created`` then lets the face say so once). ``make_parents`` also creates a
    missing folder, which only the default data dir may do: a typo in ``--db`` must not
    make folders.
    """
    if url.startswith("sqlite://"):
        from memmesh.store.sqlite import SQLiteStore

        return SQLiteStore(url, busy_timeout_ms=busy_timeout_ms, synchronous=synchronous, create=create, make_parents=make_parents)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from memmesh.store.postgres import PostgresStore
        except ImportError as exc:
            raise postgres_extra_missing("the PostgreSQL backend needs psycopg, psycopg-pool and pgvector", exc) from None
        return PostgresStore(
            url,
            busy_timeout_ms=busy_timeout_ms,
            pool_size=pool_size,
            ann_index=ann_index,
            statement_timeout_ms=statement_timeout_ms,
            idle_in_transaction_timeout_ms=idle_in_transaction_timeout_ms,
            create=create,
        )
    raise InvalidInputError(
        f"unsupported store URL {redact_url(url)!r}: use sqlite:///path/to/file.db, sqlite:///:memory: or postgresql://…"
    )


__all__ = ["POSTGRES_EXTRA_INSTALL", "open_store", "postgres_extra_missing", "store_identity"]
