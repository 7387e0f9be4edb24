"""The audit log's two hash structures: the entry chain and the Merkle tree over it.

Chain: ``hash[i] = sha256(hash[i-1] || canonical(entry i))`` with 32 zero bytes before
entry 0. A chain alone shows a changed row, but whoever can write the database can also
recompute every later hash, so the entry hashes are also the leaves of an RFC 6962 Merkle
tree whose root is signed outside the database (see :mod:`memmesh.audit.notes`). The tree
is kept as a *compact range* (the roots of the complete subtrees covering the leaves, left
to right), so appending a leaf and computing the root at any size are O(log n).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

GENESIS = bytes(32)
EMPTY_ROOT = hashlib.sha256(b"").digest()


encode_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``, without building an encoder per call."""

quote: Callable[[str], str] = json.encoder.encode_basestring
"""A str as a JSON string literal, exactly as ``json.dumps(..., ensure_ascii=False)`` writes
it (the same C function the encoder calls); raises TypeError for anything but a str."""


def canonical(idx: int, at: str, actor: str, action: str, namespace: str | None, target: str | None, detail: str) -> bytes:
    """The bytes an entry's hash covers: the JSON array ``[idx, at, actor, action, namespace,
    target, detail]`` (unambiguous whatever the fields hold), compact and not ASCII-escaped.

    Written field by field rather than with ``json.dumps``: the fields' types are fixed (an
    int, strings, two optional strings), so each is one C call and no encoder is built per
    entry; this is the audit's hottest line (every append, every checkpoint, every verify).
    ``tests/audit/test_fast_paths.py`` proves it byte-equal to :data:`encode_compact` of the
    list. A non-int index or non-str field (a row an attacker retyped) raises TypeError."""
    if type(idx) is not int:
        raise TypeError(f"an audit index is an int, not {type(idx).__name__}")
    ns = "null" if namespace is None else quote(namespace)
    tg = "null" if target is None else quote(target)
    return f"[{idx},{quote(at)},{quote(actor)},{quote(action)},{ns},{tg},{quote(detail)}]".encode()


def entry_hash(prev: bytes, idx: int, at: str, actor: str, action: str, namespace: str | None, target: str | None, detail: str) -> bytes:
    """``sha256(prev || canonical(entry))``: :func:`canonical` written out here rather than
    called (one Python call less per entry appended or verified; ``tests/audit/test_fast_paths.py``
    proves the two spell the same bytes)."""
    if type(idx) is not int:
        raise TypeError(f"an audit index is an int, not {type(idx).__name__}")
    ns = "null" if namespace is None else quote(namespace)
    tg = "null" if target is None else quote(target)
    return _sha256(prev + f"[{idx},{quote(at)},{quote(actor)},{quote(action)},{ns},{tg},{quote(detail)}]".encode()).digest()


_sha256 = hashlib.sha256


def detail_text(detail: dict[str, Any] | None) -> str:
    """An entry's detail as stored: canonical JSON (sorted keys), so its hash is reproducible."""
    return _encode_detail(detail or {})


def history_detail(digest_hex: str, fields: list[str] | None, rule: int = 1) -> str:
    """:func:`detail_text` of ``{"digest": digest_hex, "fields": fields, "rule": rule}`` (no
    ``fields`` key when None, no ``rule`` key for rule 1, as entries written before rule 2
    have none), written directly: every memory change has this detail, so it is built
    without the generic encoder (keys already in sorted order; proven equal in
    ``tests/audit/test_fast_paths.py``)."""
    text = '{"digest":' + quote(digest_hex)
    if fields is not None:
        text += ',"fields":[' + ",".join(map(quote, fields)) + "]"
    if rule != 1:
        text += f',"rule":{int(rule)}'
    return text + "}"


def change_detail(old_text: str | None, new_text: str | None, fields: list[str] | None) -> str:
    """The detail of a memory-change entry this version writes: :func:`history_detail` of
    the rule 2 :func:`history_digest` of the history row's stored text, in one call (every
    memory write makes one; proven equal to the two in ``tests/audit/test_fast_paths.py``)."""
    digest_hex = _sha256(f"[{'null' if old_text is None else old_text},{'null' if new_text is None else new_text}]".encode()).hexdigest()
    if fields is None:
        return '{"digest":"' + digest_hex + '","rule":2}'  # a hex digest needs no quoting
    return '{"digest":"' + digest_hex + '","fields":[' + ",".join(map(quote, fields)) + '],"rule":2}'


