"""``memmesh migrate`` (SQLite → PostgreSQL → SQLite, the real CLI) and backup/restore carry
what users would lose: webhook subscriptions with their deliveries, agent inboxes and the
extraction slots that let a later fact supersede a copied one, and the sessions (a copied
session rehydrates and numbers its next turn after the copied ones). Re-runs write nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conformance.conftest import pg_database, pg_server  # noqa: F401 - backend fixtures

from memmesh import Memory
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL, Relation

EXTRAS = {"subscriptions", "subscription_deliveries", "inbox_messages", "extraction_slots", "session_turns"}
BUS = {"bus_conversations", "bus_messages", "bus_cursors"}  # carried too (tests/test_migrate_bus.py); this seed has none


def open_memory(tmp_path: Path, url: str) -> Memory:
    data: dict[str, object] = {
        "data_dir": str(tmp_path / "data"),
        "embeddings": {"provider": "none"},
        "subscriptions": {"allow_loopback_webhooks": True},
        "extraction": {"mode": "offline"},
    }
    return Memory(url, load_settings(None, overrides=data, env={"MEMMESH_CONFIG": ""}))


def seed(tmp_path: Path, url: str) -> dict[str, Any]:
    with open_memory(tmp_path, url) as mem:
        sub = mem.subscribe("people", "http://127.0.0.1:9/hook", secret="s" * 32)
        result = mem.add(messages=[{"role": "user", "name": "Ana", "content": "I live in Lyon."}], session_id="ana-1", namespace="people")
        mem.service.subscriptions.enqueue()
        deliveries = mem.service.subscriptions.deliveries(sub.id, principal=LOCAL_PRINCIPAL)
        mem.notify("bob", "the Lyon office opens Monday", subject="office")
        facts = [m for m in mem.get_all(namespace="people", limit=100) if "Lyon" in m.content and m.kind.value != "message"]
        return {"sub": sub.id, "deliveries": len(deliveries), "fact": facts[0].id, "result": result}


def check_carried(tmp_path: Path, url: str, seeded: dict[str, Any]) -> None:
    with open_memory(tmp_path, url) as mem:
        subs = mem.subscriptions()
        assert [s.id for s in subs] == [seeded["sub"]]
        # the subscription starts at this store's head as the copy left it: the copied
        # memories are not delivered again as if they were new changes
        assert subs[0].seen_seq <= mem.service.store.change_counter()
        assert mem.service.subscriptions.enqueue() == 0
        assert len(mem.service.subscriptions.deliveries(seeded["sub"], principal=LOCAL_PRINCIPAL)) == seeded["deliveries"] > 0
        assert [n.body for n in mem.inbox("bob")] == ["the Lyon office opens Monday"]
        # the session came along: it is listed and rehydrates (it said "no session ana-1" before)
        assert [(s.session_id, s.turns) for s in mem.session_list()] == [("ana-1", 1)]
        assert [t.content for t in mem.session_rehydrate("ana-1").recent] == ["I live in Lyon."]
        # the slot came along: a new home town supersedes the copied fact
        mem.add(messages=[{"role": "user", "name": "Ana", "content": "I live in Paris."}], session_id="ana-1", namespace="people")
        # and the next turn is number 2, not a second turn 1
        assert [(t.turn, t.content) for t in mem.session_rehydrate("ana-1").recent] == [(1, "I live in Lyon."), (2, "I live in Paris.")]
        superseding = [link for link in mem.links(seeded["fact"]) if link.relation == Relation.supersedes]
        assert superseding and superseding[0].target_id == seeded["fact"]


def migrate(cli: Any, src: str, dst: str) -> dict[str, Any]:
    run = cli("migrate", "--from", src, "--to", dst, "--json")
    assert run.code == 0, run.err
    report: dict[str, Any] = json.loads(run.out)
    return report


def test_migrate_sqlite_to_postgres_and_back_carries_subscriptions_inbox_and_slots(
    cli: Any,
    tmp_path: Path,
    pg_database: str,  # noqa: F811
) -> None:
    a = f"sqlite:///{tmp_path / 'a.db'}"
    b = f"sqlite:///{tmp_path / 'b.db'}"
    seeded = seed(tmp_path, a)
    dry = cli("migrate", "--from", a, "--to", str(tmp_path / "dry.db"), "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert json.loads(dry.out)["extras_written"]["subscriptions"] == 1 and not (tmp_path / "dry.db").exists()
    there = migrate(cli, a, pg_database)
    assert set(there["extras_written"]) == EXTRAS | BUS
    assert there["extras_written"]["subscriptions"] == 1 and there["extras_written"]["inbox_messages"] == 1
    assert there["extras_written"]["extraction_slots"] >= 1
    assert set(migrate(cli, a, pg_database)["extras_written"].values()) == {0}  # idempotent
    back = migrate(cli, pg_database, b)
    assert back["extras_written"] == there["extras_written"]
    check_carried(tmp_path, pg_database, seeded)
    check_carried(tmp_path, b, seeded)


def test_backup_and_restore_carry_them_too(tmp_path: Path) -> None:
    seeded = seed(tmp_path, f"sqlite:///{tmp_path / 'a.db'}")
    with open_memory(tmp_path, f"sqlite:///{tmp_path / 'a.db'}") as mem:
        snapshot = mem.backup(tmp_path / "bk").snapshot
    with open_memory(tmp_path, f"sqlite:///{tmp_path / 'c.db'}") as mem:
        report = mem.restore(snapshot)
        assert report.extras_written["subscriptions"] == 1
        assert set(mem.restore(snapshot).extras_written.values()) == {0}
    check_carried(tmp_path, f"sqlite:///{tmp_path / 'c.db'}", seeded)


def test_a_postgres_backup_carries_them_into_sqlite(tmp_path: Path, pg_database: str) -> None:  # noqa: F811
    """The PostgreSQL backup is a logical dump: its feature-table rows restore into any backend."""
    seeded = seed(tmp_path, pg_database)
    with open_memory(tmp_path, pg_database) as mem:
        result = mem.backup(tmp_path / "pgbk")
    assert result.manifest.backend == "postgresql"
    lines = [json.loads(line) for line in Path(result.snapshot).read_text().splitlines()]
    assert {line["table"] for line in lines if line["type"] == "row"} == EXTRAS
    with open_memory(tmp_path, f"sqlite:///{tmp_path / 'd.db'}") as mem:
        report = mem.restore(result.snapshot)
        assert report.extras_written["subscriptions"] == 1 and report.extras_written["inbox_messages"] == 1
    check_carried(tmp_path, f"sqlite:///{tmp_path / 'd.db'}", seeded)


def test_a_row_of_another_table_in_an_edited_dump_is_refused_and_nothing_restored(tmp_path: Path, pg_database: str) -> None:  # noqa: F811
    import hashlib

    import pytest

    from memmesh.errors import CorruptDatabaseError

    seed(tmp_path, pg_database)
    with open_memory(tmp_path, pg_database) as mem:
        result = mem.backup(tmp_path / "pgbk")
    snapshot = Path(result.snapshot)
    with snapshot.open("a", encoding="utf-8") as handle:  # manifest edited to match: only the record check is left
        handle.write(json.dumps({"type": "row", "table": "api_keys", "row": ["k", "admin"]}) + "\n")
    data = snapshot.read_bytes()
    manifest_file = Path(str(snapshot) + ".manifest.json")
    manifest = json.loads(manifest_file.read_text())
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    manifest_file.write_text(json.dumps(manifest))
    with open_memory(tmp_path, f"sqlite:///{tmp_path / 'e.db'}") as mem:
        with pytest.raises(CorruptDatabaseError, match="unknown table or of the wrong width"):
            mem.restore(snapshot)
        assert mem.get_all() == [] and mem.subscriptions() == []


def test_a_newer_backup_restored_over_an_older_copy_moves_the_turn_counter_up(tmp_path: Path) -> None:
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    with open_memory(tmp_path, a) as mem:
        mem.session_append("s", content="first")
        older = mem.backup(tmp_path / "old").snapshot
        mem.session_append("s", role="assistant", content="second")
        newer = mem.backup(tmp_path / "new").snapshot
    with open_memory(tmp_path, b) as mem:
        mem.restore(older)
        assert mem.restore(newer).extras_written["session_turns"] == 1  # the counter moved 1 → 2
        assert mem.restore(older).extras_written["session_turns"] == 0  # never down
        assert mem.session_append("s", content="third").turn == 3
        assert [(s.session_id, s.turns) for s in mem.session_list()] == [("s", 3)]
        assert [t.content for t in mem.session_rehydrate("s").recent] == ["first", "second", "third"]


def test_one_session_id_under_two_roots_is_carried_as_two_sessions(tmp_path: Path) -> None:
    # Sessions are keyed by namespace: a copy into a store that holds "s" under one root adds
    # the source's "s" under another root beside it (keyed by id, it was skipped as present).
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    with open_memory(tmp_path, a) as mem:
        mem.session_append("s", content="team a talks", namespace="team/a")
        mem.session_append("s", content="team a goes on")
        snapshot = mem.backup(tmp_path / "bk").snapshot
    with open_memory(tmp_path, b) as mem:
        mem.session_append("s", content="team b talks", namespace="team/b")
        assert mem.restore(snapshot).extras_written["session_turns"] == 1
        assert sorted((s.namespace, s.turns) for s in mem.session_list()) == [("team/a/s", 2), ("team/b/s", 1)]
        assert mem.session_append("s", content="a again", namespace="team/a").turn == 3
        assert [t.content for t in mem.session_rehydrate("s", namespace="team/b").recent] == ["team b talks"]
