"""Cheap catch-up without echo (issue 24): a node that applied a peer's changes does not send
them back. The feed leaves out, in SQL, the memories and tombstones whose current version the
asking node wrote (``omit_own``, what catch-up pulls and pushes use), yet still covers its whole
range, so cursors move; a full resync (no ``omit_own``) still reads every row. Both backends:
PostgreSQL comes from scripts/pg_test_server.py (fails, never skips, when it cannot be had)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.federation.test_catchup_backends import node, pg_url, state

from memmesh.federation.changes import SyncPage
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.model import MemoryPatch
from memmesh.service import Service

__all__ = ["pg_url"]  # the fixture, imported so this module's tests can ask for it


@pytest.fixture(params=["sqlite", "postgres"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'b.db'}"
    else:
        yield request.getfixturevalue("pg_url")


def pages(source: Service, target: str, *, since: int = 0, limit: int = 4, omit_own: bool) -> list[SyncPage]:
    """Every page of ``source``'s feed for node ``target`` from ``since``."""
    found: list[SyncPage] = []
    while True:
        page = source.replica.feed(peer=target, since=since, limit=limit, omit_own=omit_own, principal=P)
        found.append(page)
        assert page.since == since and page.upto >= since
        since = page.upto
        if not page.more:
            return found


def memory_ids(found: list[SyncPage]) -> set[str]:
    return {obj.id for page in found for item in page.items if (obj := item.memory or item.tombstone) is not None}


def test_a_node_does_not_send_a_peer_its_own_writes_back(tmp_path: Path, backend_url: str) -> None:
    a = node(f"sqlite:///{tmp_path / 'a.db'}", "node-a", "node-b")
    b = node(backend_url, "node-b", "node-a")
    try:
        written = []
        for batch in range(3):  # three change numbers on a, several pages on b
            written += a.add_many([{"content": f"fact {batch}.{i}", "namespace": "ops"} for i in range(8)], principal=P)
        a.delete(written[0].id, principal=P)
        for page in pages(a, "node-b", omit_own=True):
            b.replica.apply(page, principal=P)
        assert state(b) == state(a)

        # b's feed now holds a's 23 memories and a's tombstone; for a, none of that is news
        echo = pages(b, "node-a", omit_own=True)
        assert memory_ids(echo) == set()
        assert echo[-1].upto == b.store.change_counter() and not echo[-1].more  # the whole range, so a's cursor moves

        # what b wrote or changed itself still goes to a, in the same feed
        own = b.add({"content": "written on b", "namespace": "ops"}, principal=P)
        b.update(written[5].id, MemoryPatch(content="fact 0.5, edited on b"), principal=P)
        b.delete(written[6].id, principal=P)
        since = echo[-1].upto
        news = pages(b, "node-a", since=since, omit_own=True)
        assert memory_ids(news) == {own.id, written[5].id, written[6].id}
        for page in news:
            a.replica.apply(page, principal=P)
        assert state(a) == state(b)

        # a full resync reads the feed without omit_own: every memory and tombstone b holds
        everything = memory_ids(pages(b, "node-a", omit_own=False))
        assert everything == {m.id for m in b.store.iter_memories()} | {written[0].id, written[6].id}
    finally:
        a.close()
        b.close()


def test_a_pull_from_a_change_number_moves_the_senders_cursor_for_that_peer(tmp_path: Path) -> None:
    """Asking for the feed after ``since`` says the asker applied everything up to it: the
    sender's pusher then starts there instead of sending those pages again."""
    a = node(f"sqlite:///{tmp_path / 'a.db'}", "node-a", "node-b")
    b = node(f"sqlite:///{tmp_path / 'b.db'}", "node-b", "node-a")
    try:
        for batch in range(3):
            a.add_many([{"content": f"fact {batch}.{i}", "namespace": "ops"} for i in range(5)], principal=P)
        first = a.replica.feed(peer="node-b", since=0, limit=5, omit_own=True, principal=P)
        assert first.more
        b.replica.apply(first, principal=P)
        assert next(p for p in a.store.peers() if p.node_id == "node-b").sent_seq == 0
        a.replica.feed(peer="node-b", since=first.upto, limit=5, omit_own=True, principal=P)
        assert next(p for p in a.store.peers() if p.node_id == "node-b").sent_seq == first.upto
        # never backwards: an older pull (a replay, a resync from 0) leaves the cursor alone
        a.replica.feed(peer="node-b", since=0, limit=5, principal=P)
        assert next(p for p in a.store.peers() if p.node_id == "node-b").sent_seq == first.upto
    finally:
        a.close()
        b.close()


def test_a_large_page_is_applied_whole_and_a_replay_changes_nothing(tmp_path: Path, backend_url: str) -> None:
    """A page of a few hundred never-seen memories takes the bulk path (with the store's larger
    page cache on SQLite): every memory arrives with its history, and applying it again is a
    no-op."""
    a = node(f"sqlite:///{tmp_path / 'a.db'}", "node-a", "node-b")
    b = node(backend_url, "node-b", "node-a")
    try:
        a.add_many([{"content": f"bulk fact {i}", "namespace": f"ns{i % 3}"} for i in range(300)], principal=P)
        found = pages(a, "node-b", limit=1000, omit_own=True)
        assert len(found) == 1 and len(found[0].items) == 300
        report = b.replica.apply(found[0], principal=P)
        assert report.applied == 300 and state(b) == state(a)
        again = found[0].model_copy(update={"since": 0, "upto": 0})  # outside the feed: merged item by item
        assert b.replica.apply(again, principal=P).applied == 0 and state(b) == state(a)
        some = next(b.store.iter_memories())
        assert [entry.event.value for entry in b.history(some.id, principal=P)] == ["add"]
        b.add({"content": "written after the bulk page", "namespace": "ns0"}, principal=P)  # the store still writes
    finally:
        a.close()
        b.close()
