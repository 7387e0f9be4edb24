"""Curator fixtures: real SQLite files; the real MiniLM embedder where meaning matters."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conformance.conftest import backend_url, mem_on, open_memory, pg_database, pg_server  # noqa: F401 - backend fixtures
from tests.conftest import FakeClock, keyword_settings

from memmesh import Memory
from memmesh.config import load_settings


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("curator-data")


@pytest.fixture
def open_mem(tmp_path: Path, minilm_dir: Path) -> Iterator[Callable[..., Memory]]:
    """Open a Memory on a fresh file: ``semantic=True`` with MiniLM, else keyword-only;
    ``curator`` overrides [curator] settings."""
    opened: list[Memory] = []

    def make(*, semantic: bool = True, clock: FakeClock | None = None, db: str = "memmesh.db", **curator: Any) -> Memory:
        if semantic:
            (minilm_dir / "empty.toml").write_text("")
            data: dict[str, Any] = {"data_dir": str(minilm_dir), "embeddings": {"provider": "minilm"}, "curator": curator}
            settings = load_settings(minilm_dir / "empty.toml", overrides=data, env={})
        else:
            settings = keyword_settings(tmp_path, curator=curator)
        mem = Memory(f"sqlite:///{tmp_path / db}", settings, clock=clock)
        opened.append(mem)
        return mem

    yield make
    for mem in opened:
        mem.close()
