"""The faults a chaos cycle injects, each with its heal.

Every fault picks a victim node for the cycle (rotating, so each node takes its turn),
breaks something real about it while clients keep writing, and undoes it on :meth:`heal`.
What each does is documented in docs/chaos.md.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import sqlite3
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from memmesh.chaos.nodes import Node, Proxy


@dataclass
class Cluster:
    """The nodes of one chaos run and the proxies between them (every peer call goes through one)."""

    nodes: list[Node]
    proxies: dict[tuple[str, str], Proxy]
    mounts: list[Path] = field(default_factory=list)
    """tmpfs mounts this run made (unmounted at the end)."""

    def links_of(self, node: Node) -> list[Proxy]:
        """Every proxy carrying traffic to or from ``node``."""
        return [p for (src, dst), p in self.proxies.items() if node.name in (src, dst)]


class Fault:
    """A fault: :meth:`inject` during the writes, :meth:`heal` after them."""

    name = ""
    routes_to_victim_only = False
    """True when clients send every write to the victim (the node taking writes) until it fails."""
    inject_before_writes = False
    """True for a fault that takes seconds to set up (a restart): injected before the burst,
    so the writes meet the fault instead of racing it."""

    def __init__(self) -> None:
        self.victim: Node | None = None
        self.detail: dict[str, Any] = {}
        self.more_cycles = True
        """Another cycle of this class follows (a fault may get ready for it while healing)."""

    def choose(self, cluster: Cluster, cycle: int) -> Node:
        self.victim = cluster.nodes[cycle % len(cluster.nodes)]
        self.detail = {"victim": self.victim.name}
        return self.victim

    reads_from_victim_only = False
    """True when clients send every register read to the victim (a fault that lies on reads)."""

    def inject(self, cluster: Cluster) -> None:
        raise NotImplementedError

    def heal(self, cluster: Cluster) -> None:
        raise NotImplementedError

    def warm(self, cluster: Cluster) -> None:
        """Get ready for a restart this fault will cause (after :meth:`choose`): nothing by default."""

    def inject_before(self, cluster: Cluster) -> None:
        """Called before the burst: injects a fault that takes a restart to set up."""
        if self.inject_before_writes:
            self.inject(cluster)

    def inject_during(self, cluster: Cluster) -> None:
        """Called a third of the way into the burst: injects every other fault."""
        if not self.inject_before_writes:
            self.inject(cluster)


class KillPrimary(Fault):
    """SIGKILL the node taking the writes mid-burst; clients fail over; heal restarts it."""

    name = "kill_primary_mid_write"
    routes_to_victim_only = True

    def choose(self, cluster: Cluster, cycle: int) -> Node:
        self.upcoming = cluster.nodes[(cycle + 1) % len(cluster.nodes)]
        return super().choose(cluster, cycle)

    def warm(self, cluster: Cluster) -> None:
        """The victim's next process imports now (a warm spare), so its restart costs the
        crash recovery and the server's start, not Python's imports. Made when the run
        starts for its first cycle and at each heal for the next one; a no-op when ready."""
        assert self.victim is not None
        self.victim.prepare_spare()

    def inject_before(self, cluster: Cluster) -> None:
        self.warm(cluster)

    def inject(self, cluster: Cluster) -> None:
        assert self.victim is not None
        self.victim.kill()

    def heal(self, cluster: Cluster) -> None:
        assert self.victim is not None
        if not self.victim.alive:
            self.victim.start()
            self.detail.update(restart_s=round(self.victim.last_ready_s, 3), warm_start=self.victim.last_start_warm)
        if self.more_cycles:
            self.upcoming.prepare_spare()  # the next cycle's victim imports during this one's convergence


class PartitionMinority(Fault):
    """Cut every link to and from one node (a minority of one): it keeps serving on its own."""

    name = "partition_minority"

    def inject(self, cluster: Cluster) -> None:
        assert self.victim is not None
        for proxy in cluster.links_of(self.victim):
            proxy.cut()

    def heal(self, cluster: Cluster) -> None:
        assert self.victim is not None
        for proxy in cluster.links_of(self.victim):
            proxy.heal()


class SlowPeer(Fault):
    """Delay every chunk on one node's links (both ways) by ``delay`` seconds."""

    name = "slow_peer"

    def __init__(self, delay: float = 0.25) -> None:
        super().__init__()
        self.delay = delay

    def inject(self, cluster: Cluster) -> None:
        assert self.victim is not None
        self.detail["delay_s"] = self.delay
        for proxy in cluster.links_of(self.victim):
            proxy.delay = self.delay

    def heal(self, cluster: Cluster) -> None:
        assert self.victim is not None
        for proxy in cluster.links_of(self.victim):
            proxy.delay = 0.0


def try_mount_tmpfs(path: Path, size_mb: int) -> bool:
    """Mount a ``size_mb`` tmpfs at ``path`` if this machine lets us (root, no sandbox veto)."""
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], capture_output=True, check=False)
    return result.returncode == 0


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


