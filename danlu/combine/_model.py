"""An ensemble folder as a run: one module that the verbs using a model (predict, serve, export) load.

``load_ensemble(folder)`` reads ``ensemble.json``, loads every member run and returns what
``danlu._run.load_model`` returns for a run: ``(model, pipeline, meta, recipe)``.

* ``pipeline`` is the first member's, with its scaling left out: it reads and encodes rows and
  shapes them as the first member does. Each member then reshapes those numbers to its own input
  shape and applies its own scaling, as its own pipeline would (members may differ in
  ``data.shape``, see ``_members``), so the ONNX export folds the reading steps in once and every
  member's scaling sits inside the graph.
* ``model`` (:class:`EnsembleModel`) computes each member's probabilities (or predictions) and
  combines them by the stored rule: the weights of vote / soft-vote / weighted / bayes, the
  stacking meta-model's coefficients, in float64 as ``danlu ensemble`` does. For classification it
  returns ``log`` of the ensemble's probabilities with ``meta["loss_kind"] = "cross_entropy"``, so
  the softmax every verb applies gives the probabilities back (softmax(log p) = p, as they sum to 1).
* ``recipe`` is the first member's — or the first classical member's, so that ``danlu export``
  refuses an ensemble holding a scikit-learn model, as it refuses that model alone.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..data._scaler_module import ScalerModule
from ..errors import UserError

TINY = 1e-38   # log(0) would be -inf: the least positive float32 stands in for it


def read_ensemble(path) -> dict:
    from ._ensemble import RESULT_FILE

    file = Path(path) / RESULT_FILE
    from .._integrity import read_json

    if not file.is_file():
        raise UserError(f"{file}: not found; give the folder `danlu ensemble` wrote, or run it again")
    result = read_json(file)   # refused unless it matches its checksum in the folder's manifest
    if not isinstance(result, dict) or not isinstance(result.get("members"), list) or "method" not in result:
        raise UserError(f"{file}: not an ensemble written by `danlu ensemble`; run it again")
    return result


def member_dirs(path, result: dict) -> list[Path]:
    """Each member's run folder: the absolute path it had when `danlu ensemble` ran, else the path
    as it was given (relative to the working folder). A member whose weights changed since (trained
    again) is refused: the stored weights or meta-model were fitted to the old one."""
    from ._ensemble import weights_digest

    out = []
    for m in result["members"]:
        candidates = ([Path(m["resolved"])] if m.get("resolved") else []) + [Path(m["run"])]
        found = next((c for c in candidates if (c / "recipe.yaml").is_file()), None)
        if found is None:
            raise UserError(f"{path}: member run {m['run']} is not found (looked in "
                            f"{', '.join(map(str, candidates))}); keep the member runs where they were, or "
                            f"run `danlu ensemble` again")
        if m.get("weights_sha256") and weights_digest(found) != m["weights_sha256"]:
            raise UserError(f"{path}: member run {found} has other weights than when the ensemble was made; "
                            f"run `danlu ensemble` again on the members as they are now")
        out.append(found)
    return out


class MemberInput(nn.Module):
    """The numbers the ensemble reads, as one member's pipeline hands them to its model:
    reshaped to its input shape, then scaled with its own statistics."""

    def __init__(self, pipeline):
        super().__init__()
        self.shape = tuple(pipeline.info.input_shape)
        self.scaler = ScalerModule(pipeline.scaler, self.shape)

    def forward(self, x):
        return self.scaler(x.reshape(x.shape[0], *self.shape))


class Combiner(nn.Module):
    """The stored rule of an ensemble, on members' scores: weights (vote, soft-vote, weighted,
    bayes) or the stacking meta-model's coefficients. Returns probabilities or predictions."""

    def __init__(self, result: dict, task: str, n_classes: int | None):
        super().__init__()
        self.method = result["method"]
        self.classify = task == "classification"
        self.n_classes = n_classes
        weights = [m.get("weight") for m in result["members"]]
        m = len(weights)
        if self.method in ("stack", "vote") or any(w is None for w in weights):
            weights = [1.0 / m] * m
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float64))
        self.classes: list[int] = []
        if self.method == "stack":
            details = result["details"]
            coef = torch.tensor(details["coef"], dtype=torch.float64)
            self.register_buffer("coef", coef.reshape(-1, coef.shape[-1]))
            self.register_buffer("intercept", torch.tensor(details["intercept"], dtype=torch.float64).reshape(-1))
            self.classes = [int(c) for c in details.get("classes", [])]

    def forward(self, scores: list):
        # float64, as `danlu ensemble` computes: a vote's tie-break (1e-6 x the mean probability)
        # is below float32's resolution near 0.5
        scores = [s.double() for s in scores]
        if self.method == "stack":
            return self._stack(scores)
        if self.method == "vote":
            return self._vote(scores)
        return torch.einsum("m,mnc->nc", self.weights.to(scores[0].dtype), torch.stack(scores))

    def _vote(self, probas: list):
        from ._methods import TIE_BREAK

        c = probas[0].shape[1]
        votes = sum(nn.functional.one_hot(p.argmax(dim=1), c).to(p.dtype) for p in probas)
        share = votes / len(probas)
        return (1 - TIE_BREAK) * share + TIE_BREAK * torch.stack(probas).mean(dim=0)

    def _stack(self, scores: list):
        dtype = scores[0].dtype
        z = torch.cat(scores, dim=1) @ self.coef.to(dtype).T + self.intercept.to(dtype)
        if not self.classify:
            return z
        if z.shape[1] == 1:   # scikit-learn's binary LogisticRegression: one decision value for classes_[1]
            p1 = torch.sigmoid(z)
            proba = torch.cat([1 - p1, p1], dim=1)
        else:
            proba = torch.softmax(z, dim=1)
        if self.classes == list(range(self.n_classes)):
            return proba
        full = torch.zeros(proba.shape[0], self.n_classes, dtype=proba.dtype, device=proba.device)
        full[:, self.classes] = proba   # a class absent from the validation rows gets 0
        return full


