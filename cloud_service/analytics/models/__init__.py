"""Forecasting models: small fit/update/predict classes around the numba kernels."""

from cloud_service.analytics.models.auto import AutoDemand
from cloud_service.analytics.models.base import Forecaster
from cloud_service.analytics.models.exponential import SES, Holt
from cloud_service.analytics.models.intermittent import ADIDA, SBA, TSB, Croston

__all__ = ["ADIDA", "SBA", "SES", "TSB", "AutoDemand", "Croston", "Forecaster", "Holt"]
