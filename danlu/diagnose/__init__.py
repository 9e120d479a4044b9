"""Watch, diagnose and rescue training (炸炉 and its cousins).

Four monitors run as callbacks of the training loop, on by default (recipe section
``monitors``), and record what they see in the run's events.jsonl:

* :class:`DivergenceMonitor` — NaN/inf and loss spikes: skip the step; if it recurs, roll back
  to the last good snapshot, lower the learning rate and go on (``rescue``), up to
  ``max_rescues`` times (then ``rescue_exhausted`` stops the run);
* :class:`GradientMonitor` — per-layer gradient norms (grad_norms.jsonl): vanishing, exploding;
* :class:`FitMonitor` — overfitting during training, underfitting at the end;
* :class:`ConvergenceMonitor` — converged, plateau, false convergence, learning rate too high
  or too low.

:func:`story` tells a finished (or stopped) run's story in English or Chinese
(``danlu diagnose RUN --lang zh``).
"""
from .._lazy import lazy_getattr
from ._story import story
from ._text import DIAGNOSES

# The monitors need torch; `danlu diagnose` (story) does not, so they load on first use.
_LAZY = {
    "ConvergenceMonitor": "_convergence",
    "DivergenceMonitor": "_divergence",
    "FitMonitor": "_fit",
    "GradientMonitor": "_gradients",
    "default_monitors": "_monitors",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["DIAGNOSES", "ConvergenceMonitor", "DivergenceMonitor", "FitMonitor", "GradientMonitor",
           "default_monitors", "story"]
