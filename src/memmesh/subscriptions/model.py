"""Values of subscriptions, their deliveries and agent inboxes (what every face renders)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

EVENTS = ("memory.created", "memory.updated", "memory.deleted")
DeliveryState = Literal["pending", "delivered", "dead"]


def when(seconds: float | None) -> datetime | None:
    """Unix seconds (as stored) as an aware UTC time."""
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


@dataclass(frozen=True)
class SubscriptionPolicy:
    """The ``[subscriptions]`` settings (config.py explains each)."""

    allow_loopback_webhooks: bool = False
    max_attempts: int = 8
    retry_base_s: float = 2.0
    retry_max_s: float = 600.0
    timeout_s: float = 10.0
    poll_interval_s: float = 1.0
    max_per_owner: int = 100
    max_notify_bytes: int = 65_536


class Subscription(BaseModel):
    """A URL told of every change in a namespace (and below it)."""

    id: str
    namespace: str
    url: str
    events: list[str]
    owner_agent: str | None = None
    owner_key: str | None = None
    created_at: datetime
    state: Literal["active", "revoked"]
    seen_seq: int
    """The store's change number up to which changes were queued for delivery."""


class CreatedSubscription(Subscription):
    """A new subscription with its signing secret: shown once, at creation (and to the same
    caller again when it subscribes the same URL to the same namespace: ``existed``)."""

    secret: str
    existed: bool = False
    """True when the caller had subscribed this URL to this namespace already: that one is it."""


class Delivery(BaseModel):
    """One queued webhook call: its event, state and the outcome of its last attempt."""

    id: str
    subscription_id: str
    event: str
    memory_id: str | None = None
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    last_status: int | None = None
    created_at: datetime
    delivered_at: datetime | None = None


class DeliveryRun(BaseModel):
    """What one pass of the delivery worker did."""

    queued: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0


class InboxMessage(BaseModel):
    """A notification one agent sent another (``memory_notify``), read with ``memory_inbox``."""

    id: str
    recipient: str
    sender: str
    subject: str | None = None
    body: str
    namespace: str | None = None
    memory_id: str | None = None
    created_at: datetime
    read_at: datetime | None = None
