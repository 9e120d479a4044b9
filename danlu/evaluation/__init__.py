"""Evaluation: metrics of a split, which direction is better, baselines and significance, curves and
the summary table — from arrays alone (scoring a run, cross-validation and comparing runs are in
danlu.experiments, above the training layer)."""
from ._metrics import (METRICS, PRIMARY_METRIC, Metric, check_metric, compute_metrics, metric_direction, metric_names,
                       metrics_from_callables, metrics_in_use, positive_class_id, register_metric, registered_metrics,
                       unregister_metric)
from ._table import format_table

__all__ = ["METRICS", "PRIMARY_METRIC", "compute_metrics", "metric_direction", "positive_class_id", "format_table",
           "Metric", "check_metric", "metric_names", "metrics_from_callables", "metrics_in_use", "register_metric",
           "registered_metrics", "unregister_metric"]
from ._baseline import (baseline_metrics, baseline_scores, compare_to_baseline, mcnemar,
                        paired_bootstrap, significance)
from ._curves import confusion, pr_curve_points, residuals, roc_curve_points

__all__ += ["baseline_metrics", "baseline_scores", "compare_to_baseline", "mcnemar",
            "paired_bootstrap", "significance", "confusion",
            "pr_curve_points", "residuals", "roc_curve_points"]
