"""``memmesh ship-gate``: the four-phase release gate of seed 000, run on one machine.

Phase 1 checks each node alone (store, list, stats, recall, backup snapshot + manifest, MCP
handshake with ``--profile full``); phase 2 writes 4 agents x 50 memories through a 3-node
mesh at W = 2, waits for every node to hold all of them, and probes the quorum (one peer
down: 201; both down: 503); phase 3 migrates 1,000 memories SQLite -> PostgreSQL (twice: the
re-run writes nothing) -> SQLite; phase 4 is ``memmesh chaos`` over every fault class. Each
phase writes one JSON report in the seed's shape plus ``pass`` and ``reasons``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from memmesh import __version__
from memmesh.chaos.faults import FAULTS, Cluster
from memmesh.chaos.nodes import Node, node_env, wait_for
from memmesh.chaos.runner import ChaosConfig, acknowledged, run_chaos, start_cluster, stop_cluster

GATE_COMBINED = "partition_minority+slow_peer"
"""Phase 4's extra class: two faults in the same cycle (one node cut off while another's links crawl)."""


@dataclass
class GateSize:
    """How big each phase is: the seed's sizes, or ``--quick`` ones that fit a few minutes."""

    agents: int = 4
    writes_per_agent: int = 50
    migrate_memories: int = 1000
    chaos_cycles: int = 50
    chaos_writes: int = 100
    settle_s: float = 90.0
    tool_nodes: int = 3
    """Nodes whose backup and MCP handshake phase 1 checks (each starts two processes)."""

    @classmethod
    def quick(cls) -> GateSize:
        return cls(agents=4, writes_per_agent=50, migrate_memories=1000, chaos_cycles=2, chaos_writes=30, settle_s=60.0)


