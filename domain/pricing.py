"""The price book: models with EUR prices per million tokens, and GPU hourly rates."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.base import Actor, ConflictError, InvalidValueError, check_amount, name_id
from domain.instance import UPSTREAMS, check_slug
from domain.values import BoundedInt, Text, check_flag, check_instant

MODEL_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._:/-]{0,127}\Z")
MODEL_SLUG = Text(
    128, pattern=MODEL_SLUG_RE, message="{field} must be a lowercase slug, e.g. llama-3.1-8b"
)
DISPLAY_NAME = Text(  # not blank
    200, pattern=re.compile(r"\s*\S"), message="{field} must be 1-200 characters"
)
CONTEXT_LENGTH = BoundedInt(1, 100_000_000, "{field} must be a positive number of tokens")
# How long a cached answer may be served again: up to 30 days (integer column).
CACHE_TTL = BoundedInt(1, 30 * 86_400, "{field} must be between {minimum} and {maximum} seconds")
DEFAULT_CACHE_TTL_SECONDS = 3600  # until an operator sets one
MODALITIES = ("text", "chat", "embedding", "image", "audio", "multimodal")
MTOK = Decimal(1_000_000)
HOUR_US = Decimal(3_600_000_000)
GPU_COST_QUANTUM = Decimal("1e-10")


class ModelDeletedError(ConflictError):
    """A deleted model can't be changed and rates no usage."""


def check_price(field: str, value: Decimal) -> Decimal:
    return check_amount(field, value, maximum=Decimal(1_000_000), allow_minimum=True)


def token_cost(
    prompt: int, completion: int, input_price: Decimal, output_price: Decimal
) -> Decimal:
    """Exact EUR cost of tokens at prices per million tokens (terminating decimals only)."""
    return (prompt * input_price + completion * output_price) / MTOK


