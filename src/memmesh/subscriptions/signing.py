"""HMAC-SHA256 signatures of webhook deliveries.

Each delivery carries ``X-Memmesh-Timestamp`` (Unix seconds) and ``X-Memmesh-Signature:
sha256=<hex>``, the HMAC-SHA256, under the subscription's secret, of ``<timestamp>.<body>``.
Signing the timestamp with the body lets a receiver refuse a replayed old delivery (check
the timestamp is recent) as well as a forged one; :func:`verify` is the receiver's recipe
(docs/subscriptions.md shows it standalone).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Memmesh-Signature"
TIMESTAMP_HEADER = "X-Memmesh-Timestamp"
DELIVERY_HEADER = "X-Memmesh-Delivery"
EVENT_HEADER = "X-Memmesh-Event"
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Memmesh-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, timestamp: str, sig: str, body: bytes, *, tolerance_s: int = DEFAULT_TOLERANCE_S, now: float | None = None) -> bool:
    """True when ``sig`` signs ``body`` at ``timestamp`` under ``secret`` and the timestamp
    lies within ``tolerance_s`` of now (compared in constant time)."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    return hmac.compare_digest(signature(secret, sent, body), sig or "")
