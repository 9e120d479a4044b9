"""Evaluation: metrics of a split, which direction is better, and the summary table."""
from ._metrics import METRICS, PRIMARY_METRIC, compute_metrics, metric_direction, positive_class_id
from ._table import format_table

__all__ = ["METRICS", "PRIMARY_METRIC", "compute_metrics", "metric_direction", "positive_class_id", "format_table"]
from ._baseline import (baseline_metrics, baseline_scores, compare_to_baseline, evaluate_with_baseline, mcnemar,
                        paired_bootstrap, significance)
from ._compare import check_same_data, compare_runs
from ._curves import confusion, pr_curve_points, residuals, roc_curve_points
from ._cv import CVResult, FoldResult, cross_validate, fold_rows

__all__ += ["baseline_metrics", "baseline_scores", "compare_to_baseline", "evaluate_with_baseline", "mcnemar",
            "paired_bootstrap", "significance", "check_same_data", "compare_runs", "confusion",
            "pr_curve_points", "residuals", "roc_curve_points", "CVResult", "FoldResult", "cross_validate",
            "fold_rows"]
