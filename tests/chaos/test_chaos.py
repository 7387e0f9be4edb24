"""``memmesh chaos`` (issue 18): the checker bites, bad options are refused, clock skew is real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from memmesh.chaos.digest import digests_of
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


def test_a_node_that_drops_an_acknowledged_write_fails_the_run(tmp_path: Path) -> None:
    work = tmp_path / "run"
    result = memmesh(
        tmp_path, "chaos", "--fault", "lose_acked_write", "--cycles", "1", "--writes", "12", "--converge-timeout", "3",
        "--workdir", str(work), "--json",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr[-2000:]
    report = json.loads(result.stdout)
    fault = report["faults"]["lose_acked_write"]
    assert fault["acked_lost"] == 1 and report["summary"]["acked_lost"] == 1
    assert fault["convergence_bound"] < 1.0
    assert fault["digests_equal"] is False
    assert report["summary"]["pass"] is False
    assert any("acknowledged write(s) missing" in r for r in report["summary"]["reasons"])
    (cycle,) = [json.loads(line) for line in (work / "chaos-cycles.jsonl").read_text().splitlines()]
    assert cycle["lost_ids"] == [cycle["dropped"]]  # the checker names exactly the write the node dropped
    held = cycle["held"]
    assert held["node-c"] == held["node-a"] - 1 == held["node-b"] - 1
    assert json.loads((work / "chaos-report.json").read_text())["summary"] == report["summary"]


def test_bad_options_are_refused_with_what_to_fix(tmp_path: Path) -> None:
    unknown = memmesh(tmp_path, "chaos", "--fault", "meteor", "--workdir", str(tmp_path / "w"))
    assert unknown.returncode == 1
    assert "unknown fault meteor" in unknown.stderr and "partition_minority" in unknown.stderr
    two = memmesh(tmp_path, "chaos", "--fault", "slow_peer", "--nodes", "2", "--workdir", str(tmp_path / "w"))
    assert two.returncode == 1 and "--nodes must be 3 or more" in two.stderr
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


def test_digests_depend_on_content_and_version_not_on_order() -> None:
    a = {"id": "1", "namespace": "n", "content": "x", "version": {"hlc": "0000000000001.00000", "node": "a"}}
    b = {"id": "2", "namespace": "n", "content": "y", "version": {"hlc": "0000000000002.00000", "node": "b"}}
    other = {"id": "3", "namespace": "m", "content": "z", "version": {"hlc": "0000000000003.00000", "node": "a"}}
    assert digests_of([a, b, other]) == digests_of([other, b, a])
    assert digests_of([a, b])["n"] != digests_of([a, {**b, "content": "y!"}])["n"]
    assert digests_of([a, b])["n"] != digests_of([a, {**b, "version": {"hlc": "0000000000002.00001", "node": "b"}}])["n"]
    assert set(digests_of([a, other])) == {"n", "m"}
