"""The bulk catch-up path and shipped history on both backends (issue 24): a SQLite node and a
PostgreSQL node catch up from each other in-process through the real feed and apply; applying
the same pages again changes nothing. PostgreSQL comes from scripts/pg_test_server.py (fails,
never skips, when it cannot be had)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memmesh.compose import build
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.model import MemoryPatch
from memmesh.service import Service
from pg_support import fresh_pg_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (the test fails, not skips, when PostgreSQL cannot start)."""
    with fresh_pg_database("mm_catchup") as url:
        yield url


def node(url: str, name: str, other: str) -> Service:
    settings = load_settings(
        None, overrides={"storage": {"url": url, "node_id": name}, "embeddings": {"provider": "none"}}, env={"MEMMESH_CONFIG": ""}
    )
    service = build(settings)
    service.replica.known(other, None)
    return service


def pair(tmp_path: Path, pg_url: str, direction: str) -> tuple[Service, Service]:
    """node-a (the source) and node-b, one on SQLite and one on PostgreSQL, as ``direction`` says."""
    sqlite_url = f"sqlite:///{tmp_path / 'lite.db'}"
    urls = (sqlite_url, pg_url) if direction == "sqlite_to_pg" else (pg_url, sqlite_url)
    return node(urls[0], "node-a", "node-b"), node(urls[1], "node-b", "node-a")


def pull(source: Service, target: Service) -> list[object]:
    """Every page of ``source``'s feed for ``target``, applied; returns the pages."""
    pages: list[object] = []
    since = 0
    while True:
        page = source.replica.feed(peer=target.node_id, since=since, limit=50, principal=P)
        target.replica.apply(page, principal=P)
        pages.append(page)
        since = page.upto
        if not page.more:
            return pages


def state(service: Service) -> list[tuple[str, str, str]]:
    return sorted((m.id, m.content, m.version.hlc) for m in service.store.iter_memories())


@pytest.mark.parametrize("direction", ["sqlite_to_pg", "pg_to_sqlite"])
def test_catch_up_between_backends(tmp_path: Path, pg_url: str, direction: str) -> None:
    source, target = pair(tmp_path, pg_url, direction)
    try:
        made = source.add_many([{"content": f"fact {i} 東京の天気", "namespace": f"ns{i % 3}"} for i in range(120)], principal=P)
        edited = made[0].id
        source.update(edited, MemoryPatch(content="fact 0, edited"), principal=P)
        source.delete(made[1].id, principal=P)
        pages = pull(source, target)
        assert state(target) == state(source)
        # the edited memory's history came along: the origin's add and update, then the apply
        authored = [
            (e.event.value, (e.new or {}).get("content"))
            for e in target.history(edited, principal=P)
            if not (e.actor or "").startswith("sync:")
        ]
        assert authored == [("add", "fact 0 東京の天気"), ("update", "fact 0, edited")]
        # keyword search finds what arrived in bulk as it finds what was written locally
        found = {
            service.node_id: sorted(h.memory.id for h in service.recall("fact", namespace="ns0", top_k=50, principal=P).hits)
            for service in (source, target)
        }
        assert found["node-a"] == found["node-b"] and found["node-b"]
        # unsegmented-script (CJK) search on the SQLite side (PostgreSQL's keyword search does not
        # segment it, whatever the path): every ns0 memory but the edited one holds 東京
        lite = source if source.store.dialect.name == "sqlite" else target
        assert len(lite.recall("東京", namespace="ns0", top_k=50, principal=P).hits) == 39
        # every page again, as a replay from 0 through a fresh cursor: nothing changes
        before = (state(target), len(target.history(edited, principal=P)), target.store.change_counter())
        with target.store.write() as tx:
            tx.put_peer(tx.peer("node-a").model_copy(update={"recv_seq": 0}))
        for page in pages:
            report = target.replica.apply(page, principal=P)
            assert report.applied == 0
        assert (state(target), len(target.history(edited, principal=P))) == before[:2]
    finally:
        source.store.close()
        target.store.close()


@pytest.mark.parametrize("direction", ["sqlite_to_pg", "pg_to_sqlite"])
def test_a_session_follows_its_turns_between_backends(tmp_path: Path, pg_url: str, direction: str) -> None:
    source, target = pair(tmp_path, pg_url, direction)
    try:
        source.sessions.append_many("s1", [{"content": f"turn {i}"} for i in range(1, 4)], principal=P)
        target.sessions.append("other", role="user", content="a session of the target's own", principal=P)
        pull(source, target)
        assert [(t.turn, t.content) for t in target.sessions.rehydrate("s1", principal=P).recent] == [
            (1, "turn 1"),
            (2, "turn 2"),
            (3, "turn 3"),
        ]
        assert sorted((s.session_id, s.turns) for s in target.sessions.list(principal=P)) == [("other", 1), ("s1", 3)]
        assert target.sessions.append("s1", role="user", content="turn 4", principal=P).turn == 4
        source.sessions.append("s1", role="user", content="turn 4 on a", principal=P)  # the same number on both sides, concurrently
        pull(source, target)
        assert target.sessions.append("s1", role="user", content="turn 5", principal=P).turn == 5  # never back down
    finally:
        source.store.close()
        target.store.close()
