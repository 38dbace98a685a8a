"""Use cases on the price book: models and GPU hourly rates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from application.auth import Principal
from application.catalog import DEFAULT_GPU_RATES, DEFAULT_MODELS, DEFAULT_VENDORS
from application.catalog_import import Entry, Skipped
from application.errors import ConcurrentModificationError, NotFoundError
from application.ports import Clock
from application.store import EventStore
from domain.base import Actor, InvalidValueError, NameTakenError
from domain.pricing import GpuRate, Model, check_model_slug


@dataclass
class ImportSummary:
    """What an import did, by model slug."""

    added: list[str] = field(default_factory=list)
    repriced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class Pricing:
    def __init__(self, store: EventStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def register_model(
        self,
        principal: Principal,
        slug: str,
        display_name: str,
        modality: str,
        context_length: int,
        input_eur_per_mtok: Decimal,
        output_eur_per_mtok: Decimal,
        serveable: bool,
        vendor: str | None = None,
    ) -> UUID:
        principal.check_admin()
        existing = self.store.find(Model, Model.create_id(check_model_slug(slug)))
        if existing is not None:
            raise NameTakenError(f"model {slug!r} is already registered")
        model = Model.register(
            slug=slug,
            display_name=display_name,
            modality=modality,
            context_length=context_length,
            input_eur_per_mtok=input_eur_per_mtok,
            output_eur_per_mtok=output_eur_per_mtok,
            serveable=serveable,
            actor=principal.actor,
            vendor=vendor,
        )
        try:
            self.store.commit(model)
        except ConcurrentModificationError:
            raise NameTakenError(f"model {slug!r} is already registered") from None
        return model.id

    def load_model(self, slug: str) -> Model:
        model = self.store.find(Model, Model.create_id(slug))
        if model is None or model.deleted:
            raise NotFoundError("model", slug)
        return model

    def update_model(
        self,
        principal: Principal,
        slug: str,
        display_name: str,
        modality: str,
        context_length: int,
        serveable: bool,
        input_eur_per_mtok: Decimal,
        output_eur_per_mtok: Decimal,
        effective_from: datetime | None = None,
    ) -> None:
        """Replace a model's description; a new price takes effect at ``effective_from``."""
        principal.check_admin()
        model = self.load_model(slug)
        model.update(display_name, modality, context_length, serveable, actor=principal.actor)
        current = model.current_price
        new_price = (input_eur_per_mtok, output_eur_per_mtok)
        if new_price != (current.input_eur_per_mtok, current.output_eur_per_mtok) or effective_from:
            model.change_price(
                *new_price, effective_from or self.clock.now(), actor=principal.actor
            )
        self.store.commit(model)

    def import_prices(
        self,
        principal: Principal,
        entries: Sequence[Entry],
        effective_from: datetime | None = None,
        on_entry: Callable[[], object] | None = None,
    ) -> ImportSummary:
        """Register the models the price book lacks and change the prices of those it has,
        effective from ``effective_from`` (now); all in one atomic save, or nothing.

        A model whose price is already the listed one records nothing, so importing the same
        list again changes nothing. An existing model's description (name, modality, context,
        vendor) is the operator's and stays; a deleted model is left deleted. ``on_entry`` is
        called after each entry is looked at (the CLI's progress: a list has thousands).
        """
        principal.check_admin()
        when = effective_from or self.clock.now()
        summary = ImportSummary()
        changed: list[Model] = []
        for e in entries:
            model = self.store.find(Model, Model.create_id(e.slug))
            try:
                if model is None:
                    changed.append(
                        Model.register(
                            e.slug,
                            e.display_name,
                            e.modality,
                            e.context_length,
                            e.input_eur_per_mtok,
                            e.output_eur_per_mtok,
                            serveable=False,
                            actor=principal.actor,
                            vendor=e.vendor,
                        )
                    )
                    summary.added.append(e.slug)
                elif model.deleted:
                    summary.skipped.append(Skipped(e.slug, "deleted from the price book"))
                elif (e.input_eur_per_mtok, e.output_eur_per_mtok) == (
                    model.current_price.input_eur_per_mtok,
                    model.current_price.output_eur_per_mtok,
                ):
                    summary.unchanged.append(e.slug)
                else:
                    model.change_price(
                        e.input_eur_per_mtok, e.output_eur_per_mtok, when, principal.actor
                    )
                    changed.append(model)
                    summary.repriced.append(e.slug)
            except InvalidValueError as error:
                summary.skipped.append(Skipped(e.slug, str(error)))
            if on_entry is not None:
                on_entry()
        if changed:
            self.store.commit(*changed)
        return summary

    def configure_cache(
        self, principal: Principal, slug: str, enabled: bool, ttl_seconds: int | None = None
    ) -> None:
        """Turn a model's response cache on or off (admin); no ``ttl_seconds`` keeps the TTL."""
        principal.check_admin()
        model = self.load_model(slug)
        model.configure_cache(enabled, ttl_seconds, actor=principal.actor)
        self.store.commit(model)

    def delete_model(self, principal: Principal, slug: str) -> None:
        principal.check_admin()
        model = self.load_model(slug)
        model.delete(actor=principal.actor)
        self.store.commit(model)

    def set_gpu_rate(
        self, principal: Principal, instance_type: str, region: str, eur_per_hour: Decimal
    ) -> UUID:
        """Set the hourly rate of an instance type in a region (new deploys use it)."""
        principal.check_admin()
        rate = self.store.find(GpuRate, GpuRate.create_id(instance_type, region))
        if rate is None:
            rate = GpuRate.set(instance_type, region, eur_per_hour, actor=principal.actor)
        else:
            rate.change(eur_per_hour, actor=principal.actor)
        self.store.commit(rate)
        return rate.id

    def load_default_catalog(self) -> int:
        """On first start: the models named in the seeds and GPU rates. Returns how many."""
        actor = Actor.system()
        new = []
        for slug, name, modality, context, price_in, price_out, serveable in DEFAULT_MODELS:
            if self.store.find(Model, Model.create_id(slug)) is None:
                new.append(
                    Model.register(
                        slug,
                        name,
                        modality,
                        context,
                        Decimal(price_in),
                        Decimal(price_out),
                        serveable,
                        actor,
                        vendor=DEFAULT_VENDORS.get(slug),
                    )
                )
        for instance_type, region, eur_per_hour in DEFAULT_GPU_RATES:
            if self.store.find(GpuRate, GpuRate.create_id(instance_type, region)) is None:
                new.append(
                    GpuRate(
                        instance_type=instance_type,
                        region=region,
                        eur_per_hour=Decimal(eur_per_hour),
                        actor=actor,
                    )
                )
        if new:
            try:
                self.store.commit(*new)
            except ConcurrentModificationError:
                return 0  # another process loaded it at the same moment
        return len(new)