class DiskFull(Fault):
    """Fill the file system one node's store lives on, so every write there fails with ENOSPC.

    The store sits on its own small tmpfs when the machine allows mounting (a filler file
    takes the last free byte); otherwise the node's file-size limit is lowered to one byte
    (the soft ``RLIMIT_FSIZE``, set with ``prlimit``), so every write past it fails (EFBIG) as on a full disk.
    Heal deletes the filler / lifts the limit.
    """

    name = "disk_full"
    inject_before_writes = True

    def __init__(self, method: str) -> None:
        super().__init__()
        self.method = method
        self.filler: Path | None = None

    def inject(self, cluster: Cluster) -> None:
        assert self.victim is not None and self.victim.proc is not None
        self.detail["method"] = self.method
        if self.method == "tmpfs":
            self.filler = Path(str(self.victim.db)).parent / "filler"
            self.detail["filled_bytes"] = fill(self.filler)
        else:
            _, hard = resource.prlimit(self.victim.proc.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(self.victim.proc.pid, resource.RLIMIT_FSIZE, (1, hard))  # soft only: raising it back needs no privilege

    def heal(self, cluster: Cluster) -> None:
        assert self.victim is not None and self.victim.proc is not None
        if self.method == "tmpfs":
            if self.filler is not None:
                self.filler.unlink(missing_ok=True)
        elif self.victim.alive:
            _, hard = resource.prlimit(self.victim.proc.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(self.victim.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))


def fill(path: Path) -> int:
    """Write ``path`` until the file system says ENOSPC; the bytes written."""
    written = 0
    with path.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 4096, 1):
            block = b"\0" * chunk
            while True:
                try:
                    out.write(block)
                except OSError as exc:
                    if exc.errno not in (errno.ENOSPC, errno.EFBIG):
                        raise
                    break
                written += chunk
        with contextlib.suppress(OSError):
            os.fsync(out.fileno())
    return written


CLOCK_FILE_ENV = "MEMMESH_FEDERATION_CLOCK_OFFSET_FILE"
"""The test-only setting a chaos node reads its clock offset from (``federation.clock_offset_file``)."""


class ClockSkew(Fault):
    """Move one node's wall clock while it runs: ahead by ``ahead_ms`` on even cycles (peers
    refuse its timestamps past ``max_ahead_ms``), behind by ``behind_ms`` on odd ones (its
    writes are stamped in the past, its hybrid clock must keep increasing). The clock jumps
    while the node runs, just before the writes, through the node's clock-offset file
    (written here, re-read by the node on its next clock reading: no restart); heal sets
    it back to 0.

    A node started without that file (``federation.clock_offset_file``) is restarted with
    ``federation.clock_offset_ms`` instead, before the writes, and again to heal."""

    name = "clock_skew"
    inject_before_writes = True
    """So every write of the cycle meets the moved clock."""

    def __init__(self, ahead_ms: int = 2_000, behind_ms: int = 300_000) -> None:
        super().__init__()
        self.ahead_ms = ahead_ms
        self.behind_ms = behind_ms
        self.cycle = 0

    def choose(self, cluster: Cluster, cycle: int) -> Node:
        self.cycle = cycle
        return super().choose(cluster, cycle)

    @property
    def at_run_time(self) -> bool:
        """The victim reads its clock offset from a file: it is moved without a restart."""
        return self.victim is not None and CLOCK_FILE_ENV in self.victim.env

    def inject(self, cluster: Cluster) -> None:
        assert self.victim is not None
        offset = self.ahead_ms if self.cycle % 2 == 0 else -self.behind_ms
        self.detail["offset_ms"] = offset
        self.detail["at_run_time"] = self.at_run_time
        if self.at_run_time:
            set_clock_offset(Path(self.victim.env[CLOCK_FILE_ENV]), offset)
            return
        self.victim.stop()
        self.victim.env["MEMMESH_FEDERATION_CLOCK_OFFSET_MS"] = str(offset)
        self.victim.start()

    def heal(self, cluster: Cluster) -> None:
        assert self.victim is not None
        if self.at_run_time:
            set_clock_offset(Path(self.victim.env[CLOCK_FILE_ENV]), 0)
            return
        self.victim.stop()
        self.victim.env.pop("MEMMESH_FEDERATION_CLOCK_OFFSET_MS", None)
        self.victim.start()


def set_clock_offset(path: Path, offset_ms: int) -> None:
    """Write a node's clock offset atomically (a reader never sees half a number)."""
    partial = path.with_suffix(".tmp")
    partial.write_text(f"{offset_ms}\n")
    os.replace(partial, path)


