"""One verdict, not a list of contradictions.

The monitors each record what they see; several findings often have one cause. Before danlu
says anything the findings are weighed against each other:

* what caused what: a blow-up explains the underfitting, the swinging loss and the plateau that
  follow it; unscaled inputs explain a blow-up or a crawl; vanishing gradients explain a model
  that learns too little; no signal in the data explains both a gap and a poor fit;
* which finding wins: the first cause in :data:`_ORDER` that was found;
* what may be proposed: cures are tagged with a direction (raise the learning rate, add
  capacity, regularise, train longer, ...), and a direction is ruled out when another finding
  or the run's own history speaks against it (never "raise the lr" after it was found too high
  or a rescue cut it; never "train longer" on an overfitting model);
* what was already cured: overfitting that began after the epoch whose weights early stopping
  put back did not reach the final model (it is told along the way, not as the problem);
* how sure danlu is: ``certain`` (the run itself shows it: a NaN, a rescue, a gap of many
  points), ``likely`` (a pattern over several epochs), ``possible`` (a weaker sign).

The same function decides the verdict at the end of training (shown live and recorded as a
``verdict`` event) and in ``danlu diagnose`` (which reads the recorded one). It needs no torch.
"""
from __future__ import annotations

# Causes in the order they win over each other.
_ORDER = ("unscaled_features", "rescue_exhausted", "collapse", "divergence", "rescue", "exploding_gradient",
          "vanishing_gradient", "no_signal", "lr_too_high", "overfitting", "lr_too_low", "underfitting",
          "nan_loss", "still_improving", "stopped_too_early", "plateau", "loss_spike")

_BLOW_UP = ("rescue_exhausted", "collapse", "divergence", "rescue")
# Findings that are the symptoms of a cause (when the cause is found, they are not separate problems).
_SYMPTOMS = {
    "blow_up": ("underfitting", "lr_too_high", "plateau", "lr_too_low", "false_convergence", "converged",
                "nan_loss", "loss_spike", "exploding_gradient", "stopped_too_early"),
    "unscaled_features": ("collapse", "divergence", "rescue", "rescue_exhausted", "exploding_gradient",
                          "lr_too_high", "lr_too_low", "plateau", "underfitting", "nan_loss", "loss_spike",
                          "still_improving", "false_convergence", "stopped_too_early"),
    "exploding_gradient": ("lr_too_high", "loss_spike", "nan_loss", "plateau", "underfitting", "false_convergence"),
    "vanishing_gradient": ("underfitting", "plateau", "lr_too_low", "still_improving", "false_convergence",
                           "stopped_too_early"),
    "lr_too_high": ("plateau", "false_convergence", "underfitting", "converged", "loss_spike"),
    "no_signal": ("overfitting", "underfitting", "plateau", "converged", "false_convergence", "lr_too_high"),
    "overfitting": ("converged", "false_convergence", "underfitting", "stopped_too_early"),
    "lr_too_low": ("underfitting", "still_improving", "plateau", "stopped_too_early", "false_convergence"),
    "underfitting": ("plateau", "converged", "false_convergence"),
    "still_improving": ("underfitting", "plateau", "false_convergence"),
    "stopped_too_early": ("underfitting", "plateau", "false_convergence"),
    "plateau": ("underfitting",),
}
# Findings that are told but never the problem of a run.
_NEWS = ("converged", "false_convergence")
_SKILLED = 0.15   # "clearly better than the baseline": this share of the way from a constant guess to perfect


def _group(kind: str) -> str:
    return "blow_up" if kind in _BLOW_UP else kind


def _sure(kind: str, event: dict) -> str:
    if kind in _BLOW_UP or kind == "nan_loss":
        return "certain"
    if kind == "overfitting" and event.get("variant") == "gap" and (event.get("gap") or 0) >= 0.1:
        return "certain"
    if kind == "exploding_gradient" and event.get("variant") == "growth":
        return "possible"
    if kind in ("plateau", "loss_spike"):
        return "possible"
    if kind == "unscaled_features":
        return "likely"
    return "likely"


def skill(fit: dict | None) -> float | None:
    """How far the final validation (else training) metric got from the trivial predictor
    towards perfect, or None where not known."""
    if not fit:
        return None
    value = fit.get("val") if fit.get("val") is not None else fit.get("train")
    trivial = fit.get("trivial")
    if not isinstance(value, (int, float)) or not isinstance(trivial, (int, float)) or trivial >= 1:
        return None
    return (value - trivial) / (1 - trivial)


