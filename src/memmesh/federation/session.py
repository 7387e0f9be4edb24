"""Session guarantees across nodes: read-your-writes and monotonic reads for a client that
talks to a different node on every request (issue 24).

A **causality token** says what state a client has seen: for each node, a change number of
that node's feed (``node-a:120,node-b:87``). Every answer carries the token of the node that
gave it, merged with the one the client sent; the client sends it back with its next
request, to whichever node.

A node *covers* a token when, for every entry, it holds that node's state up to that change:
its own change counter for its own entry, and for a peer the cursor up to which it applied
that peer's feed. A node's feed holds every change it made or applied, so covering
``node-b:87`` means holding everything node-b held when it answered: what the client wrote
there, and every version it read there. A node that does not cover a token waits a short,
bounded time for replication to catch up, then answers ``409 not_yet`` (with what it lacks
and a ``Retry-After``) instead of an older value. It never answers silently from the past.

Why change numbers, not one HLC timestamp: an HLC says when, not what; a node whose clock
passed a client's timestamp may still lack the write itself. Cursors over each node's feed
say exactly what was applied. Pure rules plus a wait; the HTTP face only parses the header.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from memmesh.errors import InvalidInputError, NotYetError
from memmesh.model import NODE_ID_PATTERN

if TYPE_CHECKING:
    from memmesh.store.base import Store


class Node(Protocol):
    """What the token checks read of a node (the service): its id and its store. A protocol,
    so this module stays wire-level (the remote client uses it) and never imports the service."""

    @property
    def node_id(self) -> str: ...

    @property
    def store(self) -> Store: ...


CAUSALITY_HEADER = "X-Memmesh-Causality"
MAX_ENTRIES = 64
WAIT_S = 2.0
"""How long a node waits for replication to cover a token before answering ``not_yet``."""
_ENTRY = re.compile(NODE_ID_PATTERN[1:-1] + r":[0-9]{1,18}")


def parse_token(text: str | None) -> dict[str, int]:
    """``node:seq,node:seq`` as a mapping; an empty or absent token is ``{}``."""
    if text is None or not text.strip():
        return {}
    entries = [part.strip() for part in text.split(",") if part.strip()]
    if len(entries) > MAX_ENTRIES:
        raise InvalidInputError(f"causality token has {len(entries)} entries; at most {MAX_ENTRIES} (one per node)")
    token: dict[str, int] = {}
    for entry in entries:
        if not _ENTRY.fullmatch(entry):
            raise InvalidInputError(
                f"causality token entry {entry[:80]!r} is not 'node-id:change-number': send back the "
                f"{CAUSALITY_HEADER} value a memmesh node answered, unchanged"
            )
        node, seq = entry.rsplit(":", 1)
        token[node] = max(token.get(node, 0), int(seq))
    return token


def format_token(token: Mapping[str, int]) -> str:
    return ",".join(f"{node}:{seq}" for node, seq in sorted(token.items()))


def merge_tokens(*tokens: Mapping[str, int]) -> dict[str, int]:
    """Entry-wise maximum: a token that has seen everything each of them has."""
    merged: dict[str, int] = {}
    for token in tokens:
        for node, seq in token.items():
            merged[node] = max(merged.get(node, 0), seq)
    return merged


def node_token(service: Node, seen: Mapping[str, int] | None = None) -> dict[str, int]:
    """What an answer from this node lets its client claim: this node's change counter,
    merged with what the client had seen already."""
    return merge_tokens(seen or {}, {service.node_id: service.store.change_counter()})


def missing(service: Node, token: Mapping[str, int]) -> dict[str, int]:
    """The entries of ``token`` this node does not cover yet (empty when it covers all)."""
    if not token:
        return {}
    own = service.node_id
    cursors = {peer.node_id: peer.recv_seq for peer in service.store.peers()} if set(token) - {own} else {}
    lacking = {}
    for node, seq in token.items():
        held = service.store.change_counter() if node == own else cursors.get(node, 0)
        if held < seq:
            lacking[node] = seq
    return lacking


MAX_WAITERS = 8
"""Requests one process lets wait for replication at once. The header is read before the
caller's key is checked, so without a bound anyone could park every worker thread on a token
no node will ever cover; past the bound a request is answered ``not_yet`` at once."""
_waiters = threading.BoundedSemaphore(MAX_WAITERS)


def _not_yet(service: Node, lacking: Mapping[str, int], why: str = "") -> NotYetError:
    return NotYetError(
        f"node {service.node_id} has not yet received the changes this session has seen "
        f"({format_token(lacking)}){why}; retry shortly, or ask a node that has them",
        details={"node": service.node_id, "missing": dict(lacking), "retry_after": 1},
    )


def await_token(service: Node, token: Mapping[str, int], wait_s: float = WAIT_S) -> None:
    """Return once this node covers ``token``; after ``wait_s`` raise :class:`NotYetError`.

    Waiting only helps when replication can still bring the change: a number of this node's
    own feed beyond its counter never arrives (no answer of this node gave it), so it is
    refused at once, as is any wait beyond :data:`MAX_WAITERS` concurrent ones."""
    lacking = missing(service, token)
    if not lacking:
        return
    if service.node_id in lacking:
        raise _not_yet(service, lacking, " (this node's own changes never went that far)")
    if not _waiters.acquire(blocking=False):
        raise _not_yet(service, lacking, f" (already {MAX_WAITERS} requests wait for replication here)")
    try:
        _wait_for(service, token, wait_s)
    finally:
        _waiters.release()


def _wait_for(service: Node, token: Mapping[str, int], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    pause = 0.01
    while True:
        lacking = missing(service, token)
        if not lacking:
            return
        if time.monotonic() >= deadline:
            raise _not_yet(service, lacking)
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(pause * 2, 0.1)


class SessionToken:
    """A client's causality token (what :class:`memmesh.Client` sends and updates on every
    call). Share one between clients of different nodes to keep one session across them."""

    def __init__(self, value: str | None = None) -> None:
        self._token = parse_token(value)
        self._lock = threading.Lock()

    @property
    def value(self) -> str | None:
        """The header value to send, or None before the first answer."""
        with self._lock:
            return format_token(self._token) or None

    def observe(self, header: str | None) -> None:
        """Merge the token a node answered with (a malformed one is ignored: it came from
        something that is not a memmesh node, and the session keeps what it had)."""
        try:
            answered = parse_token(header)
        except InvalidInputError:
            return
        with self._lock:
            self._token = merge_tokens(self._token, answered)
