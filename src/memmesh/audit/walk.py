"""The hot loop of audit verification, written once for both verifiers.

The one-process pass (:func:`memmesh.audit.verify.verify_log`) and each range worker
(:mod:`memmesh.audit.range_worker`) check rows the same way: each row's canonical encoding
(:func:`memmesh.audit.chain.canonical`) hashed onto the previous hash must equal its stored
hash, and its leaf is pushed onto the RFC 6962 compact range (:meth:`memmesh.audit.chain.Frontier.append`).
Both are inlined here, because a verification of a million entries spends its time in this
loop (``tests/audit/test_fast_paths.py`` holds the encoding to the reference one).

Standard library only: the range worker runs as a script that must not import memmesh (a
worker starts in tens of milliseconds instead of seconds), so it loads this file by path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Iterable, Iterator, Sequence
from json.encoder import encode_basestring as quote
from typing import Any

MISPLACED = "misplaced"
"""A row whose index is not the next one (a gap, a repeat, or not an integer)."""
MODIFIED = "modified"
"""A row whose fields, hashed onto the previous hash, do not give its stored hash."""


class ChainWalk:
    """Check rows in index order from a known state: the hash before the first row (``prev``),
    the compact range (``nodes``, covering ``size`` leaves) and the next index (``expected``).

    :meth:`run` stops at the first bad row and says why in ``failure`` (``bad_idx`` is the
    index that stood where ``expected`` was wanted); ``nodes`` is updated in place.
    """

    def __init__(self, prev: bytes, nodes: list[bytes], size: int, expected: int) -> None:
        self.prev = prev
        self.nodes = nodes
        self.size = size
        self.expected = expected
        self.failure: str | None = None
        self.bad_idx: object = None

    def run(self, rows: Iterable[Sequence[Any]], stops: Container[int] = ()) -> Iterator[int]:
        """Check each ``(idx, at, actor, action, namespace, target, detail, hash)`` row; yield
        the next index each time it is in ``stops`` (a checkpoint size: the caller reads
        ``nodes`` there), with this walk's state brought up to date, so a caller that stops
        iterating there still reads the right ``expected``."""
        sha = hashlib.sha256
        nodes = self.nodes
        prev, size, expected = self.prev, self.size, self.expected
        for idx, at, actor, action, namespace, target, detail, stored in rows:
            if idx != expected or type(idx) is not int:
                self.failure, self.bad_idx = MISPLACED, idx
                break
            try:
                ns = "null" if namespace is None else quote(namespace)
                tg = "null" if target is None else quote(target)
                data = f"[{idx},{quote(at)},{quote(actor)},{quote(action)},{ns},{tg},{quote(detail)}]".encode()
            except (TypeError, UnicodeEncodeError):
                self.failure = MODIFIED  # a field retyped or not text: it cannot match any hash the log wrote
                break
            digest = sha(prev + data).digest()
            if digest.hex() != stored:
                self.failure = MODIFIED
                break
            prev = digest
            node = sha(b"\x00" + digest).digest()
            n = size
            while n & 1:  # merge with each complete subtree of the same height
                node = sha(b"\x01" + nodes.pop() + node).digest()
                n >>= 1
            nodes.append(node)
            size += 1
            expected += 1
            if expected in stops:
                self.prev, self.size, self.expected = prev, size, expected
                yield expected
        self.prev, self.size, self.expected = prev, size, expected
