"""Fixtures for the web inspector tests: servers (in-process or ``memmesh serve``) and a browser."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from web_support import InProcess, web_settings


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Callable[..., InProcess]]:
    """Start in-process servers: ``web(auth={...})``; all stopped at the end."""
    started: list[InProcess] = []

    def start(**sections: dict[str, Any]) -> InProcess:
        folder = tmp_path / f"server{len(started)}"
        folder.mkdir()
        running = InProcess(web_settings(folder, **sections))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()
