"""``Client`` and ``AsyncClient``: the Memory API over HTTP, for other processes and machines.

Both have the everyday part of :class:`memmesh.Memory`'s methods (docs/http.md lists which,
generated from these classes) with the same signatures and return the same pydantic models;
server errors come back as the same :class:`MemmeshError` subclasses (mapped from the error
body's ``code``). Each method is described once, as a request plus
a parser (:class:`_Calls`, no I/O); the two clients only differ in how they send it.

Retries: a 429 or 503 answer, or a connection that could not be made, is retried up to
``retries`` times, waiting as long as ``Retry-After`` says (capped by ``max_retry_wait``)
or a short exponential backoff. That is safe for writes because :meth:`add` and
:meth:`add_many` send a client-generated id, and the server treats a repeated id with the
same content as the same memory.
"""

from __future__ import annotations

import asyncio
import builtins
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast, overload
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError, to_jsonable_python

from memmesh.access import split_key
from memmesh.clock import new_id
from memmesh.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    ContentTooLargeError,
    ForbiddenError,
    InvalidInputError,
    MemmeshError,
    NotFoundError,
    RateLimitedError,
    StorageError,
    UnavailableError,
    all_error_types,
)
from memmesh.federation.session import CAUSALITY_HEADER, SessionToken
from memmesh.model import BYTES_NOT_TEXT, HistoryEntry, Hit, Link, Page, RecallResult, Stats, Tombstone, batch_items
from memmesh.model import Memory as MemoryRecord

T = TypeVar("T")

FILTER_KEYS = frozenset({"namespace", "tags", "tier", "kind", "agent_id", "since", "until", "as_of"})
RETRY_STATUSES = frozenset({429, 503})
_BY_STATUS: dict[int, type[MemmeshError]] = {
    400: InvalidInputError,
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    405: InvalidInputError,
    409: ConflictError,
    413: ContentTooLargeError,
    415: InvalidInputError,
    422: InvalidInputError,
    429: RateLimitedError,
    503: UnavailableError,
}


def error_types_by_code() -> dict[str, type[MemmeshError]]:
    """Error ``code`` → class, for every class in the tree (the root maps ``error``)."""
    return {cls.code: cls for cls in reversed(all_error_types())}


_BY_CODE = error_types_by_code()


def error_from_response(response: httpx.Response, hint: str | None = None) -> MemmeshError:
    """The MemmeshError a server's error response stands for (by code, else by status);
    ``hint`` is added to its message (what the caller's own side of it can fix)."""
    message, code, details = f"HTTP {response.status_code} from {response.request.url}", None, {}
    try:
        body = response.json()
        error = body["error"]
        message, code, details = str(error["message"]), error.get("code"), dict(error.get("details") or {})
    except (ValueError, KeyError, TypeError):
        pass
    if hint:
        message = f"{message}; {hint}"
    fallback = _BY_STATUS.get(response.status_code, StorageError if response.status_code >= 500 else MemmeshError)
    cls = _BY_CODE.get(code or "", fallback)
    try:
        return cls(message, details=details)
    except TypeError:
        return fallback(message, details=details)


