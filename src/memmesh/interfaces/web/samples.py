"""Time series for the metrics page, sampled from what the server already counts.

Why a sampler: Prometheus counters say "so far", a chart needs "over time". While ``serve``
runs, a daemon thread reads the server's own registry (request counts, recall latency) and
the store's live-memory count every few seconds into a bounded ring; nothing is written to
the store and memory stays bounded (``SAMPLES`` points per series).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from memmesh.model import LOCAL_PRINCIPAL
from memmesh.schedule import Periodic
from memmesh.service import Service

log = logging.getLogger("memmesh.web")

SAMPLES = 360
"""Points kept per series: 30 minutes at the default 5 s interval."""


@dataclass
class Point:
    at: float
    memories: float
    requests_per_s: float
    recall_ms: float


def _totals(registry: CollectorRegistry) -> tuple[float, float, float]:
    """(API requests so far, recall seconds so far, recalls so far) from the registry."""
    requests = recall_sum = recall_count = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == "memmesh_http_requests_total" and str(sample.labels.get("route", "")).startswith("/api/"):
                requests += sample.value
            elif sample.name == "memmesh_recall_duration_seconds_sum":
                recall_sum += sample.value
            elif sample.name == "memmesh_recall_duration_seconds_count":
                recall_count += sample.value
    return requests, recall_sum, recall_count


class Sampler:
    """A bounded ring of samples, filled by a daemon thread between ``start`` and ``stop``."""

    def __init__(self, service: Service, registry: CollectorRegistry, *, interval: float = 5.0) -> None:
        self.service = service
        self.registry = registry
        self.interval = interval
        self.points: deque[Point] = deque(maxlen=SAMPLES)
        self._last: tuple[float, float, float, float] | None = None
        self.schedule = Periodic("memmesh-ui-sampler", interval, self._sample_quietly, log=log, first_wait=False, join_secs=5)

    def sample(self) -> Point:
        """Take one sample now: rates and averages since the previous sample."""
        now = time.monotonic()
        requests, recall_sum, recall_count = _totals(self.registry)
        memories = float(self.service.stats(principal=LOCAL_PRINCIPAL).total)
        rate = latency = 0.0
        if self._last is not None:
            then, old_requests, old_sum, old_count = self._last
            rate = max(requests - old_requests, 0.0) / max(now - then, 1e-6)
            recalls = recall_count - old_count
            latency = (recall_sum - old_sum) / recalls * 1000 if recalls > 0 else 0.0
        self._last = (now, requests, recall_sum, recall_count)
        point = Point(at=time.time(), memories=memories, requests_per_s=rate, recall_ms=latency)
        self.points.append(point)
        return point

    def start(self) -> None:
        self.schedule.start()

    def stop(self) -> None:
        self.schedule.stop()

    def _sample_quietly(self) -> None:
        with contextlib.suppress(Exception):  # a closed or busy store skips one sample, quietly
            self.sample()
