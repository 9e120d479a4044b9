"""The distillation loss (模型蒸馏): soft targets of the teacher(s) at temperature T, mixed with the
hard labels.

    loss = alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * hard_loss(student(x), y)

``p^T = softmax(logits / T)``. With several teachers, ``p_teacher^T`` is the mean of their
softened distributions. The T^2 factor keeps the soft part's gradients the same size whatever
T is (they shrink as 1/T^2 otherwise), so ``alpha`` means the same at every temperature.

Outputs become class logits first: a single-logit binary head f gives ``[0, f]`` (``[0, 2f]``
for the exponential loss, whose f is half the log-odds), multi-class scores are used as they are,
and a classical teacher's output is already ``log p`` (see ``danlu.classical``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def class_logits(out: torch.Tensor, loss_kind: str) -> torch.Tensor:
    """Raw model outputs (N, C) or (N, 1) as logits over the classes, (N, C) with C >= 2."""
    if out.shape[-1] != 1:
        return out
    f = out.reshape(-1, 1)
    if loss_kind == "exponential":
        f = 2 * f
    return torch.cat([torch.zeros_like(f), f], dim=1)


def soft_targets(teacher_logits: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """The mean of the teachers' softened distributions."""
    probs = [torch.softmax(t / temperature, dim=1) for t in teacher_logits]
    return torch.stack(probs).mean(0)


def kd_loss(student_logits: torch.Tensor, target_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(target || softmax(student / T)), averaged over the batch."""
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_q, target_probs.to(log_q.dtype), reduction="batchmean") * temperature ** 2


class Teacher:
    """A loaded run used as a teacher: its model in eval mode on the student's device."""

    def __init__(self, model, loss_kind: str, name: str = "teacher"):
        self.model = model.eval()
        self.loss_kind = loss_kind
        self.name = name

    @torch.no_grad()
    def logits(self, xb: torch.Tensor) -> torch.Tensor:
        # the very batch the student sees, augmentation included
        return class_logits(self.model(xb), self.loss_kind).float()


def distillation_loss(state, teachers: list[Teacher], temperature: float, alpha: float):
    """``loss(xb, yb)``: the student's distillation loss on one batch (what ``Distillation.compute_loss``
    returns)."""
    model, hard_loss, loss_kind = state.model, state.loss_fn, state.loss_kind

    def loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        out = model(xb)
        target = soft_targets([t.logits(xb) for t in teachers], temperature)
        soft = kd_loss(class_logits(out, loss_kind), target, temperature)
        if alpha >= 1.0:
            return soft
        return alpha * soft + (1.0 - alpha) * hard_loss(out, yb)

    return loss
