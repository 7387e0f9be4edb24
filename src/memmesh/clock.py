"""Time and identity: UUIDv7 ids, RFC 3339 timestamps and a hybrid logical clock.

Pure helpers with no I/O, so the service can be driven by a controllable clock in tests
(TTL expiry, promotion) and replicas can order concurrent writes the same way everywhere.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from memmesh.errors import ClockSkewError, InvalidInputError

Clock = Callable[[], datetime]
"""A function returning the current UTC time; the service takes one so tests can move time."""


def system_clock() -> datetime:
    """The real UTC time."""
    return datetime.now(UTC)


def shifted_clock(offset_ms: int) -> Clock:
    """The real UTC time moved by ``offset_ms``: a node whose machine clock is wrong, for
    clock-skew chaos runs (``federation.clock_offset_ms``). 0 is the plain system clock."""
    if not offset_ms:
        return system_clock
    delta = timedelta(milliseconds=offset_ms)
    return lambda: datetime.now(UTC) + delta


def file_shifted_clock(path: str | os.PathLike[str]) -> Clock:
    """The real UTC time moved by the milliseconds written in ``path`` (missing or empty: 0),
    re-read whenever the file changes: a node whose clock jumps while it runs, for
    clock-skew chaos runs (``federation.clock_offset_file``) that skew a node without a
    restart. Test only: production uses :func:`shifted_clock` with offset 0."""
    seen: list[tuple[tuple[int, int], timedelta]] = [((-1, -1), timedelta())]  # (file (mtime_ns, size), offset) last read

    def clock() -> datetime:
        try:
            info = os.stat(path)
            stamp = (info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = (0, 0)
        if stamp != seen[0][0]:
            try:
                with open(path) as file:
                    text = file.read().strip()
            except OSError:
                text = ""
            seen[0] = (stamp, timedelta(milliseconds=int(text or 0)))
        return datetime.now(UTC) + seen[0][1]

    return clock


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
    digits = f"{value:032x}"  # str(uuid.UUID(int=value)), without UUID's checks of a value built right here
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


HLC_COUNTER_LIMIT = 99_999
"""The largest logical counter the fixed-width text encoding holds; past it the clock moves
its millisecond forward instead, so text order stays clock order."""


def parse_hlc(text: str) -> tuple[int, int]:
    """``"<ms>.<counter>"`` as a pair; raises ``InvalidInputError`` naming the bad text."""
    ms_text, dot, counter_text = text.partition(".")
    if not (ms_text.isdigit() and len(ms_text) == 13 and dot and counter_text.isdigit() and len(counter_text) == 5):
        raise InvalidInputError(f"bad hybrid logical clock timestamp {text!r}: expected 13 digits, a dot and 5 digits")
    return int(ms_text), int(counter_text)


def format_hlc(ms: int, counter: int) -> str:
    """The fixed-width text form of an HLC timestamp: text order is clock order."""
    return f"{ms:013d}.{counter:05d}"


class HybridLogicalClock:
    """Hybrid logical clock (Kulkarni et al.): wall time in ms plus a logical counter.

    Its timestamps never go backwards on one node (even when the wall clock jumps back) and
    always exceed any timestamp the node has observed, so a write made after seeing a version
    is stamped later than that version: causally later writes win every last-writer tie
    break, on every replica. Encoded as ``"<ms:013d>.<counter:05d>"``.

    ``max_ahead_ms`` bounds how far a peer's timestamp may run ahead of our physical clock:
    a peer with a clock far in the future would otherwise drag every node's clock with it
    (and its writes would win every conflict until real time caught up).
    """

    def __init__(self, clock: Clock = system_clock, *, max_ahead_ms: int | None = None) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ms = 0
        self._counter = 0
        self.max_ahead_ms = max_ahead_ms
        self.refused = 0
        """How many remote timestamps were refused for running too far ahead."""

    def now(self) -> str:
        """A timestamp for a local event, later than every timestamp issued or observed."""
        with self._lock:
            wall = self._wall_ms()
            if wall > self._ms:
                self._ms, self._counter = wall, 0
            else:
                self._tick()
            return format_hlc(self._ms, self._counter)

    def observe(self, remote: str, *, check_ahead: bool = True) -> None:
        """Fold in a timestamp received from a peer (or read from the store) so every later
        local timestamp sorts after it. Refuses one too far ahead of physical time, unless
        ``check_ahead`` is False: a version already accepted into the store (checked when it
        arrived) must never make a later local write of that object fail, even after this
        node's wall clock stepped back."""
        remote_ms, remote_counter = parse_hlc(remote)
        with self._lock:
            wall = self._wall_ms()
            if check_ahead and self.max_ahead_ms is not None and remote_ms > wall + self.max_ahead_ms:
                self.refused += 1
                raise ClockSkewError(
                    f"timestamp {remote} is {remote_ms - wall} ms ahead of this node's clock; the limit is {self.max_ahead_ms} ms",
                    details={"ahead_ms": remote_ms - wall, "limit_ms": self.max_ahead_ms},
                )
            if (remote_ms, remote_counter) > (self._ms, self._counter):
                self._ms, self._counter = remote_ms, remote_counter

    def _wall_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)

    def _tick(self) -> None:
        if self._counter >= HLC_COUNTER_LIMIT:
            self._ms, self._counter = self._ms + 1, 0
        else:
            self._counter += 1
