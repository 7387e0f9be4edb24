"""Per-namespace content digests: how two nodes find out, cheaply, whether and where they differ.

Anti-entropy repairs what pushes and catch-up missed (a bug, a restored backup, a row lost
to a disk). Comparing whole stores would cost every row; instead each node summarises its
replicated state as a Merkle-style tree:

* a **row** is one replicated fact, named by a key and summarised by a value that changes
  whenever the fact does: a memory or a tombstone by its version stamp ``hlc@node`` (a stamp
  names exactly one write, so equal stamps mean equal content), a link by its
  :func:`link_order`, a recorded conflict by its loser's stamp.
  Links with a dead end (a memory deleted on this node) are hidden and not digested, like
  everywhere else; local-only facts (access counts, vector clocks' joined counters) are
  not digested, so they never look like divergence;
* bus chat conversations and messages are rows too (their stamps: the conversation's kind and
  token hash, the message's ``hlc@origin``), in the pseudo-namespace :data:`BUS_NAMESPACE`,
  and registered agents (stamped by their ``updated_at`` and record) in :data:`AGENTS_NAMESPACE`;
* rows belong to a **namespace** (a link to its source memory's, a conflict to its memory's)
  and to a **bucket**: the SHA-256 of the memory id they concern, in hex, so all facts about
  one memory sit together and buckets fill evenly whatever ids look like;
* the digest of a set of rows is the SHA-256 of their sorted row hashes; a tree node is a
  hex prefix of the bucket, with ``FANOUT`` (16) children one hex digit longer.

Two nodes compare namespace digests, then descend only into children whose digests differ,
until a side has at most :data:`LEAF_ROWS` rows under a prefix: then the rows themselves
are exchanged. One diverged memory among N rows costs about ``log16(N / LEAF_ROWS)`` round
trips of 16 digests and at most ``2 × LEAF_ROWS`` rows. Pure over a store: no HTTP here.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from memmesh.errors import InvalidInputError

if TYPE_CHECKING:
    from memmesh.model import Link
    from memmesh.store.base import Store

LEAF_ROWS = 32
"""A tree node with at most this many rows answers with its rows instead of its children."""
HEX = "0123456789abcdef"
EMPTY = hashlib.sha256(b"").hexdigest()
STANDARD_KEY = "standard:"
PENDING_KEY = "pending:"
"""How a digest row names a namespace standard (by namespace) or a pending action (by id)
where other rows name a memory: anti-entropy asks the peer's items call for these ids."""
AGENTS_NAMESPACE = "#agents"
"""Where the digest files registered agents (store-wide identities, in no memory namespace)."""
AGENT_KEY = "agent:"
"""How a digest row names a registered agent (``agent:<agent id>``) for the peer's items call."""
BUS_NAMESPACE = "#bus"
"""Where the digest files bus chat conversations and messages: they belong to no memory
namespace, and ``#`` can begin none, so this never meets a real one."""
BUS_KEY = "bus:"
"""How a digest row names a bus conversation (``bus:<conversation>``) or message
(``bus:<conversation>/<message>``): the peer's items call answers for these, a message with
its conversation (a node must hold the conversation to take in its messages)."""


@dataclass(frozen=True)
class Row:
    """One replicated fact: its namespace, bucket (sha256 of its memory id), key and value."""

    namespace: str
    bucket: str
    memory_id: str
    key: str
    value: str

    def hash(self) -> bytes:
        return hashlib.sha256(f"{self.key}\x1f{self.value}".encode()).digest()


class NamespaceDigest(BaseModel):
    """One namespace's rows on one node: how many and their digest."""

    namespace: str
    rows: int
    digest: str


class DigestReport(BaseModel):
    """Every namespace's digest on one node (``GET /api/v1/sync/digest``)."""

    node: str
    namespaces: list[NamespaceDigest] = Field(default_factory=list)
    digest: str = Field(description="all namespaces together: equal on two nodes exactly when their replicated state is")

    def by_namespace(self) -> dict[str, NamespaceDigest]:
        return {n.namespace: n for n in self.namespaces}


class DigestLeaf(BaseModel):
    """One row, as exchanged at the bottom of the tree."""

    memory_id: str
    key: str
    value: str


class DigestChild(BaseModel):
    rows: int
    digest: str


class DigestNode(BaseModel):
    """One tree node (``GET /api/v1/sync/digest?namespace=&prefix=``): its children's digests,
    or its rows when it holds at most ``LEAF_ROWS`` (or ``leaves`` was asked for)."""

    node: str
    namespace: str
    prefix: str
    rows: int
    digest: str
    children: dict[str, DigestChild] | None = None
    leaves: list[DigestLeaf] | None = None


