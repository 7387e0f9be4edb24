"""Store tests run on both backends: the PostgreSQL fixtures are the conformance suite's."""

from tests.conformance.conftest import backend_url, open_memory, pg_database, pg_server  # noqa: F401
