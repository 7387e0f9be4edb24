"""How an embedding is kept on disk (schema 16): 8-bit with a per-vector scale on SQLite,
half precision (pgvector's ``halfvec``) on PostgreSQL.

Why: a 384-d MiniLM vector was 1,536 bytes of float32, half of a memory's footprint on
disk. SQLite now stores ``scale`` (float32) followed by one signed byte per dimension,
``round(x / scale)`` with ``scale = max|x| / 127``: 388 bytes for 384 dimensions. pgvector
has no 8-bit type, so PostgreSQL stores ``halfvec`` (768 bytes), whose HNSW index it can
build. Embeddings are L2-normalised, so each component is at most ~0.3 in size and the
8-bit step moves a cosine by about 1e-3, below the gaps that order recall results
(LoCoMo dev R@10 is measured in docs/recall.md). Vectors are decoded to float32 for search,
so every score is computed in single precision.

One rule on both backends: a component that float16 cannot hold (|x| > 65504, or NaN or
infinity) is refused with a clear error instead of being stored as infinity.
"""

from __future__ import annotations

import numpy as np

from memmesh.errors import InvalidInputError

HALF_MAX = float(np.finfo(np.float16).max)
SCALE_BYTES = 4


def checked(vector: np.ndarray) -> np.ndarray:
    """``vector`` as contiguous float32, refusing what the stored forms cannot hold."""
    source = np.ascontiguousarray(vector, dtype=np.float32)
    if source.ndim != 1:
        raise InvalidInputError(f"a vector must be one-dimensional, got shape {source.shape}")
    if not np.all(np.isfinite(source)) or (source.size and float(np.max(np.abs(source))) > HALF_MAX):
        raise InvalidInputError(
            f"a vector component is not finite or beyond ±{HALF_MAX:.0f} (vectors are stored as float16 or 8-bit); "
            "normalise the vector (embeddings are unit length) before storing it"
        )
    return source


def to_half(vector: np.ndarray) -> np.ndarray:
    """``vector`` as a contiguous float16 array (PostgreSQL's ``halfvec``)."""
    return np.ascontiguousarray(checked(vector).astype(np.float16))


def encode(vector: np.ndarray) -> bytes:
    """The stored bytes of ``vector`` on SQLite: little-endian float32 scale, then int8 codes."""
    source = checked(vector)
    peak = float(np.max(np.abs(source))) if source.size else 0.0
    scale = np.float32(peak / 127.0) if peak > 0 else np.float32(0.0)
    codes = np.rint(source / scale).clip(-127, 127).astype(np.int8) if scale > 0 else np.zeros(source.shape, dtype=np.int8)
    return np.array([scale], dtype="<f4").tobytes() + codes.tobytes()


def decode(blob: bytes | memoryview) -> np.ndarray:
    """A stored vector (SQLite form) as float32."""
    raw = bytes(blob)
    scale = np.frombuffer(raw[:SCALE_BYTES], dtype="<f4")[0]
    vector: np.ndarray = np.frombuffer(raw[SCALE_BYTES:], dtype=np.int8).astype(np.float32) * scale
    return vector


def decode_many(blobs: list[bytes], dim: int, out: np.ndarray) -> None:
    """Decode ``len(blobs)`` stored vectors of ``dim`` straight into the float32 rows ``out``
    (the index's first load: no per-vector arrays)."""
    packed = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), SCALE_BYTES + dim)
    scales = packed[:, :SCALE_BYTES].copy().view("<f4")
    np.multiply(packed[:, SCALE_BYTES:].view(np.int8), scales, out=out, casting="unsafe")


def upgrade_blob(blob: bytes | None, dim: int | None) -> bytes | None:
    """A vector stored as float32 (schema ≤ 15) re-encoded in the 8-bit form; anything else
    as it is. The SQLite migration 0016 calls it as the SQL function ``memmesh_compact_vector``."""
    if blob is None or dim is None or len(blob) != 4 * int(dim):
        return blob
    old = np.frombuffer(blob, dtype="<f4")
    clipped = np.clip(np.nan_to_num(old, nan=0.0), -HALF_MAX, HALF_MAX)  # an old out-of-range value cannot block the upgrade
    return encode(clipped)


__all__ = ["HALF_MAX", "checked", "decode", "decode_many", "encode", "to_half", "upgrade_blob"]