def _stamp(version: object) -> str:
    if isinstance(version, dict):
        return f"{version.get('hlc', '')}@{version.get('node', '')}"
    return f"{getattr(version, 'hlc', '')}@{getattr(version, 'node', '')}"


def _bucket(memory_id: str) -> str:
    return hashlib.sha256(memory_id.encode()).hexdigest()


def link_order(link: Link) -> tuple[str, ...]:
    """A total order on versions of one link (links carry no version): the later-created
    wins, then an invalidated one over an open one. A join, so nodes converge."""
    return (
        link.created_at.isoformat(),
        "1" if link.valid_until else "0",
        link.valid_until.isoformat() if link.valid_until else "",
        link.valid_from.isoformat() if link.valid_from else "",
        link.observed_by or "",
    )


def rows(store: Store) -> list[Row]:
    """Every digested row of ``store`` (see the module docstring for what a row is)."""
    out: list[Row] = []
    namespace_of: dict[str, str] = {}
    live: set[str] = set()
    for kind, namespace, memory_id, version in store.version_rows():
        namespace_of[memory_id] = namespace
        if kind == "m":
            live.add(memory_id)
        out.append(Row(namespace, _bucket(memory_id), memory_id, f"{kind}|{memory_id}", _stamp(version)))
    for link in store.iter_links():
        if link.source_id not in live or link.target_id not in live:
            continue  # a dead end: hidden while that memory is deleted here
        key = f"l|{link.source_id}|{link.target_id}|{link.relation.value}"
        out.append(Row(namespace_of[link.source_id], _bucket(link.source_id), link.source_id, key, "|".join(link_order(link))))
    for conflict in store.conflicts():
        out.append(Row(conflict.namespace, _bucket(conflict.memory_id), conflict.memory_id, f"c|{conflict.id}", _stamp(conflict.version)))
    return out + governed_rows(store) + bus_rows(store) + agent_rows(store)


def agent_rows(store: Store) -> list[Row]:
    """A row per registered agent, in :data:`AGENTS_NAMESPACE`, stamped by what its merge
    orders on (the later ``updated_at``, then the record itself), so two nodes that resolved
    an agent alike digest it alike."""
    out = []
    for agent in store.agents():
        named = AGENT_KEY + agent.agent_id
        record = hashlib.sha256(agent.model_dump_json().encode()).hexdigest()[:16]
        out.append(Row(AGENTS_NAMESPACE, _bucket(named), named, f"a|{agent.agent_id}", f"{agent.updated_at.isoformat()}|{record}"))
    return out


def agent_ids(ids: list[str]) -> set[str]:
    """The registered agents that ``ids`` name by :data:`AGENT_KEY`."""
    return {named.removeprefix(AGENT_KEY) for named in ids if named.startswith(AGENT_KEY)}


def bus_rows(store: Store) -> list[Row]:
    """A row per replicated bus chat conversation and message (queues stay local), in
    :data:`BUS_NAMESPACE`, bucketed by the name :data:`BUS_KEY` gives it, so one message
    among many costs what one memory does. Messages never change: a row differs only when
    one node lacks it."""
    out = []
    for kind, conversation, ident, stamp in store.bus_version_rows():
        named = BUS_KEY + conversation + (f"/{ident}" if kind == "m" else "")
        out.append(Row(BUS_NAMESPACE, _bucket(named), named, f"b{kind}|{ident}", stamp))
    return out


def bus_ids(ids: list[str]) -> tuple[list[str], list[str]]:
    """The conversations and messages that ``ids`` name by :data:`BUS_KEY` (a message names its
    conversation too), each list without repeats."""
    conversations: dict[str, None] = {}
    messages: dict[str, None] = {}
    for named in ids:
        if named.startswith(BUS_KEY):
            conversation, _, message = named.removeprefix(BUS_KEY).partition("/")
            conversations[conversation] = None
            if message:
                messages[message] = None
    return list(conversations), list(messages)


def governed_rows(store: Store) -> list[Row]:
    """A row per replicated namespace standard (set or cleared) and pending action, in its
    namespace: the standard's stamp and whether it is cleared, the action's status and stamp
    (a decision or outcome changes it). Their ``memory_id`` is ``standard:<namespace>`` or
    ``pending:<id>``, what the peer's items call answers for. Rows without a stamp (written
    before schema 20, not replicated until they change) are left out, as the feed does."""
    with store.reading() as conn:
        stamped = "WHERE hlc IS NOT NULL AND hlc <> ''"
        standards = conn.execute(f"SELECT namespace, hlc, node, cleared FROM namespace_standards {stamped}").fetchall()
        pending = conn.execute(f"SELECT id, namespace, status, hlc, node FROM pending_actions {stamped}").fetchall()
    out = []
    for namespace, hlc, node, cleared in standards:
        named = STANDARD_KEY + namespace
        out.append(Row(namespace, _bucket(named), named, f"s|{namespace}", f"{hlc}@{node}|{int(bool(cleared))}"))
    for ident, namespace, status, hlc, node in pending:
        named = PENDING_KEY + ident
        out.append(Row(namespace, _bucket(named), named, f"p|{ident}", f"{status}|{hlc}@{node}"))
    return out


