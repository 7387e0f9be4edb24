"""Background turns (curator, gc, webhook deliveries, the inspector's sampler) that fail: an
expected failure (the store down, a full disk) is one warning line with the message an operator
can act on; only a bug gets a traceback. A PostgreSQL restart used to fill a server's log with
full tracebacks from every worker."""

from __future__ import annotations

import logging
import time

import pytest

from memmesh.errors import UnavailableError
from memmesh.schedule import Periodic


def _run_failing_turn(error: Exception, caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    log = logging.getLogger("memmesh.test-schedule")

    def turn() -> None:
        raise error

    periodic = Periodic("memmesh-test", 0.05, turn, log=log, first_wait=False)
    with caplog.at_level(logging.WARNING, logger=log.name):
        periodic.start()
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
        periodic.stop()
    assert caplog.records, "the failing turn was never logged"
    return caplog.records[0]


def test_a_store_failure_in_a_background_turn_is_one_warning_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    record = _run_failing_turn(UnavailableError("cannot connect to PostgreSQL at db:5432; check that the server is running"), caplog)
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert "cannot connect to PostgreSQL at db:5432" in record.getMessage()
    assert "trying again" in record.getMessage()


def test_a_bug_in_a_background_turn_keeps_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    record = _run_failing_turn(KeyError("boom"), caplog)
    assert record.levelno == logging.ERROR and record.exc_info is not None
