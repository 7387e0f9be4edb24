"""mem0: its exported memories JSON and its SQLite history db."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from tests.importers.conftest import Mem0History, mem0_item

from memmesh import Memory
from memmesh.errors import InvalidInputError
from memmesh.io.importers import detect_format, import_mem0, import_mem0_history
from memmesh.io.importers.mem0 import memory_id
from memmesh.model import LOCAL_PRINCIPAL


def test_export_lands_per_user_agent_and_run_with_its_metadata(mem: Memory, mem0_export: dict[str, Any]) -> None:
    report = import_mem0(mem.service, json.dumps(mem0_export), principal=LOCAL_PRINCIPAL)
    assert report.totals.added == 5 and report.totals.failed == 0
    assert {t.tenant: t.migrated for t in report.tenants} == {
        "mem0/alice": 2,
        "mem0/agents/support-bot": 1,
        "mem0/bob": 1,
        "mem0/runs/session-42": 1,
    }
    items = mem0_export["results"]
    nuts = mem.get(memory_id(items[1]["id"], "mem0"))
    assert nuts.namespace == "mem0/alice" and nuts.content == items[1]["memory"] and nuts.tier.value == "long"
    assert nuts.metadata["category"] == "food"
    origin = nuts.metadata["imported_from"]
    assert origin["id"] == items[1]["id"] and origin["hash"] == items[1]["hash"] and origin["user_id"] == "alice"
    assert origin["created_at"] == "2025-06-01T10:00:00.123456-07:00"
    procedure = mem.get(memory_id(items[2]["id"], "mem0"))
    assert procedure.kind.value == "procedure" and procedure.agent_id == "support-bot"
    assert [h.memory.id for h in mem.search("cricket weekends", namespace="mem0/alice")][:1] == [memory_id(items[0]["id"], "mem0")]
    assert report.spot_check is not None and report.spot_check.found == report.spot_check.sampled == 3


def test_export_reimport_writes_nothing_and_a_changed_memory_is_updated(mem: Memory, mem0_export: dict[str, Any]) -> None:
    import_mem0(mem.service, json.dumps(mem0_export), principal=LOCAL_PRINCIPAL)
    again = import_mem0(mem.service, json.dumps(mem0_export), principal=LOCAL_PRINCIPAL)
    assert again.written == 0 and again.skipped_reasons == {"already imported": 5}

    changed = json.loads(json.dumps(mem0_export))
    changed["results"][0]["memory"] = "Likes to play cricket and tennis on weekends"
    third = import_mem0(mem.service, json.dumps(changed), principal=LOCAL_PRINCIPAL)
    assert (third.totals.added, third.totals.updated, third.totals.skipped) == (0, 1, 4)
    target = memory_id(changed["results"][0]["id"], "mem0")
    assert mem.get(target).content == "Likes to play cricket and tennis on weekends"
    assert [h.event.value for h in mem.history(target)] == ["add", "update"]


def test_a_memory_edited_in_memmesh_is_not_overwritten_by_an_unchanged_source(mem: Memory, mem0_export: dict[str, Any]) -> None:
    import_mem0(mem.service, json.dumps(mem0_export), principal=LOCAL_PRINCIPAL)
    target = memory_id(mem0_export["results"][0]["id"], "mem0")
    mem.update(target, content="Plays cricket every Saturday (corrected by hand)")
    again = import_mem0(mem.service, json.dumps(mem0_export), principal=LOCAL_PRINCIPAL)
    assert again.written == 0
    assert mem.get(target).content == "Plays cricket every Saturday (corrected by hand)"


def test_export_dry_run_writes_nothing(mem: Memory, mem0_export: dict[str, Any]) -> None:
    dry = import_mem0(mem.service, json.dumps(mem0_export), dry_run=True, principal=LOCAL_PRINCIPAL)
    assert dry.totals.added == 5 and mem.stats().total == 0


def test_malformed_export_items_fail_alone(mem: Memory) -> None:
    export = [  # mem0 v1.0 / platform shape: a plain list, categories as tags
        mem0_item("Enjoys hiking in the Alps", categories=["hobbies", "travel"]),
        {"memory": "no id at all"},
        mem0_item("", user="alice"),
        mem0_item("user id with a space", user="Alice Smith"),
        mem0_item("metadata that is a list", metadata=["a"]),
        mem0_item("z" * 70_000),
        "not an object",
    ]
    report = import_mem0(mem.service, json.dumps(export), principal=LOCAL_PRINCIPAL)
    assert report.totals.added == 1 and report.totals.failed == 6
    reasons = [f.reason for f in report.failures]
    assert "not a mem0 memory (needs a string id)" in reasons
    assert any("content is empty" in r for r in reasons)
    assert any("namespace 'mem0/Alice Smith' is invalid" in r for r in reasons)
    assert any("metadata is not a JSON object" in r for r in reasons)
    assert any("limit is 65536" in r for r in reasons)
    assert set(mem.get(memory_id(export[0]["id"], "mem0")).tags) == {"hobbies", "travel"}


def test_an_export_that_is_not_json_or_not_mem0_is_refused(mem: Memory) -> None:
    with pytest.raises(InvalidInputError, match="not JSON"):
        import_mem0(mem.service, "{broken", principal=LOCAL_PRINCIPAL)
    with pytest.raises(InvalidInputError, match="not a mem0 export"):
        import_mem0(mem.service, '{"something": "else"}', principal=LOCAL_PRINCIPAL)
    assert mem.stats().total == 0


def test_history_db_imports_latest_states_and_skips_deleted(mem: Memory, mem0_history: Mem0History) -> None:
    kept = mem0_history.add("Lives in Berlin")
    mem0_history.update(kept, "Lives in Berlin", "Lives in Lisbon since May")
    gone = mem0_history.add("Has a cat named Miso")
    mem0_history.delete(gone, "Has a cat named Miso")
    plain = mem0_history.add("Works as a nurse")
    before = hashlib.sha256(mem0_history.path.read_bytes()).hexdigest()

    report = import_mem0_history(mem.service, mem0_history.path, principal=LOCAL_PRINCIPAL)
    assert (report.totals.added, report.totals.skipped) == (2, 1)
    assert report.skipped_reasons == {"deleted in the source": 1}
    assert mem.get(memory_id(kept, "mem0")).content == "Lives in Lisbon since May"
    assert mem.get(memory_id(plain, "mem0")).namespace == "mem0"
    assert mem.service.store.get(memory_id(gone, "mem0")) is None
    assert hashlib.sha256(mem0_history.path.read_bytes()).hexdigest() == before  # the source is only read

    again = import_mem0_history(mem.service, mem0_history.path, principal=LOCAL_PRINCIPAL)
    assert again.written == 0


def test_history_after_export_updates_and_deletes_in_the_user_namespaces(mem: Memory) -> None:
    item = mem0_item("Drinks oat milk")
    doomed = mem0_item("Owns a red bicycle")
    import_mem0(mem.service, json.dumps({"results": [item, doomed]}), principal=LOCAL_PRINCIPAL)
    history = Mem0History(Path(mem.service.store.path).parent / "history.db")  # type: ignore[attr-defined]
    history.add("Drinks oat milk", memory_id=item["id"])
    history.update(item["id"], "Drinks oat milk", "Drinks soy milk now")
    history.add("Owns a red bicycle", memory_id=doomed["id"])
    history.delete(doomed["id"], "Owns a red bicycle")

    dry = import_mem0_history(mem.service, history.path, dry_run=True, principal=LOCAL_PRINCIPAL)
    assert (dry.totals.updated, dry.totals.deleted) == (1, 1) and mem.stats().total == 2
    report = import_mem0_history(mem.service, history.path, principal=LOCAL_PRINCIPAL)
    assert (report.totals.updated, report.totals.deleted, report.totals.added) == (1, 1, 0)
    updated = mem.get(memory_id(item["id"], "mem0"))
    assert updated.namespace == "mem0/alice" and updated.content == "Drinks soy milk now"
    assert updated.metadata["imported_from"]["user_id"] == "alice"
    assert mem.service.store.get(memory_id(doomed["id"], "mem0")) is None
    assert import_mem0_history(mem.service, history.path, principal=LOCAL_PRINCIPAL).written == 0
    # the same (older) export again: unchanged since it was imported, so the newer history state stays
    # and the deleted memory is not brought back
    stale = import_mem0(mem.service, json.dumps({"results": [item, doomed]}), principal=LOCAL_PRINCIPAL)
    assert stale.written == 0 and mem.get(memory_id(item["id"], "mem0")).content == "Drinks soy milk now"
    assert mem.service.store.get(memory_id(doomed["id"], "mem0")) is None


def test_history_first_then_export_moves_memories_to_their_user(mem: Memory, mem0_history: Mem0History) -> None:
    item = mem0_item("Runs marathons", user="carol")
    mem0_history.add("Runs marathons", memory_id=item["id"])
    import_mem0_history(mem.service, mem0_history.path, principal=LOCAL_PRINCIPAL)
    assert mem.get(memory_id(item["id"], "mem0")).namespace == "mem0"
    report = import_mem0(mem.service, json.dumps({"results": [item]}), principal=LOCAL_PRINCIPAL)
    assert report.totals.updated == 1 and mem.get(memory_id(item["id"], "mem0")).namespace == "mem0/carol"


def test_not_a_history_db_is_a_clear_error(mem: Memory, tmp_path: Path, legacy_db: Path) -> None:
    with pytest.raises(InvalidInputError, match="not a mem0 history db: it has no history table"):
        import_mem0_history(mem.service, legacy_db, principal=LOCAL_PRINCIPAL)
    with pytest.raises(InvalidInputError, match="no such file"):
        import_mem0_history(mem.service, tmp_path / "missing.db", principal=LOCAL_PRINCIPAL)
    with pytest.raises(InvalidInputError, match="without mem0's history table"):
        detect_format(str(legacy_db), table=None, read_text=lambda: "")


def test_history_db_is_detected_by_content(mem0_history: Mem0History) -> None:
    mem0_history.add("x")
    assert detect_format(str(mem0_history.path), table=None, read_text=lambda: "") == "mem0-history"
    assert detect_format(f"sqlite:///{mem0_history.path}", table=None, read_text=lambda: "") == "mem0-history"


def test_an_export_with_a_bad_record_is_still_recognised_as_mem0s(cli, tmp_path: Path) -> None:
    """Auto-detection needed every record well formed: one without an id sent the whole file
    to the JSON Lines reader ("line 1: expected an object with a type"), no hint of mem0."""
    export = tmp_path / "mem0.json"
    export.write_text('[{"id": "1", "memory": "likes tea"}, {"memory": "no id"}]')
    result = cli("import", str(export))
    assert result.code == 1, result.err  # a record failed: the report says which
    assert "import mem0 from" in result.out and "failed #2 (tenant mem0): not a mem0 memory (needs a string id)" in result.err
    listed = cli("list", "--namespace", "mem0", "--json")
    assert [m["content"] for m in json.loads(listed.out)["items"]] == ["likes tea"]
