"""Issue 16 (audit overhead per write, session 8): the audited write path written out.

The audited transaction is also its block, the SQLite append is one call
(``AuditLog.append_local``), the entry hash spells the canonical bytes itself, the
memory-change detail is one call, the timestamp of the real clock is made without a datetime
and the audited transaction forwards the inner one's other names through descriptors instead
of ``__getattr__``. Each of those repeats a rule stated elsewhere, so each is checked here
against the rule it repeats (byte for byte, over arbitrary text), and the forwarding and the
fallbacks (a non-system clock, a head another process moved, a change by gc) through the
public ``Memory`` API on a real SQLite file.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memmesh import Memory
from memmesh.audit import chain
from memmesh.audit.capture import AuditedTx, unwrap
from memmesh.audit.log import _now_stamp, _stamp
from memmesh.clock import format_ts
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.store.sqlite import register_functions

text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
optional = st.none() | text


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(min_value=0, max_value=2**63 - 1), text, text, text, optional, optional, text)
def test_entry_hash_hashes_exactly_the_canonical_bytes(prev, idx, at, actor, action, namespace, target, detail):
    expected = hashlib.sha256(prev + chain.canonical(idx, at, actor, action, namespace, target, detail)).digest()
    assert chain.entry_hash(prev, idx, at, actor, action, namespace, target, detail) == expected


def test_entry_hash_refuses_a_retyped_index_as_canonical_does():
    with pytest.raises(TypeError):
        chain.entry_hash(bytes(32), "1", "t", "a", "x", None, None, "{}")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        chain.entry_hash(bytes(32), 1, "t", None, "x", None, None, "{}")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(optional, optional, st.none() | st.lists(text, max_size=5))
def test_change_detail_is_the_rule_2_history_detail(old_text, new_text, fields):
    expected = chain.history_detail(chain.history_digest(old_text, new_text), fields, chain.HISTORY_RULE)
    assert chain.change_detail(old_text, new_text, fields) == expected
    assert chain.HISTORY_RULE == 2  # change_detail spells rule 2; a new rule must change it too


def test_the_real_clock_stamp_is_format_ts_of_the_same_time():
    before = datetime.now(UTC)
    stamp = _now_stamp()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), stamp
    assert format_ts(before) <= stamp <= format_ts(after)
    moment = datetime(2026, 11, 30, 21, 0, 5, 7, tzinfo=UTC)
    assert _stamp(moment) == format_ts(moment)  # the shared per-second text agrees after _now_stamp set it


def _settings(tmp_path: Path):
    return load_settings(None, overrides={"data_dir": str(tmp_path), "embeddings": {"provider": "none"}}, env={})


def test_names_the_audited_transaction_does_not_define_reach_the_inner_one(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'fw.db'}", _settings(tmp_path)) as memory:
        added = memory.add("a note to link", namespace="n")
        other = memory.add("another note", namespace="n")
        with memory.service.store.write() as tx:
            assert isinstance(tx, AuditedTx) and not hasattr(type(tx), "__getattr__")
            assert tx.conn is tx._tx.conn  # an instance attribute of the inner transaction
            assert tx.dialect.name == "sqlite"  # a class attribute
            assert tx.get_link(added.id, other.id, "related_to") is None  # a method only forwarded
            assert tx._seq == tx._tx._seq  # private names too, as the old __getattr__ forwarded them
            with pytest.raises(AttributeError):
                tx.no_such_method  # noqa: B018  (a missing name is still an AttributeError)
            assert getattr(tx, "flush_after_commit", None) is None  # PostgreSQL's only: absent here
        memory.link(added.id, other.id, "related_to")
        actions = [e.action for e in memory.service.audit.entries(principal=LOCAL_PRINCIPAL).entries]
        assert actions == ["memory.add", "memory.add", "link.put"]
        assert memory.service.audit.verify(principal=LOCAL_PRINCIPAL).ok


def test_a_non_system_clock_stamps_its_own_time(tmp_path: Path) -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, 600007, tzinfo=UTC)
    with Memory(f"sqlite:///{tmp_path / 'clock.db'}", _settings(tmp_path), clock=lambda: moment) as memory:
        memory.add("a note written at a chosen time", namespace="n")
        entry = memory.service.audit.entries(principal=LOCAL_PRINCIPAL).entries[0]
        assert entry.at == format_ts(moment) == "2030-01-02T03:04:05.600007Z"
        assert memory.service.audit.verify(principal=LOCAL_PRINCIPAL).ok


def test_an_append_after_another_process_moved_the_head_chains_onto_it(tmp_path: Path) -> None:
    """The cached head is stale when another writer appended meanwhile (here a second store
    on the same file, as another process would be): the fast path's insert collides, nothing
    is lost, and the entries chain onto the real head."""
    url = f"sqlite:///{tmp_path / 'two.db'}"
    with Memory(url, _settings(tmp_path)) as one, Memory(url, _settings(tmp_path)) as two:
        one.add("first, caches its head", namespace="n")
        two.add("second, from the other writer", namespace="n")
        one.add("third, chained onto the second", namespace="n")
        entries = one.service.audit.entries(principal=LOCAL_PRINCIPAL).entries
        assert [e.index for e in entries] == [0, 1, 2]
        assert one.service.audit.verify(principal=LOCAL_PRINCIPAL).ok


def test_a_gc_change_and_a_delete_take_the_general_path_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "gc.db"
    with Memory(f"sqlite:///{path}", _settings(tmp_path)) as memory:
        kept = memory.add("a note kept", namespace="n")
        gone = memory.add("a note deleted", namespace="n")
        memory.delete(gone.id)
        memory.update(kept.id, content="a note kept, changed")
        entries = memory.service.audit.entries(principal=LOCAL_PRINCIPAL).entries
        assert [e.action for e in entries] == ["memory.add", "memory.add", "memory.delete", "memory.update"]
        assert entries[2].namespace == "n" and entries[3].detail["fields"]
        assert all(e.actor == "local" for e in entries)
        assert memory.service.audit.verify(principal=LOCAL_PRINCIPAL).ok
    conn = sqlite3.connect(path)  # tampering with the newest (fast-path) entry is still caught
    register_functions(conn)
    conn.execute("UPDATE audit_log SET actor = 'key:someone' WHERE idx = 3")
    conn.commit()
    conn.close()
    with Memory(f"sqlite:///{path}", _settings(tmp_path)) as memory:
        report = memory.service.audit.verify(principal=LOCAL_PRINCIPAL)
        assert not report.ok and report.problems[0].index == 3, report


def test_a_failed_write_appends_nothing_and_the_next_one_chains_on(tmp_path: Path) -> None:
    with Memory(f"sqlite:///{tmp_path / 'fail.db'}", _settings(tmp_path)) as memory:
        memory.add("before", namespace="n")
        store = memory.service.store
        with pytest.raises(RuntimeError), store.write() as tx:
            tx.defer(("test.action", None, "n", {"x": 1}, "local"))
            raise RuntimeError("the block fails")
        memory.add("after", namespace="n")
        entries = memory.service.audit.entries(principal=LOCAL_PRINCIPAL).entries
        assert [(e.index, e.action) for e in entries] == [(0, "memory.add"), (1, "memory.add")]
        assert memory.service.audit.verify(principal=LOCAL_PRINCIPAL).ok
        assert unwrap(store) is not store


def test_the_timestamps_stay_in_order_across_a_second_boundary() -> None:
    stamps = []
    deadline = datetime.now(UTC) + timedelta(seconds=1.2)
    while datetime.now(UTC) < deadline:
        stamps.append(_now_stamp())
    assert stamps == sorted(stamps) and len({s[:19] for s in stamps}) >= 2
