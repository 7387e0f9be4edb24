"""Server logs: one line per request, tagged with its request id; plain text or JSON.

The request id lives in a context variable set by the request middleware. Sync routes run
on worker threads that copy the context, so anything logged while serving a request, in
any module, carries the id of that request.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id: ContextVar[str | None] = ContextVar("memmesh_request_id", default=None)
access_logger = logging.getLogger("memmesh.http.access")

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id", "color_message"}
"""Record attributes that are not extras; ``color_message`` is uvicorn's copy of its message
with terminal colour codes, which has no place in a JSON line."""


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (``-`` outside a request) so formats can use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id.get() or "-"
        return True


def one_line(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\n``, ``\\x1b``, ``\\u202e``).

    Log messages carry what clients sent (a percent-decoded path, an id, a peer's node
    name): a ``%0A`` in a URL would otherwise start a forged log line and an escape sequence
    would drive the operator's terminal. Printable text, any script, is kept as it is."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class PlainFormatter(logging.Formatter):
    """The text format: one record is one line (a traceback still follows on its own lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id.get(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def writes_json() -> bool:
    """Whether :func:`configure` set memmesh's logs to JSON lines (``serve --log-json``): the
    error that ends such a process is then one JSON line too, not a plain ``error:`` line in a
    stream a log shipper parses as JSON."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger("memmesh").handlers)


def configure(json_lines: bool, level: int = logging.INFO) -> dict[str, Any]:
    """Set up memmesh's and uvicorn's loggers; returns uvicorn's ``log_config`` to match."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter() if json_lines else PlainFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    for name in ("memmesh", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    # psycopg_pool warns (multi-line) while PostgreSQL is unreachable; through our handler
    # those warnings become one JSON line each instead of plain text in a JSON stream.
    pg_logger = logging.getLogger("psycopg")
    pg_logger.handlers[:] = [handler]
    pg_logger.setLevel(max(level, logging.WARNING))
    pg_logger.propagate = False
    return {"version": 1, "disable_existing_loggers": False}
