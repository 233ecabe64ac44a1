"""The S&OP plan and SKU master data that analytics and alert rules compare readings with."""

from cloud_service.plans.errors import PlanError
from cloud_service.plans.model import (
    DemandTarget,
    PlanBook,
    ProductionTarget,
    ScheduledReceipt,
    SkuPolicy,
)

__all__ = [
    "DemandTarget",
    "PlanBook",
    "PlanError",
    "ProductionTarget",
    "ScheduledReceipt",
    "SkuPolicy",
]
