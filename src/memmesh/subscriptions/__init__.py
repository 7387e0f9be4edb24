"""Webhook subscriptions to namespace changes (signed, retried from a durable queue, SSRF
guarded) and agent inboxes (``memory_notify`` / ``memory_inbox``). See docs/subscriptions.md."""

from memmesh.subscriptions.core import Subscriptions
from memmesh.subscriptions.inbox import Inbox
from memmesh.subscriptions.model import (
    CreatedSubscription,
    Delivery,
    DeliveryRun,
    InboxMessage,
    Subscription,
    SubscriptionPolicy,
)

__all__ = [
    "CreatedSubscription",
    "Delivery",
    "DeliveryRun",
    "Inbox",
    "InboxMessage",
    "Subscription",
    "SubscriptionPolicy",
    "Subscriptions",
]
