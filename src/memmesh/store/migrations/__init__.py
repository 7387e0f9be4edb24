"""Numbered schema migrations, one folder per backend (``sqlite/``, ``postgres/``), one
number for both: ``NNNN_name.sql`` (a backend with nothing to do gets a no-op file)."""

from __future__ import annotations

from importlib import resources


def load_migrations(backend: str) -> list[tuple[int, str, str]]:
    """The numbered SQL migrations of ``backend`` shipped in the package, in order: (number, name, sql)."""
    found = []
    for entry in (resources.files(__name__) / backend).iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)
