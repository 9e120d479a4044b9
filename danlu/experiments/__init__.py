"""Experiments on runs: k-fold cross-validation, runs compared side by side with significance tests,
and a finished run's figures beside the baselines. Built on the training layer (it trains and
loads runs) and on danlu.evaluation's statistics."""
from ._compare import check_same_data, compare_runs
from ._cv import CVResult, FoldResult, cross_validate, fold_rows
from ._scores import SplitScores, evaluate_with_baseline, run_split_scores

__all__ = ["CVResult", "FoldResult", "SplitScores", "check_same_data", "compare_runs", "cross_validate",
           "evaluate_with_baseline", "fold_rows", "run_split_scores"]
