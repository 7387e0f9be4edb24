"""How an embedding is kept on disk: IEEE half precision (float16), on both backends.

Why half precision: a 384-d MiniLM vector is 1,536 bytes as float32 and was half of a
memory's footprint on disk; as float16 it is 768 bytes (PostgreSQL: pgvector's ``halfvec``).
Embeddings are L2-normalised, so every component lies in [-1, 1], where float16 keeps a
relative precision of 2^-11: a cosine moves by about 1e-4, far below the gaps that order
recall results (LoCoMo dev R@10 is unchanged, see docs/recall.md). Vectors are decoded to
float32 for search, so every score is computed in single precision.

A component that float16 cannot hold (|x| > 65504, or NaN/inf) is refused with a clear
error instead of being stored as infinity.
"""

from __future__ import annotations

import numpy as np

from memmesh.errors import InvalidInputError

HALF_MAX = float(np.finfo(np.float16).max)


def to_half(vector: np.ndarray) -> np.ndarray:
    """``vector`` as a contiguous float16 array; refuses values float16 cannot represent."""
    source = np.asarray(vector, dtype=np.float32)
    if source.ndim != 1:
        raise InvalidInputError(f"a vector must be one-dimensional, got shape {source.shape}")
    if not np.all(np.isfinite(source)) or (source.size and float(np.max(np.abs(source))) > HALF_MAX):
        raise InvalidInputError(
            f"a vector component is not finite or beyond ±{HALF_MAX:.0f} (vectors are stored as float16); "
            "normalise the vector (embeddings are unit length) before storing it"
        )
    return np.ascontiguousarray(source.astype(np.float16))


def encode(vector: np.ndarray) -> bytes:
    """The stored bytes of ``vector``: little-endian float16."""
    return to_half(vector).astype("<f2").tobytes()


def decode(blob: bytes | memoryview) -> np.ndarray:
    """A stored vector as float32 (for search)."""
    return np.frombuffer(blob, dtype="<f2").astype(np.float32)


def decode_half(blob: bytes | memoryview) -> np.ndarray:
    """Stored vector bytes as a float16 view (no copy): for casting straight into a float32 matrix."""
    return np.frombuffer(blob, dtype="<f2")


def upgrade_blob(blob: bytes | None, dim: int | None) -> bytes | None:
    """A vector stored as float32 (schema ≤ 15) re-encoded as float16; anything else as it is.
    The SQLite migration 0016 calls it as the SQL function ``memmesh_half_vector``."""
    if blob is None or dim is None or len(blob) != 4 * int(dim):
        return blob
    old = np.frombuffer(blob, dtype="<f4")
    clipped = np.clip(np.nan_to_num(old, nan=0.0), -HALF_MAX, HALF_MAX)  # an old out-of-range value cannot block the upgrade
    return clipped.astype("<f2").tobytes()


__all__ = ["HALF_MAX", "decode", "decode_half", "encode", "to_half", "upgrade_blob"]
