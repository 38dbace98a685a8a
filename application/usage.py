"""Use cases on usage: ingest rated batches (and have the budgets they touch watched)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from application.auth import Principal
from application.errors import ConcurrentModificationError
from application.ports import BudgetWatch, Clock, RequestIdRegistry, StoredVersions
from application.store import EventStore
from domain.apikey import ApiKey
from domain.base import Actor, InvalidValueError
from domain.instance import Instance
from domain.pricing import Model
from domain.usage import (
    MAX_BATCH,
    RecordProblem,
    UsageBatch,
    UsageBatchInvalidError,
    UsageInput,
    check_record,
)
from domain.user import User
from domain.values import storable


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    batch_ids: list[UUID]
    tenant_ids: set[UUID]


class Usage:
    """``request_ids`` tells recorded request ids, ``versions`` whether a kept model is
    current; ``budget_watch`` hears of every tenant whose usage was recorded."""

    def __init__(
        self,
        store: EventStore,
        clock: Clock,
        request_ids: RequestIdRegistry,
        versions: StoredVersions,
        budget_watch: BudgetWatch,
    ) -> None:
        self.store = store
        self.clock = clock
        self.request_ids = request_ids
        self.versions = versions
        self.budget_watch = budget_watch
        # Ownership is immutable (a key or instance never changes tenant): safe to keep in memory.
        self._owner_cache: dict[UUID, UUID] = {}
        # Models (their price history) as last loaded, used while their stored version holds.
        self._models: dict[UUID, Model] = {}

    def ingest_usage(
        self, principal: Principal, records: list[UsageInput], now: datetime | None = None
    ) -> IngestResult:
        """Validate, de-duplicate and rate a batch, and store it in one transaction.

        One invalid record refuses the whole batch. A request id already recorded for the
        tenant (in this batch, an earlier one or a concurrent one) is counted once. The
        tenants whose usage was recorded have their budgets evaluated soon (``budget_watch``).
        """
        principal.check_management()
        if not 1 <= len(records) <= MAX_BATCH:
            raise InvalidValueError("records", f"a batch holds 1 to {MAX_BATCH} records")
        now = now or self.clock.now()
        tenants, models = self._check_batch(principal, records, now)
        for _attempt in range(3):
            try:
                result = self._store_batch(principal.actor, records, tenants, models)
            except ConcurrentModificationError:
                continue  # a concurrent batch recorded one of our ids first: dedupe again
            self.budget_watch.watch(result.tenant_ids)
            return result
        raise ConcurrentModificationError("usage batch conflicted repeatedly; retry")

    def _check_batch(
        self, principal: Principal, records: list[UsageInput], now: datetime
    ) -> tuple[list[UUID], dict[str, Model | None]]:
        """Every record's tenant, and the models; raises with every problem at once."""
        problems: list[RecordProblem] = []
        key_tenant: dict[UUID, UUID | None] = {}
        instance_tenant: dict[UUID, UUID | None] = {}
        tenants: list[UUID] = []
        # A model id that is no storable text names no model (and can't make an id).
        models = self._current_models({r.model for r in records if storable(r.model)})
        own = None if principal.is_admin else principal.tenant_id
        for i, r in enumerate(records):
            problems += check_record(i, r, now)
            if r.key_id not in key_tenant:
                key_tenant[r.key_id] = self.tenant_of_key(r.key_id)
            tenant = key_tenant[r.key_id]
            if tenant is None or (own is not None and tenant != own):
                problems.append(RecordProblem(i, r.request_id, "key_id", "unknown key"))
            if models.get(r.model) is None:
                problems.append(
                    RecordProblem(i, r.request_id, "model", f"unknown model {r.model!r}")
                )
            if r.instance_id is not None:
                if r.instance_id not in instance_tenant:
                    instance_tenant[r.instance_id] = self.tenant_of_instance(r.instance_id)
                if (
                    instance_tenant[r.instance_id] is None
                    or instance_tenant[r.instance_id] != tenant
                ):
                    problems.append(
                        RecordProblem(i, r.request_id, "instance_id", "unknown instance")
                    )
            tenants.append(tenant)  # type: ignore[arg-type]
        if problems:
            raise UsageBatchInvalidError(problems)
        return tenants, models

    def _store_batch(
        self,
        actor: Actor,
        records: list[UsageInput],
        tenants: list[UUID],
        models: dict[str, Model | None],
    ) -> IngestResult:
        # Request ids are unique per tenant: group once, then work with strings.
        grouped: dict[UUID, list[UsageInput]] = {}
        for tenant, r in zip(tenants, records, strict=True):
            group = grouped.get(tenant)
            if group is None:
                group = grouped[tenant] = []
            group.append(r)
        seen = self.request_ids.seen({t: [r.request_id for r in rs] for t, rs in grouped.items()})
        fresh: dict[UUID, list[str]] = {}
        batches = []
        for tenant, group in grouped.items():
            taken = seen.get(tenant) or set()
            ids: list[str] = []
            rated: list[tuple[UsageInput, Decimal, Decimal]] = []
            for r in group:
                if r.request_id in taken:
                    continue
                taken.add(r.request_id)
                ids.append(r.request_id)
                model = models[r.model]
                assert model is not None
                price = model.price_at(r.occurred_at)
                rated.append((r, price.input_eur_per_mtok, price.output_eur_per_mtok))
            if rated:
                fresh[tenant] = ids
                batches.append(UsageBatch.record(tenant, rated, actor))
        if batches:
            self.store.commit(*batches, usage_request_ids=fresh)
        accepted = sum(len(ids) for ids in fresh.values())
        return IngestResult(
            accepted=accepted,
            duplicates=len(records) - accepted,
            batch_ids=[b.id for b in batches],
            tenant_ids=set(fresh),
        )

    def _current_models(self, slugs: set[str]) -> dict[str, Model | None]:
        """The models of these slugs as stored now (``None``: no such model).

        A batch names a few models; one round trip reads their stored versions, and only a
        model changed since it was last loaded (a new price) is loaded again.
        """
        ids = {slug: Model.create_id(slug) for slug in slugs}
        versions = self.versions.stored_versions(list(ids.values()))
        found: dict[str, Model | None] = {}
        for slug, model_id in ids.items():
            model = self._models.get(model_id)
            if model_id not in versions:
                model = None
            elif model is None or model.version != versions[model_id]:
                model = self.store.find(Model, model_id)
                if model is not None:
                    self._models[model_id] = model
            found[slug] = model
        return found

    def tenant_of_key(self, key_id: UUID) -> UUID | None:
        """The tenant of a key. A key never changes tenant, so the answer is kept.

        A GPU instance's own key (``hp_ik_``) is no ``ApiKey``: the gateway records its requests
        with the instance's id as their key; a user's (a JWT), with the user's id.
        """
        tenant = self._owner_cache.get(key_id)
        if tenant is None:
            key = self.store.find(ApiKey, key_id)
            if key is None:
                instance = self.store.find(Instance, key_id)
                if instance is None or instance.is_byok:
                    user = self.store.find(User, key_id)
                    return None if user is None else self._remember_owner(key_id, user.tenant_id)
                return self._remember_owner(key_id, instance.tenant_id)
            tenant = self._remember_owner(key_id, key.tenant_id)
        return tenant

    def tenant_of_instance(self, instance_id: UUID) -> UUID | None:
        tenant = self._owner_cache.get(instance_id)
        if tenant is None:
            instance = self.store.find(Instance, instance_id)
            if instance is None:
                return None
            tenant = self._remember_owner(instance_id, instance.tenant_id)
        return tenant

    def _remember_owner(self, aggregate_id: UUID, tenant_id: UUID) -> UUID:
        if len(self._owner_cache) >= 100_000:
            self._owner_cache.clear()  # crude bound; refilled from the event store on demand
        self._owner_cache[aggregate_id] = tenant_id
        return tenant_id
