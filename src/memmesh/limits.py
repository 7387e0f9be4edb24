"""Rate limits and write quotas as pure arithmetic: values in, decisions out, no I/O.

The HTTP face keeps one :class:`RateLimiter` per process and asks it before each request;
the service asks :func:`quota_retry_after` inside its write transaction, where the store
keeps the per-namespace daily counts (so quotas hold across processes and restarts).
Time is always passed in, so tests replay any sequence of calls exactly.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute, bursts up to ``per_minute``.

    A token bucket (rather than fixed one-minute windows) never lets a client send twice
    the limit across a window boundary, and tells a refused caller exactly when the next
    request will be allowed. ``per_minute = 0`` turns limiting off.
    """

    per_minute: int
    max_keys: int = 100_000
    _buckets: dict[str, _Bucket] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def check(self, key: str, now: float) -> float:
        """Take one token for ``key`` at monotonic time ``now`` (seconds).

        Returns 0.0 when the request may go ahead, else the seconds until a token is free.
        """
        if not self.enabled:
            return 0.0
        rate = self.per_minute / 60.0
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.max_keys:
                    self._forget_full(now, rate)
                bucket = self._buckets[key] = _Bucket(tokens=float(self.per_minute), updated=now)
            bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate

    def _forget_full(self, now: float, rate: float) -> None:
        """Drop buckets that have refilled completely: they behave exactly like new ones."""
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * rate >= self.per_minute]
        for key in full:
            del self._buckets[key]


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` takes whole seconds; round up so a client that obeys is never early."""
    return str(max(1, math.ceil(seconds)))


def utc_day(moment: datetime) -> str:
    """The UTC calendar day a write counts against, as ``YYYY-MM-DD``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def seconds_until_next_day(moment: datetime) -> float:
    """Seconds from ``moment`` to the next UTC midnight, when daily quotas reset."""
    utc = moment.astimezone(UTC)
    midnight = (utc + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - utc).total_seconds()


def quota_namespace(namespace: str) -> str:
    """The namespace whose daily quota a write to ``namespace`` uses: its top level.

    Namespaces are trees and keys are scoped to subtrees, so a per-exact-namespace count
    could be escaped by writing to ``q/1``, ``q/2``, …; counting per top-level namespace
    cannot, and does not depend on which key (or none) made the write."""
    return namespace.split("/", 1)[0]


def quota_retry_after(count_after: int, quota: int, moment: datetime) -> float | None:
    """None when ``count_after`` writes today fit in ``quota`` (0 = unlimited), else seconds to wait."""
    if quota <= 0 or count_after <= quota:
        return None
    return seconds_until_next_day(moment)