class LoseAckedWrite(Fault):
    """A broken node, to prove the checker bites: after the writes it is stopped, one
    acknowledged memory is deleted straight from its SQLite file (as a lying fsync or a bad
    disk would), and it is restarted with its links cut, so the mesh's own repair
    (anti-entropy) cannot hide the loss before the check. A run with this fault must FAIL
    with acked_lost > 0; run it last (the victim stays cut off for the rest of the run)."""

    name = "lose_acked_write"

    def __init__(self) -> None:
        super().__init__()
        self.acked: list[str] = []

    def choose(self, cluster: Cluster, cycle: int) -> Node:
        self.victim = cluster.nodes[-1]
        self.detail = {"victim": self.victim.name}
        return self.victim

    def warm(self, cluster: Cluster) -> None:
        assert self.victim is not None
        self.victim.prepare_spare()  # its restart after the drop

    def inject(self, cluster: Cluster) -> None:
        self.warm(cluster)

    def heal(self, cluster: Cluster) -> None:
        from memmesh.store.sqlite import register_functions

        assert self.victim is not None
        self.victim.stop()
        with contextlib.closing(sqlite3.connect(str(self.victim.db))) as conn:
            register_functions(conn)
            held = {row[0] for row in conn.execute("SELECT id FROM memories")}
            doomed = next((i for i in self.acked if i in held), None)
            if doomed is not None:
                conn.execute("DELETE FROM memories WHERE id = ?", (doomed,))
                conn.commit()
        self.detail["dropped"] = doomed
        for proxy in cluster.links_of(self.victim):
            proxy.cut()
        self.victim.start()
        self.detail.update(restart_s=round(self.victim.last_ready_s, 3), warm_start=self.victim.last_start_warm)


class StaleReadDouble:
    """A node double for reads: an HTTP server in front of a real node that forwards every
    request but answers each ``GET`` with the first answer it got for that path, forever, as a
    node serving from a stale cache or a lagging replica would."""

    def __init__(self, target: str) -> None:
        cache: dict[str, tuple[int, bytes]] = {}
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    answer = cache.get(self.path)
                if answer is None:
                    try:
                        response = httpx.get(target + self.path, timeout=10)
                    except httpx.HTTPError:
                        self.send_error(502)
                        return
                    answer = (response.status_code, response.content)
                    with lock:
                        answer = cache.setdefault(self.path, answer)
                self.send_response(answer[0])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer[1])))
                self.end_headers()
                self.wfile.write(answer[1])

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class StaleRead(Fault):
    """A broken node, to prove the history checker bites: every register read goes to the
    victim through a :class:`StaleReadDouble`, which keeps answering the first value it saw.
    At ``W = N`` a run with it must FAIL with history violations."""

    name = "stale_read"
    inject_before_writes = True
    reads_from_victim_only = True

    def __init__(self) -> None:
        super().__init__()
        self.double: StaleReadDouble | None = None

    def inject(self, cluster: Cluster) -> None:
        assert self.victim is not None
        self.double = StaleReadDouble(self.victim.url)
        self.victim.read_url = self.double.url

    def heal(self, cluster: Cluster) -> None:
        assert self.victim is not None
        self.victim.read_url = self.victim.url
        if self.double is not None:
            self.double.close()


class Combined(Fault):
    """Several faults in the same cycle (``--combine``), each on its own victim: part ``i``
    takes node ``(cycle + i) mod N``. Parts that need a restart are injected before the
    burst, the others a third of the way in; heal undoes them in reverse order."""

    def __init__(self, parts: list[Fault]) -> None:
        super().__init__()
        self.parts = parts
        self.name = "+".join(p.name for p in parts)
        self.routes_to_victim_only = any(p.routes_to_victim_only for p in parts)
        self.reads_from_victim_only = any(p.reads_from_victim_only for p in parts)

    def choose(self, cluster: Cluster, cycle: int) -> Node:
        for i, part in enumerate(self.parts):
            part.more_cycles = self.more_cycles
            part.choose(cluster, cycle + i)
        lead = next((p for p in self.parts if p.routes_to_victim_only or p.reads_from_victim_only), self.parts[0])
        assert lead.victim is not None
        self.victim = lead.victim
        self.note()
        return self.victim

    def note(self) -> None:
        """The parts' details as they are now (they add to them while injecting and healing)."""
        assert self.victim is not None
        self.detail = {"victim": self.victim.name, "parts": [{"fault": p.name, **p.detail} for p in self.parts]}

    def warm(self, cluster: Cluster) -> None:
        for part in self.parts:
            part.warm(cluster)

    def inject_before(self, cluster: Cluster) -> None:
        for part in self.parts:
            part.inject_before(cluster)
        self.note()

    def inject_during(self, cluster: Cluster) -> None:
        for part in self.parts:
            part.inject_during(cluster)
        self.note()

    def heal(self, cluster: Cluster) -> None:
        for part in reversed(self.parts):
            part.heal(cluster)
        self.note()


FAULTS = ("kill_primary_mid_write", "partition_minority", "slow_peer", "disk_full", "clock_skew")
"""The fault classes a run may name (``lose_acked_write`` and ``stale_read`` too, which must fail)."""
