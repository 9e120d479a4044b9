"""The report of a run: PNG plots and one self-contained HTML page (``danlu report RUN``).

:func:`write_report` writes ``report.html`` (images embedded as data URIs, inline CSS, no
external address, so the one file can be mailed) and the same pictures as ``plots/*.png``.
The ``plot_*`` functions draw one picture each from plain data and return the PNG's path.
"""
from ._evidence import planned_lr
from ._plots import (plot_confusion, plot_grad_norms, plot_lr, plot_pr, plot_predicted_vs_true, plot_residuals,
                     plot_roc, plot_training_curves)
from ._report import write_report

__all__ = ["planned_lr", "plot_confusion", "plot_grad_norms", "plot_lr", "plot_pr",
           "plot_predicted_vs_true", "plot_residuals", "plot_roc", "plot_training_curves", "write_report"]
