"""``restore`` and ``migrate`` carry the bus: chats with their unread messages and read
cursors, task queues with every task's state (leased, done, dead, ready), and the numbering
a new message continues. They dropped every conversation without a word before. Re-runs
write nothing; a conversation the target numbers otherwise gets the missing messages after
its own, unread."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from tests.conformance.conftest import backend_url, pg_database, pg_server  # noqa: F401 - backend fixtures

from memmesh import Memory
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL as P
from memmesh.store.extra_tables import CARRIED

BUS = ("bus_conversations", "bus_messages", "bus_cursors")


def open_memory(tmp_path: Path, url: str, **bus: Any) -> Memory:
    data: dict[str, object] = {"data_dir": str(tmp_path / "data"), "embeddings": {"provider": "none"}, "bus": bus}
    return Memory(url, load_settings(None, overrides=data, env={"MEMMESH_CONFIG": ""}))


def seed(tmp_path: Path, url: str) -> dict[str, Any]:
    """A chat (b read the first of three messages) and a queue of four tasks: one leased,
    one done, one dead (failed with max_deliveries 1), one ready."""
    with open_memory(tmp_path, url, max_deliveries=1) as mem:
        bus = mem.service.bus
        chat = bus.open(["a", "b"], topic="plans", principal=P)
        queue = bus.open(["coord", "w"], kind="queue", principal=P)
        for body in ("one", "two", "three"):
            bus.send(chat.conversation_id, body, sender="a", token=chat.token, principal=P)
        first = bus.unread(chat.conversation_id, agent="b", token=chat.token, principal=P, limit=1).messages[0]
        assert bus.ack(chat.conversation_id, agent="b", token=chat.token, principal=P, ids=[first.id]).acked_seq == 1
        bus.send_many(queue.conversation_id, ["t1", "t2", "t3", "t4"], sender="coord", token=queue.token, principal=P)

        def claim() -> Any:
            return bus.claim(queue.conversation_id, worker="w", token=queue.token, principal=P, lease_s=600)

        leased = claim()
        done = claim()
        bus.complete(queue.conversation_id, done.attempt_token, worker="w", token=queue.token, principal=P, result="42 docs")
        dead = claim()
        bus.fail(queue.conversation_id, dead.attempt_token, worker="w", token=queue.token, principal=P, reason="bad input")
        tasks = [t.model_dump() for t in bus.tasks(queue.conversation_id, token=queue.token, principal=P)]
        return {"chat": chat, "queue": queue, "leased": leased, "tasks": tasks}


def check(tmp_path: Path, url: str, seeded: dict[str, Any]) -> None:
    """What the copy must hold; then it is used (so call it last on a store)."""
    chat, queue = seeded["chat"], seeded["queue"]
    with open_memory(tmp_path, url) as mem:
        bus = mem.service.bus
        listed = {c.id: (c.kind, c.topic, c.messages) for c in bus.list(principal=P)}
        assert listed == {chat.conversation_id: ("chat", "plans", 3), queue.conversation_id: ("queue", None, 4)}
        # task states, attempts, history, results and dead letters as on the source
        assert [t.model_dump() for t in bus.tasks(queue.conversation_id, token=queue.token, principal=P)] == seeded["tasks"]
        assert [t["state"] for t in seeded["tasks"]] == ["leased", "done", "dead", "ready"]
        # b's cursor came along: the message it read stays read, the others are unread
        unread = bus.unread(chat.conversation_id, agent="b", token=chat.token, principal=P)
        assert (unread.acked_seq, [m.body for m in unread.messages]) == (1, ["two", "three"])
        # the ready task is claimed with the source's token; done and dead ones are not redelivered
        got = bus.claim(queue.conversation_id, worker="w", token=queue.token, principal=P)
        assert got is not None and got.message.body == "t4"
        assert bus.claim(queue.conversation_id, worker="w", token=queue.token, principal=P) is None
        # the lease came along: its worker completes the task it held on the source
        leased = seeded["leased"]
        finished = bus.complete(queue.conversation_id, leased.attempt_token, worker="w", token=queue.token, principal=P)
        assert finished.seq == leased.message.seq == 1 and finished.state == "done"
        # a new message numbers after the copied ones
        assert bus.send(chat.conversation_id, "four", sender="a", token=chat.token, principal=P).seq == 4
        assert [m.body for m in bus.unread(chat.conversation_id, agent="b", token=chat.token, principal=P).messages] == [
            "two",
            "three",
            "four",
        ]


def bus_rows(tmp_path: Path, url: str) -> list[Any]:
    with open_memory(tmp_path, url) as mem, mem.service.store.reading() as conn:
        return [[tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()] for table in BUS]


def test_restore_carries_the_bus_and_a_second_restore_changes_nothing(tmp_path: Path, cli: Any) -> None:
    seeded = seed(tmp_path, f"sqlite:///{tmp_path / 'a.db'}")
    with open_memory(tmp_path, f"sqlite:///{tmp_path / 'a.db'}") as mem:
        snapshot = mem.backup(tmp_path / "bk").snapshot
    dry = cli("migrate", "--from", f"sqlite:///{tmp_path / 'a.db'}", "--to", f"sqlite:///{tmp_path / 'x.db'}", "--dry-run")
    assert dry.code == 0, dry.err
    assert "; also 2 bus_conversations, 7 bus_messages, 1 bus_cursors" in " ".join(dry.out.split())  # said, not only in --json
    assert not (tmp_path / "x.db").exists()
    restored = tmp_path / "restored.db"
    run = cli("restore", str(snapshot), "--to", f"sqlite:///{restored}", "--json")
    assert run.code == 0, run.err
    written = json.loads(run.out)["extras_written"]
    assert {t: written[t] for t in BUS} == {"bus_conversations": 2, "bus_messages": 7, "bus_cursors": 1}
    before = bus_rows(tmp_path, f"sqlite:///{restored}")
    with open_memory(tmp_path, f"sqlite:///{restored}") as mem:
        second = mem.restore(snapshot).extras_written
    assert {t: second[t] for t in BUS} == dict.fromkeys(BUS, 0)
    assert bus_rows(tmp_path, f"sqlite:///{restored}") == before  # change numbers included: nothing was written
    listed = cli("--db", str(restored), "bus", "list", "--json")
    assert {c["id"] for c in json.loads(listed.out)["conversations"]} == {seeded["chat"].conversation_id, seeded["queue"].conversation_id}
    check(tmp_path, f"sqlite:///{restored}", seeded)


def test_migrate_to_postgres_back_and_its_backup_into_sqlite_carry_the_bus(
    tmp_path: Path,
    cli: Any,
    pg_database: str,  # noqa: F811
) -> None:
    seeded = seed(tmp_path, f"sqlite:///{tmp_path / 'a.db'}")
    run = cli("migrate", "--from", f"sqlite:///{tmp_path / 'a.db'}", "--to", pg_database, "--json")
    assert run.code == 0, run.err
    assert {t: json.loads(run.out)["extras_written"][t] for t in BUS} == {"bus_conversations": 2, "bus_messages": 7, "bus_cursors": 1}
    again = cli("migrate", "--from", f"sqlite:///{tmp_path / 'a.db'}", "--to", pg_database, "--json")
    assert {t: json.loads(again.out)["extras_written"][t] for t in BUS} == dict.fromkeys(BUS, 0)
    with open_memory(tmp_path, pg_database) as mem:
        dump = mem.backup(tmp_path / "pgbk").snapshot  # PostgreSQL's logical dump
        feed = mem.service.store.changes_since(0, 1000)
    assert len(feed.bus) == 4  # the chat and its 3 messages joined PostgreSQL's change feed (queues stay local)
    with open_memory(tmp_path, f"sqlite:///{tmp_path / 'd.db'}") as mem:
        from_dump = mem.restore(dump).extras_written
    assert {t: from_dump[t] for t in BUS} == {"bus_conversations": 2, "bus_messages": 7, "bus_cursors": 1}
    back = cli("migrate", "--from", pg_database, "--to", f"sqlite:///{tmp_path / 'e.db'}", "--json")
    assert {t: json.loads(back.out)["extras_written"][t] for t in BUS} == {"bus_conversations": 2, "bus_messages": 7, "bus_cursors": 1}
    for url in (pg_database, f"sqlite:///{tmp_path / 'd.db'}", f"sqlite:///{tmp_path / 'e.db'}"):
        check(tmp_path, url, seeded)


def test_a_copied_lease_runs_out_on_the_copy_as_on_the_source(tmp_path: Path) -> None:
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    with open_memory(tmp_path, a) as mem:
        bus = mem.service.bus
        queue = bus.open(["w"], kind="queue", principal=P)
        bus.send(queue.conversation_id, "t1", sender="w", token=queue.token, principal=P)
        first = bus.claim(queue.conversation_id, worker="w", token=queue.token, principal=P, lease_s=1)
        assert first is not None
        snapshot = mem.backup(tmp_path / "bk").snapshot
    with open_memory(tmp_path, b) as mem:
        mem.restore(snapshot)
        bus = mem.service.bus
        deadline = time.monotonic() + 30
        again = None
        while again is None and time.monotonic() < deadline:
            again = bus.claim(queue.conversation_id, worker="w", token=queue.token, principal=P, wait_s=1)
        assert again is not None and again.message.id == first.message.id and again.attempt == 2


def _chat_backed_up_after_one(mem: Memory, tmp_path: Path) -> tuple[Any, str, str, str]:
    """A chat between a and b holding one message ("one"), and a backup (in ``old``) taken
    then: (the bus, the conversation id, its token, the snapshot)."""
    bus = mem.service.bus
    chat = bus.open(["a", "b"], principal=P)
    bus.send(chat.conversation_id, "one", sender="a", token=chat.token, principal=P)
    return bus, chat.conversation_id, chat.token, mem.backup(tmp_path / "old").snapshot


def test_a_newer_backup_moves_cursors_up_and_a_conversation_numbered_otherwise_gets_the_rest_after_its_own(
    tmp_path: Path,
    backend_url: str,  # noqa: F811
) -> None:
    a, b = f"sqlite:///{tmp_path / 'a.db'}", backend_url
    with open_memory(tmp_path, a) as mem:
        bus, conv, token, older = _chat_backed_up_after_one(mem, tmp_path)
        bus.send(conv, "two", sender="a", token=token, principal=P)
        bus.unread(conv, agent="b", token=token, principal=P)
        bus.ack(conv, agent="b", token=token, principal=P, all=True)
        newer = mem.backup(tmp_path / "new").snapshot
        bus.send(conv, "three from a", sender="a", token=token, principal=P)
        newest = mem.backup(tmp_path / "newest").snapshot
    with open_memory(tmp_path, b) as mem:
        bus = mem.service.bus
        mem.restore(older)
        written = mem.restore(newer).extras_written
        assert {t: written[t] for t in BUS} == {"bus_conversations": 1, "bus_messages": 1, "bus_cursors": 1}
        assert bus.unread(conv, agent="b", token=token, principal=P).acked_seq == 2  # the cursor moved up, numbers agree
        assert mem.restore(older).extras_written["bus_cursors"] == 0  # never down
        # this store goes its own way: its #3 is not the source's #3
        assert bus.send(conv, "three from b's store", sender="b", token=token, principal=P).seq == 3
        mem.restore(newest)
        transcript = bus.unread(conv, agent="b", token=token, principal=P)
        assert [(m.seq, m.body) for m in transcript.messages] == [(4, "three from a")]  # after its own, unread
        assert bus.list(principal=P)[0].messages == 4
        assert mem.restore(newest).extras_written["bus_messages"] == 0


def test_a_reader_acking_everything_while_a_restore_runs_never_skips_a_copied_message(tmp_path: Path, monkeypatch: Any) -> None:
    """A restore into a store in use: between the copy's transactions an agent sends, and
    the reader reads and acks everything. It used to take the copied numbers in one
    transaction and write the messages in a later one, so the ack moved the cursor past
    numbers whose messages were not there yet, and they arrived below it, never seen. No
    public call runs between two of the copy's transactions, so the test wraps the private
    step that writes them (bus_carry._write_pages) to act after each."""
    from memmesh.io import bus_carry

    source, target = f"sqlite:///{tmp_path / 'source.db'}", f"sqlite:///{tmp_path / 'target.db'}"
    with open_memory(tmp_path, source) as mem:
        bus, conv, token, older = _chat_backed_up_after_one(mem, tmp_path)
        bus.send(conv, "two", sender="a", token=token, principal=P)
        bus.send(conv, "three", sender="a", token=token, principal=P)
        newer = mem.backup(tmp_path / "new").snapshot
    with open_memory(tmp_path, target) as mem:
        bus = mem.service.bus
        mem.restore(older)
        seen: list[str] = []
        real = bus_carry._write_pages

        def then_use_the_store(store: Any, steps: Any) -> None:
            real(store, steps)
            if steps and not seen:  # once, after the copy's first transactions
                seen.append(bus.send(conv, "sent meanwhile", sender="a", token=token, principal=P).body)
                seen.extend(m.body for m in bus.unread(conv, agent="b", token=token, principal=P).messages)
                bus.ack(conv, agent="b", token=token, principal=P, all=True)

        monkeypatch.setattr(bus_carry, "_write_pages", then_use_the_store)
        mem.restore(newer)
        monkeypatch.undo()
        late = [m.body for m in bus.unread(conv, agent="b", token=token, principal=P).messages]
        transcript = sorted(m.body for m in bus.transcript(conv, token=token, principal=P).messages)
        assert transcript == ["one", "sent meanwhile", "three", "two"]
        assert sorted(seen[1:] + late) == ["one", "sent meanwhile", "three", "two"], (seen, late)  # b saw every message


def edited(dump: Path, into: Path, table: str, change: Any) -> Path:
    """``dump`` with ``change`` applied to the first row of ``table``, its manifest's checksum
    recomputed as an editor can (the manifest is unsigned)."""
    lines = dump.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        record = json.loads(line)
        if record.get("type") == "row" and record["table"] == table:
            change(record["row"])
            lines[i] = json.dumps(record)
            break
    data = ("\n".join(lines) + "\n").encode()
    into.mkdir()
    out = into / dump.name
    out.write_bytes(data)
    manifest = json.loads(Path(f"{dump}.manifest.json").read_text(encoding="utf-8"))
    manifest.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    Path(f"{out}.manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return out


def test_a_backup_with_bad_bus_values_is_refused_whole_naming_table_row_and_field(
    tmp_path: Path,
    cli: Any,
    pg_database: str,  # noqa: F811
) -> None:
    """An edited JSON Lines dump whose bus rows the bus could not read (or that would hide
    messages from a reader) restores nothing: exit 1, one line naming what to fix."""
    seed(tmp_path, f"sqlite:///{tmp_path / 'a.db'}")
    assert cli("migrate", "--from", f"sqlite:///{tmp_path / 'a.db'}", "--to", pg_database).code == 0
    with open_memory(tmp_path, pg_database) as mem:
        dump = Path(mem.backup(tmp_path / "pgbk").snapshot)

    def put(index: int, value: Any) -> Any:
        return lambda row: row.__setitem__(index, value)

    conv, msg, cur = (CARRIED[t] for t in BUS)
    cases = [
        ("bus_conversations", put(conv.index("kind"), "bogus"), "field kind ('bogus') is not one of chat, queue"),
        ("bus_conversations", put(conv.index("participants"), "not json"), "field participants ('not json') is not a JSON list"),
        ("bus_conversations", put(conv.index("participants"), '["a", "no spaces"]'), "is not a JSON list of valid agent names"),
        ("bus_conversations", put(conv.index("last_seq"), "abc"), "field last_seq ('abc') is not a whole number of 0 or more"),
        ("bus_conversations", put(conv.index("last_seq"), -5), "field last_seq (-5) is not a whole number"),
        ("bus_conversations", put(conv.index("timeout_s"), float("nan")), "field timeout_s (nan) is not a finite number"),
        ("bus_messages", put(msg.index("conversation_id"), "nowhere"), "names a conversation neither the source nor the target holds"),
        ("bus_messages", put(msg.index("attempts"), 1.5), "field attempts (1.5) is not a whole number"),
        ("bus_messages", put(msg.index("state"), "lost"), "field state ('lost')"),
        ("bus_cursors", put(cur.index("acked_seq"), 999), "field acked_seq (999) is past the conversation's last message"),
    ]
    for n, (table, change, says) in enumerate(cases):
        bad = edited(dump, tmp_path / f"bad{n}", table, change)
        target = tmp_path / f"r{n}.db"
        run = cli("restore", str(bad), "--to", f"sqlite:///{target}")
        assert run.code == 1, (says, run.out, run.err)
        assert says in run.err and table in run.err and "nothing was changed" in run.err, run.err
        assert "Traceback" not in run.err
        if target.exists():  # nothing was written: no memory, no bus row
            assert bus_rows(tmp_path, f"sqlite:///{target}") == [[], [], []]
            with open_memory(tmp_path, f"sqlite:///{target}") as mem:
                assert mem.list(limit=5).items == []
