"""``memmesh ship-gate`` (issue 18): all four phases on this machine, reports in the seed's shapes.

Runs the gate at a smaller size than ``--quick`` (the CI budget), through the same code path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memmesh.chaos.faults import FAULTS
from memmesh.chaos.shipgate import GATE_COMBINED, GateSize, run_ship_gate

pytestmark = pytest.mark.postgres


@pytest.mark.slow  # long: started first (tests/conftest.py)
def test_ship_gate_runs_four_phases_and_every_report_says_what_it_checked(tmp_path: Path, pg_database: str) -> None:
    out = tmp_path / "gate"
    size = GateSize(agents=4, writes_per_agent=10, migrate_memories=200, chaos_cycles=1, chaos_writes=15, settle_s=60, tool_nodes=1)
    summary = run_ship_gate(out, quick=True, pg_url=pg_database, size=size)
    assert summary["pass"] is True, summary
    assert json.loads((out / "summary.json").read_text()) == summary
    assert set(summary["phases"]) == {"phase1", "phase2", "phase3", "phase4"}
    assert all(phase["elapsed_s"] > 0 for phase in summary["phases"].values())

    for name in ("node-a", "node-b", "node-c"):
        p1 = json.loads((out / f"phase1-{name}.json").read_text())
        assert p1["phase"] == 1 and p1["host"] == name and p1["pass"] is True and p1["reasons"] == []
        assert p1["stats"]["total"] >= 1 and p1["list_count"] >= 1 and p1["recall_count"] >= 1
    p1 = json.loads((out / "phase1-node-a.json").read_text())  # backup and MCP on the first node at this size
    assert p1["snapshot_count"] == 1 and p1["manifest_count"] == 1
    assert p1["manifest"]["node_id"] == "node-a" and p1["manifest"]["memories"] >= 1
    assert p1["mcp_tool_count"] >= 30  # --profile full
    assert p1["curator"]["dry_run"] is True and p1["curator"]["errors"] == ["no LLM client configured"]  # the seed's accepted error
    assert p1["curator"]["memories_scanned"] >= 1 and p1["curator"]["autonomy"]["errors"] == []
    assert "not checked" in json.loads((out / "phase1-node-b.json").read_text())["backup_and_mcp"]

    p2 = json.loads((out / "phase2.json").read_text())
    assert p2["total_writes"] == 40 and p2["ok"] == 40 and p2["fail"] == 0
    assert p2["counts"] == {"node-a": 40, "node-b": 40, "node-c": 40}
    assert (p2["probe1_single_peer_down"], p2["probe2_both_peers_down"]) == ("201", "503")

    p3 = json.loads((out / "phase3.json").read_text())
    assert p3["src_count"] == p3["dst_count"] == 200
    assert p3["report_forward"]["memories_written"] == 200 and p3["report_forward"]["errors"] == []
    assert p3["report_idempotent"]["memories_read"] == 200 and p3["report_idempotent"]["memories_written"] == 0
    assert p3["report_reverse"]["memories_written"] == 200 and p3["report_reverse"]["to_url"].endswith("phase3-roundtrip.db")

    p4 = json.loads((out / "phase4.json").read_text())
    assert set(p4["faults"]) == {*FAULTS, GATE_COMBINED}
    for name, fault in p4["faults"].items():
        assert fault["cycles"] == 1 and fault["writes_attempted"] == 15, name
        assert fault["writes_acked"] > 0 and fault["acked_lost"] == 0 and fault["resurrected"] == 0, (name, fault)
        assert fault["convergence_bound"] == 1.0 and fault["digests_equal"] is True, (name, fault)
        assert fault["time_to_converge_p50"] is not None, name
    assert p4["faults"]["partition_minority"]["quorum_not_met"] > 0  # writes sent to the cut-off node are refused
    assert p4["faults"]["clock_skew"]["quorum_not_met"] > 0  # peers refuse a node 2 s ahead
    assert p4["faults"]["disk_full"]["disk_full_method"] in ("tmpfs", "rlimit_fsize")
    for name, fault in p4["faults"].items():  # reads were checked too; at W = 2 stale ones are counted, not failed
        assert fault["history"]["strict"] is False and fault["history"]["reads_answered"] > 0, name
        assert fault["history"]["phantom_reads"] == 0 and fault["history"]["violations"] == 0, (name, fault["history"])
    cycles = [json.loads(line) for line in Path(p4["jsonl"]).read_text().splitlines()]
    assert [c["fault"] for c in cycles] == [*FAULTS, GATE_COMBINED]
    assert {c["victim"] for c in cycles} == {"node-a"}
    killed = cycles[0]  # restarted after SIGKILL from the warm spare made when the mesh started (no imports on the clock)
    assert killed["fault"] == "kill_primary_mid_write" and killed["warm_start"] is True and killed["restart_s"] > 0
    skewed = cycles[FAULTS.index("clock_skew")]  # the clock moved while the node ran: no restart
    assert skewed["at_run_time"] is True and skewed["offset_ms"] == 2000 and skewed["heal_s"] < 1
    both = cycles[-1]  # two faults in one cycle, each on its own node
    assert [(p["fault"], p["victim"]) for p in both["parts"]] == [("partition_minority", "node-a"), ("slow_peer", "node-b")]
    assert both["parts"][1]["delay_s"] > 0 and both["quorum_not_met"] > 0 and both["acked_lost"] == 0 and both["digests_equal"]
    assert p4["summary"]["acked_lost"] == 0 and p4["summary"]["cycles"] == 6