def gpu_cost(eur_per_hour: Decimal, microseconds: int) -> Decimal:
    """EUR for GPU time within one hour bucket, rounded once per bucket to 1e-10 EUR."""
    return (eur_per_hour * microseconds / HOUR_US).quantize(GPU_COST_QUANTUM, ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Price:
    effective_from: datetime | None  # None: since the beginning
    input_eur_per_mtok: Decimal
    output_eur_per_mtok: Decimal


class Model(Aggregate):
    """A model in the catalog, with its price history (changes never re-rate past usage)."""

    @staticmethod
    def create_id(slug: str) -> UUID:
        return name_id("model", slug)

    @event("Registered")
    def __init__(
        self,
        slug: str,
        display_name: str,
        modality: str,
        context_length: int,
        input_eur_per_mtok: Decimal,
        output_eur_per_mtok: Decimal,
        serveable: bool,
        actor: Actor,
        vendor: str | None = None,
    ) -> None:
        self.slug = slug
        # Whose model it is (a BYOK upstream of this vendor can serve it); None: nobody's.
        # Events recorded before the field existed lack it, and read as None.
        self.vendor = vendor
        self.display_name = display_name
        self.modality = modality
        self.context_length = context_length
        self.serveable = serveable
        # The registration price applies to all usage until a later change.
        self.prices = [Price(None, input_eur_per_mtok, output_eur_per_mtok)]
        self.deleted = False
        # The response cache (off until configured, ``PUT /models/{id}/cache``).
        self.cache_enabled = False
        self.cache_ttl_seconds = DEFAULT_CACHE_TTL_SECONDS

    @classmethod
    def register(
        cls,
        slug: str,
        display_name: str,
        modality: str,
        context_length: int,
        input_eur_per_mtok: Decimal,
        output_eur_per_mtok: Decimal,
        serveable: bool,
        actor: Actor,
        vendor: str | None = None,
    ) -> Model:
        return cls(
            slug=check_model_slug(slug),
            display_name=check_display_name(display_name),
            modality=check_modality(modality),
            context_length=check_context_length(context_length),
            input_eur_per_mtok=check_price("input_eur_per_mtok", input_eur_per_mtok),
            output_eur_per_mtok=check_price("output_eur_per_mtok", output_eur_per_mtok),
            serveable=check_flag("serveable", serveable),
            actor=actor,
            vendor=None if vendor is None else check_vendor(vendor),
        )

    def price_at(self, t: datetime) -> Price:
        """The price in effect at ``t``: the latest change effective at or before it.

        Of two changes with the same ``effective_from``, the one recorded later wins.
        """
        best = self.prices[0]
        for price in self.prices[1:]:
            assert price.effective_from is not None
            if price.effective_from <= t and (
                best.effective_from is None or price.effective_from >= best.effective_from
            ):
                best = price
        return best

    @property
    def current_price(self) -> Price:
        return self.price_at(datetime.max.replace(tzinfo=UTC))

    def check_not_deleted(self) -> None:
        if self.deleted:
            raise ModelDeletedError(f"model {self.slug} has been deleted")

    def update(
        self,
        display_name: str,
        modality: str,
        context_length: int,
        serveable: bool,
        actor: Actor,
    ) -> None:
        self.check_not_deleted()
        self._described(
            display_name=check_display_name(display_name),
            modality=check_modality(modality),
            context_length=check_context_length(context_length),
            serveable=check_flag("serveable", serveable),
            actor=actor,
        )

    @event("Described")
    def _described(
        self, display_name: str, modality: str, context_length: int, serveable: bool, actor: Actor
    ) -> None:
        self.display_name = display_name
        self.modality = modality
        self.context_length = context_length
        self.serveable = serveable

    def change_price(
        self,
        input_eur_per_mtok: Decimal,
        output_eur_per_mtok: Decimal,
        effective_from: datetime,
        actor: Actor,
    ) -> None:
        self.check_not_deleted()
        self._price_changed(
            input_eur_per_mtok=check_price("input_eur_per_mtok", input_eur_per_mtok),
            output_eur_per_mtok=check_price("output_eur_per_mtok", output_eur_per_mtok),
            effective_from=check_instant("effective_from", effective_from),
            actor=actor,
        )

    @event("PriceChanged")
    def _price_changed(
        self,
        input_eur_per_mtok: Decimal,
        output_eur_per_mtok: Decimal,
        effective_from: datetime,
        actor: Actor,
    ) -> None:
        self.prices.append(Price(effective_from, input_eur_per_mtok, output_eur_per_mtok))

    def configure_cache(self, enabled: bool, ttl_seconds: int | None, actor: Actor) -> None:
        """Turn the response cache on or off; ``ttl_seconds`` ``None`` keeps the current TTL.
        A setting that changes nothing records nothing."""
        self.check_not_deleted()
        enabled = check_flag("enabled", enabled)
        ttl = self.cache_ttl_seconds if ttl_seconds is None else check_cache_ttl(ttl_seconds)
        if (enabled, ttl) != (self.cache_enabled, self.cache_ttl_seconds):
            self._cache_configured(enabled=enabled, ttl_seconds=ttl, actor=actor)

    @event("CacheConfigured")
    def _cache_configured(self, enabled: bool, ttl_seconds: int, actor: Actor) -> None:
        self.cache_enabled = enabled
        self.cache_ttl_seconds = ttl_seconds

    def delete(self, actor: Actor) -> None:
        self.check_not_deleted()
        self._deleted(actor=actor)

    @event("Deleted")
    def _deleted(self, actor: Actor) -> None:
        self.deleted = True


def check_vendor(vendor: str) -> str:
    if vendor not in UPSTREAMS:
        raise InvalidValueError("vendor", f"vendor must be one of {', '.join(UPSTREAMS)}")
    return vendor


def check_cache_ttl(value: object) -> int:
    return CACHE_TTL.check("ttl_seconds", value)


def check_model_slug(slug: str) -> str:
    return MODEL_SLUG.check("id", slug)


def check_display_name(value: str) -> str:
    return DISPLAY_NAME.check("display_name", value)


def check_modality(value: str) -> str:
    if value not in MODALITIES:
        raise InvalidValueError("modality", f"modality must be one of {', '.join(MODALITIES)}")
    return value


def check_context_length(value: int) -> int:
    return CONTEXT_LENGTH.check("context_length", value)


class GpuRate(Aggregate):
    """The EUR hourly rate of one instance type in one region."""

    @staticmethod
    def create_id(instance_type: str, region: str) -> UUID:
        return name_id("gpu-rate", instance_type, region)

    @event("Set")
    def __init__(
        self, instance_type: str, region: str, eur_per_hour: Decimal, actor: Actor
    ) -> None:
        self.instance_type = instance_type
        self.region = region
        self.eur_per_hour = eur_per_hour

    @classmethod
    def set(cls, instance_type: str, region: str, eur_per_hour: Decimal, actor: Actor) -> GpuRate:
        """The first rate of an instance type in a region (both as deploys name them)."""
        return cls(
            instance_type=check_slug("instance_type", instance_type),
            region=check_slug("region", region),
            eur_per_hour=check_price("eur_per_hour", eur_per_hour),
            actor=actor,
        )

    def change(self, eur_per_hour: Decimal, actor: Actor) -> None:
        self._changed(eur_per_hour=check_price("eur_per_hour", eur_per_hour), actor=actor)

    @event("Changed")
    def _changed(self, eur_per_hour: Decimal, actor: Actor) -> None:
        self.eur_per_hour = eur_per_hour