def digest_of(selected: Iterable[Row]) -> str:
    """The digest of a set of rows (order-independent: row hashes are sorted first)."""
    hashes = sorted(row.hash() for row in selected)
    if not hashes:
        return EMPTY
    return hashlib.sha256(b"".join(hashes)).hexdigest()


def namespace_digests(store: Store, node: str) -> DigestReport:
    """Every namespace's digest: the public summary two nodes (or ``memmesh chaos``) compare.
    Equal digests for every namespace mean the nodes hold the same replicated state."""
    return digests_from(rows(store), node)


def digests_from(all_rows: list[Row], node: str) -> DigestReport:
    """:func:`namespace_digests` over rows already read."""
    grouped: dict[str, list[Row]] = defaultdict(list)
    for row in all_rows:
        grouped[row.namespace].append(row)
    spaces = [NamespaceDigest(namespace=ns, rows=len(found), digest=digest_of(found)) for ns, found in sorted(grouped.items())]
    overall = hashlib.sha256("".join(f"{n.namespace}\x1f{n.digest}\n" for n in spaces).encode()).hexdigest()
    return DigestReport(node=node, namespaces=spaces, digest=overall)


def check_prefix(prefix: str) -> str:
    """A bucket prefix: lower-case hex, at most 64 digits."""
    if len(prefix) > 64 or any(ch not in HEX for ch in prefix):
        raise InvalidInputError(f"prefix must be up to 64 lower-case hex digits (got {prefix!r})")
    return prefix


def tree_node(store: Store, node: str, namespace: str, prefix: str = "", *, leaves: bool = False) -> DigestNode:
    """The tree node for ``prefix`` in ``namespace`` of ``store``: see :func:`tree_node_from`."""
    return tree_node_from(rows(store), node, namespace, prefix, leaves=leaves)


def tree_node_from(all_rows: list[Row], node: str, namespace: str, prefix: str = "", *, leaves: bool = False) -> DigestNode:
    """The tree node for ``prefix`` in ``namespace``: its children's digests, or its rows
    when it holds at most :data:`LEAF_ROWS` of them or ``leaves`` is asked for."""
    check_prefix(prefix)
    selected = [row for row in all_rows if row.namespace == namespace and row.bucket.startswith(prefix)]
    result = DigestNode(node=node, namespace=namespace, prefix=prefix, rows=len(selected), digest=digest_of(selected))
    if leaves or len(selected) <= LEAF_ROWS or len(prefix) >= 64:
        result.leaves = sorted((DigestLeaf(memory_id=r.memory_id, key=r.key, value=r.value) for r in selected), key=lambda leaf: leaf.key)
        return result
    children: dict[str, list[Row]] = defaultdict(list)
    for row in selected:
        children[row.bucket[len(prefix)]].append(row)
    result.children = {digit: DigestChild(rows=len(found), digest=digest_of(found)) for digit, found in sorted(children.items())}
    return result


class Comparison(BaseModel):
    """Several nodes' digests compared: which namespaces differ between any two of them."""

    nodes: list[DigestReport]
    namespaces: list[str]
    differing: list[str]
    consistent: bool
    """True only when no namespace differs *and* every peer asked was read: a peer whose
    digests could not be read is not known to agree, so a verify that read none is not a
    success."""
    errors: dict[str, str] = Field(default_factory=dict)
    """The peers (by URL) whose digests could not be read, and why."""


def compare_reports(reports: list[DigestReport], errors: dict[str, str] | None = None) -> Comparison:
    """Compare nodes' digest reports namespace by namespace (a namespace one node lacks
    differs); ``errors``: the peers that could not be read, which make it not consistent."""
    names = sorted({n.namespace for report in reports for n in report.namespaces})
    tables = [report.by_namespace() for report in reports]
    differing = [ns for ns in names if len({table[ns].digest if ns in table else EMPTY for table in tables}) > 1]
    unread = dict(errors or {})
    return Comparison(nodes=reports, namespaces=names, differing=differing, consistent=not differing and not unread, errors=unread)
