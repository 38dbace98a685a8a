"""Every read model hostplane keeps."""

from __future__ import annotations

from projections.audit import AuditProjection
from projections.base import Projection
from projections.budgets import BudgetsProjection
from projections.costs import CostsProjection
from projections.instances import InstancesProjection
from projections.keys import KeysProjection
from projections.pricebook import PricebookProjection
from projections.tenants import TenantsProjection
from projections.usage import UsageProjection
from projections.webhooks import WebhooksProjection


def all_projections() -> list[Projection]:
    return [
        TenantsProjection(),
        KeysProjection(),
        InstancesProjection(),
        BudgetsProjection(),
        AuditProjection(),
        PricebookProjection(),
        UsageProjection(),
        CostsProjection(),
        WebhooksProjection(),
    ]
