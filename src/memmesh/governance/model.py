"""Governance values: standards, their inherited view, pending actions, and input parsing.

Parsing lives here (not in a face) so a malformed governance JSON, an unknown action or an
unknown decision gets the same one-line message from the CLI, HTTP and MCP.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from memmesh.errors import InvalidInputError
from memmesh.model import Principal, Tier, normalize_tags

ACTIONS: tuple[str, ...] = ("write", "update", "delete", "promote", "link")
"""The governed actions (docs/governance.md): store a memory, change one, delete one, promote one, link two."""
DECISIONS: tuple[str, ...] = ("allow", "approve", "deny")
MODES: tuple[str, ...] = ("enforce", "advisory", "off")
STATUSES: tuple[str, ...] = ("pending", "approved", "applied", "rejected", "failed", "advisory")
"""``approved`` is the short moment between the claim and the write (or a crash in between);
``failed`` is an approved action whose write was refused (e.g. its content now exists);
``advisory`` records a would-be refusal that advisory mode let through."""
MAX_TTL_SECONDS = 100 * 365 * 86400
MAX_RETENTION_DAYS = 100 * 365

Decision = Literal["allow", "approve", "deny"]
Status = Literal["pending", "approved", "applied", "rejected", "failed", "advisory"]


class Standard(BaseModel):
    """The standard set on one namespace (fields left None are inherited from above)."""

    namespace: str
    governance: dict[str, Decision] = Field(default_factory=dict)
    default_tier: Tier | None = None
    ttl_seconds: int | None = None
    retention_days: int | None = None
    required_tags: list[str] = Field(default_factory=list)
    updated_at: datetime
    updated_by: str | None = None


class Inherited(BaseModel):
    """One effective value and the namespace whose standard set it (None: memmesh's default)."""

    value: Any = None
    set_on: str | None = None


class EffectiveStandard(BaseModel):
    """What applies in a namespace: its own standard (if any) and every field as inherited."""

    namespace: str
    standard: Standard | None = None
    governance: dict[str, Inherited]
    default_tier: Inherited
    ttl_seconds: Inherited
    retention_days: Inherited
    required_tags: Inherited


class PendingAction(BaseModel):
    """An action a standard's ``approve`` queued, and its decision once made."""

    id: str
    action: str
    namespace: str
    rule_namespace: str
    payload: dict[str, Any]
    requested_by: str | None = None
    requested_at: datetime
    status: Status
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    requester: Principal = Field(exclude=True)
    """Who asked: the applied action runs as this caller, through the same core checks."""

    def namespaces(self) -> list[str]:
        """Every namespace the action touches (a link may join two)."""
        extra = self.payload.get("namespaces") or []
        return list(dict.fromkeys([self.namespace, *extra]))


def parse_governance(value: Any) -> dict[str, Decision]:
    """``{"write": "approve", ...}`` from a dict or JSON text; every problem named once."""
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"governance is not valid JSON ({exc.msg} at character {exc.pos}): "
                'give an object such as {"write": "approve", "delete": "deny"}',
                field="governance",
            ) from None
    if not isinstance(value, dict):
        raise InvalidInputError('governance must be a JSON object such as {"write": "approve", "delete": "deny"}', field="governance")
    found: dict[str, Decision] = {}
    for action, decision in value.items():
        if action not in ACTIONS:
            raise InvalidInputError(
                f"governance names an unknown action {action!r}: use {', '.join(ACTIONS)}", usage=True, field="governance"
            )
        if decision not in DECISIONS:
            raise InvalidInputError(
                f"governance.{action} is {decision!r}: use one of {', '.join(DECISIONS)}", usage=True, field="governance"
            )
        found[action] = decision
    return found


def parse_tier(value: Any) -> Tier | None:
    if value is None or value == "":
        return None
    try:
        return Tier(value)
    except ValueError:
        raise InvalidInputError(
            f"default_tier {value!r} is not a tier: use one of {', '.join(t.value for t in Tier)}", usage=True, field="default_tier"
        ) from None


def parse_count(value: Any, name: str, maximum: int) -> int | None:
    """A positive whole number (TTL seconds, retention days) or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidInputError(f"{name} must be a whole number from 1 to {maximum} (got {value!r})", usage=True, field=name)
    return value


def parse_required_tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [t for t in value.split(",") if t.strip()]
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise InvalidInputError("required_tags must be a list of tags (or a comma list), e.g. contract,reviewed", field="required_tags")
    return normalize_tags([t.strip() for t in value])


def parse_status(value: Any) -> str | None:
    if value is None or value == "" or value == "all":
        return None
    if value not in STATUSES:
        raise InvalidInputError(f"status {value!r} is unknown: use one of {', '.join(STATUSES)} or all", usage=True, field="status")
    return str(value)
