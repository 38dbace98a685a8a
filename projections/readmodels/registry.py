"""Every read model hostplane keeps."""

from __future__ import annotations

from projections.engine.base import Projection
from projections.readmodels.audit import AuditProjection
from projections.readmodels.budgets import BudgetsProjection
from projections.readmodels.capacity import CapacityProjection
from projections.readmodels.costs import CostsProjection
from projections.readmodels.fairshare import FairshareProjection
from projections.readmodels.instances import InstancesProjection
from projections.readmodels.keys import KeysProjection
from projections.readmodels.mcp_servers import McpServersProjection
from projections.readmodels.pricebook import PricebookProjection
from projections.readmodels.project_configs import ProjectConfigsProjection
from projections.readmodels.tenants import TenantsProjection
from projections.readmodels.usage import UsageProjection
from projections.readmodels.usage_cache import UsageCacheProjection
from projections.readmodels.users import UsersProjection
from projections.readmodels.webhooks import WebhooksProjection


def all_projections() -> list[Projection]:
    return [
        TenantsProjection(),
        KeysProjection(),
        InstancesProjection(),
        BudgetsProjection(),
        AuditProjection(),
        PricebookProjection(),
        UsageProjection(),
        UsageCacheProjection(),
        CostsProjection(),
        WebhooksProjection(),
        McpServersProjection(),
        CapacityProjection(),
        FairshareProjection(),
        ProjectConfigsProjection(),
        UsersProjection(),
    ]
