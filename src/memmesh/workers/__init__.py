"""Shard worker supervision: ``memmesh workers run`` / ``status`` (see :mod:`.supervisor`)."""

from memmesh.workers.supervisor import beat

__all__ = ["beat"]
