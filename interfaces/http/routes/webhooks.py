"""Webhook routes. The signing secret is returned once, at creation; never afterwards."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from application.idempotency import Created
from domain.webhook import Webhook
from interfaces.db.readgate import ReadGate
from interfaces.http.creating import shown_once
from interfaces.http.deps import Caller, Gate, Once, WebhooksDep
from interfaces.http.routes.common import CursorQuery, LimitQuery, found, listing, scoped_listing
from interfaces.http.schemas import MAX_WEBHOOK_EVENTS, OWNING_TENANT, Deleted, Page, Strict
from projections.readmodels import webhook_outbox, webhooks

router = APIRouter(tags=["webhooks"])


class WebhookCreate(Strict):
    tenant_id: UUID | None = Field(None, description=OWNING_TENANT)
    url: str = Field(description="An http:// or https:// URL that receives signed POSTs.")
    events: list[str] = Field(
        description="Event types to receive, e.g. key.revoked.", max_length=MAX_WEBHOOK_EVENTS
    )
    description: str | None = None


class WebhookPublic(BaseModel):
    id: UUID
    tenant_id: UUID
    url: str
    events: list[str]
    description: str | None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookPublic):
    secret: str = Field(
        description="Signing secret (HMAC-SHA256 key of Hostplane-Signature). Shown once."
    )


class DeliveryPublic(BaseModel):
    id: UUID
    webhook_id: UUID
    event_id: UUID = Field(description="Also sent as Hostplane-Event-Id: dedupe on it.")
    event_type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = Field(description="When the next attempt is due.")
    delivered_at: datetime | None
    created_at: datetime = Field(description="When the event happened.")


def read_webhook(gate: ReadGate, caller: Caller, webhook_id: UUID) -> WebhookPublic:
    with gate.reading("webhooks") as curs:
        row = webhooks.get_webhook(curs, webhook_id, caller.tenant_filter())
    return WebhookPublic(**found(row, "webhook", webhook_id))


@router.post("/webhooks", status_code=201, response_model=WebhookCreated)
def create_webhook(
    body: WebhookCreate,
    caller: Caller,
    commands: WebhooksDep,
    gate: Gate,
    once: Once,
    request: Request,
    response: Response,
) -> dict:
    """Register a webhook. The response holds the signing secret: it is shown this once.

    Each delivery is a POST of ``{id, type, created_at, tenant_id, data}`` with the headers
    ``Hostplane-Event-Id`` (dedupe on it) and ``Hostplane-Signature: t=<unix ts>,v1=<hex>``,
    where ``v1`` is HMAC-SHA256 with the secret over ``"<t>.<raw body>"``. A delivery that gets
    no 2xx answer is retried with exponential backoff, for up to 24 hours.
    """

    def create() -> WebhookCreated:
        webhook_id, secret = commands.create_webhook(caller, **body.model_dump())
        public = read_webhook(gate, caller, webhook_id)
        return WebhookCreated(**public.model_dump(), secret=secret)

    def recover(done: Created) -> WebhookCreated:
        public = read_webhook(gate, caller, once.created_id(done, Webhook))
        return WebhookCreated(**public.model_dump(), secret=shown_once(done))

    return once(caller, request, response, body, create, recover)


@router.get("/webhooks", response_model=Page[WebhookPublic])
def list_webhooks(
    caller: Caller,
    gate: Gate,
    tenant_id: UUID | None = Query(None, description="Only this tenant's webhooks."),
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
) -> dict:
    """List webhooks (no secrets), newest first."""
    with gate.reading("webhooks") as curs:
        return scoped_listing(
            caller, tenant_id, lambda t: webhooks.list_webhooks(curs, t, limit, cursor)
        )


@router.get("/webhooks/{webhook_id}", response_model=WebhookPublic)
def get_webhook(webhook_id: UUID, caller: Caller, gate: Gate) -> WebhookPublic:
    """Get one webhook (no secret)."""
    return read_webhook(gate, caller, webhook_id)


@router.delete("/webhooks/{webhook_id}", response_model=Deleted)
def delete_webhook(webhook_id: UUID, caller: Caller, commands: WebhooksDep) -> Deleted:
    """Delete a webhook: no new deliveries are made for it."""
    commands.delete_webhook(caller, webhook_id)
    return Deleted(id=webhook_id)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=Page[DeliveryPublic])
def list_deliveries(
    webhook_id: UUID,
    caller: Caller,
    gate: Gate,
    limit: int = LimitQuery,
    cursor: str | None = CursorQuery,
) -> dict:
    """A webhook's deliveries, newest event first: status, attempts and the last outcome."""
    with gate.reading("webhooks") as curs:
        found(webhooks.get_webhook(curs, webhook_id, caller.tenant_filter()), "webhook", webhook_id)
        return listing(lambda: webhook_outbox.list_deliveries(curs, webhook_id, limit, cursor))
