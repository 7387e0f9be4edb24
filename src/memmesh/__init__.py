"""memmesh: long-term memory for AI agents.

The public surface is what ``__all__`` lists; every other module may change.
"""

from memmesh.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    ContentTooLargeError,
    CorruptDatabaseError,
    EmbedderError,
    ForbiddenError,
    InvalidInputError,
    MemmeshError,
    NotFoundError,
    QuorumNotMetError,
    RateLimitedError,
    StorageError,
    UnavailableError,
)
from memmesh.memory import AsyncMemory, Memory

__version__ = "0.1.0"

__all__ = [
    "AsyncMemory",
    "AuthError",
    "ConfigError",
    "ConflictError",
    "ContentTooLargeError",
    "CorruptDatabaseError",
    "EmbedderError",
    "ForbiddenError",
    "InvalidInputError",
    "MemmeshError",
    "Memory",
    "NotFoundError",
    "QuorumNotMetError",
    "RateLimitedError",
    "StorageError",
    "UnavailableError",
]
