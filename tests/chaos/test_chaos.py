"""``memmesh chaos`` (issue 18): the checker bites, bad options are refused, clock skew is real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from memmesh.chaos.nodes import node_env


def memmesh(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", *args],
        env={**node_env(tmp_path), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_node_doubles_that_drop_a_write_or_serve_a_stale_read_fail_the_run(tmp_path: Path, cli_in_process: Any) -> None:
    """One run, two broken nodes: a stale-read double (history checker, W = N) and a node that
    loses an acknowledged write (durability checker). Each must be caught and named. The
    command runs in-process (its nodes are real processes); the chaos family's real-subprocess
    test is test_bad_options_are_refused_with_what_to_fix."""
    work = tmp_path / "run"
    result = cli_in_process(
        "chaos", "--fault", "stale_read,lose_acked_write", "--quorum-writes", "3", "--cycles", "1", "--writes", "16",
        "--converge-timeout", "3", "--workdir", str(work), "--json",
    )  # fmt: skip
    assert result.code == 3, result.err[-2000:]
    report = json.loads(result.out)
    assert report["quorum_writes"] == 3 and report["history_strict"] is True
    stale = report["faults"]["stale_read"]
    assert stale["acked_lost"] == 0 and stale["digests_equal"] is True  # the nodes themselves are fine...
    assert stale["history"]["strict"] is True and stale["history"]["stale_reads"] > 0  # ...but a read went back in time
    assert stale["history"]["violations"] == stale["history"]["stale_reads"] == report["summary"]["history_violations"]
    lost = report["faults"]["lose_acked_write"]
    assert lost["acked_lost"] == 1 and lost["convergence_bound"] < 1.0 and lost["digests_equal"] is False
    assert lost["history"]["violations"] == 0
    assert report["summary"]["acked_lost"] == 1 and report["summary"]["pass"] is False
    reasons = report["summary"]["reasons"]
    assert any("stale_read:" in r and "older than an acknowledged write" in r for r in reasons), reasons
    assert any("lose_acked_write: 1 acknowledged write(s) missing" in r for r in reasons), reasons
    cycles = [json.loads(line) for line in (work / "chaos-cycles.jsonl").read_text().splitlines()]
    assert [c["fault"] for c in cycles] == ["stale_read", "lose_acked_write"]
    example = cycles[0]["history"]["stale_examples"][0]
    assert example["node"] == cycles[0]["victim"] and example["value"] < example["acked_before"]  # the double's node, an older value
    dropped = cycles[1]
    assert dropped["lost_ids"] == [dropped["dropped"]]  # the checker names exactly the write the node dropped
    assert dropped["warm_start"] is True  # restarted from the spare that imported while the run went on
    held = dropped["held"]
    assert held["node-c"] == held["node-a"] - 1 == held["node-b"] - 1
    assert json.loads((work / "chaos-report.json").read_text())["summary"] == report["summary"]


def test_bad_options_are_refused_with_what_to_fix(tmp_path: Path) -> None:
    """Through the command (exit 2, a usage error: the fix named, nothing started); the other rules of
    ChaosConfig.check are in test_combined_fault_classes_are_named_checked_and_built."""
    unknown = memmesh(tmp_path, "chaos", "--fault", "meteor", "--workdir", str(tmp_path / "w"))
    assert unknown.returncode == 2
    assert "unknown fault meteor" in unknown.stderr and "partition_minority" in unknown.stderr
    assert not (tmp_path / "w" / "chaos-cycles.jsonl").exists()  # nothing started


def test_the_clock_settings_move_the_nodes_clock_a_file_even_while_it_runs(tmp_path: Path) -> None:
    """clock_skew relies on them: federation.clock_offset_ms stamps a node's writes off by that
    much; federation.clock_offset_file by what the file says, re-read while the node runs
    (5 min behind, then 2 s ahead, then back: no restart), and the hybrid clock never goes back
    across a jump."""
    from datetime import UTC, datetime

    from memmesh.chaos.faults import set_clock_offset
    from memmesh.config import Settings
    from memmesh.memory import Memory

    def behind_and_hlc(memory: Memory, text: str) -> tuple[float, str]:
        record = memory.add(text)
        return (datetime.now(UTC) - record.created_at).total_seconds(), record.version.hlc

    base: dict[str, Any] = {"embeddings": {"provider": "none"}, "data_dir": tmp_path / "data"}
    fixed = Memory(str(tmp_path / "fixed.db"), Settings(**base, federation={"clock_offset_ms": -300_000}))
    try:
        assert 290 < behind_and_hlc(fixed, "written by a slow clock")[0] < 330
    finally:
        fixed.close()

    clock_file = tmp_path / "node.clock"  # missing: the true clock
    moving = Memory(str(tmp_path / "moving.db"), Settings(**base, federation={"clock_offset_file": clock_file}))
    try:
        behind, first = behind_and_hlc(moving, "written by a true clock")
        assert abs(behind) < 30
        set_clock_offset(clock_file, -300_000)
        behind, second = behind_and_hlc(moving, "written by a clock 5 minutes slow")
        assert 290 < behind < 330 and second > first  # the hybrid clock keeps increasing across the jump back
        set_clock_offset(clock_file, 2_000)
        behind, third = behind_and_hlc(moving, "written by a clock 2 s fast")
        assert -30 < behind < -1.5 and third > second
        set_clock_offset(clock_file, 0)
        assert abs(behind_and_hlc(moving, "written by a true clock again")[0]) < 30
    finally:
        moving.close()


def test_combined_fault_classes_are_named_checked_and_built(tmp_path: Path) -> None:
    from memmesh.chaos.faults import Combined
    from memmesh.chaos.runner import ChaosConfig, make_fault
    from memmesh.errors import InvalidInputError

    combined = ChaosConfig(faults=["slow_peer", "disk_full"], workdir=tmp_path, combine=True)
    combined.check()
    assert combined.classes == ["slow_peer+disk_full"]
    inline = ChaosConfig(faults=["slow_peer+disk_full", "clock_skew"], workdir=tmp_path)
    inline.check()
    assert inline.classes == ["slow_peer+disk_full", "clock_skew"]
    fault = make_fault("slow_peer+disk_full", "rlimit")
    assert isinstance(fault, Combined) and [p.name for p in fault.parts] == ["slow_peer", "disk_full"]
    assert fault.name == "slow_peer+disk_full" and fault.inject_before_writes is False  # disk_full's part is injected early on its own
    for bad, message in (
        (ChaosConfig(faults=["slow_peer"], workdir=tmp_path, combine=True), "--combine needs 2 to 2 different faults"),
        (ChaosConfig(faults=["slow_peer+slow_peer"], workdir=tmp_path), "got slow_peer+slow_peer"),
        (ChaosConfig(faults=["slow_peer+meteor"], workdir=tmp_path), "unknown fault meteor"),
        (ChaosConfig(faults=["slow_peer"], workdir=tmp_path, quorum_writes=4), "--quorum-writes must be between 1 and --nodes (3), got 4"),
        (ChaosConfig(faults=["slow_peer"], workdir=tmp_path, nodes=2), "--nodes must be 3 or more"),
        (
            ChaosConfig(faults=["slow_peer", "disk_full", "clock_skew"], workdir=tmp_path, combine=True),
            "got slow_peer+disk_full+clock_skew",
        ),
    ):
        try:
            bad.check()
        except InvalidInputError as exc:
            assert message in exc.message, exc.message
        else:
            raise AssertionError(f"{bad} was accepted")
