"""A migration into a store is audited on the target (``admin.migrate``), as backup, restore
and import are: `memmesh migrate` (the real CLI, in a subprocess) from SQLite into SQLite and
into a real PostgreSQL; the target's `audit export` shows the entry and `audit verify`
passes. A dry run appends nothing; a re-run that writes nothing is still recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import keyword_settings
from tests.federation.test_catchup_backends import pg_url

from memmesh import Memory

__all__ = ["pg_url"]


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'target.db'}" if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def _migrations(cli: Any, url: str) -> list[dict[str, Any]]:
    done = cli("audit", "export", extra_env={"MEMMESH_DB": url})
    assert done.code == 0, done.err
    return [e for e in map(json.loads, done.out.splitlines()) if e["action"] == "admin.migrate"]


def test_migrate_appends_admin_migrate_on_the_target(cli: Any, tmp_path: Path, target: str) -> None:
    source = tmp_path / "source.db"
    with Memory(f"sqlite:///{source}", keyword_settings(tmp_path)) as mem:
        first = mem.add("The VPN gateway moved to 10.0.0.7", namespace="ops")
        mem.add("Backups run at 02:00 UTC", namespace="ops")
        mem.link(first.id, mem.add("The old gateway is retired", namespace="ops").id, "related_to")
    dry = cli("migrate", "--from", str(source), "--to", target, "--dry-run", "--json")
    assert dry.code == 0, dry.err
    ran = cli("migrate", "--from", str(source), "--to", target, "--json")
    assert ran.code == 0, ran.err
    report = json.loads(ran.out)
    entries = _migrations(cli, target)
    assert len(entries) == 1, entries  # the dry run appended nothing
    entry = entries[0]
    assert entry["actor"] == "local" and entry["target"] == report["from_url"] and str(source) in entry["target"]
    assert entry["detail"]["memories"] == report["memories_written"] == 3
    assert entry["detail"]["links"] == report["links_written"] == 1 and entry["detail"]["errors"] == 0
    again = cli("migrate", "--from", str(source), "--to", target, "--json")
    assert again.code == 0 and json.loads(again.out)["memories_written"] == 0
    assert [e["detail"]["memories"] for e in _migrations(cli, target)] == [3, 0]
    ok = cli("audit", "verify", extra_env={"MEMMESH_DB": target})
    assert ok.code == 0 and "ok: entries" in ok.out, ok.out + ok.err


def test_cli_restore_appends_admin_restore_on_the_target(cli: Any, tmp_path: Path, db_path: Path, target: str) -> None:
    """`memmesh restore` restores into a bare store (no service runs on it) and was not
    audited at all; a restore through the service was. Now both append ``admin.restore``."""
    with Memory(f"sqlite:///{db_path}", keyword_settings(tmp_path)) as mem:
        mem.add("The on-call rota changes on Mondays", namespace="ops")
    made = cli("backup", "--to", str(tmp_path / "snaps"), "--json")
    assert made.code == 0, made.err
    snapshot = Path(json.loads(made.out)["snapshot"])
    restored = cli("restore", str(snapshot), "--to", target, "--json")
    assert restored.code == 0, restored.err
    exported = cli("audit", "export", extra_env={"MEMMESH_DB": target})
    entries = [e for e in map(json.loads, exported.out.splitlines()) if e["action"] == "admin.restore"]
    assert [(e["actor"], e["target"], e["detail"]) for e in entries] == [("local", snapshot.name, {"written": 1, "rejected": 0})]
    ok = cli("audit", "verify", extra_env={"MEMMESH_DB": target})
    assert ok.code == 0, ok.out + ok.err


def test_python_migrate_to_appends_admin_migrate_out_on_the_source(tmp_path: Path) -> None:
    """``service.transfer.migrate_to`` (Python) copies every memory out of this store: an admin
    action on the source's chain, as a backup is (it was not audited). A dry run appends nothing;
    a reader-scoped principal is refused before anything is copied."""
    from memmesh.errors import ForbiddenError
    from memmesh.model import Principal
    from memmesh.store.open import open_store

    with Memory(f"sqlite:///{tmp_path / 'source.db'}", keyword_settings(tmp_path)) as mem:
        mem.add("The VPN gateway moved to 10.0.0.7", namespace="ops")
        mem.add("Backups run at 02:00 UTC", namespace="ops")
        target = open_store(f"sqlite:///{tmp_path / 'target.db'}")
        try:
            reader = Principal(agent_id="intruder", role="reader", namespaces=["ops"])
            with pytest.raises(ForbiddenError):
                mem.service.transfer.migrate_to(target, principal=reader)
            assert target.stats(mem.service.clock(), mem.service.clock()).total == 0
            dry = mem.service.transfer.migrate_to(target, dry_run=True, principal=mem.principal)
            report = mem.service.transfer.migrate_to(target, principal=mem.principal)
        finally:
            target.close()
        entries = [e for e in mem.service.audit.iter_entries(principal=mem.principal) if e.action == "admin.migrate"]
        assert dry.dry_run and report.memories_written == 2
        assert len(entries) == 1, entries  # the dry run and the refused call appended nothing
        assert entries[0].target == report.to_url and "target.db" in entries[0].target
        assert entries[0].detail["direction"] == "out" and entries[0].detail["memories"] == 2
        assert mem.service.audit.verify(principal=mem.principal).ok