def decide(events: list, fit: dict | None = None) -> dict:
    """The verdict from a run's events (and, where known, its final figures ``fit``: metric,
    train, val, trivial). Returns ``cause`` (a diagnosis id, ``healthy`` or ``inconclusive``),
    ``sure``, ``evidence`` (the deciding event), ``explains`` (findings that are its symptoms),
    ``also`` (other findings that stand on their own), ``forbid`` (directions of cure ruled out)
    and ``skill``."""
    found = {}
    for e in events:
        kind = e.get("kind")
        if kind and kind != "verdict":
            found.setdefault(kind, e)          # the first of each kind: where it began
    cured = []
    if "overfitting" in found and _cured_by_early_stopping(found["overfitting"], fit):
        cured.append("overfitting")            # the final model is the one from before it began
        del found["overfitting"]
    # a lone skipped bad step is news, not a blow-up; a collapse (or a rescue) is one
    cause = next((k for k in _ORDER if k in found), None)
    if cause == "unscaled_features" and not set(found) & set(_SYMPTOMS["unscaled_features"]):
        cause = next((k for k in _ORDER[1:] if k in found), None)   # alone, it is only a remark
    explains = []
    if cause is not None:
        explains = [k for k in found if k != cause and k in _SYMPTOMS.get(_group(cause), ())
                    and _group(k) != _group(cause) and k not in _NEWS]
        explains += [k for k in found if k != cause and k in _BLOW_UP and _group(cause) == "blow_up"]
    also = [k for k in found if k != cause and k not in explains and k not in _NEWS and k != "verdict"]
    kept = {cause, *also} - {None}
    also = _drop_contradicted(also, kept)
    kept = {cause, *also} - {None}
    the_skill = skill(fit)
    if cause is None:
        healthy = the_skill is None or the_skill >= _SKILLED
        verdict = {"cause": "healthy" if healthy else "inconclusive", "sure": "likely" if healthy else "possible",
                   "evidence": {}}
    else:
        verdict = {"cause": cause, "sure": _sure(cause, found[cause]), "evidence": found[cause]}
    verdict.update(explains=explains, also=also, forbid=sorted(_forbidden(kept, set(found))), skill=the_skill,
                   news=cured + [k for k in _NEWS if k in found])
    return verdict


def _cured_by_early_stopping(event: dict, fit: dict | None) -> bool:
    """Early stopping put back the weights of an epoch before the overfitting began."""
    restored = (fit or {}).get("restored_epoch")
    began = event.get("began_epoch")
    return isinstance(restored, int) and isinstance(began, int) and restored <= began


def _drop_contradicted(also: list, kept: set) -> list:
    """Secondary findings that another kept finding contradicts are left out."""
    out = []
    for kind in also:
        if kind == "underfitting" and kept & {"overfitting", "no_signal"}:
            continue
        if kind in ("still_improving", "stopped_too_early") and kept & {"overfitting", "no_signal"}:
            continue
        if kind == "lr_too_low" and kept & {"lr_too_high", "exploding_gradient", *_BLOW_UP}:
            continue
        out.append(kind)
    return out


def _forbidden(kept: set, found: set) -> set:
    """Directions of cure that a finding, or the run's history, rules out."""
    forbid = set()
    if found & {*_BLOW_UP, "lr_too_high", "exploding_gradient"}:
        forbid.add("lr_up")              # never more of what was found too high or cut by a rescue
    if "lr_too_low" in kept and not found & {*_BLOW_UP, "lr_too_high", "exploding_gradient"}:
        forbid.add("lr_down")
    if kept & {"overfitting", "no_signal"}:
        forbid |= {"capacity_up", "epochs_up"}
    if kept & {"underfitting", "still_improving", "lr_too_low", "stopped_too_early", "vanishing_gradient"}:
        forbid |= {"regularise", "epochs_down", "capacity_down"}
    return forbid


class VerdictMonitor:
    """At the end of training, weigh the monitors' findings into one verdict, record it (the
    ``verdict`` event; ``danlu diagnose`` tells the same one) and show it in one line."""

    name = "monitor_verdict"

    def __init__(self, lang: str = "en"):
        self.lang = lang

    def on_fit_end(self, state) -> None:
        from ._story import verdict_line

        fit = state.fit_figures
        if fit is not None:
            fit = {**fit, "restored_epoch": state.restored_epoch}
        found = decide(state.events, fit)
        recipe = state.recipe.to_dict() if hasattr(state.recipe, "to_dict") else {}
        facts = {k: found[k] for k in ("cause", "sure", "explains", "also", "forbid", "skill", "news")}
        facts["fit"] = fit
        message = verdict_line(found, recipe, state.events, self.lang)
        state.record_event("verdict", message=message, term=found["cause"], **facts)
