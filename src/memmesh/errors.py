"""One exception tree for all of memmesh.

Every failure a user can cause or meet is a :class:`MemmeshError` subclass that knows
its stable ``code`` (used in HTTP error bodies and MCP tool errors), its HTTP status and
its CLI exit code. The faces (CLI, HTTP, MCP) translate errors in exactly one place each,
so adding an error type here is enough for all of them to render it correctly.

    MemmeshError
    ├── InvalidInputError        400/422-class: the caller sent something wrong
    │   ├── ContentTooLargeError 413
    │   ├── HeadersTooLargeError 431: request line and headers past 64 KiB
    │   ├── UnsupportedMediaTypeError 415: a body not sent as application/json
    │   ├── ConfigError          bad config file / env / flags
    │   └── ClockSkewError       a peer's clock is too far ahead of ours
    ├── NotFoundError            404
    ├── ConflictError            409
    │   ├── ResyncRequiredError  a peer was away past tombstone retention
    │   └── NotYetError          this node lacks changes the client's session has seen
    ├── AuthError                401
    ├── MisdirectedRequestError  421: a Host a loopback server does not answer to
    ├── ForbiddenError           403
    │   ├── PeerCertificateError mTLS: the client certificate is not on the allowlist
    │   └── GovernanceDeniedError a namespace standard says `deny` for this action
    ├── PendingApprovalError     202: a namespace standard queued the action for approval
    ├── RateLimitedError         429
    ├── StorageError             the database could not be used
    │   ├── CorruptDatabaseError not a (memmesh) database, damaged, or too new
    │   └── UnavailableError     503: busy, down, try again
    │       ├── QuorumNotMetError
    │       └── PeerError        a peer could not be reached or answered garbage
    ├── EmbedderError            the embedding model could not be loaded or run
    ├── LLMError                 502: the configured LLM server failed or answered garbage
    └── InternalError            500: a bug in memmesh (an exception no other type covers)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

_T = TypeVar("_T")

OptionSpelling = Callable[[str, Any], str]
"""How one face writes "option = value" in a fix hint: ``--on-conflict update`` on the
command line, ``on_conflict='update'`` in Python, ``"on_conflict": "update"`` in JSON. A
value is a string, or ``True`` for a flag (``--all``, ``all=True``, ``"all": true``)."""

OperationSpelling = Callable[[str], str | None]
"""How one face names an operation a fix points to, given by its name in :data:`OPERATIONS`:
``memmesh session append`` on the command line, the MCP tool ``session_append``,
``POST /api/v1/sessions/{session_id}/turns`` over HTTP; ``None`` where the face has no such
operation (MCP lists no API keys), and the hint is left out there."""

OPERATIONS: dict[str, str | None] = {
    "session_append": "session_append()",
    "session_list": "session_list()",
    "pending_all": "pending(status='all')",
    "standards_list": None,
    "keys_list": None,
    "peer_key_create": None,
    "curator_runs": "curator_runs()",
    "subscriptions_list": "subscriptions()",
}
"""Every operation an error's ``use`` may name, with its Python API spelling (``None``: the
Python API has none). An operation is a call, arguments included: ``pending_all`` lists
pending actions of every status. Each face spells them all in a table of its own (tests
check that every spelling names a real command, route or tool)."""


MAX_SHOWN_WORD = 200
"""Longest run without spaces an error message shows in full: a caller's 10,000-character id
is echoed as its start and its length, not verbatim, in every face's error."""
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)}


def _clip(message: str) -> str:
    """Escape control characters (a NUL in an id) and shorten over-long words of a message."""
    message = message.translate(_CONTROL)
    if len(message) <= MAX_SHOWN_WORD or all(len(word) <= MAX_SHOWN_WORD for word in message.split()):
        return message
    return " ".join(word if len(word) <= MAX_SHOWN_WORD else f"{word[:60]}…({len(word)} characters)" for word in message.split(" "))


MAX_LISTED = 20
"""The most items one error lists (validation errors of a 422, unknown MCP arguments); it
counts the rest. A body of 100,000 unknown fields once cost ~10 s of the event loop to
describe and answered with a 10 MB error."""


def first_listed(items: Sequence[_T]) -> tuple[Sequence[_T], int]:
    """The first :data:`MAX_LISTED` of ``items`` and how many more there are, for an error
    that names a few and counts the rest."""
    return items[:MAX_LISTED], max(0, len(items) - MAX_LISTED)


def python_option(name: str, value: Any) -> str:
    """Keyword-argument spelling (the Python API, and the default message)."""
    return f"{name}={value!r}"


def python_operation(name: str) -> str | None:
    """Method spelling (the Python API, and the default message): ``session_append()``."""
    return OPERATIONS[name]


