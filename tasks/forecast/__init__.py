"""Long-horizon time-series forecasting: series files, the benchmark protocol, patch and DLinear models."""
from . import cli
from .task import ForecastTask

__all__ = ["ForecastTask", "cli"]
