"""Time and identity: UUIDv7 ids, RFC 3339 timestamps and a hybrid logical clock.

Pure helpers with no I/O, so the service can be driven by a controllable clock in tests
(TTL expiry, promotion) and replicas can order concurrent writes the same way everywhere.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""A function returning the current UTC time; the service takes one so tests can move time."""


def system_clock() -> datetime:
    """The real UTC time."""
    return datetime.now(UTC)


def format_ts(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds and a ``Z``: fixed width, so text order is time order."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_ts(text: str) -> datetime:
    """Parse an RFC 3339 / ISO 8601 timestamp (or a date); naive values are taken as UTC.

    Raises ``ValueError`` with the offending text so callers can wrap it in a clear error.
    """
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    moment = datetime.fromisoformat(cleaned)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


_uuid_lock = threading.Lock()
_last_uuid_ms = 0
_uuid_seq = 0


def new_id(now_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562) as text: 48-bit ms timestamp, then a counter and randomness.

    Ids made in one process are strictly increasing (the 12-bit ``rand_a`` field is used
    as a counter within a millisecond), so ids sort in creation order.
    """
    global _last_uuid_ms, _uuid_seq
    with _uuid_lock:
        ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        if ms <= _last_uuid_ms:
            ms = _last_uuid_ms
            _uuid_seq += 1
            if _uuid_seq > 0xFFF:
                ms += 1
                _uuid_seq = 0
        else:
            _uuid_seq = int.from_bytes(os.urandom(2), "big") & 0x3FF
        _last_uuid_ms = ms
        seq = _uuid_seq
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand_b
    return str(uuid.UUID(int=value))


class HybridLogicalClock:
    """Hybrid logical clock (Kulkarni et al.): wall time in ms plus a logical counter.

    Its timestamps never go backwards on one node and always exceed any timestamp the node
    has seen from a peer, which makes last-writer-wins tie breaks agree across replicas.
    Encoded as ``"<ms:013d>.<counter:05d>"`` so text order is clock order.
    """

    def __init__(self, clock: Clock = system_clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ms = 0
        self._counter = 0

    def now(self) -> str:
        """A timestamp for a local event."""
        with self._lock:
            wall = int(self._clock().timestamp() * 1000)
            if wall > self._ms:
                self._ms, self._counter = wall, 0
            else:
                self._counter += 1
            return self._encode()

    def observe(self, remote: str) -> None:
        """Fold in a timestamp received from a peer so later local ones sort after it."""
        ms_text, _, counter_text = remote.partition(".")
        remote_ms, remote_counter = int(ms_text), int(counter_text or 0)
        with self._lock:
            if (remote_ms, remote_counter) > (self._ms, self._counter):
                self._ms, self._counter = remote_ms, remote_counter

    def _encode(self) -> str:
        return f"{self._ms:013d}.{self._counter:05d}"