class MemmeshError(Exception):
    """Root of every memmesh error; carries a machine code and a human message.

    ``retry_with`` names the option(s) whose values would make the call succeed (e.g.
    ``{"on_conflict": ["update", "version"]}``): the core decides the fix, and each face
    renders it in its own syntax through :meth:`message_for`, so a CLI user is never told
    to pass a Python keyword. ``use`` likewise names other operations that help, each with
    what it is for (``{"session_append": "to add its first turn"}``), so a CLI user is told a
    command and an MCP client a tool.
    """

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500
    exit_code: ClassVar[int] = 1
    usage: bool = False
    """A malformed call rather than bad data: a parameter given a value it never takes (not one
    of its choices, out of its range) or a required choice left unmade. The CLI answers it as a
    usage error, exit 2 (not :attr:`exit_code`), as Click does for an option of the wrong type;
    HTTP and MCP answer it like any other error of its type. Set by ``usage=True``."""
    field: str | None = None
    """The parameter (``top_k``) or settings key (``federation.peer_key_file``) whose value is
    wrong, when the message starts with its name: a face that spells it otherwise (the CLI: the
    flag that set it, ``--top-k``) puts its own spelling there (:meth:`message_for`)."""

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_with: Mapping[str, Sequence[str | bool]] | None = None,
        use: Mapping[str, str] | None = None,
        usage: bool = False,
        field: str | None = None,
    ) -> None:
        self.reason = _clip(message)
        self.usage = usage
        if field is not None and not self.reason.startswith(field):
            raise ValueError(f"the message of an error about {field!r} must start with that name")
        self.field = field
        self.retry_with = {name: list(values) for name, values in (retry_with or {}).items()}
        self.use = dict(use or {})
        unknown = set(self.use) - set(OPERATIONS)
        if unknown:
            raise ValueError(f"use names operations outside OPERATIONS: {sorted(unknown)}")
        self.message = self.message_for(python_option)
        super().__init__(self.message)
        self.details: dict[str, Any] = details or {}
        if self.retry_with:
            self.details.setdefault("retry_with", self.retry_with)
        if self.use:
            self.details.setdefault("use", list(self.use))

    @property
    def exit_status(self) -> int:
        """The CLI's exit code for this error: 2 for a usage error, else the type's :attr:`exit_code`."""
        return 2 if self.usage else self.exit_code

    def message_for(self, spell: OptionSpelling, name: OperationSpelling = python_operation, field: str | None = None) -> str:
        """The message with its fix (if any) spelt the way this face's users write options
        and name operations; ``field``: how this face names :attr:`field` (default: as it is)."""
        message = self.reason if field is None or self.field is None else field + self.reason[len(self.field) :]
        if self.retry_with:
            fixes = [" or ".join(spell(option, value) for value in values) for option, values in self.retry_with.items()]
            message = f"{message}; pass {' or '.join(fixes)}"
        uses = [(name(operation), purpose) for operation, purpose in self.use.items()]
        if any(spelt for spelt, _ in uses):
            message = f"{message}; use " + ", or ".join(f"{spelt} {purpose}" for spelt, purpose in uses if spelt)
        return message

    def to_dict(self, spell: OptionSpelling | None = None, name: OperationSpelling = python_operation) -> dict[str, Any]:
        """The error body (docs/http.md, "Errors"): ``{"error": {"code", "message", "details"}}``."""
        message = self.message if spell is None else self.message_for(spell, name)
        return {"error": {"code": self.code, "message": message, "details": self.details}}


class InvalidInputError(MemmeshError, ValueError):
    """The caller sent a value that breaks a rule; the message says which and how to fix it.

    Raised with ``usage=True`` for a malformed call rather than bad data (see
    :attr:`MemmeshError.usage`).
    """

    code = "invalid_input"
    http_status = 422


class ContentTooLargeError(InvalidInputError):
    """Content, metadata or a request body is over its configured limit."""

    code = "too_large"
    http_status = 413


class UnsupportedMediaTypeError(InvalidInputError):
    """A request body that is not ``application/json``: browsers may send text/plain and form
    bodies cross-site without a CORS preflight, so reading them as JSON would allow CSRF."""

    code = "unsupported_media_type"
    http_status = 415


class WebhookRefusedError(InvalidInputError):
    """A webhook target the SSRF guard refuses (422: choose another URL or allow internal
    targets). Here, with every other error, so a remote client maps ``webhook_refused`` back
    to this class without importing the subscriptions package."""

    code = "webhook_refused"


class MisdirectedRequestError(MemmeshError):
    """A Host header this server does not answer to (DNS rebinding of a loopback server)."""

    code = "misdirected_request"
    http_status = 421


class ConfigError(InvalidInputError):
    """The configuration (file, env or flags) is wrong; names the source and the key."""

    code = "config_error"


class ClockSkewError(InvalidInputError):
    """A timestamp from a peer is further ahead of this node's physical clock than allowed.

    Adopting it would drag this node's hybrid logical clock into the future and make every
    later local write win ties it should not; the change is refused and counted instead.
    """

    code = "clock_skew"


class NotFoundError(MemmeshError):
    """No live memory (or link, key, …) has that id."""

    code = "not_found"
    http_status = 404


