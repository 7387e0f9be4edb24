"""``memmesh chaos``: drive quorum writes at a real mesh, inject a fault each cycle, heal,
wait for convergence and check that nothing acknowledged was lost.

The checker's rules (docs/chaos.md): every write answered 201 must be on every node; every
memory whose delete was answered 200 must be on none; per-namespace digests must be equal on
every node. Writes answered anything else (503 quorum_not_met, an error, no answer) are not
acknowledged: they may or may not survive, but every node must agree on whether they did.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from memmesh.chaos.digest import live_ids, namespace_digests
from memmesh.chaos.faults import (
    CLOCK_FILE_ENV,
    FAULTS,
    ClockSkew,
    Cluster,
    Combined,
    DiskFull,
    Fault,
    KillPrimary,
    LoseAckedWrite,
    PartitionMinority,
    SlowPeer,
    StaleRead,
    try_mount_tmpfs,
    unmount,
)
from memmesh.chaos.history import History, Op, check_history, parse_register, register_content
from memmesh.chaos.nodes import NAMES, Node, start_mesh, stop_mesh
from memmesh.clock import new_id
from memmesh.errors import InvalidInputError

KNOWN_FAULTS = (*FAULTS, "lose_acked_write", "stale_read")
TMPFS_MB = 256
"""Size of each node's tmpfs: room for a long run; disk_full fills what is left."""


@dataclass
class ChaosConfig:
    """One ``memmesh chaos`` run."""

    faults: list[str]
    workdir: Path
    nodes: int = 3
    cycles: int = 5
    writes: int = 50
    clients: int = 4
    quorum_writes: int | None = None
    """W: nodes that must hold a write before it is acknowledged (default a majority)."""
    combine: bool = False
    """Inject every named fault in the same cycle (one class, ``a+b``) instead of one class each.
    A ``--fault`` entry written ``a+b`` is such a class on its own, beside the others."""
    quorum_timeout_ms: int = 1000
    """How long a write waits for its quorum before 503: short, so a write that meets a cut-off
    or refusing peer does not hold the burst (and the cycle) for long."""
    converge_timeout_s: float = 60.0
    seed: int = 18
    disk_method: str = "auto"
    """How disk_full fills a disk: ``tmpfs`` (each store on its own tmpfs, filled), ``rlimit``
    (the node's soft file-size limit dropped to one byte), or ``auto``: tmpfs where mounting works."""

    def check(self) -> None:
        """Refuse a run that cannot mean anything, naming the option to fix."""
        unknown = [p for f in self.faults for p in f.split("+") if p not in KNOWN_FAULTS]
        if unknown or not self.faults:
            raise InvalidInputError(
                f"unknown fault {', '.join(unknown) or '(none)'}: use --fault with a comma list of {', '.join(FAULTS)}", usage=True
            )
        if self.nodes < 3:
            raise InvalidInputError(f"--nodes must be 3 or more (got {self.nodes}): a quorum that survives one fault needs 3", usage=True)
        if self.disk_method not in ("auto", "tmpfs", "rlimit"):
            raise InvalidInputError(f"--disk-method must be auto, tmpfs or rlimit (got {self.disk_method!r})", usage=True)
        if self.cycles < 1 or self.writes < 1 or self.clients < 1:
            raise InvalidInputError("--cycles, --writes and --clients must be 1 or more", usage=True)
        if self.quorum_writes is not None and not 1 <= self.quorum_writes <= self.nodes:
            raise InvalidInputError(f"--quorum-writes must be between 1 and --nodes ({self.nodes}), got {self.quorum_writes}", usage=True)
        for combined in self.classes:
            parts = combined.split("+")
            if len(parts) > 1 and (len(set(parts)) != len(parts) or len(parts) > self.nodes - 1):
                raise InvalidInputError(
                    f"a combined fault needs 2 to {self.nodes - 1} different faults (one node stays untouched), got {combined}",
                    usage=True,
                )
        if self.combine and len(self.faults) < 2:
            raise InvalidInputError(f"--combine needs 2 to {self.nodes - 1} different faults, got {', '.join(self.faults)}", usage=True)

    @property
    def quorum(self) -> int:
        return self.quorum_writes if self.quorum_writes is not None else self.nodes // 2 + 1

    @property
    def classes(self) -> list[str]:
        """The fault classes run in turn: each named fault, or their combination (``a+b``)."""
        return ["+".join(self.faults)] if self.combine else list(self.faults)


