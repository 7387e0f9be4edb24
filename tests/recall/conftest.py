"""Recall fixtures: real SQLite files, the real MiniLM embedder (graph built once per session).

Every Memory shares one data dir so the ONNX graph built from the weights package is
cached once; each test still gets its own database file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import FakeClock

from memmesh import Memory
from memmesh.config import Settings, load_settings
from memmesh.errors import EmbedderError


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recall-data")


def recall_settings(data_dir: Path, **recall: Any) -> Settings:
    data: dict[str, Any] = {"data_dir": str(data_dir), "embeddings": {"provider": "minilm"}}
    if recall:
        data["recall"] = recall
    (data_dir / "empty.toml").write_text("")
    return load_settings(data_dir / "empty.toml", overrides=data, env={})


@pytest.fixture
def open_memory(tmp_path: Path, shared_data_dir: Path) -> Iterator[Callable[..., Memory]]:
    """Open Memory objects (MiniLM, real SQLite file in tmp_path) with recall overrides."""
    opened: list[Memory] = []

    def make(db: str = "memmesh.db", clock: FakeClock | None = None, **recall: Any) -> Memory:
        mem = Memory(f"sqlite:///{tmp_path / db}", recall_settings(shared_data_dir, **recall), clock=clock)
        opened.append(mem)
        return mem

    yield make
    for mem in opened:
        mem.close()


class HashEmbedder:
    """A test double for another embedding model: deterministic unit vectors from a hash."""

    def __init__(self, model_id: str = "fake-model-v1", dim: int = 384) -> None:
        self.model_id = model_id
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = [np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(self._dim) for t in texts]
        matrix = np.array(rows, dtype=np.float32).reshape(len(texts), self._dim)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)

    def health(self) -> dict[str, Any]:
        return {"ok": True, "model_id": self.model_id, "detail": "test double"}


class FailingEmbedder(HashEmbedder):
    """An embedder whose server is down."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise EmbedderError("embedding server at http://127.0.0.1:9 is unreachable")
