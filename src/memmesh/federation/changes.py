"""The change feed's wire format: what ``POST /api/v1/sync/push`` takes and
``GET /api/v1/sync/since`` returns.

Replication is state-based: an item carries the whole current state of one replicated
object (a memory, a tombstone, a link or a recorded conflict) with its version, never a
diff, so applying a batch twice, or an old batch after a newer one, changes nothing
(:func:`memmesh.versions.merge` keeps the greater stamp). Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from memmesh.errors import InvalidInputError
from memmesh.model import BUS_AGENT_PATTERN, NODE_ID_PATTERN, Agent, Conflict, HistoryEntry, Link, Memory, Relation, Tombstone
from memmesh.store.base import Changes

MAX_BATCH_ITEMS = 2000
"""Largest batch a node accepts (and the default page of the feed)."""

MAX_SHIPPED_HISTORY = 100
"""Most history entries one item carries (the newest ones): a memory edited thousands of
times still fits a push body."""

HLC_PATTERN = r"^[0-9]{13}\.[0-9]{5}$"
BUS_ID = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")


class BusConversationItem(BaseModel):
    """A chat conversation as it replicates: its fixed fields, the token only as the SHA-256 the
    store keeps (a 256-bit random token's hash reveals nothing), never cursors or activity."""

    model_config = ConfigDict(extra="forbid")

    id: str = BUS_ID
    kind: Literal["chat"] = Field(description="only chat conversations replicate; task queues are node-local")
    topic: str | None = Field(None, max_length=1000)
    participants: list[Annotated[str, Field(pattern=BUS_AGENT_PATTERN)]] = Field(min_length=1, max_length=1000)
    token_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_by: str | None = Field(None, pattern=BUS_AGENT_PATTERN)
    created_at: float = Field(ge=0, allow_inf_nan=False)
    timeout_s: float = Field(gt=0, le=3_153_600_000.0, allow_inf_nan=False)

    @field_validator("participants", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        """The store keeps participants as JSON text; the wire carries the list."""
        return json.loads(value) if isinstance(value, str) else value


class BusMessageItem(BaseModel):
    """A chat message as it replicates: immutable, with a global id, the node that wrote it and
    its HLC stamp, so every node orders a conversation by (hlc, origin, id)."""

    model_config = ConfigDict(extra="forbid")

    id: str = BUS_ID
    conversation_id: str = BUS_ID
    sender: str = Field(pattern=BUS_AGENT_PATTERN)
    recipient: str | None = Field(None, pattern=BUS_AGENT_PATTERN)
    body: str = Field(min_length=1, max_length=1_048_576)
    created_at: float = Field(ge=0, allow_inf_nan=False)
    origin: str = Field(pattern=NODE_ID_PATTERN)
    hlc: str = Field(pattern=HLC_PATTERN)


class BusItem(BaseModel):
    """One bus object of the feed: a conversation or a message (exactly one)."""

    model_config = ConfigDict(extra="forbid")

    conversation: BusConversationItem | None = None
    message: BusMessageItem | None = None

    @model_validator(mode="after")
    def _one(self) -> BusItem:
        if (self.conversation is None) == (self.message is None):
            raise ValueError("a bus item carries exactly one of conversation, message")
        return self


ITEM_KINDS = ("memory", "tombstone", "link", "conflict", "agent", "standard", "pending", "link_removal", "bus")
"""What one :class:`SyncItem` may carry (exactly one of them)."""


class StandardState(BaseModel):
    """A namespace standard as it replicates: its whole state (or its clearing: a tombstone)
    with the version stamp (hlc, node) of the write that made it. The governance core checks
    the fields with the parsers a local ``set`` uses (memmesh.governance.replicated)."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(min_length=1, max_length=1000)
    governance: dict[str, str] = Field(default_factory=dict, max_length=16)
    default_tier: str | None = None
    ttl_seconds: int | None = None
    retention_days: int | None = None
    required_tags: list[str] = Field(default_factory=list, max_length=100)
    updated_at: datetime
    updated_by: str | None = Field(None, max_length=200)
    cleared: bool = False
    hlc: str = Field(pattern=r"^\d{13}\.\d{5}$")
    node: str = Field(pattern=NODE_ID_PATTERN)


class PendingState(BaseModel):
    """A pending action and its decision as they replicate, with the version stamp (hlc, node)
    of the write that last changed it (checked by memmesh.governance.replicated)."""

    model_config = ConfigDict(extra="forbid")

    action: dict[str, Any] = Field(description="the pending action's fields, requester included")
    hlc: str = Field(pattern=r"^\d{13}\.\d{5}$")
    node: str = Field(pattern=NODE_ID_PATTERN)


class LinkRemoval(BaseModel):
    """A removed link (a link tombstone): a link not created after ``removed_at`` stays gone."""

    model_config = ConfigDict(extra="forbid")

    source_id: str = Field(min_length=1, max_length=200)
    target_id: str = Field(min_length=1, max_length=200)
    relation: Relation
    removed_at: datetime
    removed_by: str | None = Field(None, max_length=200)


class SyncItem(BaseModel):
    """One replicated object with the change number it had on the sending node."""

    model_config = ConfigDict(extra="forbid")

    seq: int = Field(ge=0, description="the sender's change number (0 for a quorum push outside the feed)")
    memory: Memory | None = None
    tombstone: Tombstone | None = None
    link: Link | None = None
    conflict: Conflict | None = None
    agent: Agent | None = None
    standard: StandardState | None = None
    pending: PendingState | None = None
    link_removal: LinkRemoval | None = None
    bus: BusItem | None = Field(None, description="a bus chat conversation or message (schema 21)")
    vector: str | None = Field(
        None, max_length=65536, description="the memory's embedding (base64 of little-endian float32), so the receiver need not embed it"
    )
    vector_model: str | None = Field(None, max_length=200, description="the embedder model id that made ``vector``")
    history: list[HistoryEntry] | None = Field(
        None,
        max_length=MAX_SHIPPED_HISTORY,
        description="the memory's history as written by the nodes that changed it (not the records of applying replicated "
        "versions), so every node's history shows the origin's versions, not only the latest state",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SyncItem:
        present = [name for name in ITEM_KINDS if getattr(self, name) is not None]
        if len(present) != 1:
            raise ValueError(f"an item carries exactly one of {', '.join(ITEM_KINDS)} (got {present or 'none'})")
        for name in ("memory", "tombstone"):
            obj = getattr(self, name)
            if obj is not None and (not obj.version.hlc or not obj.version.node or not obj.version.clock):
                raise ValueError(f"{name} {obj.id} has no complete version (clock, node, hlc): no node could order it")
        if (self.vector is None) != (self.vector_model is None) or (self.vector is not None and self.memory is None):
            raise ValueError("a vector comes with its vector_model, and only with a memory")
        if self.history is not None:
            obj = self.memory or self.tombstone
            if obj is None:
                raise ValueError("history comes only with a memory or a tombstone")
            if any(entry.memory_id != obj.id for entry in self.history):
                raise ValueError(f"a history entry of item {obj.id} names another memory")
        return self

    def decoded_vector(self) -> np.ndarray | None:
        """The shipped embedding as float32, or None when absent or not a finite vector."""
        if self.vector is None:
            return None
        try:
            raw = base64.b64decode(self.vector, validate=True)
        except (binascii.Error, ValueError):
            return None
        if not raw or len(raw) % 4:
            return None
        vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        return vector if bool(np.isfinite(vector).all()) else None


class SyncBatch(BaseModel):
    """A batch of changes from one node: items with change numbers in ``(since, upto]``.

    A batch from the feed covers that whole range, so the receiver may advance its cursor
    for the sender to ``upto``; a quorum push (``upto == 0``) carries single writes outside
    the feed and moves no cursor.
    """

    model_config = ConfigDict(extra="forbid")

    node: str = Field(pattern=NODE_ID_PATTERN, description="the sending node's id")
    since: int = Field(0, ge=0)
    upto: int = Field(0, ge=0)
    items: list[SyncItem] = Field(default_factory=list, max_length=MAX_BATCH_ITEMS)

    @model_validator(mode="after")
    def _range(self) -> SyncBatch:
        if self.upto and self.upto < self.since:
            raise ValueError(f"upto ({self.upto}) is before since ({self.since})")
        if self.upto and any(item.seq <= self.since or item.seq > self.upto for item in self.items):
            raise ValueError(f"an item's seq lies outside the batch range ({self.since}, {self.upto}]")
        return self


class SyncPage(SyncBatch):
    """One page of ``GET /sync/since``: a feed batch plus whether more changes follow."""

    more: bool = False


class SyncReport(BaseModel):
    """What a receiver did with a batch (its answer to a push)."""

    node: str
    applied: int = 0
    duplicates: int = 0
    conflicts: int = 0
    skipped: int = 0


class Hello(BaseModel):
    """A node's identity and clock, answered on ``GET /api/v1/sync/hello``."""

    node: str
    hlc: str
    seq: int
    schema_version: int


def batch_from_changes(node: str, since: int, changes: Changes) -> SyncPage:
    """The feed page for ``changes`` read after ``since`` (memories first, so a link or a
    conflict never arrives in a batch before the memory it names).

    The items are built without validation (``model_construct``): each holds exactly one
    object this node's store just read, already a validated model, and the receiver
    validates the whole page as it parses it. Validating here too cost a large part of
    serving a catch-up page."""
    item = SyncItem.model_construct
    items: list[SyncItem] = []
    items += [item(seq=seq, memory=m) for seq, m in changes.memories]
    items += [item(seq=seq, tombstone=t) for seq, t in changes.tombstones]
    items += [item(seq=seq, link=link) for seq, link in changes.links]
    items += [item(seq=seq, conflict=c) for seq, c in changes.conflicts]
    items += [item(seq=seq, agent=agent) for seq, agent in changes.agents]
    items += [item(seq=seq, bus=BusItem.model_validate(row)) for seq, row in changes.bus]
    return SyncPage(node=node, since=since, upto=max(changes.upto, since), items=items, more=changes.more)


def encode_vector(vector: np.ndarray) -> str:
    """An embedding as it travels in a :class:`SyncItem` (base64 of little-endian float32)."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def parse_batch(data: Any, model: type[SyncBatch] = SyncBatch) -> SyncBatch:
    """A batch from JSON-decoded data, or InvalidInputError naming the first problems."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'batch'}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidInputError(f"malformed sync batch: {problems}") from None


class PeerStatus(BaseModel):
    """One peer as ``memmesh cluster status`` shows it."""

    url: str | None = None
    node_id: str | None = None
    sent_seq: int = 0
    recv_seq: int = 0
    outbox_changes: int = 0
    """Our change numbers after the peer's cursor: what it has not acknowledged yet."""
    last_contact: datetime | None = None
    lag_seconds: float | None = None
    """Seconds since the peer last acknowledged or served us, while it is behind."""
    last_error: str | None = None
    """Why this node's last push to the peer, or its last catch-up pull from it, failed."""
    up: bool = False
    """It said its node id and neither the last push nor the last pull failed (never for a
    removed peer). ``/readyz``, ``memmesh_peer_up`` and the status table all read this."""
    removed: bool = False
    """Its URL is no longer in this node's ``--peers``: its row and cursors are kept (it may
    come back), but it is not pushed to, pulled from, counted by health or in the metrics."""

    @property
    def state(self) -> str:
        """``up``, ``down`` or ``removed``: the word the status table and the web page show."""
        return "removed" if self.removed else "up" if self.up else "down"


class ClusterStatus(BaseModel):
    """This node and its peers: ids, clocks, cursors, outbox depth, last contact."""

    node_id: str
    hlc: str
    change_counter: int
    purged_seq: int
    quorum_writes: int = 0
    clock_refused: int = 0
    """Peer timestamps refused for running too far ahead of this node's clock."""
    quorum_failures: int = 0
    anti_entropy_repairs: int = 0
    """Memories anti-entropy found different from a peer and repaired since start."""
    peers: list[PeerStatus] = Field(default_factory=list)