class EnsembleModel(nn.Module):
    """Members' outputs combined by the stored rule: see the module docstring."""

    def __init__(self, members: list, inputs: list, loss_kinds: list, infos: list, combiner: Combiner):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.inputs = nn.ModuleList(inputs)
        self.loss_kinds = loss_kinds
        self.infos = infos
        self.combiner = combiner

    def member_scores(self, x) -> list:
        """Each member's probabilities (N, C) or predictions (N, k)."""
        from ..training import scores_to_proba

        out = []
        for model, feed, loss_kind, info in zip(self.members, self.inputs, self.loss_kinds, self.infos):
            scores = scores_to_proba(model(feed(x)), loss_kind, info)
            out.append(scores if self.combiner.classify else scores.reshape(scores.shape[0], -1))
        return out

    def forward(self, x):
        combined = self.combiner(self.member_scores(x))
        return torch.log(combined.clamp_min(TINY)) if self.combiner.classify else combined


def load_ensemble(path, device="cpu"):
    """``(model, pipeline, meta, recipe)`` of an ensemble folder written by ``danlu ensemble``."""
    from .. import classical
    from .. import training as runs
    from ..data._encode import Scaler
    from ._members import check_reshape, check_runs

    path = Path(path)
    result = read_ensemble(path)
    dirs = member_dirs(path, result)
    recipes = check_runs(dirs, reshape=True)
    loaded = [runs.load_model(d, device=device) for d in dirs]
    first = loaded[0][1]
    models, inputs, kinds, infos = [], [], [], []
    for d, (model, pipeline, meta, _recipe) in zip(dirs, loaded):
        check_reshape(first.info, pipeline.info, str(d), str(dirs[0]))
        if pipeline.info.task != first.info.task or pipeline.info.classes != first.info.classes:
            raise UserError(f"{d}: its task or classes differ from {dirs[0]}'s; run `danlu ensemble` again")
        models.append(model)
        inputs.append(MemberInput(pipeline))
        kinds.append(meta["loss_kind"])
        infos.append(pipeline.info)
    info = first.info
    combiner = Combiner(result, info.task, info.n_classes).float()
    model = EnsembleModel(models, inputs, kinds, infos, combiner).to(device).eval()
    pipeline = copy.copy(first)   # reads and shapes rows as the first member; each member scales its own
    pipeline.scaler = Scaler("none", first.scaler.axis, torch.zeros_like(first.scaler.shift),
                             torch.ones_like(first.scaler.div))
    meta = {"loss_kind": "cross_entropy" if info.task == "classification" else "mse", "info": info.to_json(),
            "ensemble": True, "method": result["method"], "members": [str(d) for d in dirs],
            "target_scaled": False}
    classical_members = [r for r in recipes if classical.is_classical(r.model.kind)]
    recipe = classical_members[0] if classical_members else recipes[0]
    return model, pipeline, meta, recipe


def evaluate_ensemble(path, split: str = "test") -> dict:
    """The ensemble's figures on its members' own splits (``all``: train, validation, test), its
    stored rule applied to the members' outputs — as ``danlu ensemble`` computed them."""
    from ._ensemble import _labels, figures
    from ._members import load_members

    path = Path(path)
    result = read_ensemble(path)
    names = ("train", "validation", "test") if split == "all" else (split,)
    members, prepared = load_members(member_dirs(path, result), names, progress=False, reshape=True)
    info = prepared.info
    combiner = Combiner(result, info.task, info.n_classes)
    out = {}
    for name in names:
        scores = [torch.from_numpy(m.outputs[name]) for m in members]
        with torch.no_grad():
            combined = combiner(scores).numpy()
        out[name] = figures(info, _labels(prepared.splits[name][1], info), combined)
    return out
