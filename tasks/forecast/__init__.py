"""Long-horizon time-series forecasting: series files, the benchmark protocol, patch and DLinear models."""
from .task import ForecastTask

__all__ = ["ForecastTask"]
