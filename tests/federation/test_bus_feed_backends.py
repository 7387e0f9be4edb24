"""Bus chats through the real feed and apply on both backends (issue 15, schema 21): a SQLite
node and a PostgreSQL node exchange conversations and messages in-process, end with one
transcript order, deliver a late message without moving a cursor back, keep task queues
local, and change nothing when the same pages are applied again. PostgreSQL comes from
scripts/pg_test_server.py (fails, never skips, when it cannot be had)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.federation.test_catchup_backends import node, pg_url, pull  # noqa: F401  # pg_url is a fixture

from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.service import Service

PEOPLE = ["planner", "coder"]


def order(service: Service, conv: str, token: str) -> list[tuple[str, str | None, str | None, str]]:
    return [(m.id, m.node, m.hlc, m.body) for m in service.bus.transcript(conv, token=token, limit=1000, principal=P).messages]


def chat_on_pg(tmp_path: Path, url: str) -> tuple[Service, Service, Any]:
    """A SQLite node and a PostgreSQL node; on the PostgreSQL one a chat (returned) and a queue
    holding a task (which must never leave it)."""
    lite = node(f"sqlite:///{tmp_path / 'lite.db'}", "lite", "pg")
    pg = node(url, "pg", "lite")
    chat = pg.bus.open(PEOPLE, principal=P)
    queue = pg.bus.open(PEOPLE, kind="queue", principal=P)
    pg.bus.send(queue.id, "a task for pg's workers only", sender="planner", token=queue.token, principal=P)
    return lite, pg, chat


def test_chats_cross_between_sqlite_and_postgresql_in_one_order(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    lite, pg, chat = chat_on_pg(tmp_path, pg_url)
    try:
        pg.bus.send_many(chat.id, ["one", "two"], sender="planner", token=chat.token, principal=P)
        pages = pull(pg, lite)
        assert [m[3] for m in order(lite, chat.id, chat.token)] == ["one", "two"]
        assert [c.id for c in lite.bus.list(principal=P)] == [chat.id]  # the queue stayed on pg
        assert len(lite.bus.unread(chat.id, agent="coder", token=chat.token, principal=P).messages) == 2
        assert lite.bus.ack(chat.id, agent="coder", token=chat.token, all=True, principal=P).acked_seq == 2

        # both sides post while apart; the lite side's post is written later than pg's
        pg.bus.send(chat.id, "pg while apart", sender="planner", token=chat.token, principal=P)
        # a later millisecond: two sends in the same one tie on the clock and order by node id
        # ("lite" before "pg"), which is the rule, not what this test is about
        time.sleep(0.01)
        lite.bus.send(chat.id, "lite while apart", sender="planner", token=chat.token, principal=P)
        assert [m.body for m in lite.bus.unread(chat.id, agent="coder", token=chat.token, principal=P).messages] == ["lite while apart"]
        assert lite.bus.ack(chat.id, agent="coder", token=chat.token, all=True, principal=P).acked_seq == 3
        pull(pg, lite)
        pull(lite, pg)
        assert order(lite, chat.id, chat.token) == order(pg, chat.id, chat.token)
        # no echo: pg's feed for lite leaves out the message lite wrote (pg holds it), and back
        for source, target, own in ((pg, "lite", 3), (lite, "pg", 1)):
            messages = [row["message"] for _, row in source.store.changes_since(0, 1000, skip_node=target).bus if "message" in row]
            assert len(messages) == own and {m["origin"] for m in messages} == {source.node_id}
        assert [m[3] for m in order(pg, chat.id, chat.token)] == ["one", "two", "pg while apart", "lite while apart"]
        late = lite.bus.unread(chat.id, agent="coder", token=chat.token, principal=P)
        assert [m.body for m in late.messages] == ["pg while apart"] and late.acked_seq == 3 and late.messages[0].seq == 4
        assert [m.body for m in pg.bus.unread(chat.id, agent="coder", token=chat.token, principal=P).messages] == [
            "one",
            "two",
            "pg while apart",
            "lite while apart",
        ]

        # the same pages again, both ways: nothing new anywhere
        before = (order(lite, chat.id, chat.token), order(pg, chat.id, chat.token))
        for page in pages:
            report = lite.replica.apply(page.model_copy(update={"since": 0, "upto": 0}), principal=P)
            assert report.applied == 0
        assert pull(lite, pg) and pull(pg, lite)
        assert (order(lite, chat.id, chat.token), order(pg, chat.id, chat.token)) == before
    finally:
        lite.close()
        pg.close()


def test_both_backends_digest_a_chat_alike_and_answer_for_its_rows(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    """The anti-entropy digest of a chat and of an agent is the same on SQLite and PostgreSQL
    (queues stay out), and the items call answers a message's row with the message and its
    conversation."""
    lite, pg, chat = chat_on_pg(tmp_path, pg_url)
    try:
        sent = pg.bus.send_many(chat.id, ["one", "two"], sender="planner", token=chat.token, principal=P)
        pg.register_agent("reviewer", display_name="Réviseur", role="writer", namespaces=["team/a", "team/b"], principal=P)
        pull(pg, lite)
        ours, theirs = (s.replica.digests(principal=P) for s in (lite, pg))
        assert [(n.namespace, n.rows) for n in ours.namespaces] == [("#agents", 1), ("#bus", 3)]
        assert ours.digest == theirs.digest
        page = pg.replica.items([f"bus:{chat.id}/{sent[1].id}"], principal=P)
        shipped = [i.bus for i in page.items if i.bus is not None]
        assert [(b.conversation.id if b.conversation else None, b.message.body if b.message else None) for b in shipped] == [
            (chat.id, None),
            (None, "two"),
        ]
    finally:
        lite.close()
        pg.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_upgraded_store_feeds_the_chats_it_held_before_schema_21(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    """Chats written before schema 21 get a change number, an origin (this node) and a stamp
    from their creation time on upgrade, so a peer receives them; later sends follow them."""
    import sqlite3

    import psycopg
    from tests.schema_rewind import rewind

    from memmesh.store.sqlite import register_functions

    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    old = node(url, "old", "peer")
    chat = old.bus.open(PEOPLE, principal=P)
    queue = old.bus.open(PEOPLE, kind="queue", principal=P)
    old.bus.send_many(chat.id, ["first", "second"], sender="coder", token=chat.token, principal=P)
    old.bus.send(queue.id, "a task", sender="coder", token=queue.token, principal=P)
    old.close()
    if backend == "sqlite":
        conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
        register_functions(conn)
        rewind(conn, 19, "sqlite")
        assert "hlc" not in [row[1] for row in conn.execute("PRAGMA table_info(bus_messages)")]
        conn.close()
    else:
        with psycopg.connect(_pg_dsn(url), autocommit=True) as pg_conn:
            rewind(pg_conn, 19, "postgres")

    upgraded = node(url, "old", "peer")
    peer = node(f"sqlite:///{tmp_path / 'peer.db'}", "peer", "old")
    try:
        assert upgraded.store.schema_version >= 21
        held = order(upgraded, chat.id, chat.token)
        assert [m[3] for m in held] == ["first", "second"] and {m[1] for m in held} == {"old"}
        upgraded.bus.send(chat.id, "third", sender="planner", token=chat.token, principal=P)
        pull(upgraded, peer)
        assert order(peer, chat.id, chat.token) == order(upgraded, chat.id, chat.token)
        assert [m[3] for m in order(peer, chat.id, chat.token)] == ["first", "second", "third"]
        assert [c.id for c in peer.bus.list(principal=P)] == [chat.id]
    finally:
        upgraded.close()
        peer.close()


def _pg_dsn(url: str) -> str:
    """A psycopg conninfo for a ``postgresql:///name?k=v`` store URL."""
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    params["dbname"] = parts.path.lstrip("/")
    return " ".join(f"{k}='{v}'" for k, v in params.items())
