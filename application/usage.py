"""Use cases on usage: ingest rated batches (and have the budgets they touch watched)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from application.auth import Principal
from application.errors import ConcurrentModificationError, PricesChangedError
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

ZERO_PRICE = Decimal(0)  # a response-cache hit's unit prices (EUR/Mtok)


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    batch_ids: list[UUID]
    tenant_ids: set[UUID]
    position: int | None = None  # the notification id of the last event written (None: none)


class NotKeptError(Exception):
    """What a check asked not to load (``load=False``) is not kept in memory."""


def _grouped(tenants: list[UUID], records: list[UsageInput]) -> dict[UUID, list[UsageInput]]:
    """Records by tenant (request ids are unique per tenant: grouped once, then strings)."""
    grouped: dict[UUID, list[UsageInput]] = {}
    for tenant, r in zip(tenants, records, strict=True):
        group = grouped.get(tenant)
        if group is None:
            group = grouped[tenant] = []
        group.append(r)
    return grouped


@dataclass(frozen=True)
class StagedUsage:
    """Usage batches rated and ready to be written: the events of ``batches``, with
    ``request_ids`` registered and the models' stored versions checked to be ``rated_with``
    in the same write (the event store's ``commit`` keyword arguments)."""

    batches: list[UsageBatch]
    request_ids: dict[UUID, list[str]]
    rated_with: dict[UUID, int]


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
        # The same for keys, and whether the "key" is a GPU instance's own (its id).
        self._key_owners: dict[UUID, tuple[UUID, bool]] = {}
        # Models (their price history) as last loaded, used while their stored version holds.
        self._models: dict[UUID, Model] = {}
        # Each slug's model id (a name-based UUID: a SHA-1 each time, ~15 µs).
        self._model_ids: dict[str, UUID] = {}

    def ingest_usage(
        self,
        principal: Principal,
        records: list[UsageInput],
        now: datetime | None = None,
        fresh_ids: bool = False,
        instance_keys: bool = False,
    ) -> IngestResult:
        """Validate, de-duplicate and rate a batch, and store it in one transaction.

        One invalid record refuses the whole batch. A request id already recorded for the
        tenant (in this batch, an earlier one or a concurrent one) is counted once. The
        tenants whose usage was recorded have their budgets evaluated soon (``budget_watch``).

        One round trip when all goes as expected: the models are rated with the copies kept
        here, whose stored versions the write checks under its lock (a price changed meanwhile:
        reloaded and rated again); ``fresh_ids`` (the gateway, whose request ids are new UUIDs)
        skips looking the ids up first: the write still refuses a repeated id, and then the
        batch is de-duplicated and written again.

        ``instance_keys``: a record's ``key_id`` may be a GPU instance's id, the key of its
        own ``hp_ik_`` key (only the gateway records such requests; a caller of
        ``POST /usage/events`` names one of its API keys).
        """
        principal.check_management()
        if not 1 <= len(records) <= MAX_BATCH:
            raise InvalidValueError("records", f"a batch holds 1 to {MAX_BATCH} records")
        now = now or self.clock.now()
        tenants, models = self._check_batch(principal, records, now, instance_keys, trust_kept=True)
        for attempt in range(4):
            try:
                result = self._store_batch(
                    principal.actor,
                    records,
                    tenants,
                    models,
                    look_up_ids=not fresh_ids or attempt > 0,
                )
            except ConcurrentModificationError:
                continue  # a concurrent batch recorded one of our ids first: dedupe again
            except PricesChangedError:
                self._models.clear()  # read every model's current prices again, and re-rate
                tenants, models = self._check_batch(principal, records, now, instance_keys)
                continue
            self.budget_watch.watch(result.tenant_ids)
            return result
        raise ConcurrentModificationError("usage batch conflicted repeatedly; retry")

    def _check_batch(
        self,
        principal: Principal,
        records: list[UsageInput],
        now: datetime,
        instance_keys: bool,
        trust_kept: bool = False,
        load: bool = True,
    ) -> tuple[list[UUID], dict[str, Model | None]]:
        """Every record's tenant, and the models; raises with every problem at once.

        ``load=False``: only what is kept in memory is used; ``NotKeptError`` if something would
        have to be read."""
        problems: list[RecordProblem] = []
        key_tenant: dict[UUID, UUID | None] = {}
        instance_tenant: dict[UUID, UUID | None] = {}
        tenants: list[UUID] = []
        # A model id that is no storable text names no model (and can't make an id).
        models = self._current_models(
            {r.model for r in records if storable(r.model)}, trust_kept, load
        )
        own = None if principal.is_admin else principal.tenant_id
        for i, r in enumerate(records):
            problems += check_record(i, r, now)
            if r.cache_hit and not principal.is_admin:  # rated at zero: the operator's to say
                problems.append(
                    RecordProblem(
                        i, r.request_id, "cache_hit", "only the operator records cache hits"
                    )
                )
            if r.key_id not in key_tenant:
                key_tenant[r.key_id] = self.tenant_of_key(r.key_id, instance_keys, load)
            tenant = key_tenant[r.key_id]
            if tenant is None or (own is not None and tenant != own):
                problems.append(RecordProblem(i, r.request_id, "key_id", "unknown key"))
            if models.get(r.model) is None:
                problems.append(
                    RecordProblem(i, r.request_id, "model", f"unknown model {r.model!r}")
                )
            if r.instance_id is not None:
                if r.instance_id not in instance_tenant:
                    instance_tenant[r.instance_id] = self.tenant_of_instance(r.instance_id, load)
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
        look_up_ids: bool = True,
    ) -> IngestResult:
        grouped = _grouped(tenants, records)
        seen = (
            self.request_ids.seen({t: [r.request_id for r in rs] for t, rs in grouped.items()})
            if look_up_ids
            else {}
        )
        staged = self._stage(actor, grouped, models, seen)
        position = None
        if staged.batches:
            position = self.store.commit(
                *staged.batches,
                usage_request_ids=staged.request_ids,
                expected_versions=staged.rated_with,
            )
        accepted = sum(len(ids) for ids in staged.request_ids.values())
        return IngestResult(
            accepted=accepted,
            duplicates=len(records) - accepted,
            batch_ids=[b.id for b in staged.batches],
            tenant_ids=set(staged.request_ids),
            position=position,
        )

    @staticmethod
    def _stage(
        actor: Actor,
        grouped: dict[UUID, list[UsageInput]],
        models: dict[str, Model | None],
        seen: dict[UUID, set[str]],
    ) -> StagedUsage:
        """A batch per tenant of its records not ``seen`` yet, rated, with their request ids
        and the versions of the models they were rated with."""
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
                if r.cache_hit:  # no upstream token was used: rated (and stored) at zero prices
                    rated.append((r, ZERO_PRICE, ZERO_PRICE))
                    continue
                price = model.price_at(r.occurred_at)
                rated.append((r, price.input_eur_per_mtok, price.output_eur_per_mtok))
            if rated:
                fresh[tenant] = ids
                batches.append(UsageBatch.record(tenant, rated, actor))
        rated_with = {m.id: m.version for m in models.values() if m is not None}
        return StagedUsage(batches, fresh, rated_with)

    # -- the gateway's write from the event loop ------------------------------------------

    def stage_kept(self, principal: Principal, records: list[UsageInput]) -> StagedUsage | None:
        """The usage batches ``ingest_usage(principal, records, fresh_ids=True,
        instance_keys=True)`` would write, rated with what this object keeps in memory, without
        any I/O: for a caller on an event loop that writes them itself (the gateway's meter).

        ``None`` when something must be read first (a key, an instance or a model not kept
        yet); an invalid batch raises as ``ingest_usage`` would. Writing the stage may still
        fail (a request id recorded meanwhile, a price changed): then ``ingest_usage`` does it
        all again, de-duplicating.
        """
        principal.check_management()
        if not 1 <= len(records) <= MAX_BATCH:
            raise InvalidValueError("records", f"a batch holds 1 to {MAX_BATCH} records")
        try:
            tenants, models = self._check_batch(
                principal, records, self.clock.now(), True, trust_kept=True, load=False
            )
        except NotKeptError:
            return None
        return self._stage(principal.actor, _grouped(tenants, records), models, {})

    def staged_written(self, staged: StagedUsage) -> None:
        """A stage is committed: its tenants' budgets are evaluated soon (as after
        ``ingest_usage``)."""
        self.budget_watch.watch(set(staged.request_ids))

    def _current_models(
        self, slugs: set[str], trust_kept: bool = False, load: bool = True
    ) -> dict[str, Model | None]:
        """The models of these slugs as stored now (``None``: no such model).

        A batch names a few models; one round trip reads their stored versions, and only a
        model changed since it was last loaded (a new price) is loaded again. ``trust_kept``:
        when every model is kept already, they are used as kept, without that round trip (the
        write checks their versions).
        """
        ids = {slug: self._model_id(slug) for slug in slugs}
        if trust_kept:
            kept = {slug: self._models.get(i) for slug, i in ids.items()}
            if all(m is not None for m in kept.values()):
                return kept
        if not load:
            raise NotKeptError("a model")
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

    def _model_id(self, slug: str) -> UUID:
        model_id = self._model_ids.get(slug)
        if model_id is None:
            if len(self._model_ids) >= 10_000:
                self._model_ids.clear()  # crude bound: a caller may name any number of slugs
            model_id = self._model_ids[slug] = Model.create_id(slug)
        return model_id

    def tenant_of_key(
        self, key_id: UUID, instance_keys: bool = False, load: bool = True
    ) -> UUID | None:
        """The tenant of an API key (``None``: no such key). A key never changes tenant, so
        the answer is kept.

        A GPU instance's own key (``hp_ik_``) is no ``ApiKey``: the gateway records its requests
        with the instance's id as their key, and a user's (a JWT) with the user's id; only with
        ``instance_keys`` (the gateway's meter) is such an id a key.
        """
        known = self._key_owners.get(key_id)
        if known is not None:
            tenant, not_a_key = known
            return tenant if instance_keys or not not_a_key else None
        if not load:
            raise NotKeptError("a key")
        key = self.store.find(ApiKey, key_id)
        if key is not None:
            return self._remember_key(key_id, key.tenant_id, False)
        instance = self.store.find(Instance, key_id)
        owner = instance.tenant_id if instance is not None and not instance.is_byok else None
        if owner is None:
            user = self.store.find(User, key_id)
            owner = None if user is None else user.tenant_id
        if owner is None:
            return None
        self._remember_key(key_id, owner, True)
        return owner if instance_keys else None

    def tenant_of_instance(self, instance_id: UUID, load: bool = True) -> UUID | None:
        tenant = self._owner_cache.get(instance_id)
        if tenant is None:
            if not load:
                raise NotKeptError("an instance")
            instance = self.store.find(Instance, instance_id)
            if instance is None:
                return None
            tenant = self._remember_owner(instance_id, instance.tenant_id)
        return tenant

    def _remember_key(self, key_id: UUID, tenant_id: UUID, is_instance: bool) -> UUID:
        if len(self._key_owners) >= 100_000:
            self._key_owners.clear()  # crude bound; refilled from the event store on demand
        self._key_owners[key_id] = (tenant_id, is_instance)
        return tenant_id

    def _remember_owner(self, aggregate_id: UUID, tenant_id: UUID) -> UUID:
        if len(self._owner_cache) >= 100_000:
            self._owner_cache.clear()  # crude bound; refilled from the event store on demand
        self._owner_cache[aggregate_id] = tenant_id
        return tenant_id
