"""Evaluation: metrics of a split, which direction is better, and the summary table."""
from ._metrics import METRICS, PRIMARY_METRIC, compute_metrics, metric_direction
from ._table import format_table

__all__ = ["METRICS", "PRIMARY_METRIC", "compute_metrics", "metric_direction", "format_table"]