def _error_code(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def retry_delay(response: httpx.Response | None, attempt: int, cap: float) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): Retry-After when given, else backoff."""
    if response is not None:
        header = response.headers.get("retry-after")
        if header is not None:
            try:
                return min(max(float(header), 0.0), cap)
            except ValueError:
                pass
    return min(0.1 * 2.0 ** (attempt - 1) * (1 + random.random()), cap)


def _json(value: dict[str, Any]) -> Any:
    """A JSON body; top-level None means "not given" (the server's default), as in Memory.
    A value JSON cannot carry is the caller's InvalidInputError naming the field, as in
    Memory: bytes (which would be sent decoded, as if text had been given) or an object."""
    body = {}
    for name, item in value.items():
        if item is None:
            continue
        if _holds_bytes(item):
            raise InvalidInputError(f"{name}: {BYTES_NOT_TEXT}")
        try:
            body[name] = to_jsonable_python(item)
        except PydanticSerializationError as exc:
            raise InvalidInputError(f"{name}: is not JSON-serialisable ({exc}); pass str, numbers, bools, None, lists and dicts") from None
    return body


def _holds_bytes(value: Any) -> bool:
    if isinstance(value, bytes | bytearray):
        return True
    if isinstance(value, Mapping):
        return any(_holds_bytes(v) for v in value.values())
    return isinstance(value, list | tuple) and any(_holds_bytes(v) for v in value)


def _query(options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Query parameters; lists repeat the name, datetimes go as RFC 3339, None is left out."""
    params: list[tuple[str, str]] = []
    for name, value in options.items():
        if value is None:
            continue
        for item in value if isinstance(value, list | tuple) else [value]:
            plain = to_jsonable_python(item)
            params.append((name, str(plain).lower() if isinstance(plain, bool) else str(plain)))
    return params


def _parser(kind: Any) -> Callable[[Any], Any]:
    adapter = TypeAdapter(kind)
    return adapter.validate_python


@dataclass(frozen=True)
class _Call(Generic[T]):
    """One HTTP request of the API and how to read its answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: list[tuple[str, str]] | None = None
    body: Any = None

    def query(self) -> tuple[tuple[str, str], ...] | None:
        """The query parameters as httpx types them (a tuple: its list type is invariant)."""
        return tuple(self.params) if self.params is not None else None


_MEMORY = _parser(MemoryRecord)
_MEMORIES = _parser(list[MemoryRecord])


def _wait(wait: bool) -> list[tuple[str, str]] | None:
    """``?wait=true`` when the caller wants the vector stored before the answer."""
    return [("wait", "true")] if wait else None


class _Calls:
    """The Memory API as HTTP calls (paths, bodies, parsers); shared by both clients."""

    @staticmethod
    def add(content: str, fields: Mapping[str, Any], wait: bool = False) -> _Call[MemoryRecord]:
        body = {"content": content, **fields}
        body["id"] = body.get("id") or new_id()
        return _Call("POST", "/api/v1/memories", _MEMORY, params=_wait(wait), body=_json(body))

    @staticmethod
    def remember(messages: Iterable[Mapping[str, Any]], fields: Mapping[str, Any]) -> _Call[dict[str, Any]]:
        """``POST /api/v1/remember``: the turns are stored; the answer names the extraction job."""
        if content := fields.get("content"):
            raise InvalidInputError(f"give content or messages, not both (got content {str(content)[:40]!r})")
        body = {"messages": [dict(m) for m in messages], **fields}
        return _Call("POST", "/api/v1/remember", dict, body=_json(body))

    @staticmethod
    def extraction_job(job_id: str) -> _Call[dict[str, Any]]:
        return _Call("GET", f"/api/v1/remember/jobs/{_segment(job_id)}", dict)

    @staticmethod
    def add_many(items: Iterable[Mapping[str, Any] | str], wait: bool = False) -> _Call[builtins.list[MemoryRecord]]:
        prepared = []
        for item in batch_items(items):
            entry = dict(item)
            entry["id"] = entry.get("id") or new_id()
            prepared.append(_json(entry))
        return _Call("POST", "/api/v1/memories/batch", _MEMORIES, params=_wait(wait), body=_json({"items": prepared}))

    @staticmethod
    def recall(query: str, options: Mapping[str, Any]) -> _Call[RecallResult]:
        body: dict[str, Any] = {"query": query}
        filters = {k: v for k, v in options.items() if k in FILTER_KEYS and v is not None}
        if filters:
            body["filters"] = filters
        body.update({k: v for k, v in options.items() if k not in FILTER_KEYS})
        return _Call("POST", "/api/v1/recall", RecallResult.model_validate, body=_json(body))

    @staticmethod
    def search(query: str, options: Mapping[str, Any]) -> _Call[RecallResult]:
        return _Call("GET", "/api/v1/search", RecallResult.model_validate, params=_query({"q": query, **options}))

    @staticmethod
    def get(memory_id: str) -> _Call[MemoryRecord]:
        return _Call("GET", f"/api/v1/memories/{_segment(memory_id)}", _MEMORY)

    @staticmethod
    def list(limit: int, cursor: str | None, filters: Mapping[str, Any]) -> _Call[Page]:
        return _Call("GET", "/api/v1/memories", Page.model_validate, params=_query({"limit": limit, "cursor": cursor, **filters}))

    @staticmethod
    def update(memory_id: str, changes: Mapping[str, Any], wait: bool = False) -> _Call[MemoryRecord]:
        return _Call("PATCH", f"/api/v1/memories/{_segment(memory_id)}", _MEMORY, params=_wait(wait), body=_json(dict(changes)))

    @staticmethod
    def delete(memory_id: str) -> _Call[Tombstone]:
        return _Call("DELETE", f"/api/v1/memories/{_segment(memory_id)}", Tombstone.model_validate)

    @staticmethod
    def delete_all(filters: Mapping[str, Any]) -> _Call[int]:
        return _Call("DELETE", "/api/v1/memories", lambda data: int(data["deleted"]), params=_query(filters))

    @staticmethod
    def history(memory_id: str) -> _Call[builtins.list[HistoryEntry]]:
        return _Call("GET", f"/api/v1/memories/{_segment(memory_id)}/history", _parser(list[HistoryEntry]))

    @staticmethod
    def link(source_id: str, target_id: str, relation: str, options: Mapping[str, Any]) -> _Call[Link]:
        body = {"source_id": source_id, "target_id": target_id, "relation": relation, **options}
        return _Call("POST", "/api/v1/links", Link.model_validate, body=_json(body))

    @staticmethod
    def links(memory_id: str) -> _Call[builtins.list[Link]]:
        return _Call("GET", f"/api/v1/memories/{_segment(memory_id)}/links", _parser(list[Link]))

    @staticmethod
    def stats() -> _Call[Stats]:
        return _Call("GET", "/api/v1/stats", Stats.model_validate)

    @staticmethod
    def curate(dry_run: bool, namespace: str | None, max_ops: int | None) -> _Call[dict[str, Any]]:
        body = {"dry_run": dry_run, "namespace": namespace, "max_ops": max_ops}
        return _Call("POST", "/api/v1/curator/run", dict, body=_json({k: v for k, v in body.items() if v is not None}))

    @staticmethod
    def curator_runs(limit: int) -> _Call[builtins.list[dict[str, Any]]]:
        return _Call("GET", "/api/v1/curator/runs", list, params=_query({"limit": limit}))

    @staticmethod
    def curator_rollback(run_id: str) -> _Call[dict[str, Any]]:
        return _Call("POST", f"/api/v1/curator/runs/{_segment(run_id)}/rollback", dict)


def _segment(value: str) -> str:
    """An id as one path segment, percent-encoded whole: ``#``, ``?`` or ``%2F`` in an id are
    part of the id, never a fragment, a query or another route. An empty, slash-bearing, ``.``
    or ``..`` id is refused: servers decode ``%2F`` before routing and URL handling removes
    dot segments, so no encoding keeps those in one segment (no id has them)."""
    if not isinstance(value, str) or not value or "/" in value or value in (".", ".."):
        raise NotFoundError(f"no memory with id {value!r}")
    return quote(value, safe="")


def _checked_key(api_key: str) -> str:
    """The key, if it is shaped like one; a placeholder copied from the docs (``mm_…``) or a key
    with stray characters would otherwise fail deep inside httpx with a UnicodeEncodeError."""
    text = api_key.strip() if isinstance(api_key, str) else ""
    if not (text.isascii() and text.isprintable() and " " not in text and split_key(text)):
        raise AuthError(
            "the API key is malformed: expected mm_<id>_<secret>, the text `memmesh keys create` printed once "
            "(a placeholder such as mm_… from the docs is not a key)"
        )
    return text


class _Base:
    def __init__(
        self, base_url: str, api_key: str | None, timeout: float, retries: int, max_retry_wait: float, session: SessionToken | None = None
    ) -> None:
        if not isinstance(base_url, str) or not base_url.strip():
            raise ConfigError(f"base_url must be the server's URL as a string, such as 'http://127.0.0.1:9077' (got {base_url!r})")
        self.session = session if session is not None else SessionToken()
        """The causality token this client sends and keeps (pass one to several clients to
        keep read-your-writes and monotonic reads while hopping between nodes)."""
        self.base_url = base_url.rstrip("/")
        self.retries = max(0, retries)
        self.max_retry_wait = max_retry_wait
        self._headers = {"Accept": "application/json", "User-Agent": "memmesh-client"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {_checked_key(api_key)}"
        self._timeout = timeout

    def _session_headers(self) -> dict[str, str]:
        token = self.session.value
        return {CAUSALITY_HEADER: token} if token else {}

    def _outcome(self, call: _Call[T], response: httpx.Response, attempt: int) -> tuple[bool, T | None]:
        """(retry?, value): retry on 429/503 and 409 not_yet while attempts remain, raise on other errors."""
        self.session.observe(response.headers.get(CAUSALITY_HEADER))
        not_yet = response.status_code == 409 and _error_code(response) == "not_yet"
        if (response.status_code in RETRY_STATUSES or not_yet) and attempt <= self.retries:
            return True, None
        if response.is_error or response.status_code == 202:  # 202: queued for approval (PendingApprovalError)
            keyless = response.status_code == 401 and "Authorization" not in self._headers
            raise error_from_response(response, hint="this client sent no key: pass api_key= to Client" if keyless else None)
        return False, call.parse(response.json() if response.content else None)

    def _closed(self) -> StorageError:
        """What a call after ``close()`` raises: the error a closed ``Memory`` raises."""
        return StorageError(f"this client of {self.base_url} is closed; make a new {type(self).__name__} to go on")

    def _unreachable(self, exc: httpx.HTTPError) -> MemmeshError:
        if isinstance(exc, httpx.TimeoutException):
            return UnavailableError(f"memmesh server at {self.base_url} did not answer in {self._timeout} s: {exc}")
        return UnavailableError(f"cannot reach the memmesh server at {self.base_url}: {exc}")


class Client(_Base):
    """A memmesh server, used like :class:`memmesh.Memory`.

    >>> with Client("http://127.0.0.1:9077", api_key="mm_…") as m:      # doctest: +SKIP
    ...     m.add("Alice prefers tea", namespace="people/alice")
    ...     m.recall("what does alice drink?").hits[0].memory.content
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:9077",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        session: SessionToken | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout, retries, max_retry_wait, session)
        self._http = httpx.Client(base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport)

    def _run(self, call: _Call[T]) -> T:
        if self._http.is_closed:
            raise self._closed()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(call.method, call.path, params=call.query(), json=call.body, headers=self._session_headers())
            except httpx.ConnectError as exc:
                if attempt > self.retries:
                    raise self._unreachable(exc) from exc
                time.sleep(retry_delay(None, attempt, self.max_retry_wait))
                continue
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from exc
            outcome = self._outcome(call, response, attempt)
            if not outcome[0]:
                return cast(T, outcome[1])
            time.sleep(retry_delay(response, attempt, self.max_retry_wait))

    @overload
    def add(self, content: str, *, wait: bool = False, **fields: Any) -> MemoryRecord: ...

    @overload
    def add(self, content: None = None, *, messages: Iterable[Mapping[str, Any]], **fields: Any) -> dict[str, Any]: ...

    def add(
        self, content: str | None = None, *, messages: Iterable[Mapping[str, Any]] | None = None, wait: bool = False, **fields: Any
    ) -> MemoryRecord | dict[str, Any]:
        """Store one memory; fields as in docs/concepts.md. A client id is generated when none is given.
        ``wait=True``: answered once the vector is stored too (``?wait=true``).

        With ``messages`` (and optionally session_id, namespace, infer, agent_id): remember a
        conversation (``POST /api/v1/remember``); the answer (a dict) holds the stored turns
        and the ``job_id`` of the extraction running on the server (:meth:`extraction_job`)."""
        if messages is not None:
            return self._run(_Calls.remember(messages, {"content": content, **fields}))
        if content is None:
            raise InvalidInputError("give the content to store, or messages=[{'role': ..., 'content': ...}] to remember a conversation")
        return self._run(_Calls.add(content, fields, wait))

    def extraction_job(self, job_id: str) -> dict[str, Any]:
        """Status and report of a background extraction (``GET /api/v1/remember/jobs/{id}``)."""
        return self._run(_Calls.extraction_job(job_id))

    def add_many(self, items: Iterable[Mapping[str, Any] | str], *, wait: bool = False) -> builtins.list[MemoryRecord]:
        """Store many memories in one transaction (strings or dicts with ``content``)."""
        return self._run(_Calls.add_many(items, wait))

    def search(self, query: str, **options: Any) -> builtins.list[Hit]:
        """Keyword (BM25) hits, never counted as an access (``GET /api/v1/search``); options:
        the filters, top_k, explain. :meth:`recall` finds by meaning."""
        return self._run(_Calls.search(query, options)).hits

    def recall(self, query: str, **options: Any) -> RecallResult:
        """Hits plus the mode used, what a token budget dropped, and notices."""
        return self._run(_Calls.recall(query, options))

    def get(self, memory_id: str) -> MemoryRecord:
        return self._run(_Calls.get(memory_id))

    def get_all(self, *, limit: int = 100, cursor: str | None = None, **filters: Any) -> builtins.list[MemoryRecord]:
        """Memories newest first (one page; use :meth:`list` for the cursor)."""
        return self._run(_Calls.list(limit, cursor, filters)).items

    def list(self, *, limit: int = 100, cursor: str | None = None, **filters: Any) -> Page:
        return self._run(_Calls.list(limit, cursor, filters))

    def update(self, memory_id: str, *, wait: bool = False, **changes: Any) -> MemoryRecord:
        return self._run(_Calls.update(memory_id, changes, wait))

    def delete(self, memory_id: str) -> Tombstone:
        return self._run(_Calls.delete(memory_id))

    def delete_all(self, **filters: Any) -> int:
        return self._run(_Calls.delete_all(filters))

    def history(self, memory_id: str) -> builtins.list[HistoryEntry]:
        return self._run(_Calls.history(memory_id))

    def link(self, source_id: str, target_id: str, relation: str = "related_to", **options: Any) -> Link:
        return self._run(_Calls.link(source_id, target_id, relation, options))

    def links(self, memory_id: str) -> builtins.list[Link]:
        return self._run(_Calls.links(memory_id))

    def stats(self) -> Stats:
        return self._run(_Calls.stats())

    # The curator's reports come back as the server's JSON (dicts, the shapes in docs/curator.md): their
    # models live with the curator, which this light client does not import.
    def curate(self, *, dry_run: bool = False, namespace: str | None = None, max_ops: int | None = None) -> dict[str, Any]:
        """One curator run on the server (``POST /api/v1/curator/run``), as :meth:`Memory.curate`."""
        return self._run(_Calls.curate(dry_run, namespace, max_ops))

    def curator_runs(self, *, limit: int = 20) -> builtins.list[dict[str, Any]]:
        """Recorded curator runs, newest first, as :meth:`Memory.curator_runs`."""
        return self._run(_Calls.curator_runs(limit))

    def curator_rollback(self, run_id: str) -> dict[str, Any]:
        """Put back exactly what curator run ``run_id`` changed, as :meth:`Memory.curator_rollback`."""
        return self._run(_Calls.curator_rollback(run_id))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Base):
    """:class:`Client` for asyncio code: the same methods, each a coroutine."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:9077",
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        max_retry_wait: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        session: SessionToken | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout, retries, max_retry_wait, session)
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport)

    async def _run(self, call: _Call[T]) -> T:
        if self._http.is_closed:
            raise self._closed()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.query(), json=call.body, headers=self._session_headers()
                )
            except httpx.ConnectError as exc:
                if attempt > self.retries:
                    raise self._unreachable(exc) from exc
                await asyncio.sleep(retry_delay(None, attempt, self.max_retry_wait))
                continue
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from exc
            outcome = self._outcome(call, response, attempt)
            if not outcome[0]:
                return cast(T, outcome[1])
            await asyncio.sleep(retry_delay(response, attempt, self.max_retry_wait))

    @overload
    async def add(self, content: str, *, wait: bool = False, **fields: Any) -> MemoryRecord: ...

    @overload
    async def add(self, content: None = None, *, messages: Iterable[Mapping[str, Any]], **fields: Any) -> dict[str, Any]: ...

    async def add(
        self, content: str | None = None, *, messages: Iterable[Mapping[str, Any]] | None = None, wait: bool = False, **fields: Any
    ) -> MemoryRecord | dict[str, Any]:
        """Store one memory; fields as in docs/concepts.md. A client id is generated when none is given
        (with ``messages``: remember a conversation, as :meth:`Client.add`)."""
        if messages is not None:
            return await self._run(_Calls.remember(messages, {"content": content, **fields}))
        if content is None:
            raise InvalidInputError("give the content to store, or messages=[{'role': ..., 'content': ...}] to remember a conversation")
        return await self._run(_Calls.add(content, fields, wait))

    async def extraction_job(self, job_id: str) -> dict[str, Any]:
        return await self._run(_Calls.extraction_job(job_id))

    async def add_many(self, items: Iterable[Mapping[str, Any] | str], *, wait: bool = False) -> builtins.list[MemoryRecord]:
        return await self._run(_Calls.add_many(items, wait))

    async def search(self, query: str, **options: Any) -> builtins.list[Hit]:
        return (await self._run(_Calls.search(query, options))).hits

    async def recall(self, query: str, **options: Any) -> RecallResult:
        return await self._run(_Calls.recall(query, options))

    async def get(self, memory_id: str) -> MemoryRecord:
        return await self._run(_Calls.get(memory_id))

    async def get_all(self, *, limit: int = 100, cursor: str | None = None, **filters: Any) -> builtins.list[MemoryRecord]:
        return (await self._run(_Calls.list(limit, cursor, filters))).items

    async def list(self, *, limit: int = 100, cursor: str | None = None, **filters: Any) -> Page:
        return await self._run(_Calls.list(limit, cursor, filters))

    async def update(self, memory_id: str, *, wait: bool = False, **changes: Any) -> MemoryRecord:
        return await self._run(_Calls.update(memory_id, changes, wait))

    async def delete(self, memory_id: str) -> Tombstone:
        return await self._run(_Calls.delete(memory_id))

    async def delete_all(self, **filters: Any) -> int:
        return await self._run(_Calls.delete_all(filters))

    async def history(self, memory_id: str) -> builtins.list[HistoryEntry]:
        return await self._run(_Calls.history(memory_id))

    async def link(self, source_id: str, target_id: str, relation: str = "related_to", **options: Any) -> Link:
        return await self._run(_Calls.link(source_id, target_id, relation, options))

    async def links(self, memory_id: str) -> builtins.list[Link]:
        return await self._run(_Calls.links(memory_id))

    async def stats(self) -> Stats:
        return await self._run(_Calls.stats())

    async def curate(self, *, dry_run: bool = False, namespace: str | None = None, max_ops: int | None = None) -> dict[str, Any]:
        """As :meth:`Client.curate`."""
        return await self._run(_Calls.curate(dry_run, namespace, max_ops))

    async def curator_runs(self, *, limit: int = 20) -> builtins.list[dict[str, Any]]:
        return await self._run(_Calls.curator_runs(limit))

    async def curator_rollback(self, run_id: str) -> dict[str, Any]:
        return await self._run(_Calls.curator_rollback(run_id))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


__all__ = ["AsyncClient", "Client", "error_from_response"]
