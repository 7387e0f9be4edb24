"""An id holding a lone UTF-16 surrogate (JSON "\\ud800", which Python callers and MCP's JSON
can carry) cannot be encoded for either backend: every call that looks it up answers one
InvalidInputError saying the text is not valid Unicode, not the driver's UnicodeEncodeError,
and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from memmesh import Memory
from memmesh.errors import InvalidInputError
from memmesh.model import LOCAL_PRINCIPAL as P


def test_ids_that_are_not_unicode_text_are_a_clear_input_error(mem_on: Memory) -> None:
    kept = mem_on.add("The staging database listens on port 5433", namespace="ops")
    bad = f"{kept.id}\ud800"
    calls: dict[str, Callable[[], Any]] = {
        "get": lambda: mem_on.get(bad),
        "history": lambda: mem_on.history(bad),
        "update": lambda: mem_on.update(bad, content="changed"),
        "delete": lambda: mem_on.delete(bad),
        "curator rollback": lambda: mem_on.service.curator.rollback(bad, principal=P),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidInputError, match="not valid Unicode text") as refused:
            call()
        assert "\ud800" not in str(refused.value), f"{name}: the message is printable"
    again = mem_on.get(kept.id)
    assert again.content == kept.content and again.version == kept.version, "nothing changed"
