"""CLI papercuts from new-user trials: what a narrow terminal shows, counts in words, what
restore says of agents, a full disk under ``export -o``, usage errors and a lost port race."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import CliResult

UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def _flat(result: CliResult) -> str:
    return " ".join(result.out.split())


def test_recall_and_list_on_80_columns_show_the_content_and_an_id_get_accepts(cli) -> None:
    text = "The deployment pipeline runs nightly at 02:00 UTC and posts its summary to the ops channel"
    stored = cli("store", text, "-n", "team/ops", "-t", "deploy,ci", "--json")
    assert stored.code == 0, stored.err
    for args in (("recall", "deployment pipeline"), ("search", "pipeline"), ("list",), ("recall", "pipeline", "--explain")):
        shown = cli(*args, extra_env={"COLUMNS": "80"})
        assert shown.code == 0, shown.err
        assert max(len(line) for line in shown.out.splitlines()) <= 80, shown.out
        assert text in _flat(shown), shown.out  # the whole sentence, not "The deployment pip…"
        assert UUID.findall(shown.out) == [json.loads(stored.out)["id"]], shown.out  # whole, on one line
    got = cli("get", UUID.findall(shown.out)[0])  # copied from the output
    assert got.code == 0 and text in got.out
    wide = cli("recall", "deployment pipeline", extra_env={"COLUMNS": "200"})
    assert "┃ content" in wide.out and text[:60] in wide.out  # a wide terminal keeps the table


SPELT_PLURAL = re.compile(r"\b1 (memories|links|tombstones|keys|API keys|registered agents|batches|history entries|vectors)\b")


def test_a_count_of_one_is_spelt_in_the_singular(cli_in_process, tmp_path: Path, db_path: Path) -> None:
    assert cli_in_process("store", "the only fact", "--json").code == 0
    assert cli_in_process("keys", "create", "--agent", "ops", "--role", "admin").code == 0
    backup = cli_in_process("backup", "--to", str(tmp_path / "backups"))
    assert backup.code == 0 and ": 1 memory, 0 links, " in backup.out, backup
    snapshot = next((tmp_path / "backups").glob("*.db"))
    restored = cli_in_process("restore", str(snapshot), "--to", str(tmp_path / "restored.db"))
    assert restored.code == 0 and "restored 1 memory, 0 links, 0 tombstones" in restored.out, restored
    assert "the snapshot held 1 API key; it is not restored; create new ones" in restored.err, restored.err
    migrated = cli_in_process("migrate", "--from", str(db_path), "--to", str(tmp_path / "copy.db"))
    assert migrated.code == 0 and "read 1 memory in 1 batch; wrote 1 memory, 0 links, 1 history entry" in migrated.out, migrated
    assert "the source held 1 API key; it is not copied;" in migrated.err, migrated.err
    dump = tmp_path / "dump.jsonl"
    assert cli_in_process("export", "-o", str(dump)).code == 0
    imported = cli_in_process("--db", str(tmp_path / "imported.db"), "import", str(dump))
    assert imported.code == 0 and "1 memory and 0 links written" in imported.out, imported
    stats = cli_in_process("stats")
    assert stats.out.startswith("1 memory, 0 links, "), stats.out
    said = [backup, restored, migrated, imported, stats, cli_in_process("gc")]
    assert not [m.group() for r in said for m in SPELT_PLURAL.finditer(r.out + r.err)], said


def test_restore_names_the_registered_agents_the_target_lacks(cli_in_process, tmp_path: Path) -> None:
    assert cli_in_process("store", "a fact").code == 0
    for agent in ("ops", "ci"):
        assert cli_in_process("agents", "register", agent).code == 0
    assert cli_in_process("backup", "--to", str(tmp_path / "backups")).code == 0
    snapshot = next((tmp_path / "backups").glob("*.db"))

    same = cli_in_process("restore", str(snapshot))  # into the store it was taken from: it has them
    assert same.code == 0, same.err
    assert "the snapshot held 2 registered agents; agents are not restored, and this store has them all already" in same.err
    assert "register" not in same.err.replace("registered agents", ""), same.err

    other = tmp_path / "other.db"
    assert cli_in_process("--db", str(other), "agents", "register", "ops").code == 0
    into_other = cli_in_process("restore", str(snapshot), "--to", str(other), "--json")
    assert into_other.code == 0, into_other.err
    assert json.loads(into_other.out)["agents_missing"] == ["ci"]
    assert "this store lacks 1 of them (ci): register it with `memmesh agents register`" in into_other.err, into_other.err
    listed = json.loads(cli_in_process("--db", str(other), "agents", "list", "--json").out)
    assert [agent["agent_id"] for agent in listed] == ["ops"]  # restore still copies no agent