@dataclass
class Ledger:
    """What the clients were told, shared by the writer threads."""

    acked: dict[str, str] = field(default_factory=dict)
    """id → content of every write answered 201 (or 200 ``existed``) and not since deleted with a 200."""
    deleted: set[str] = field(default_factory=set)
    """ids whose delete was answered 200: must be on no node."""
    unsure: set[str] = field(default_factory=set)
    """acked ids whose delete got no clear answer: they may go either way."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_for_delete(self, rng: random.Random) -> str | None:
        with self.lock:
            if not self.acked:
                return None
            memory_id = rng.choice(sorted(self.acked))
            self.acked.pop(memory_id)
            self.unsure.add(memory_id)
            return memory_id


@dataclass
class CycleCounts:
    writes_attempted: int = 0
    writes_acked: int = 0
    quorum_not_met: int = 0
    write_errors: int = 0
    deletes_attempted: int = 0
    deletes_acked: int = 0
    acked_by: dict[str, int] = field(default_factory=dict)
    """node → writes it acknowledged (201, or 200 ``existed``): what a node under a fault still acknowledged."""
    errors: dict[str, int] = field(default_factory=dict)
    """What the writes that were neither 201 nor quorum_not_met got: ``503 storage_error``, ``no answer``, …"""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **counts: int) -> None:
        with self.lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)

    def tally(self, table: dict[str, int], key: str) -> None:
        with self.lock:
            table[key] = table.get(key, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "lock"}


def acknowledged(response: httpx.Response, memory_id: str | None = None) -> bool:
    """True when a store answer says the memory is stored: 201 (stored now) or 200 with
    ``existed: true`` (stored already: a resent write that had landed, or the same content
    again), for the id sent when one was. Counting only 201 would call a resent write that
    is on every node "not stored"."""
    if response.status_code == 201:
        return True
    if response.status_code != 200:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("existed") is True and (memory_id is None or body.get("id") == memory_id)


def make_fault(name: str, disk_method: str) -> Fault:
    """The fault of a class name; ``a+b`` is both in the same cycle."""
    if "+" in name:
        return Combined([make_fault(part, disk_method) for part in name.split("+")])
    makers: dict[str, Callable[[], Fault]] = {
        "kill_primary_mid_write": KillPrimary,
        "partition_minority": PartitionMinority,
        "slow_peer": SlowPeer,
        "disk_full": lambda: DiskFull(disk_method),
        "clock_skew": ClockSkew,
        "lose_acked_write": LoseAckedWrite,
        "stale_read": StaleRead,
    }
    return makers[name]()


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return round(ordered[rank - 1], 3)


class Run:
    """One fault class on the run's cluster: cycles of write, inject, heal, converge, check."""

    def __init__(self, config: ChaosConfig, fault_name: str, log: Callable[[str], None], jsonl: Any, disk_method: str) -> None:
        self.config = config
        self.fault_name = fault_name
        self.log = log
        self.jsonl = jsonl
        self.ledger = Ledger()
        """This class's own writes: its namespaces are its own, so its check is too."""
        self.cycles: list[dict[str, Any]] = []
        self.disk_method = disk_method
        self.prefix = f"chaos/{fault_name.replace('+', ':')}"
        """This class's namespaces: ``chaos/<fault>/0..2`` and ``…/registers`` (``:`` joins combined faults)."""

    # -- one cycle -----------------------------------------------------------------------
    def cycle(self, cluster: Cluster, number: int) -> dict[str, Any]:
        fault = make_fault(self.fault_name, self.disk_method)
        fault.more_cycles = number + 1 < self.config.cycles
        victim = fault.choose(cluster, number)
        counts = CycleCounts()
        history = History()
        registers = [new_id() for _ in range(self.config.clients)]
        issued = iter(range(self.config.writes))
        issued_lock = threading.Lock()
        inject_at = max(1, self.config.writes // 3)
        injected = threading.Event()
        injector: list[threading.Thread] = []
        rr = [number]

        down: set[str] = set()
        """Nodes a client could not connect to this cycle: clients fail over from them."""

        def live() -> list[Node]:
            return [n for n in cluster.nodes if n.alive and n.name not in down]

        def target() -> Node | None:
            nodes = live()
            if fault.routes_to_victim_only and victim in nodes:
                return victim
            if not nodes:
                return None
            with issued_lock:
                rr[0] += 1
                return nodes[rr[0] % len(nodes)]

        def writer(client_no: int) -> None:
            rng = random.Random(f"{self.config.seed}:{self.fault_name}:{number}:{client_no}")
            register = Register(registers[client_no], client_no)
            with httpx.Client(timeout=10) as http:
                while True:
                    with issued_lock:
                        op = next(issued, None)
                    if op is None:
                        return
                    if op == inject_at and not injected.is_set():
                        injected.set()
                        thread = threading.Thread(target=fault.inject_during, args=(cluster,), daemon=True)
                        injector.append(thread)
                        thread.start()
                    node = target()
                    if node is None:
                        counts.add(writes_attempted=1, write_errors=1)
                        continue
                    if op % 10 == 9:
                        self.delete_one(http, node, rng, counts)
                    memory_id = new_id()
                    while node is not None and not self.write_one(http, node, memory_id, number, op, counts):
                        down.add(node.name)  # refused the connection: the write never reached it, try another
                        node = target()
                    if node is None:
                        counts.add(writes_attempted=1, write_errors=1)
                        continue
                    if op % 2 == 0:
                        self.write_register(http, node, register, history)
                    reader = victim if fault.reads_from_victim_only else rng.choice(live() or [node])
                    self.read_register(http, reader, rng.choice(registers), client_no, history)

        began = time.monotonic()
        fault.inject_before(cluster)
        started = time.monotonic()
        threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(self.config.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for thread in injector:
            thread.join()
        for part in fault.parts if isinstance(fault, Combined) else [fault]:
            if isinstance(part, LoseAckedWrite):
                part.acked = sorted(self.ledger.acked)
        write_s = time.monotonic() - started
        fault.heal(cluster)
        healed = time.monotonic()
        heal_s = healed - started - write_s
        check = self.converge(cluster, self.config.converge_timeout_s)
        converge_s = time.monotonic() - healed
        reads = check_history(history.snapshot(), strict=self.config.quorum == len(cluster.nodes))
        record = {
            "fault": self.fault_name,
            "cycle": number + 1,
            **fault.detail,
            **counts.as_dict(),
            "inject_before_s": round(started - began, 3),
            "write_phase_s": round(write_s, 3),
            "heal_s": round(heal_s, 3),
            "converged": check["converged"],
            "time_to_converge_s": round(converge_s, 3) if check["converged"] else None,
            **{k: v for k, v in check.items() if k != "converged"},
            "history": reads,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        self.log(
            f"[chaos] {self.fault_name} cycle {number + 1}: victim {victim.name}, acked {counts.writes_acked}/{counts.writes_attempted}, "
            f"lost {check['acked_lost']}, converged {check['converged']} in {converge_s:.2f}s, "
            f"reads {reads['reads_answered']} stale {reads['stale_reads']} "
            f"({'violations' if reads['strict'] else 'allowed'} at W={self.config.quorum})"
        )
        return record

    def write_one(self, http: httpx.Client, node: Node, memory_id: str, cycle: int, op: int, counts: CycleCounts) -> bool:
        """One write to ``node``, counted; False only when the connection was refused (the
        request never left, so the caller may send the same write elsewhere)."""
        content = f"chaos {self.fault_name} cycle {cycle + 1} write {op} ({memory_id[-8:]})"
        namespace = f"{self.prefix}/{op % 3}"
        try:
            response = http.post(node.url + "/api/v1/memories", json={"id": memory_id, "content": content, "namespace": namespace})
        except httpx.ConnectError:
            return False
        except httpx.HTTPError:
            counts.add(writes_attempted=1, write_errors=1)
            counts.tally(counts.errors, "no answer")
            return True
        if acknowledged(response, memory_id):
            with self.ledger.lock:
                self.ledger.acked[memory_id] = content
            counts.add(writes_attempted=1, writes_acked=1)
            counts.tally(counts.acked_by, node.name)
        elif response.status_code == 503 and "quorum_not_met" in response.text:
            counts.add(writes_attempted=1, quorum_not_met=1)
        else:
            counts.add(writes_attempted=1, write_errors=1)
            try:
                code = response.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = "?"
            counts.tally(counts.errors, f"{response.status_code} {code}")
        return True

    def write_register(self, http: httpx.Client, node: Node, register: Register, history: History) -> None:
        """The client's next write to its own register: the create (``v1``, by id, retried
        until acknowledged: a retry of the same id and content is the same write), then an
        update to ``v<n+1>`` each time. Recorded with its invocation and response times."""
        seq = register.used + 1
        content = register_content(register.key, seq)
        invoked = History.now()
        try:
            if seq == 1:
                body = {"id": register.key, "content": content, "namespace": f"{self.prefix}/registers"}
                response = http.post(node.url + "/api/v1/memories", json=body)
            else:
                response = http.patch(node.url + f"/api/v1/memories/{register.key}", json={"content": content})
            ok = response.status_code in (200, 201)
        except httpx.HTTPError:
            ok = False
        history.record(Op("write", register.key, seq, node.name, invoked, History.now(), ok, register.client))
        if ok or seq > 1:
            register.used = seq  # the create is retried until acknowledged; an update uses up its number either way

    def read_register(self, http: httpx.Client, node: Node, key: str, client_no: int, history: History) -> None:
        """Read one register from ``node`` (through ``node.read_url``: a double may stand in
        front of it) and record what was seen: its sequence number, 0 for not there."""
        invoked = History.now()
        value: int | None = None
        try:
            response = http.get(node.read_url + f"/api/v1/memories/{key}")
            ok = response.status_code in (200, 404)
            if response.status_code == 200:
                value = parse_register(str(response.json().get("content", "")))
            elif ok:
                value = 0
        except (httpx.HTTPError, ValueError):
            ok = False
        history.record(Op("read", key, value, node.name, invoked, History.now(), ok, client_no))

    def delete_one(self, http: httpx.Client, node: Node, rng: random.Random, counts: CycleCounts) -> None:
        memory_id = self.ledger.take_for_delete(rng)
        if memory_id is None:
            return
        try:
            response = http.delete(node.url + f"/api/v1/memories/{memory_id}")
        except httpx.HTTPError:
            counts.add(deletes_attempted=1)
            return
        with self.ledger.lock:
            if response.status_code == 200:
                self.ledger.unsure.discard(memory_id)
                self.ledger.deleted.add(memory_id)
                counts.add(deletes_attempted=1, deletes_acked=1)
            elif response.status_code == 404:  # not on that node (yet): nothing was deleted
                self.ledger.unsure.discard(memory_id)
                self.ledger.acked[memory_id] = self.ledger.acked.get(memory_id, "") or "?"
                counts.add(deletes_attempted=1)
            else:
                counts.add(deletes_attempted=1)

    # -- convergence and the check -------------------------------------------------------
    def digests(self, cluster: Cluster) -> dict[str, dict[str, str]] | None:
        """Every node's digests of this class's namespaces (one small request per node)."""
        try:
            return {n.name: namespace_digests(n, self.prefix) for n in cluster.nodes}
        except (httpx.HTTPError, KeyError, ValueError):
            return None

    def observe(self, cluster: Cluster, digests: dict[str, dict[str, str]], agree: bool) -> dict[str, set[str]] | None:
        """Every node's live memory ids in this class's namespaces, from its digest rows. When
        the digests agree the nodes hold the same rows, so one node's rows stand for all."""
        namespaces = sorted({ns for d in digests.values() for ns in d})
        try:
            if agree:
                ids = live_ids(cluster.nodes[0], namespaces)
                return {n.name: ids for n in cluster.nodes}
            return {n.name: live_ids(n, namespaces) for n in cluster.nodes}
        except (httpx.HTTPError, KeyError, ValueError):
            return None

    def judge(self, seen: dict[str, set[str]], digests: dict[str, dict[str, str]]) -> dict[str, Any]:
        """The check over what every node holds: this class's acknowledged writes and deletes,
        and the digests of every namespace of the class (every node must agree)."""
        with self.ledger.lock:
            acked = set(self.ledger.acked)
            deleted = set(self.ledger.deleted)
        held: dict[str, int] = {}
        missing: set[str] = set()
        resurrected: set[str] = set()
        for name, ids in seen.items():
            held[name] = len(acked & ids)
            missing |= acked - ids
            resurrected |= deleted & ids
        equal = len({json.dumps(d, sort_keys=True) for d in digests.values()}) == 1
        return {
            "acked_live": len(acked),
            "acked_deleted": len(deleted),
            "held": held,
            "acked_lost": len(missing),
            "lost_ids": sorted(missing)[:20],
            "resurrected": len(resurrected),
            "resurrected_ids": sorted(resurrected)[:20],
            "digests_equal": equal,
            "namespaces": len(next(iter(digests.values()), {})),
            "convergence_bound": round(min(held.values()) / len(acked), 6) if acked else 1.0,
        }

    def converge(self, cluster: Cluster, timeout: float) -> dict[str, Any]:
        """Poll the digests until every node's agree, then check the rows; until the check
        passes or ``timeout``: the last verdict, with ``converged``."""
        deadline = time.monotonic() + timeout
        verdict: dict[str, Any] = {"acked_lost": None, "resurrected": None, "digests_equal": False, "convergence_bound": 0.0}
        while True:
            digests = self.digests(cluster)
            agree = digests is not None and len({json.dumps(d, sort_keys=True) for d in digests.values()}) == 1
            last = time.monotonic() >= deadline
            if digests is not None and (agree or last):
                seen = self.observe(cluster, digests, agree)
                if seen is not None:
                    verdict = self.judge(seen, digests)
                    if verdict["acked_lost"] == 0 and verdict["resurrected"] == 0 and verdict["digests_equal"]:
                        return {"converged": True, **verdict}
            if last:
                if verdict["acked_lost"] is None:  # never got an answer from every node
                    verdict = {**verdict, "acked_lost": len(self.ledger.acked), "resurrected": 0}
                return {"converged": False, **verdict}
            time.sleep(0.1)

    # -- the whole class -------------------------------------------------------------------
    def run(self, cluster: Cluster) -> dict[str, Any]:
        for number in range(self.config.cycles):
            record = self.cycle(cluster, number)
            self.cycles.append(record)
            self.jsonl.write(json.dumps(record) + "\n")
            self.jsonl.flush()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        last = self.cycles[-1]
        times = [c["time_to_converge_s"] for c in self.cycles if c["time_to_converge_s"] is not None]
        out = {
            "cycles": len(self.cycles),
            "writes_attempted": sum(c["writes_attempted"] for c in self.cycles),
            "writes_acked": sum(c["writes_acked"] for c in self.cycles),
            "quorum_not_met": sum(c["quorum_not_met"] for c in self.cycles),
            "write_errors": sum(c["write_errors"] for c in self.cycles),
            "deletes_acked": sum(c["deletes_acked"] for c in self.cycles),
            "acked_lost": last["acked_lost"],
            "resurrected": last["resurrected"],
            "digests_equal": last["digests_equal"],
            "convergence_bound": last["convergence_bound"],
            "cycles_not_converged": sum(1 for c in self.cycles if not c["converged"]),
            "time_to_converge_p50": percentile(times, 50),
            "time_to_converge_p99": percentile(times, 99),
            "history": {
                "strict": last["history"]["strict"],
                **{k: sum(c["history"][k] for c in self.cycles) for k in HISTORY_COUNTS},
            },
        }
        if "disk_full" in self.fault_name:
            out["disk_full_method"] = self.disk_method
        return out


HISTORY_COUNTS = ("register_writes", "register_writes_acked", "reads", "reads_answered", "stale_reads", "phantom_reads", "violations")


@dataclass
class Register:
    """One client's register in one cycle: its memory id and the last sequence number used."""

    key: str
    client: int
    used: int = 0


def start_cluster(config: ChaosConfig, log: Callable[[str], None]) -> tuple[Cluster, str]:
    """One mesh for the whole run, every peer call through a proxy, each store on its own small
    tmpfs when the machine allows mounting (so ``disk_full`` can fill it); the disk-full method."""
    base = config.workdir / "mesh"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    names = NAMES[: config.nodes]
    mounts = [base / f"{name}-fs" for name in names]
    ok = [config.disk_method != "rlimit" and try_mount_tmpfs(path, TMPFS_MB) for path in mounts]
    if not all(ok):
        for path, mounted in zip(mounts, ok, strict=True):
            if mounted:
                unmount(path)
        mounts = []
        if config.disk_method == "tmpfs":
            raise InvalidInputError("--disk-method tmpfs: this machine does not allow mounting a tmpfs (needs root); use rlimit")
    method = "tmpfs" if mounts else "rlimit_fsize"
    log(f"[chaos] {config.nodes} nodes, W={config.quorum}, stores on {'a tmpfs each' if mounts else 'the work dir'}")

    def db_for(name: str) -> Path:
        return base / f"{name}-fs" / f"{name}.db"

    extra = ("--quorum-writes", str(config.quorum), "--quorum-timeout-ms", str(config.quorum_timeout_ms))
    try:
        nodes, proxies = start_mesh(
            base, config.nodes, *extra, proxied=True, db_for=db_for if mounts else None, env_for=lambda n: clock_file_env(base, n)
        )
    except BaseException:
        for path in mounts:
            unmount(path)
        raise
    cluster = Cluster(nodes, proxies, mounts)
    for name in config.classes:  # a class that restarts a node: its first victim's spare imports now
        fault = make_fault(name, method)
        fault.choose(cluster, 0)
        fault.warm(cluster)
    return cluster, method


def clock_file_env(base: Path, node: Node) -> dict[str, str]:
    """A chaos node reads its wall clock's offset from a file of its own, so clock_skew moves
    its clock while it runs (no restart). Only chaos nodes get it: a test-only setting."""
    return {CLOCK_FILE_ENV: str(base / f"{node.name}.clock")}


def final_digests(cluster: Cluster, timeout: float = 30) -> dict[str, dict[str, str]]:
    """Every node's whole-store digests once they agree (or the last ones seen after ``timeout``)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, dict[str, str]] = {}
    while True:
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            seen = {n.name: namespace_digests(n) for n in cluster.nodes}
            if len({json.dumps(d, sort_keys=True) for d in seen.values()}) == 1:
                return seen
        if time.monotonic() >= deadline:
            return seen
        time.sleep(0.25)


def stop_cluster(cluster: Cluster) -> None:
    stop_mesh(cluster.nodes, cluster.proxies)
    for path in cluster.mounts:
        unmount(path)


def verdict_of(faults: dict[str, dict[str, Any]]) -> tuple[bool, list[str]]:
    """Pass when nothing acknowledged was lost, no delete came back and every node agrees."""
    reasons = []
    for name, f in faults.items():
        if f["acked_lost"]:
            reasons.append(f"{name}: {f['acked_lost']} acknowledged write(s) missing on some node")
        if f["resurrected"]:
            reasons.append(f"{name}: {f['resurrected']} deleted memory(ies) came back")
        if not f["digests_equal"]:
            reasons.append(f"{name}: per-namespace digests differ between nodes")
        history = f.get("history") or {}
        if history.get("violations"):
            reasons.append(
                f"{name}: {history['violations']} read(s) older than an acknowledged write they follow "
                f"({history['stale_reads']} stale, {history['phantom_reads']} never written)"
            )
    return not reasons, reasons


def run_chaos(
    config: ChaosConfig, log: Callable[[str], None] = lambda _: None, *, running: tuple[Cluster, str] | None = None
) -> dict[str, Any]:
    """Run every fault class of ``config`` in turn; the report (see docs/chaos.md). ``running``
    is a cluster :func:`start_cluster` already started (and its disk-full method): the run
    uses it and leaves it running, for its owner to stop (the ship-gate shares one)."""
    config.check()
    config.workdir.mkdir(parents=True, exist_ok=True)
    jsonl_path = config.workdir / "chaos-cycles.jsonl"
    started = time.monotonic()
    faults: dict[str, dict[str, Any]] = {}
    cluster, disk_method = running or start_cluster(config, log)
    try:
        with jsonl_path.open("w") as jsonl:
            for name in config.classes:
                log(f"[chaos] fault={name} cycles={config.cycles} writes/cycle={config.writes}")
                faults[name] = Run(config, name, log, jsonl, disk_method).run(cluster)
        everything = final_digests(cluster, config.converge_timeout_s)
    finally:
        if running is None:
            stop_cluster(cluster)
    ok, reasons = verdict_of(faults)
    if len({json.dumps(d, sort_keys=True) for d in everything.values()}) != 1:
        ok, reasons = False, [*reasons, "the nodes' whole-store digests differ at the end of the run"]
    times = [c["time_to_converge_s"] for c in _read_jsonl(jsonl_path) if c["time_to_converge_s"] is not None]
    summary = {
        "cycles": sum(f["cycles"] for f in faults.values()),
        "writes_attempted": sum(f["writes_attempted"] for f in faults.values()),
        "writes_acked": sum(f["writes_acked"] for f in faults.values()),
        "acked_lost": sum(f["acked_lost"] for f in faults.values()),
        "resurrected": sum(f["resurrected"] for f in faults.values()),
        "convergence_bound": min(f["convergence_bound"] for f in faults.values()),
        "history_violations": sum(f["history"]["violations"] for f in faults.values()),
        "stale_reads": sum(f["history"]["stale_reads"] for f in faults.values()),
        "time_to_converge_p50": percentile(times, 50),
        "time_to_converge_p99": percentile(times, 99),
        "digests_equal": len({json.dumps(d, sort_keys=True) for d in everything.values()}) == 1,
        "namespaces": len(next(iter(everything.values()), {})),
        "pass": ok,
        "reasons": reasons,
    }
    return {
        "nodes": config.nodes,
        "quorum_writes": config.quorum,
        "history_strict": config.quorum == config.nodes,
        "combined": config.combine,
        "cycles_per_fault": config.cycles,
        "writes_per_cycle": config.writes,
        "clients": config.clients,
        "faults": faults,
        "summary": summary,
        "jsonl": str(jsonl_path),
        "elapsed_s": round(time.monotonic() - started, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with contextlib.suppress(FileNotFoundError):
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return []
