"""Probe 22 of the Python API: every mistake a caller can make is a memmesh error at the call,
saying what to pass, on the embedded ``Memory`` and the HTTP ``Client`` alike."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import keyword_settings
from tests.pg_support import fresh_pg_database

from memmesh import AsyncMemory, Client, InvalidInputError, Memory, StorageError
from memmesh.errors import ConfigError, UnavailableError

ROOT = Path(__file__).resolve().parents[1]


def _no_server() -> Client:
    """A Client whose every request fails the test: the mistakes must be caught before sending."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"nothing should be sent, but {request.method} {request.url} was")

    return Client("http://127.0.0.1:9", transport=httpx.MockTransport(refuse), retries=0)


# -- 1. unknown keyword arguments -------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.recall("x", topk=3),
        lambda m: m.search("x", topk=3),
        lambda m: m.list(topk=3),
        lambda m: m.get_all(topk=3),
        lambda m: m.delete_all(namespace="a", topk=3),
    ],
    ids=["recall", "search", "list", "get_all", "delete_all"],
)
def test_an_unknown_option_is_named_as_an_unknown_field(mem: Memory, call: Callable[[Memory], Any]) -> None:
    with pytest.raises(InvalidInputError, match=r"^topk: unknown field$"):
        call(mem)


def test_async_memory_names_an_unknown_option_too(tmp_path: Path) -> None:
    async def run() -> None:
        async with AsyncMemory(f"sqlite:///{tmp_path / 'a.db'}", keyword_settings(tmp_path)) as mem:
            with pytest.raises(InvalidInputError, match="topk: unknown field"):
                await mem.recall("x", topk=3)

    asyncio.run(run())


# -- 2. add_many of a string ---------------------------------------------------------------------


@pytest.mark.parametrize("items", ["abc", b"abc", None, 5, {"content": "x"}])
def test_add_many_refuses_what_is_not_a_list_of_items(mem: Memory, items: Any) -> None:
    with pytest.raises(InvalidInputError, match="add_many takes a list of texts or dicts"):
        mem.add_many(items)
    assert mem.get_all() == []


def test_add_many_still_takes_texts_dicts_and_generators(mem: Memory) -> None:
    stored = mem.add_many(t for t in ["a1", "b2"])
    stored += mem.add_many(["c3", {"content": "d4"}])
    assert [m.content for m in stored] == ["a1", "b2", "c3", "d4"]


@pytest.mark.parametrize("items", ["abc", None, [b"x"], [5]])
def test_the_client_refuses_the_same_add_many_before_sending(items: Any) -> None:
    with _no_server() as client, pytest.raises(InvalidInputError, match="add_many"):
        client.add_many(items)


# -- 4. constructor arguments and values JSON cannot carry --------------------------------------


def test_memory_refuses_a_store_that_is_not_a_string(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"URL or a file path as a string.*got int 5"):
        Memory(5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="config must be a config file's path or a Settings"):
        Memory(f"sqlite:///{tmp_path / 'c.db'}", config=5)  # type: ignore[arg-type]
    with Memory(tmp_path / "p.db", keyword_settings(tmp_path)) as mem:  # a Path is a file path
        assert mem.add("by path").content == "by path"


def test_memory_refuses_a_clock_that_is_not_callable_at_open(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="clock must be a callable"):
        Memory(f"sqlite:///{tmp_path / 'c.db'}", keyword_settings(tmp_path), clock=5)  # type: ignore[arg-type]


def test_client_refuses_a_missing_base_url() -> None:
    with pytest.raises(ConfigError, match="base_url must be the server's URL"):
        Client(None)  # type: ignore[arg-type]


