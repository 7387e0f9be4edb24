"""``memmesh chaos`` (issue 18): the checker bites, bad options are refused, clock skew is real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_node_doubles_that_drop_a_write_or_serve_a_stale_read_fail_the_run(tmp_path: Path) -> None:
    """One run, two broken nodes: a stale-read double (history checker, W = N) and a node that
    loses an acknowledged write (durability checker). Each must be caught and named."""
    work = tmp_path / "run"
    result = memmesh(
        tmp_path, "chaos", "--fault", "stale_read,lose_acked_write", "--quorum-writes", "3", "--cycles", "1", "--writes", "16",
        "--converge-timeout", "3", "--workdir", str(work), "--json",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr[-2000:]
    report = json.loads(result.stdout)
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
    held = dropped["held"]
    assert held["node-c"] == held["node-a"] - 1 == held["node-b"] - 1
    assert json.loads((work / "chaos-report.json").read_text())["summary"] == report["summary"]


def test_bad_options_are_refused_with_what_to_fix(tmp_path: Path) -> None:
    """Through the command (exit 1, the fix named, nothing started); the other rules of
    ChaosConfig.check are in test_combined_fault_classes_are_named_checked_and_built."""
    unknown = memmesh(tmp_path, "chaos", "--fault", "meteor", "--workdir", str(tmp_path / "w"))
    assert unknown.returncode == 1
    assert "unknown fault meteor" in unknown.stderr and "partition_minority" in unknown.stderr
    assert not (tmp_path / "w" / "chaos-cycles.jsonl").exists()  # nothing started


def test_the_clock_offset_setting_moves_the_nodes_clock(tmp_path: Path) -> None:
    """clock_skew relies on it: a node with federation.clock_offset_ms stamps its writes off by that much."""
    db = str(tmp_path / "skewed.db")
    skew = {"MEMMESH_FEDERATION_CLOCK_OFFSET_MS": "-300000"}
    result = memmesh(tmp_path, "--db", db, "store", "written by a slow clock", "--json", env=skew)
    assert result.returncode == 0, result.stderr
    from datetime import UTC, datetime

    from memmesh.clock import parse_ts

    created = parse_ts(json.loads(result.stdout)["created_at"])
    behind = (datetime.now(UTC) - created).total_seconds()
    assert 290 < behind < 330


def test_a_clock_offset_file_moves_a_running_nodes_clock_and_a_warm_spare_restarts_it(tmp_path: Path) -> None:
    """clock_skew without restarts: a node started with federation.clock_offset_file stamps
    its writes by the offset written there, re-read while it runs (5 min behind, then back),
    and its hybrid clock never goes back. kill cycles restart from a warm spare: the same
    store, the same node, ready again after a SIGKILL."""
    from datetime import UTC, datetime

    from memmesh.chaos.faults import CLOCK_FILE_ENV, set_clock_offset
    from memmesh.chaos.nodes import Node
    from memmesh.clock import parse_ts

    clock_file = tmp_path / "node-a.clock"
    node = Node(tmp_path, "node-a")
    node.env[CLOCK_FILE_ENV] = str(clock_file)
    node.start()
    try:

        def store(text: str) -> tuple[float, str]:
            response = node.call("POST", "/api/v1/memories", json={"content": text})
            assert response.status_code == 201, response.text
            body = response.json()
            return (datetime.now(UTC) - parse_ts(body["created_at"])).total_seconds(), body["version"]["hlc"]

        behind, first = store("written by a true clock")
        assert abs(behind) < 30
        set_clock_offset(clock_file, -300_000)
        behind, second = store("written by a clock 5 minutes slow")
        assert 290 < behind < 330
        assert second > first  # the hybrid clock keeps increasing across the jump back
        node.prepare_spare()
        node.kill()
        node.start()  # from the spare: a fresh process on the same store
        assert node.warm_starts == 1 and node.alive
        set_clock_offset(clock_file, 0)
        behind, third = store("written by a true clock again")
        assert abs(behind) < 30 and third > second
        assert len(node.ids()) == 3  # nothing the killed process acknowledged was lost
    finally:
        node.stop()
        node.drop_spare()


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
