"""Probe 22: the Client puts an id into a URL as one percent-encoded path segment, so ``#``,
``?`` or ``%2F`` in it are part of the (nonexistent) id, against a real ``memmesh serve``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.http.http_support import SpawnedServer

from memmesh import Client, NotFoundError


def test_an_id_with_url_syntax_is_that_literal_id(tmp_path: Path, spawn: Callable[..., SpawnedServer]) -> None:
    server = spawn(tmp_path / "urls.db")
    with Client(server.url, retries=0) as client:
        real = client.add("the real one", namespace="probe")
        for odd in (real.id + "#oops", real.id + "?x=1", real.id + "%2Fhistory", "x%2Fhistory", real.id + "%23"):
            with pytest.raises(NotFoundError):
                client.get(odd)
            with pytest.raises(NotFoundError):
                client.delete(odd)
            with pytest.raises(NotFoundError):
                client.history(odd)
            with pytest.raises(NotFoundError):
                client.update(odd, priority=9)
        assert client.get(real.id).priority == real.priority  # nothing was deleted or changed
        assert [m.id for m in client.get_all(namespace="probe")] == [real.id]
        for refused in ("", ".", "..", "a/b"):
            with pytest.raises(NotFoundError):
                client.get(refused)
