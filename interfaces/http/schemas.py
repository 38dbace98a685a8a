"""Request (``*Create``/``*Update``) and response (``*Public``) shapes of the management API."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from interfaces.http.jsontext import refuse_unpaired_surrogates

T = TypeVar("T")

# The most items a list in a request may hold: each is stored in an event and checked on use.
MAX_ALLOWED_MODELS = 1000
MAX_IP_ALLOWLIST = 100
MAX_THRESHOLDS = 20
MAX_WEBHOOK_EVENTS = 50


# Required with the admin token only, so the schema can't mark it required: it says so here.
OWNING_TENANT = (
    "The tenant it belongs to. Required with the admin token (without it: 400 naming "
    "tenant_id); with a tenant's key it may be left out, and another tenant's id is a 404."
)


class Strict(BaseModel):
    """A request body: no unknown fields, and every string Unicode text (a 400 otherwise).

    Numbers are ``StrictInt`` and flags ``StrictBool``: ``"12"`` and ``true`` are no count.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _unicode_text(cls, data: Any) -> Any:
        refuse_unpaired_surrogates(cls.__name__, data)
        return data


class Page(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None


# -- tenants -------------------------------------------------------------------------------


class TenantCreate(Strict):
    name: str = Field(min_length=1, max_length=63)
    weight: StrictInt = 100
    tokens_per_minute: StrictInt | None = None
    group: str | None = None
    on_demand_boot: StrictBool = Field(
        False,
        description="Deploy a serveable model that nothing serves when the gateway is asked"
        " for it (the request answers 503 cold_start meanwhile).",
    )


class TenantUpdate(Strict):
    on_demand_boot: StrictBool | None = Field(
        None, description="Turn on-demand boot on or off (the tenant's own key may)."
    )


class TenantPublic(BaseModel):
    id: UUID
    name: str
    weight: int
    tokens_per_minute: int | None
    group: str | None
    status: Literal["active", "offboarded"]
    on_demand_boot: bool = False
    created_at: datetime
    updated_at: datetime


class WeightUpdate(Strict):
    weight: StrictInt


class QuotaUpdate(Strict):
    tokens_per_minute: StrictInt | None


class GroupUpdate(Strict):
    group: str | None


# -- keys ----------------------------------------------------------------------------------

RPM_LIMIT = "Requests per minute this key may make (a positive integer); null: no limit of its own."


class KeyCreate(Strict):
    name: str = Field(min_length=1, max_length=63)
    kind: Literal["management", "router"] = "router"
    allowed_models: list[str] | None = Field(None, max_length=MAX_ALLOWED_MODELS)
    sovereignty_mode: StrictBool = False
    expires_at: datetime | None = None
    ip_allowlist: list[str] = Field(default_factory=list, max_length=MAX_IP_ALLOWLIST)
    rpm_limit: StrictInt | None = Field(None, description=RPM_LIMIT)


class KeyPublic(BaseModel):
    id: UUID
    tenant_id: UUID
    name: str
    kind: str
    key_prefix: str
    allowed_models: list[str] | None
    sovereignty_mode: bool
    expires_at: datetime | None
    ip_allowlist: list[str]
    rpm_limit: int | None = Field(None, description=RPM_LIMIT)
    disabled: bool
    created_at: datetime
    updated_at: datetime


class KeyCreated(BaseModel):
    key: KeyPublic
    secret: str = Field(description="The plaintext token. Shown once; store it now.")


class KeyUpdate(Strict):
    """The fields given change; those left out keep their value. ``null`` clears
    ``allowed_models`` (every model), ``expires_at`` (never expires) and ``rpm_limit``."""

    name: str = Field(None, min_length=1, max_length=63)
    allowed_models: list[str] | None = Field(None, max_length=MAX_ALLOWED_MODELS)
    sovereignty_mode: StrictBool = Field(None)
    expires_at: datetime | None = None
    ip_allowlist: list[str] = Field(None, max_length=MAX_IP_ALLOWLIST)
    rpm_limit: StrictInt | None = Field(None, description=RPM_LIMIT)

    def changes(self) -> dict[str, Any]:
        """The fields the request gave, as given (``null`` included)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class KeyDisabledUpdate(Strict):
    disabled: StrictBool


# -- instances -----------------------------------------------------------------------------


class InstanceCreate(Strict):
    tenant_id: UUID | None = Field(None, description=OWNING_TENANT)
    model_id: str
    region: str = "EU"
    provider: str = "simulated"
    instance_type: str = "text"


class Transition(BaseModel):
    status: str
    reason: str | None
    at: datetime
    duration_seconds: float | None = Field(
        None, description="Time in this status; null if current."
    )


class HealthCheck(BaseModel):
    ok: bool
    status_code: int | None
    latency_ms: int
    error: str | None
    at: datetime


class InstancePublic(BaseModel):
    id: UUID
    tenant_id: UUID
    kind: Literal["gpu", "byok"] = Field(description="A GPU deployment, or a BYOK upstream.")
    name: str | None = Field(None, description="BYOK upstreams: the label given.")
    model_id: str | None
    region: str | None
    provider: str
    instance_type: str | None
    status: str
    status_reason: str | None
    endpoint_url: str | None
    cost_eur: str = Field(description="GPU cost so far (EUR), a running instance up to now.")
    last_check: HealthCheck | None = Field(None, description="The latest /test result.")
    created_at: datetime
    updated_at: datetime
    history: list[Transition] | None = None


class InstanceTestResult(BaseModel):
    instance_id: UUID
    ok: bool
    status_code: int | None = Field(description="The endpoint's HTTP status; null if unreachable.")
    latency_ms: int
    error: str | None
    reply: str | None = Field(description="The completion's text, when the check succeeded.")
    usage: dict[str, int] | None


class LogLine(BaseModel):
    at: datetime
    message: str


class InstanceLogs(BaseModel):
    instance_id: UUID
    data: list[LogLine]


class ByokCreate(Strict):
    tenant_id: UUID | None = Field(None, description=OWNING_TENANT)
    name: str = Field(description="A label, e.g. 'OpenAI prod'.")
    upstream: Literal[
        "openai", "anthropic", "google", "mistral", "deepseek", "qwen", "moonshot", "minimax"
    ]
    external_key: str = Field(description="The upstream's API key; encrypted, never returned.")


class ByokPublic(BaseModel):
    id: UUID
    tenant_id: UUID
    name: str = Field(description="The label given at creation.")
    label: str = Field(description="Seed 003's name for the same label.")
    vendor: str = Field(description="The upstream (seed 003's vendor).")
    upstream: str
    key_last4: str = Field(description="The last four characters of the external key.")
    is_active: bool
    status: str
    endpoint_url: str | None
    created_at: datetime


class InstanceApiKey(BaseModel):
    api_key: str


# -- budgets -------------------------------------------------------------------------------


def _default_thresholds() -> list[Decimal]:
    return [Decimal("0.5"), Decimal("0.8"), Decimal("1")]


class BudgetCreate(Strict):
    tenant_id: UUID | None = Field(None, description=OWNING_TENANT)
    key_id: UUID | None = Field(None, description="With a key, the budget covers that key only.")
    limit_eur: Decimal
    period: Literal["daily", "weekly", "monthly", "total"] = "monthly"
    thresholds: list[Decimal] = Field(
        default_factory=_default_thresholds, max_length=MAX_THRESHOLDS
    )


class BudgetUpdate(Strict):
    limit_eur: Decimal
    period: Literal["daily", "weekly", "monthly", "total"]
    thresholds: list[Decimal] = Field(
        default_factory=_default_thresholds, max_length=MAX_THRESHOLDS
    )


class BudgetPublic(BaseModel):
    id: UUID
    tenant_id: UUID
    key_id: UUID | None
    scope: Literal["tenant", "key"]
    limit_eur: Decimal
    period: str
    thresholds: list[Decimal]
    created_at: datetime
    updated_at: datetime
    period_start: datetime | None = Field(None, description="Current window (midnight UTC).")
    period_end: datetime | None = Field(None, description="Window end; null for 'total'.")
    spent: Decimal | None = Field(None, description="EUR spent in the current window.")
    remaining: Decimal | None = None
    state: Literal["ok", "warning", "exceeded"] | None = None


class Deleted(BaseModel):
    id: UUID
    deleted: bool = True


# -- users ---------------------------------------------------------------------------------

EMAIL = "An email address; unique across hostplane, whatever its case."
PASSWORD = "At least 8 characters, not a common password, not containing the email's name."


class UserCreate(Strict):
    email: str = Field(max_length=254, description=EMAIL)
    password: str = Field(max_length=256, description=PASSWORD)


class Credentials(Strict):
    email: str = Field(max_length=254)
    password: str = Field(max_length=256)


class UserPublic(BaseModel):
    id: UUID
    tenant_id: UUID
    email: str
    created_at: datetime
    updated_at: datetime


class SignedInUser(BaseModel):
    id: UUID
    email: str
    tenant_id: UUID


class SignedInPublic(BaseModel):
    user: SignedInUser
    token: str = Field(description="A JWT: send it as 'Authorization: Bearer <token>'.")
    expires_in: int = Field(description="Seconds until the token expires (7 days).")