HISTORY_RULE = 2
"""The digest rule of the memory-change entries this version writes (the detail's ``rule``).

1 (entries without ``rule``): :func:`digest` of ``[old, new]``, the change re-encoded with
sorted keys. 2: :func:`history_digest` of the JSON text the history row stores, which the
history writer has already encoded: the change is serialised once per write instead of twice
(issue 24: the second encoding was a third of the audit's cost per write). Either way the
chain covers the detail's text, so ``verify`` checks both kinds alike; the rule only says how
to recompute a digest from the history (:func:`change_digest`)."""


def history_digest(old_text: str | None, new_text: str | None) -> str:
    """Rule 2: sha256 of ``[old,new]`` spelled with the history row's stored JSON text (``null``
    for a NULL column). Unambiguous: each part is one complete JSON value, no separator inside."""
    data = f"[{'null' if old_text is None else old_text},{'null' if new_text is None else new_text}]"
    return hashlib.sha256(data.encode()).hexdigest()


def change_digest(rule: int, old: Any, new: Any, old_text: str | None, new_text: str | None) -> str:
    """The digest a memory-change entry of ``rule`` holds for a history row: ``old``/``new``
    as read back (rule 1), their stored JSON text (rule 2). How a change is proven against the
    history; raises ValueError for a rule this version does not know."""
    if rule == 1:
        return digest([old, new])
    if rule == 2:
        return history_digest(old_text, new_text)
    raise ValueError(f"unknown audit digest rule {rule!r} (this memmesh knows rules 1 and 2)")


_encode_detail = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode
"""``json.dumps`` with detail_text's arguments, without building an encoder per call."""


def digest(value: Any) -> str:
    """sha256 of a value's canonical JSON: what the log keeps of a change's content (the
    change is provable against the history without the log holding the content itself)."""
    return hashlib.sha256(_encode_digest(value).encode()).hexdigest()


_encode_digest = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str, check_circular=False).encode
"""No cycle check: digests cover JSON-shaped snapshots (which cannot hold a cycle), once per change."""


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


@dataclass
class Frontier:
    """An RFC 6962 Merkle tree over entry hashes, as its compact range.

    ``nodes`` are the roots of the perfect subtrees covering leaves ``[0, size)``, largest
    (leftmost) first; their sizes are the set bits of ``size``, high to low.
    """

    size: int = 0
    nodes: list[bytes] = field(default_factory=list)

    def append(self, entry: bytes) -> None:
        node = leaf_hash(entry)
        size = self.size
        while size & 1:  # merge with each complete subtree of the same height
            node = node_hash(self.nodes.pop(), node)
            size >>= 1
        self.nodes.append(node)
        self.size += 1

    def root(self) -> bytes:
        """The tree head at this size (RFC 6962 MTH): fold the range from the right."""
        if not self.nodes:
            return EMPTY_ROOT
        acc = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            acc = node_hash(node, acc)
        return acc

    def copy(self) -> Frontier:
        return Frontier(self.size, list(self.nodes))

    def to_hex(self) -> tuple[str, ...]:
        return tuple(n.hex() for n in self.nodes)

    @classmethod
    def from_hex(cls, size: int, nodes: tuple[str, ...] | list[str]) -> Frontier:
        """A compact range read back; raises ValueError when it cannot be one of ``size`` leaves."""
        parsed = [bytes.fromhex(n) for n in nodes]
        if size < 0 or len(parsed) != bin(size).count("1") or any(len(n) != 32 for n in parsed):
            raise ValueError(f"not a compact range of {size} leaves")
        return cls(size, parsed)


def merkle_root(entries: list[bytes]) -> bytes:
    """The RFC 6962 root of these leaves, computed recursively (the reference the tests use)."""
    if not entries:
        return EMPTY_ROOT
    if len(entries) == 1:
        return leaf_hash(entries[0])
    k = 1
    while k * 2 < len(entries):
        k *= 2
    return node_hash(merkle_root(entries[:k]), merkle_root(entries[k:]))
