"""The history checker: every register operation a chaos client made, with when it was sent
and when its answer came, and a check that no read went back in time.

Each client of a cycle owns one *register*: a memory whose content it rewrites with an
increasing sequence number (``v1`` is the create, ``v2``… are updates), one write at a time.
Any client reads any register from any node. A read that starts after an acknowledged write
to that register has returned must see that write's value or a later one; with
``W = N`` (every node holds a write before it is acknowledged) that is what the mesh
promises, so a read older than that is a **violation**. With a smaller ``W`` reads are local
and may lag, so the same finding is only counted (``stale_reads``), not failed.

Why per register and by sequence number: one writer per register makes its writes totally
ordered, so "older" needs no clock; the invocation and response times (one monotonic clock,
one process) give the real-time order between a write's answer and a read's start. This is
linearizability checked per key against acknowledged writes only: a write that was not
acknowledged may or may not be seen, but a read may never see a value nobody wrote, nor one
written after the read answered.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

REGISTER = re.compile(r"^register (?P<key>\S+) v(?P<seq>\d+)$")
"""A register's content: ``register <key> v<seq>``; the checker reads the value back from it."""


def register_content(key: str, seq: int) -> str:
    return f"register {key} v{seq}"


def parse_register(content: str) -> int | None:
    """The sequence number a register's content carries (None when it is not one)."""
    found = REGISTER.match(content)
    return int(found["seq"]) if found else None


@dataclass(frozen=True)
class Op:
    """One client operation on a register, as the client saw it."""

    kind: str
    """``write`` or ``read``."""
    key: str
    value: int | None
    """write: the sequence number sent; read: the one seen (0 = the register did not exist
    there yet; None = a content that is no register value at all)."""
    node: str
    invoked: float
    returned: float
    ok: bool
    """write: acknowledged (2xx); read: answered (200 or 404)."""
    client: int = 0


@dataclass
class History:
    """Every register operation of a run, appended by the client threads."""

    ops: list[Op] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)

    @staticmethod
    def now() -> float:
        """The one clock invocation and response times are read from (monotonic)."""
        return time.monotonic()

    def snapshot(self) -> list[Op]:
        with self.lock:
            return list(self.ops)


def check_history(ops: list[Op], *, strict: bool) -> dict[str, Any]:
    """Check every answered read against the acknowledged writes of its register.

    A read ``r`` of register ``k`` is **stale** when some write to ``k`` was acknowledged
    before ``r`` was sent (its ``returned`` < ``r.invoked``) and ``r`` saw a smaller sequence
    number; it saw a **phantom** when its value was never written to ``k`` or was written
    only after ``r`` had answered. Phantoms are violations at any ``W``; stale reads are
    violations only when ``strict`` (``W = N``). The result lists the first 20 of each.
    """
    writes: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.kind == "write":
            writes[op.key].append(op)
    stale: list[dict[str, Any]] = []
    phantom: list[dict[str, Any]] = []
    reads = [op for op in ops if op.kind == "read" and op.ok]
    for read in reads:
        mine = writes.get(read.key, [])
        before = [w for w in mine if w.ok and w.returned < read.invoked]
        floor = max((w.value or 0 for w in before), default=0)
        if read.value is None or (read.value > 0 and not any(w.value == read.value and w.invoked < read.returned for w in mine)):
            phantom.append(_finding(read, floor))
        elif read.value < floor:
            stale.append(_finding(read, floor))
    violations = len(phantom) + (len(stale) if strict else 0)
    return {
        "strict": strict,
        "register_writes": sum(1 for op in ops if op.kind == "write"),
        "register_writes_acked": sum(1 for op in ops if op.kind == "write" and op.ok),
        "reads": sum(1 for op in ops if op.kind == "read"),
        "reads_answered": len(reads),
        "stale_reads": len(stale),
        "phantom_reads": len(phantom),
        "violations": violations,
        "stale_examples": stale[:20],
        "phantom_examples": phantom[:20],
    }


def _finding(read: Op, floor: int) -> dict[str, Any]:
    return {**asdict(read), "acked_before": floor}
