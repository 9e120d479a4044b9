"""Watch, diagnose and rescue training (炸炉 and its cousins).

Four monitors run as callbacks of the training loop, on by default (recipe section
``monitors``), and record what they see in the run's events.jsonl:

* :class:`DivergenceMonitor` — NaN/inf and loss spikes: skip the step; if it recurs, roll back
  to the last good snapshot, lower the learning rate and go on (``rescue``), up to
  ``max_rescues`` times (then ``rescue_exhausted`` stops the run);
* :class:`GradientMonitor` — per-layer gradient norms (grad_norms.jsonl): vanishing, exploding;
* :class:`FitMonitor` — overfitting during training, underfitting at the end;
* :class:`ConvergenceMonitor` — converged, plateau, false convergence, learning rate too high
  or too low; at the end, still improving or stopped too early;
* :class:`VerdictMonitor` — at the end, one verdict weighed from all findings (what caused what,
  how sure, which cures do not contradict the run), shown live and told by ``danlu diagnose``.

The divergence monitor also catches blow-ups without NaN (a ``collapse``: the loss back at, or
worse than, a constant guess's; predictions on one class) and rescues them the same way.

:func:`story` tells a finished (or stopped) run's story in English or Chinese
(``danlu diagnose RUN --lang zh``).
"""
from .._lazy import lazy_getattr
from ._story import story
from ._text import DIAGNOSES
from ._verdict import decide

# The monitors need torch; `danlu diagnose` (story) does not, so they load on first use.
_LAZY = {
    "ConvergenceMonitor": "_convergence",
    "DivergenceMonitor": "_divergence",
    "FitMonitor": "_fit",
    "GradientMonitor": "_gradients",
    "VerdictMonitor": "_verdict",
    "default_monitors": "_monitors",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["DIAGNOSES", "ConvergenceMonitor", "DivergenceMonitor", "FitMonitor", "GradientMonitor",
           "VerdictMonitor", "decide", "default_monitors", "story"]
