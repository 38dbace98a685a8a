"""Price book routes: models (EUR per million tokens) and GPU hourly rates."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import AfterValidator, BaseModel, Field, StrictBool, StrictInt

from interfaces.db.readgate import ReadGate
from interfaces.http.deps import Caller, Gate, Once, PricingDep
from interfaces.http.routes.common import found
from interfaces.http.schemas import Strict
from projections.readmodels import pricebook

router = APIRouter(tags=["price book"])

# Read models hand back times in the database session's time zone; answers are in UTC.
UtcTime = Annotated[datetime, AfterValidator(lambda t: t.astimezone(UTC))]

MODALITY = Field("chat", description="text, chat, embedding, image, audio or multimodal")


class ModelCreate(Strict):
    id: str = Field(description="Slug, e.g. llama-3.1-8b")
    display_name: str
    modality: str = MODALITY
    context_length: StrictInt
    input_eur_per_mtok: Decimal
    output_eur_per_mtok: Decimal
    serveable: StrictBool = False
    vendor: str | None = Field(
        None, description="Whose model it is (openai, anthropic, ...): BYOK upstreams serve it"
    )


class ModelUpdate(Strict):
    display_name: str
    modality: str = MODALITY
    context_length: StrictInt
    input_eur_per_mtok: Decimal
    output_eur_per_mtok: Decimal
    serveable: StrictBool = False
    effective_from: datetime | None = Field(
        None,
        description="When a new price takes effect (default now). Past usage is never re-rated.",
    )


class CacheUpdate(Strict):
    enabled: StrictBool
    ttl_seconds: StrictInt | None = Field(
        None, description="How long an answer may be served again (1-2,592,000); default: kept."
    )


class CachePublic(BaseModel):
    enabled: bool = Field(
        description="Whether identical non-streamed requests are answered from it."
    )
    ttl_seconds: int


class PricePublic(BaseModel):
    effective_from: UtcTime | None
    input_eur_per_mtok: Decimal
    output_eur_per_mtok: Decimal


class ModelPublic(BaseModel):
    id: str
    display_name: str
    modality: str
    context_length: int
    input_eur_per_mtok: Decimal
    output_eur_per_mtok: Decimal
    price_effective_from: UtcTime | None
    serveable: bool
    vendor: str | None = None
    cache: CachePublic = Field(description="The response cache's settings (per tenant entries).")
    created_at: UtcTime
    updated_at: UtcTime
    prices: list[PricePublic] | None = None


class GpuRateUpdate(Strict):
    eur_per_hour: Decimal


class GpuRatePublic(BaseModel):
    instance_type: str
    region: str
    eur_per_hour: Decimal
    updated_at: UtcTime


def read_model(gate: ReadGate, slug: str) -> ModelPublic:
    with gate.reading("pricebook") as curs:
        return ModelPublic(**found(pricebook.get_model(curs, slug), "model", slug))


@router.get("/models", response_model=dict[str, list[ModelPublic]])
def list_models(caller: Caller, gate: Gate) -> dict:
    """The catalog with current EUR prices per million tokens."""
    with gate.reading("pricebook") as curs:
        return {"data": pricebook.list_models(curs)}


@router.post("/models", status_code=201, response_model=ModelPublic)
def register_model(
    body: ModelCreate,
    caller: Caller,
    commands: PricingDep,
    gate: Gate,
    once: Once,
    request: Request,
    response: Response,
) -> dict:
    """Register a model (admin). Its price applies to all usage until a later change."""

    def create() -> ModelPublic:
        fields = body.model_dump()
        commands.register_model(caller, slug=fields.pop("id"), **fields)
        return read_model(gate, body.id)

    # The model's id is its slug, which the request names.
    return once(caller, request, response, body, create, lambda done: read_model(gate, body.id))


@router.get("/models/{model_id}", response_model=ModelPublic)
def get_model(model_id: str, caller: Caller, gate: Gate) -> ModelPublic:
    """A model with its price history."""
    return read_model(gate, model_id)


@router.put("/models/{model_id}", response_model=ModelPublic)
def update_model(
    model_id: str, body: ModelUpdate, caller: Caller, commands: PricingDep, gate: Gate
) -> ModelPublic:
    """Update a model (admin). A changed price takes effect at ``effective_from``."""
    commands.update_model(caller, model_id, **body.model_dump())
    return read_model(gate, model_id)


@router.put("/models/{model_id}/cache", response_model=ModelPublic)
def configure_cache(
    model_id: str, body: CacheUpdate, caller: Caller, commands: PricingDep, gate: Gate
) -> ModelPublic:
    """Turn the model's response cache on or off and set its TTL (admin; audited)."""
    commands.configure_cache(caller, model_id, body.enabled, body.ttl_seconds)
    return read_model(gate, model_id)


@router.delete("/models/{model_id}", response_model=dict[str, object])
def delete_model(model_id: str, caller: Caller, commands: PricingDep) -> dict:
    """Remove a model from the catalog (admin); its recorded usage keeps its prices."""
    commands.delete_model(caller, model_id)
    return {"id": model_id, "deleted": True}


@router.get("/gpu-rates", response_model=dict[str, list[GpuRatePublic]])
def list_gpu_rates(caller: Caller, gate: Gate) -> dict:
    """GPU hourly rates per instance type and region."""
    with gate.reading("pricebook") as curs:
        return {"data": pricebook.list_gpu_rates(curs)}


@router.put("/gpu-rates/{instance_type}/{region}", response_model=GpuRatePublic)
def set_gpu_rate(
    instance_type: str,
    region: str,
    body: GpuRateUpdate,
    caller: Caller,
    commands: PricingDep,
    gate: Gate,
) -> GpuRatePublic:
    """Set a GPU hourly rate (admin). Instances keep the rate they were deployed at."""
    commands.set_gpu_rate(caller, instance_type, region, body.eur_per_hour)
    with gate.reading("pricebook") as curs:
        rows = pricebook.list_gpu_rates(curs)
    row = next(r for r in rows if r["instance_type"] == instance_type and r["region"] == region)
    return GpuRatePublic(**row)