def cli(workdir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``memmesh <args>`` in a subprocess with the harness's clean environment."""
    return subprocess.run(
        [sys.executable, "-m", "memmesh.interfaces.cli.app", *args],
        env=node_env(workdir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def _mcp_tool_count(workdir: Path, db: str) -> int:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "memmesh.interfaces.cli.app", "mcp", "--db", db, "--profile", "full"],
        env=node_env(workdir),
        cwd=str(workdir),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return len((await session.list_tools()).tools)


def phase1_node(node: Node, workdir: Path, tools: bool = True) -> dict[str, Any]:
    """One node on its own: store, list, stats, recall over HTTP; backup and MCP on its store
    (unless ``tools`` is off: a smaller gate checks those on its first node only)."""
    if not tools:
        return {
            **_phase1_http(node),
            "curator": None,
            "backup_and_mcp": "backup, MCP and curator not checked on this node at this gate size (GateSize.tool_nodes)",
        }
    report = _phase1_http(node)
    reasons: list[str] = report["reasons"]
    backup_dir = workdir / "phase1-backups" / node.name
    backup_dir.parent.mkdir(parents=True, exist_ok=True)  # `backup --to` makes only the last folder
    with ThreadPoolExecutor(3) as pool:  # three independent processes on the same store: side by side
        backup_done = pool.submit(cli, workdir, "--db", str(node.db), "backup", "--to", str(backup_dir), "--json")
        curator_done = pool.submit(_curator_dry_run, workdir, node, reasons)
        mcp_done = pool.submit(lambda: asyncio.run(_mcp_tool_count(workdir, str(node.db))))
        backup, curator = backup_done.result(), curator_done.result()
        try:
            tools_seen = mcp_done.result()
        except Exception as exc:  # any failure of the handshake is the finding
            tools_seen = 0
            reasons.append(f"MCP handshake failed: {exc!r}")
    snapshots = [p for p in backup_dir.glob("*") if p.is_file() and not p.name.endswith(".manifest.json")] if backup_dir.exists() else []
    manifests = list(backup_dir.glob("*.manifest.json")) if backup_dir.exists() else []
    if backup.returncode != 0 or not snapshots or not manifests:
        reasons.append(
            f"backup: exit {backup.returncode}, {len(snapshots)} snapshot(s), {len(manifests)} manifest(s): {backup.stderr[-300:]}"
        )
    if tools_seen < 30:
        reasons.append(f"MCP --profile full advertises {tools_seen} tools (want >= 30)")
    return {
        **report,
        "pass": not reasons,
        "curator": curator,
        "mcp_tool_count": tools_seen,
        "snapshot_count": len(snapshots),
        "manifest_count": len(manifests),
        "manifest": json.loads(manifests[0].read_text()) if manifests else None,
    }


def _phase1_http(node: Node) -> dict[str, Any]:
    """Phase 1's HTTP part on one node: store, list, stats, recall."""
    reasons: list[str] = []
    ns = "ship-gate-phase1"
    stored = node.call(
        "POST", "/api/v1/memories", json={"content": f"ship-gate phase 1 on {node.name}: deploys on Tuesdays", "namespace": ns}
    )
    if not acknowledged(stored):
        reasons.append(f"store answered {stored.status_code}: {stored.text[:200]}")
    listed = node.call("GET", "/api/v1/memories", params={"namespace": ns}).json().get("items", [])
    stats = node.call("GET", "/api/v1/stats").json()
    recalled = node.call("POST", "/api/v1/recall", json={"query": "when are deploys", "filters": {"namespace": ns}})
    hits = recalled.json().get("hits", []) if recalled.status_code == 200 else []
    if recalled.status_code != 200:
        reasons.append(f"recall answered {recalled.status_code}: {recalled.text[:200]}")
    if len(listed) < 1:
        reasons.append("list returned nothing after a store")
    if stats.get("total", 0) < 1:
        reasons.append(f"stats total is {stats.get('total')}")
    if len(hits) < 1:
        reasons.append("recall returned no hit")
    return {
        "phase": 1,
        "host": node.name,
        "version": f"memmesh {__version__}",
        "pass": not reasons,
        "reasons": reasons,
        "stats": stats,
        "list_count": len(listed),
        "recall_count": len(hits),
    }


def _curator_dry_run(workdir: Path, node: Node, reasons: list[str]) -> dict[str, Any] | None:
    """``memmesh curator run --dry-run --json`` on the node's live store: clean when it exits
    0 with a dry-run report whose only error is the accepted "no LLM client configured"."""
    done = cli(workdir, "--db", str(node.db), "curator", "run", "--dry-run", "--json")
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        reasons.append(f"curator dry run: exit {done.returncode}, no JSON report: {done.stderr[-300:]}")
        return None
    unexpected = [e for e in report.get("errors", []) if e != "no LLM client configured"] + report.get("autonomy", {}).get("errors", [])
    if done.returncode != 0 or report.get("dry_run") is not True or unexpected:
        reasons.append(f"curator dry run: exit {done.returncode}, dry_run {report.get('dry_run')}, errors {unexpected}")
    return report


def _count(node: Node, namespace: str) -> int:
    return sum(1 for m in node.memories() if m["namespace"].startswith(namespace))


def phase2(cluster: Cluster, size: GateSize) -> dict[str, Any]:
    """4 agents x 50 writes at W = 2, settle, per-node counts, then the two quorum probes: a
    peer is "down" when every link to and from it is cut (as ``partition_minority`` does), so
    the mesh is whole again afterwards, without restarts, for phase 4."""
    nodes = cluster.nodes
    ns = "ship-gate-phase2"
    tally = {"ok": 0, "quorum_not_met": 0, "fail": 0}
    lock = threading.Lock()

    def agent(number: int) -> None:
        node = nodes[number % len(nodes)]
        with httpx.Client(timeout=15) as http:
            for i in range(size.writes_per_agent):
                body = {"content": f"agent {number} write {i}", "namespace": f"{ns}/agent-{number}", "agent_id": f"agent-{number}"}
                try:
                    response: httpx.Response | None = http.post(node.url + "/api/v1/memories", json=body)
                except httpx.HTTPError:
                    response = None
                ok = response is not None and acknowledged(response)
                code = response.status_code if response is not None else 0
                with lock:
                    tally["ok" if ok else "quorum_not_met" if code == 503 else "fail"] += 1

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(size.agents)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = size.agents * size.writes_per_agent
    started = time.monotonic()
    with contextlib.suppress(AssertionError):  # the counts below say how far it got
        wait_for(lambda: all(_count(n, ns) >= tally["ok"] for n in nodes), size.settle_s, "phase 2 convergence")
    settle = time.monotonic() - started
    counts = {n.name: _count(n, ns) for n in nodes}
    a, b, c = nodes[:3]
    cut = [*cluster.links_of(c)]
    try:
        for proxy in cut:
            proxy.cut()
        probe1 = a.call("POST", "/api/v1/memories", json={"content": "probe 1: one peer down", "namespace": "ship-gate-probe"}).status_code
        cut += cluster.links_of(b)
        for proxy in cut:
            proxy.cut()
        probe2 = a.call(
            "POST", "/api/v1/memories", json={"content": "probe 2: both peers down", "namespace": "ship-gate-probe"}
        ).status_code
    finally:
        for proxy in cut:
            proxy.heal()
    reasons = []
    if tally["ok"] != total:
        reasons.append(f"{tally['ok']} of {total} burst writes were acknowledged (201, or 200 existed)")
    for name, count in counts.items():
        if count < tally["ok"]:
            reasons.append(f"{name} holds {count} of the {tally['ok']} acknowledged writes after {settle:.0f}s")
    if probe1 != 201:
        reasons.append(f"probe 1 (one peer down) answered {probe1}, want 201")
    if probe2 != 503:
        reasons.append(f"probe 2 (both peers down) answered {probe2}, want 503")
    return {
        "phase": 2,
        "pass": not reasons,
        "total_writes": total,
        **tally,
        "counts": counts,
        "settle_s": round(settle, 2),
        "probe1_single_peer_down": str(probe1),
        "probe2_both_peers_down": str(probe2),
        "reasons": reasons,
    }


def _seed_sqlite(path: Path, count: int) -> None:
    from memmesh.config import Settings
    from memmesh.memory import Memory

    settings = Settings(embeddings={"provider": "none"}, data_dir=path.parent / "data")
    memory = Memory(str(path), settings)
    try:
        for start in range(0, count, 250):
            memory.add_many(
                [
                    {"content": f"phase 3 memory {i}", "namespace": f"ship-gate-phase3/{i % 7}"}
                    for i in range(start, min(count, start + 250))
                ]
            )
    finally:
        memory.close()


def _migrate(workdir: Path, src: str, dst: str) -> dict[str, Any]:
    result = cli(workdir, "migrate", "--from", src, "--to", dst, "--json", timeout=600)
    try:
        data: dict[str, Any] = json.loads(result.stdout)
        return data
    except ValueError:
        return {"errors": [f"migrate exited {result.returncode}: {result.stderr.strip()[-500:]}"]}


def _memory_count(workdir: Path, path: Path) -> int:
    """Live memories in a SQLite store, read through the Python API (-1 when it cannot be read)."""
    from memmesh.config import Settings
    from memmesh.errors import MemmeshError
    from memmesh.memory import Memory

    try:
        memory = Memory(str(path), Settings(embeddings={"provider": "none"}, data_dir=workdir / "data"), create=False)
    except MemmeshError:
        return -1
    try:
        return memory.stats().total
    finally:
        memory.close()


def phase3(workdir: Path, pg_url: str | None, size: GateSize) -> dict[str, Any]:
    """SQLite -> PostgreSQL, the idempotent re-run, PostgreSQL -> SQLite; counts and errors."""
    if not pg_url:
        return {"phase": 3, "pass": False, "reasons": ["no PostgreSQL to migrate through: pass --pg-url postgresql://…"]}
    source = workdir / "phase3-source.db"
    back = workdir / "phase3-roundtrip.db"
    for path in (source, back):
        path.unlink(missing_ok=True)
    _seed_sqlite(source, size.migrate_memories)
    forward = _migrate(workdir, str(source), pg_url)
    again = _migrate(workdir, str(source), pg_url)
    reverse = _migrate(workdir, pg_url, str(back))
    src_count, dst_count = _memory_count(workdir, source), _memory_count(workdir, back)
    reasons = []
    if src_count != size.migrate_memories:
        reasons.append(f"source holds {src_count} memories, want {size.migrate_memories}")
    if dst_count != src_count:
        reasons.append(f"after the round trip {dst_count} memories, want {src_count}")
    for name, report in (("forward", forward), ("idempotent re-run", again), ("reverse", reverse)):
        if report.get("errors"):
            reasons.append(f"{name}: errors {report['errors'][:3]}")
    if forward.get("memories_written") != src_count:
        reasons.append(f"forward wrote {forward.get('memories_written')}, want {src_count}")
    if again.get("memories_written") != 0:
        reasons.append(f"the re-run wrote {again.get('memories_written')} memories, want 0")
    return {
        "phase": 3,
        "pass": not reasons,
        "report_forward": forward,
        "report_idempotent": again,
        "report_reverse": reverse,
        "src_count": src_count,
        "dst_count": dst_count,
        "reasons": reasons,
    }


def phase4_config(workdir: Path, size: GateSize) -> ChaosConfig:
    """The chaos run of phase 4, whose mesh (W = 2, every peer call through a proxy) phases 1
    and 2 use first."""
    return ChaosConfig(
        faults=[*FAULTS, GATE_COMBINED],
        workdir=workdir / "phase4",
        cycles=size.chaos_cycles,
        writes=size.chaos_writes,
        quorum_timeout_ms=2000,
    )


def phase4(config: ChaosConfig, running: tuple[Cluster, str], log: Callable[[str], None]) -> dict[str, Any]:
    """``memmesh chaos`` over every fault class and one combined class (:data:`GATE_COMBINED`)
    on the gate's mesh; pass when nothing acknowledged is lost."""
    report = run_chaos(config, log=log, running=running)
    reasons = list(report["summary"]["reasons"])
    for name, fault in report["faults"].items():
        if fault["convergence_bound"] < 1.0:
            reasons.append(f"{name}: convergence_bound {fault['convergence_bound']} < 1.000")
    return {"phase": 4, "pass": not reasons, **report, "reasons": reasons}


def run_ship_gate(
    out: Path, *, quick: bool, pg_url: str | None, log: Callable[[str], None] = lambda _: None, size: GateSize | None = None
) -> dict[str, Any]:
    """All four phases; every report is written to ``out`` as it finishes. The summary.
    ``size`` overrides the phase sizes (the test suite runs a smaller gate)."""
    size = size or (GateSize.quick() if quick else GateSize())
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    started = time.monotonic()
    phases: dict[str, dict[str, Any]] = {}

    def save(name: str, report: dict[str, Any]) -> None:
        (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")

    def migration() -> dict[str, Any]:
        begun = time.monotonic()
        report = phase3(work, pg_url, size)
        save("phase3", report)
        return {"pass": report["pass"], "reasons": report["reasons"], "elapsed_s": round(time.monotonic() - begun, 1)}

    # Phase 3 shares nothing with the mesh of phases 1 and 2 (its own files, its own database),
    # and both spend most of their time waiting on other processes: run them side by side.
    log(f"[ship-gate] phase 3 (alongside 1 + 2): {size.migrate_memories} memories SQLite -> PostgreSQL -> SQLite")
    config = phase4_config(work, size)
    config.check()
    with ThreadPoolExecutor(1) as background:
        phase3_done = background.submit(migration)
        log("[ship-gate] phase 1 + 2: a 3-node mesh, W = 2 (phase 4 runs on it too)")
        mark = time.monotonic()
        running = start_cluster(config, log)
        cluster = running[0]
        try:
            mesh_dir = config.workdir / "mesh"
            with ThreadPoolExecutor(len(cluster.nodes)) as pool:  # the nodes are independent: check them at once
                p1 = list(pool.map(lambda i: phase1_node(cluster.nodes[i], mesh_dir, i < size.tool_nodes), range(len(cluster.nodes))))
            for report in p1:
                save(f"phase1-{report['host']}", report)
            phases["phase1"] = {
                "pass": all(r["pass"] for r in p1),
                "reasons": [f"{r['host']}: {x}" for r in p1 for x in r["reasons"]],
                "elapsed_s": round(time.monotonic() - mark, 1),  # with the mesh's start
            }
            mark = time.monotonic()
            p2 = phase2(cluster, size)
            save("phase2", p2)
            phases["phase2"] = {"pass": p2["pass"], "reasons": p2["reasons"], "elapsed_s": round(time.monotonic() - mark, 1)}
            phases["phase3"] = phase3_done.result()  # joined first: the chaos phase runs alone
            mark = time.monotonic()
            log(f"[ship-gate] phase 4: chaos, {size.chaos_cycles} cycles x {size.chaos_writes} writes per fault class")
            p4 = phase4(config, running, log)
            save("phase4", p4)
            phases["phase4"] = {"pass": p4["pass"], "reasons": p4["reasons"], "elapsed_s": round(time.monotonic() - mark, 1)}
        finally:
            stop_cluster(cluster)
    summary = {
        "version": f"memmesh {__version__}",
        "quick": quick,
        "pass": all(p["pass"] for p in phases.values()),
        "phases": phases,
        "elapsed_s": round(time.monotonic() - started, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    save("summary", summary)
    return summary
