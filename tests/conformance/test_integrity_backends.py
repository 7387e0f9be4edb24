"""The store-opening intent on both backends: ``create=False`` never makes a store (file or
schema), ``create=True`` does and says so; quotas count what is stored on both."""

from __future__ import annotations

import psycopg
import pytest

from memmesh.errors import NotFoundError, RateLimitedError
from memmesh.store import open_store


def _tables(url: str) -> list[str]:
    if url.startswith("sqlite://"):
        from pathlib import Path

        return ["file"] if Path(url[len("sqlite:///") :]).exists() else []
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]


def test_create_false_makes_nothing_and_create_true_says_it_made_the_store(backend_url: str) -> None:
    with pytest.raises(NotFoundError, match="nothing was created"):
        open_store(backend_url, create=False)
    assert _tables(backend_url) == []
    made = open_store(backend_url, create=True)
    try:
        assert made.created is True
    finally:
        made.close()
    again = open_store(backend_url, create=False)
    try:
        assert again.created is False
    finally:
        again.close()


def test_quota_ignores_retries_and_shares_a_top_level_namespace(backend_url: str, open_memory) -> None:
    mem = open_memory(backend_url, limits={"daily_write_quota": 2})
    first = mem.add("the build cache lives on the nas", namespace="q/a", id="b-1")
    for _ in range(3):
        assert mem.add("the build cache lives on the nas", namespace="q/a", id="b-1").id == first.id
        assert mem.add("the build cache lives on the nas", namespace="q/a").id == first.id
    mem.add("the nas is backed up nightly", namespace="q/b/c")
    with pytest.raises(RateLimitedError, match="'q'"):
        mem.add("a third fact", namespace="q/new")
    assert mem.stats().total == 2
