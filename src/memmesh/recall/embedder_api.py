"""What every embedder is and must do: the ``Embedder`` protocol and the checks that all
providers share.

Kept apart from :mod:`memmesh.recall.embedders` (the factory, which imports each provider)
so that a provider such as :mod:`memmesh.recall.minilm` can use these without importing
the factory that imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from memmesh.errors import EmbedderError, InvalidInputError

HEALTH_TEXT = "memmesh embedder health check"


class Embedder(Protocol):
    """What recall needs from an embedding model.

    ``dim`` is declared as a read-only property so both a plain attribute (MiniLM: always
    384) and a lazily discovered value (an HTTP server's model) satisfy the protocol.
    Deliberately not ``runtime_checkable``: on Python 3.11 ``isinstance`` would read
    ``dim`` and so send a request to a remote server.
    """

    model_id: str

    @property
    def dim(self) -> int:
        """Length of every vector this embedder returns."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dim), each row of L2 norm 1."""
        ...

    def health(self) -> dict[str, Any]:
        """``{"ok", "model_id", "detail"}`` after really loading/running; never raises."""
        ...


def check_texts(texts: Sequence[str]) -> list[str]:
    """Validate embed() input; a bare string is refused because it would embed each character."""
    if isinstance(texts, (str, bytes)):
        raise InvalidInputError("embed() takes a sequence of strings, not a single string")
    items = list(texts)
    bad = next((i for i, text in enumerate(items) if not isinstance(text, str)), None)
    if bad is not None:
        raise InvalidInputError(f"embed() item {bad} is {type(items[bad]).__name__}, expected str")
    return items


def normalise_rows(vectors: np.ndarray, source: str) -> np.ndarray:
    """Scale every row to length 1 (cosine becomes a dot product); zero/NaN rows are errors."""
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0.0):
        raise EmbedderError(f"{source} returned a zero or non-finite vector")
    return np.ascontiguousarray(matrix / norms, dtype=np.float32)


def health_report(embedder: Embedder) -> dict[str, Any]:
    """Run one real embedding and describe the outcome; the shared body of ``health()``."""
    try:
        vector = embedder.embed([HEALTH_TEXT])
    except EmbedderError as exc:
        return {"ok": False, "model_id": embedder.model_id, "detail": exc.message}
    return {"ok": True, "model_id": embedder.model_id, "detail": f"embedded a test text, dim {vector.shape[1]}"}


__all__ = ["HEALTH_TEXT", "Embedder", "check_texts", "health_report", "normalise_rows"]