def test_bytes_are_refused_as_content_not_decoded(mem: Memory) -> None:
    with pytest.raises(InvalidInputError, match=r"content: bytes, not text: pass a str"):
        mem.add(b"abc")  # type: ignore[call-overload]
    stored = mem.add("abc")
    with pytest.raises(InvalidInputError, match=r"title: bytes, not text"):
        mem.update(stored.id, title=b"t")
    with _no_server() as client, pytest.raises(InvalidInputError, match=r"content: bytes, not text"):
        client.add(b"abc")  # type: ignore[call-overload]
    assert [m.content for m in mem.get_all()] == ["abc"]


def test_client_refuses_metadata_json_cannot_carry() -> None:
    with _no_server() as client, pytest.raises(InvalidInputError, match="metadata: is not JSON-serialisable"):
        client.add("x", metadata={"a": object()})


# -- 5. after close ------------------------------------------------------------------------------------


def _closed_message(mem: Memory) -> list[str]:
    said = []
    for call in (lambda: mem.add("after close"), lambda: mem.recall("x"), lambda: mem.get_all()):
        with pytest.raises(StorageError) as caught:
            call()
        assert not isinstance(caught.value, UnavailableError), caught.value  # no retry reopens it
        said.append(caught.value.message)
    return said


def test_a_closed_sqlite_memory_says_closed_for_writes_and_reads(tmp_path: Path) -> None:
    mem = Memory(f"sqlite:///{tmp_path / 's.db'}", keyword_settings(tmp_path))
    mem.close()
    for message in _closed_message(mem):
        assert re.fullmatch(r"the store .*s\.db is closed; open it again to use it", message), message


def test_a_closed_postgres_memory_says_the_same(tmp_path: Path) -> None:
    with fresh_pg_database("probe22") as url:
        mem = Memory(url, keyword_settings(tmp_path))
        mem.close()
        for message in _closed_message(mem):
            assert message.endswith("is closed; open it again to use it"), message


def test_a_closed_client_says_closed() -> None:
    client = _no_server()
    client.close()
    with pytest.raises(StorageError, match="is closed; make a new Client"):
        client.get("x")


# -- 6. the documented Client methods ----------------------------------------------------------------


def test_docs_do_not_promise_all_of_memorys_methods_over_http() -> None:
    for page in (ROOT / "README.md", ROOT / "docs" / "http.md"):
        text = page.read_text(encoding="utf-8")
        assert "same methods as Memory" not in text and "has `Memory`'s methods" not in text, page
    listed = (ROOT / "docs" / "http.md").read_text(encoding="utf-8")
    assert "`gc`" in listed.split("Only the embedded `Memory` has", 1)[1].split("\n")[0]


@pytest.mark.parametrize("query", ["a\x00b", "x\ud800y"])
def test_search_refuses_an_unstorable_query_as_recall_does(mem: Memory, query: str) -> None:
    """recall named the NUL (or the lone surrogate) in its query; search answered [] as if
    nothing matched."""
    for ask in (mem.recall, mem.search):
        with pytest.raises(InvalidInputError, match=r"^query contains"):
            ask(query)


def test_opening_an_up_to_date_store_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    """Opening a SQLite store took its write lock (the schema check ran in a write
    transaction) even when nothing was to migrate: a process that only reads waited 15 s
    behind another process's write transaction, then failed with "stayed locked"."""
    import sqlite3
    import subprocess
    import sys
    import time

    db = tmp_path / "busy.db"
    with Memory(f"sqlite:///{db}", keyword_settings(tmp_path)) as mem:
        mem.add("the cat likes tuna", namespace="pets")
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process's write transaction, held
    try:
        reader = (
            "import sys; from memmesh import Memory; from tests.conftest import keyword_settings; from pathlib import Path; "
            "m = Memory(sys.argv[1], keyword_settings(Path(sys.argv[2]))); print(len(m.list(namespace='pets').items)); m.close()"
        )
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", reader, f"sqlite:///{db}", str(tmp_path / "r")], capture_output=True, text=True, timeout=120, cwd=ROOT
        )
        assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr[-2000:]
        assert time.monotonic() - started < 12  # the old code waited out the 15 s busy timeout
    finally:
        writer.execute("ROLLBACK")
        writer.close()
