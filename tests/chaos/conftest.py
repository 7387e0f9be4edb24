"""Chaos tests start real nodes; PostgreSQL comes from the shared test cluster (phase 3)."""

from __future__ import annotations

from tests.conformance.conftest import pg_database, pg_server  # noqa: F401 - fixtures for the ship-gate's phase 3
