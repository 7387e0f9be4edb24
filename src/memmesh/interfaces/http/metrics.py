"""Prometheus metrics of one HTTP app, kept in the app's own registry.

A registry per app (not prometheus-client's global one) lets several apps live in one
process, as they do in tests, without "duplicated timeseries" errors. Routes are labelled
by their template (``/api/v1/memories/{memory_id}``), never the raw path, so ids cannot
blow up the number of series.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from memmesh.federation.changes import ClusterStatus
from memmesh.model import Stats

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Request counts and latencies per route and status, error answers by code, recall latency, store size."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("memmesh_http_requests", "HTTP requests handled", ("method", "route", "status"), registry=self.registry)
        self.latency = Histogram(
            "memmesh_http_request_duration_seconds",
            "HTTP request latency",
            ("method", "route", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "memmesh_http_errors",
            "HTTP answers that were a memmesh error, by its code (storage_error: the store refused a write, e.g. a full disk)",
            ("code", "status"),
            registry=self.registry,
        )
        self.recall_latency = Histogram(
            "memmesh_recall_duration_seconds",
            "Time spent ranking a recall or search",
            ("mode",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def count_error(self, code: str, status: int) -> None:
        """One answer that was a memmesh error (its code is one of a fixed set: few series)."""
        self.errors.labels(code, str(status)).inc()

    def render(self, stats: Stats, cluster: ClusterStatus | None = None) -> bytes:
        """The text exposition format, with the store gauges set from ``stats`` (and the mesh
        gauges from ``cluster`` when this node has peers and the caller may see them).

        The gauges live in a registry of this call only: kept in the app's registry, one
        caller's numbers (a store admin's total and peers) would show in another's answer,
        a later one's or a concurrent one's."""
        own = CollectorRegistry(auto_describe=True)
        Gauge("memmesh_store_memories", "Live memories in the store", registry=own).set(stats.total)
        Gauge("memmesh_store_size_bytes", "Store size on disk", registry=own).set(stats.db_size_bytes)
        Gauge("memmesh_store_links", "Links in the store", registry=own).set(stats.links_count)
        if cluster is not None:
            outbox = Gauge("memmesh_peer_outbox_changes", "Our change numbers a peer has not acknowledged", ("peer",), registry=own)
            age = Gauge("memmesh_peer_last_contact_age_seconds", "Seconds since a peer last answered", ("peer",), registry=own)
            up = Gauge("memmesh_peer_up", "1 when the last push to a peer and the last pull from it succeeded", ("peer",), registry=own)
            now = datetime.now(UTC)
            for peer in (p for p in cluster.peers if not p.removed):  # no longer in --peers: not a peer to watch
                name = peer.node_id or peer.url or "?"
                outbox.labels(name).set(peer.outbox_changes)
                up.labels(name).set(1 if peer.up else 0)
                if peer.last_contact is not None:
                    age.labels(name).set((now - peer.last_contact).total_seconds())
            Gauge("memmesh_clock_refused", "Peer timestamps refused for running too far ahead", registry=own).set(cluster.clock_refused)
            Gauge("memmesh_quorum_not_met", "Writes answered 503 quorum_not_met", registry=own).set(cluster.quorum_failures)
        return generate_latest(self.registry) + generate_latest(own)
