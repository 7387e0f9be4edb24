"""Memory-change entries hash the history row's stored text (digest rule 2, issue 24: the
change is encoded once per write, not once for the history and again for the audit), and a
log holding entries of both rules (rule 1: written before) verifies, catches tampering of
either kind at its index, and proves every change against the history by its own rule. On a
real SQLite file and a real PostgreSQL (scripts/pg_test_server.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memmesh import Memory
from memmesh.audit import chain
from memmesh.audit.notes import init_key
from memmesh.config import load_settings
from memmesh.model import LOCAL_PRINCIPAL
from memmesh.store.sql.writes import SQLWrites
from pg_support import fresh_pg_database


@pytest.fixture
def pg_digest_url() -> Iterator[str]:
    """A fresh PostgreSQL database (the test fails, not skips, when PostgreSQL cannot start)."""
    with fresh_pg_database("mm_digest") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'digest.db'}"
    return str(request.getfixturevalue("pg_digest_url"))


@pytest.fixture
def memory(url: str, tmp_path: Path) -> Iterator[Memory]:
    init_key(tmp_path / "signing.key", "digest-test")
    audit = {"signing_key_file": str(tmp_path / "signing.key"), "checkpoint_dir": str(tmp_path / "checkpoints")}
    settings = load_settings(
        None, overrides={"data_dir": str(tmp_path), "embeddings": {"provider": "none"}, "audit": audit}, env={"MEMMESH_CONFIG": ""}
    )
    mem = Memory(url, settings)
    yield mem
    mem.close()


class Raw:
    """Direct SQL on the store's database, bypassing memmesh (the auditor's or attacker's view)."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite"):
            import sqlite3

            from memmesh.store.sqlite import register_functions

            self.conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            register_functions(self.conn)
            self.mark, self.text = "?", ""
        else:
            import psycopg

            self.conn = psycopg.connect(url, autocommit=True)
            self.mark, self.text = "%s", "::text"  # a json column returns the text it stored, verbatim

    def run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(sql.replace("?", self.mark), params)
        return list(cur.fetchall()) if cur.description else []

    def history_texts(self) -> list[tuple[str, str | None, str | None]]:
        return [tuple(r) for r in self.run(f"SELECT memory_id, old{self.text}, new{self.text} FROM history ORDER BY id")]  # type: ignore[misc]

    def change_entries(self) -> list[tuple[int, str, str]]:
        return self.run("SELECT idx, target, detail FROM audit_log WHERE substr(action, 1, 7) = 'memory.' ORDER BY idx")


def write_changes(mem: Memory, tag: str) -> list[str]:
    """Adds, an update, a delete and a restore: snapshots packed and keyed, NULL old/new."""
    a = mem.add(f"{tag}: the deploy runs on fridays", namespace="ops", title=f"deploy {tag}", tags=["x"], metadata={"k": "é 漢"})
    b = mem.add(f"{tag}: the database is postgres", namespace="ops")
    mem.update(a.id, content=f"{tag}: the deploy runs on mondays")
    mem.delete(b.id)
    mem.service.lifecycle.restore(b.id, principal=LOCAL_PRINCIPAL)
    return [a.id, b.id]


def rule_of(detail: str) -> int:
    return int(json.loads(detail).get("rule", 1))


def prove_against_history(mem: Memory, raw: Raw) -> list[int]:
    """Every memory-change entry's digest recomputed from its history row by the entry's rule
    (the n-th change entry of a memory is its n-th history row); returns the rules seen."""
    entries = raw.change_entries()
    rows = raw.history_texts()
    assert len(entries) == len(rows)
    by_memory: dict[str, list[tuple[str | None, str | None]]] = {}
    for memory_id, old, new in rows:
        by_memory.setdefault(memory_id, []).append((old, new))
    read_back = {memory_id: mem.history(memory_id) for memory_id in by_memory}
    seen: dict[str, int] = {}
    rules = []
    for idx, target, detail in entries:
        n = seen.get(target, 0)
        seen[target] = n + 1
        old_text, new_text = by_memory[target][n]
        entry = read_back[target][n]
        rule = rule_of(detail)
        expected = chain.change_digest(rule, entry.old, entry.new, old_text, new_text)
        assert json.loads(detail)["digest"] == expected, f"entry {idx} (rule {rule}) does not match its history row"
        rules.append(rule)
    return rules


def test_new_change_entries_hash_the_stored_history_text(memory: Memory, url: str) -> None:
    write_changes(memory, "new")
    raw = Raw(url)
    try:
        assert set(prove_against_history(memory, raw)) == {chain.HISTORY_RULE}
        # a history row changed behind memmesh's back no longer matches its entry's digest
        raw.run("UPDATE history SET new = ? WHERE id = (SELECT MIN(id) FROM history)", ('{"forged": true}',))
        with pytest.raises(AssertionError, match="does not match its history row"):
            prove_against_history(memory, raw)
    finally:
        raw.conn.close()


def test_a_log_with_both_rules_verifies_and_catches_tampering_of_each(memory: Memory, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 1 entries are made as the previous version made them: a history writer that does
    not hand back its text makes the capture fall back to digesting the change itself."""
    with monkeypatch.context() as patch:
        real = SQLWrites.add_history_many

        def old_writer(self: Any, entries: Any) -> None:
            real(self, entries)

        patch.setattr(SQLWrites, "add_history_many", old_writer)
        write_changes(memory, "old")
    signed_old = memory.service.audit.checkpoint(principal=LOCAL_PRINCIPAL)
    write_changes(memory, "new")
    signed_new = memory.service.audit.checkpoint(principal=LOCAL_PRINCIPAL)
    assert signed_old is not None and signed_new is not None and signed_old.size < signed_new.size

    raw = Raw(url)
    try:
        rules = prove_against_history(memory, raw)
        assert rules[: len(rules) // 2] == [1] * (len(rules) // 2) and set(rules[len(rules) // 2 :]) == {2}
        report = memory.service.audit.verify(principal=LOCAL_PRINCIPAL)
        assert report.ok, report.problems
        assert report.checkpoints_checked == 2

        for idx, _, detail in [raw.change_entries()[0], raw.change_entries()[-1]]:
            forged = json.loads(detail)
            forged["digest"] = "0" * 64
            raw.run("UPDATE audit_log SET detail = ? WHERE idx = ?", (chain.detail_text(forged), idx))
            report = memory.service.audit.verify(principal=LOCAL_PRINCIPAL)
            assert not report.ok and report.first_bad_index == idx and report.problems[0].kind == "modified"
            raw.run("UPDATE audit_log SET detail = ? WHERE idx = ?", (detail, idx))
        assert memory.service.audit.verify(principal=LOCAL_PRINCIPAL).ok
    finally:
        raw.conn.close()


def test_an_unknown_rule_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown audit digest rule 3"):
        chain.change_digest(3, {}, {}, "{}", "{}")
