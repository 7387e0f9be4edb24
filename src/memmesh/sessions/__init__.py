"""Sessions: turns stored as ``kind="message"`` memories, rehydrated within a token budget."""

from memmesh.sessions.core import Sessions

__all__ = ["Sessions"]