class ConflictError(MemmeshError):
    """The write collides with existing state (same title, same id with other content)."""

    code = "conflict"
    http_status = 409


class AuthError(MemmeshError):
    """No credentials, or credentials that match no key."""

    code = "unauthorized"
    http_status = 401


class ForbiddenError(MemmeshError):
    """Valid credentials that do not allow this action or namespace."""

    code = "forbidden"
    http_status = 403


class PeerCertificateError(ForbiddenError):
    """A sync route was called over a connection without a certificate on the mTLS allowlist."""

    code = "peer_certificate_required"


class GovernanceDeniedError(ForbiddenError):
    """A namespace standard's governance refuses this action; ``details['rule']`` names the
    namespace the rule was set on, the action and the decision, so the caller knows whom to ask."""

    code = "governance_denied"


class PendingApprovalError(MemmeshError):
    """Not a failure: a namespace standard says ``approve``, so the action was queued as a
    pending action (``details['pending_id']``) and nothing is written until an approver
    approves it. Raised so that every face, which maps errors once, answers it the same way:
    HTTP 202 with ``pending_id``, CLI exit code 3, an MCP result that says so."""

    code = "pending_approval"
    http_status = 202
    exit_code = 3

    def to_dict(self, spell: OptionSpelling | None = None, name: OperationSpelling = python_operation) -> dict[str, Any]:
        """The error body plus ``status`` and ``pending_id`` at the top, as the 202 answer promises (docs/governance.md)."""
        return {"status": "pending", "pending_id": self.details.get("pending_id"), **super().to_dict(spell, name)}


class RateLimitedError(MemmeshError):
    """Too many requests or writes; ``details['retry_after']`` says how long to wait."""

    code = "rate_limited"
    http_status = 429


class StorageError(MemmeshError):
    """The store failed in a way the caller cannot fix by changing the request."""

    code = "storage_error"
    http_status = 503


class CorruptDatabaseError(StorageError):
    """The file is not a memmesh database, is damaged, or was written by a newer version."""

    code = "corrupt_database"


class UnavailableError(StorageError):
    """A dependency is temporarily unavailable; retrying later may succeed."""

    code = "unavailable"
    http_status = 503


class QuorumNotMetError(UnavailableError):
    """Fewer nodes than the write quorum acknowledged a write in time."""

    code = "quorum_not_met"


class PeerError(UnavailableError):
    """A peer node could not be reached, refused us, or answered something that is not a sync reply."""

    code = "peer_unavailable"


class ResyncRequiredError(ConflictError):
    """Incremental sync with a peer is unsafe: it last synced before deletes whose tombstones
    are purged, so it could revive deleted memories; it needs a full resync."""

    code = "resync_required"


class LeaseLostError(ConflictError):
    """A bus task's lease is no longer this attempt's (it expired, or another worker holds
    the task now): the late heartbeat, completion or failure is refused (fencing)."""

    code = "lease_lost"


class NotYetError(ConflictError):
    """The client's causality token names changes this node has not received yet (session
    guarantees across nodes): nothing was read or written; retry, or ask another node."""

    code = "not_yet"


class EmbedderError(MemmeshError):
    """The embedding model is missing, damaged, unreachable or returned bad vectors."""

    code = "embedder_error"
    http_status = 503


class LLMError(MemmeshError):
    """The configured LLM server (``[llm]``) timed out, refused, kept rate-limiting, or
    answered something that is not the JSON asked for, after the bounded retries."""

    code = "llm_error"
    http_status = 502


class RequestTimeoutError(MemmeshError):
    """The client did not send its whole request within ``server.request_timeout_secs``."""

    code = "request_timeout"
    http_status = 408


class HeadersTooLargeError(InvalidInputError):
    """The request line and headers are longer than the server reads (64 KiB)."""

    code = "headers_too_large"
    http_status = 431


class InternalError(MemmeshError):
    """An exception no other type covers reached a face: a bug in memmesh, not the caller's
    doing. HTTP answers it with a 500 and MCP with an ``isError`` result (a JSON-RPC error for
    a resource or prompt), both in :func:`internal_error`'s words, and each logs the traceback
    once; the caller can only report it."""

    code = "internal_error"
    http_status = 500


def internal_error(logged_with: str) -> InternalError:
    """What every face answers an unexpected exception with: that it is the server's bug, not
    the request's, and where its traceback is; ``logged_with`` names what the log entry
    carries to find it by (``this request's X-Request-ID``, ``incident 3f9a0c1b``)."""
    return InternalError(
        f"internal server error: a bug in memmesh, not a fault in your request; the server's log has its traceback, "
        f"with {logged_with}; retrying will likely fail the same way: report it with that log entry"
    )


def all_error_types() -> list[type[MemmeshError]]:
    """Every error class, root first; used by tests that check each face maps them all."""
    found: list[type[MemmeshError]] = []
    pending: list[type[MemmeshError]] = [MemmeshError]
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
