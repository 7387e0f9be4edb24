"""Persistence, nothing else: the Store protocol and one module per backend."""

from memmesh.store.base import Filter, Store, WriteTx
from memmesh.store.open import open_store

__all__ = ["Filter", "Store", "WriteTx", "open_store"]
