"""memmesh: long-term memory for AI agents.

The public surface is what ``__all__`` lists; every other module may change.
"""

from typing import TYPE_CHECKING, Any

from memmesh.affinity import pin_to_one_cpu, unpin
from memmesh.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    ContentTooLargeError,
    CorruptDatabaseError,
    EmbedderError,
    ForbiddenError,
    GovernanceDeniedError,
    InternalError,
    InvalidInputError,
    MemmeshError,
    NotFoundError,
    PendingApprovalError,
    QuorumNotMetError,
    RateLimitedError,
    StorageError,
    UnavailableError,
)

if TYPE_CHECKING:
    from memmesh.interfaces.client import AsyncClient, Client
    from memmesh.memory import AsyncMemory, Memory

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "AsyncMemory",
    "AuthError",
    "Client",
    "ConfigError",
    "ConflictError",
    "ContentTooLargeError",
    "CorruptDatabaseError",
    "EmbedderError",
    "ForbiddenError",
    "GovernanceDeniedError",
    "InternalError",
    "InvalidInputError",
    "MemmeshError",
    "Memory",
    "NotFoundError",
    "PendingApprovalError",
    "QuorumNotMetError",
    "RateLimitedError",
    "StorageError",
    "UnavailableError",
    "pin_to_one_cpu",
    "unpin",
]


def __getattr__(name: str) -> Any:
    """``Memory``/``AsyncMemory`` (the whole core) and ``Client``/``AsyncClient`` (httpx) load
    on first use, so ``import memmesh`` stays fast: it is the first thing every ``memmesh``
    command imports, before the CLI can take over Ctrl-C (interfaces/cli/__init__.py)."""
    if name in ("Memory", "AsyncMemory"):
        from memmesh import memory

        return getattr(memory, name)
    if name in ("Client", "AsyncClient"):
        from memmesh.interfaces import client

        return getattr(client, name)
    raise AttributeError(f"module 'memmesh' has no attribute {name!r}")
