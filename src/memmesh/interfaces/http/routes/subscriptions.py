"""Webhook subscriptions and agent inboxes over HTTP.

``/api/v1/subscriptions`` (POST subscribe, GET list), ``/api/v1/subscriptions/{id}`` (GET,
DELETE), ``/api/v1/subscriptions/{id}/deliveries``, ``POST /api/v1/subscriptions/deliver``
(one delivery pass), ``POST /api/v1/notify`` and ``GET /api/v1/inbox``. Each is one call of
``service.subscriptions`` / ``service.inbox``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import Field

from memmesh.interfaces.http.deps import Caller, Svc, json_response
from memmesh.interfaces.http.routes import ERRORS
from memmesh.interfaces.http.schemas import Body
from memmesh.model import BUS_AGENT_PATTERN
from memmesh.subscriptions import CreatedSubscription, Delivery, DeliveryRun, InboxMessage, Subscription

router = APIRouter(prefix="/api/v1", responses=ERRORS, tags=["subscriptions"])


class SubscribeRequest(Body):
    """A URL to tell of changes in a namespace."""

    namespace: str = Field(description="namespace to watch (everything below it too)")
    url: str = Field(description="http(s) URL that receives the signed POSTs")
    events: list[str] | None = Field(default=None, description="memory.created, memory.updated, memory.deleted (default: all)")
    secret: str | None = Field(default=None, description="HMAC secret (16-256 chars); left out, memmesh makes one and returns it once")


class NotifyRequest(Body):
    """A notification for another agent's inbox."""

    to: str = Field(pattern=BUS_AGENT_PATTERN, description="the agent to notify")
    body: str = Field(description="the text of the notification")
    subject: str | None = Field(default=None, description="a short subject line")
    namespace: str | None = Field(
        default=None,
        description="a namespace it is about: only keys that may read it see the note (a key limited to one namespace: default that one)",
    )
    memory_id: str | None = Field(default=None, description="a memory it is about")


@router.post(
    "/subscriptions",
    response_model=CreatedSubscription,
    status_code=201,
    summary="Subscribe a URL to a namespace",
    responses={200: {"model": CreatedSubscription, "description": "This key had subscribed the URL to the namespace already: that one"}},
)
def subscribe(body: SubscribeRequest, service: Svc, who: Caller) -> Response:
    """The answer holds the signing ``secret``, shown this once (201). The same URL and
    namespace again from the same key answers the existing subscription (200, ``existed: true``)."""
    created = service.subscriptions.subscribe(body.namespace, body.url, events=body.events, secret=body.secret, principal=who)
    return json_response(created, 200 if created.existed else 201)


@router.get("/subscriptions", response_model=list[Subscription], summary="List this key's subscriptions")
def list_subscriptions(service: Svc, who: Caller) -> Response:
    return json_response(service.subscriptions.list(principal=who))


@router.post("/subscriptions/deliver", response_model=DeliveryRun, summary="Run one delivery pass")
def deliver(service: Svc, who: Caller) -> Response:
    """Queue new changes and call the webhooks that are due, now (serve also does it every
    ``subscriptions.poll_interval_s``); an admin for every namespace."""
    return json_response(service.subscriptions.run_once(principal=who))


@router.get("/subscriptions/{subscription_id}", response_model=Subscription, summary="One subscription")
def get_subscription(subscription_id: str, service: Svc, who: Caller) -> Response:
    return json_response(service.subscriptions.get(subscription_id, principal=who))


@router.delete("/subscriptions/{subscription_id}", response_model=Subscription, summary="Unsubscribe")
def unsubscribe(subscription_id: str, service: Svc, who: Caller) -> Response:
    """Remove the subscription and its queued deliveries."""
    return json_response(service.subscriptions.unsubscribe(subscription_id, principal=who))


@router.get("/subscriptions/{subscription_id}/deliveries", response_model=list[Delivery], summary="A subscription's deliveries")
def deliveries(
    subscription_id: str,
    service: Svc,
    who: Caller,
    state: Annotated[Literal["pending", "delivered", "dead"] | None, Query(description="only this state")] = None,
    limit: Annotated[int, Query(description="at most this many, newest first")] = 100,
) -> Response:
    return json_response(service.subscriptions.deliveries(subscription_id, state=state, limit=limit, principal=who))


@router.post("/notify", response_model=InboxMessage, status_code=201, summary="Notify another agent")
def notify(body: NotifyRequest, service: Svc, who: Caller) -> Response:
    """Leave a notification in the ``to`` agent's inbox, sent as this key's agent."""
    sent = service.inbox.notify(body.to, body.body, subject=body.subject, namespace=body.namespace, memory_id=body.memory_id, principal=who)
    return json_response(sent, 201)


@router.get("/inbox", response_model=list[InboxMessage], summary="Read this agent's inbox")
def inbox(
    service: Svc,
    who: Caller,
    agent: Annotated[str | None, Query(pattern=BUS_AGENT_PATTERN, description="whose inbox (default: this key's agent)")] = None,
    all: Annotated[bool, Query(description="read ones too, not only unread")] = False,
    peek: Annotated[bool, Query(description="leave them unread")] = False,
    limit: Annotated[int, Query(description="at most this many, oldest first")] = 50,
) -> Response:
    """Unread notifications, oldest first, marked read as they are returned (``peek``: not)."""
    return json_response(service.inbox.read(agent=agent, unread_only=not all, mark_read=not peek, limit=limit, principal=who))
