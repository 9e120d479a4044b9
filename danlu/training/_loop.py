"""The training loop. It reads top to bottom; everything optional is a callback on ``State``."""
from __future__ import annotations

import math

import torch

from ..data._batches import read_batches
from ._objective import is_objective_model, objective_figures
from ._state import CallbackList, Event, State


def epoch_permutation(seed: int, epoch: int, n: int, device) -> torch.Tensor:
    """The data order of one epoch depends only on (seed, epoch), so a resumed run needs no
    saved order, just the position in it."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen).to(device)


def batch_count(n: int, batch_size: int) -> int:
    """Batches per epoch. A last batch of a single row is merged into the one before it: batch
    normalisation cannot train on one row, and one row makes a very noisy step anyway."""
    full, rest = divmod(n, batch_size)
    return full if rest == 1 and full > 0 else full + (rest > 0)


def batch_slice(i: int, batches: int, batch_size: int, n: int) -> slice:
    return slice(i * batch_size, n if i == batches - 1 else (i + 1) * batch_size)


@torch.no_grad()
def model_outputs(model: torch.nn.Module, X: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    was_training = model.training
    model.eval()
    outs = [model(X[i:i + batch_size]) for i in range(0, len(X), batch_size)]
    model.train(was_training)
    if not outs:
        return torch.empty(0)
    out = torch.cat(outs)
    return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out   # under autocast: float32 figures


def evaluate_outputs(out, y, loss_fn, loss_kind, info) -> dict:
    """Loss and every metric of one split from the model's raw outputs."""
    from ..evaluation import compute_metrics
    from ._factory import scores_to_proba

    with torch.no_grad():
        loss = float(loss_fn(out, y))
        scores = scores_to_proba(out, loss_kind, info)
    metrics = compute_metrics(info.task, y.detach().cpu().numpy(), scores.detach().cpu().numpy(),
                              n_classes=info.n_classes, positive=getattr(info, "positive", 1),
                              label_names=info.classes if info.task == "multilabel" else None)
    return {"loss": loss, **metrics}


def model_loss(state: State):
    """The loss of a batch when no callback defines ``compute_loss``: the model's own objective
    (generative models carry one), else the recipe's loss of the model's output."""
    if is_objective_model(state.model):
        return lambda state, xb, yb: state.model.objective(xb, yb)
    net = state.net
    return lambda state, xb, yb: state.loss_fn(net(xb), yb)


def train_one_epoch(state: State, cbs: CallbackList) -> None:
    recipe, model, opt, strategy = state.recipe, state.model, state.optimizer, state.strategy
    precision = state.precision
    X, y = state.splits["train"]
    accumulate = recipe.train.accumulate
    clip, clip_mode = recipe.train.grad_clip, recipe.train.grad_clip_mode
    augment = state.pipeline is not None and state.pipeline.augments
    perm = epoch_permutation(recipe.seed, state.epoch, len(X), X.device)
    bs = recipe.train.batch_size
    compute_loss = cbs.compute_loss or model_loss(state)
    steps = range(state.batch, state.batches_per_epoch)
    # This process's part of each global batch and its weight (the whole batch and 1.0 in one
    # process): weighted so, the processes' average gradient is the whole batch's gradient.
    shards = [strategy.shard(perm[batch_slice(i, state.batches_per_epoch, bs, len(X))]) for i in steps]
    # data.workers: a streamed split's batches are read ahead in worker processes, in this order
    batches = read_batches(X, y, [idx for idx, _ in shards], recipe.data.workers)
    state.net.train()
    for i, (_, share), (xb, yb) in zip(steps, shards, batches):
        state.skip_step = False
        if augment:
            xb = state.pipeline.augment(xb)
        with precision.autocast():   # train.precision (float32: no context at all)
            loss = compute_loss(state, xb, yb)
        if share != 1.0:   # an uneven part (x * 1.0 is exact, so skipping it changes no bit and costs no op)
            loss = loss * share
        precision.backward(loss / accumulate if accumulate > 1 else loss)
        state.batch = i + 1
        # the whole batch's loss, the same in every process
        state.batch_loss = strategy.reduce(loss.detach())
        # An optimizer step every `accumulate` batches, and always at the end of the epoch.
        state.stepped = (i + 1) % accumulate == 0 or i + 1 == state.batches_per_epoch
        if state.stepped:
            precision.unscale(opt)   # hooks and clipping see the gradients at their true scale
            cbs.fire(Event.BACKWARD_END, state)
            if not state.skip_step:
                if clip is not None:
                    if clip_mode == "norm":
                        state.grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
                    else:
                        torch.nn.utils.clip_grad_value_(model.parameters(), clip)
                precision.step(opt)
                state.schedule.step()
                state.step += 1
            precision.update()
            opt.zero_grad(set_to_none=True)
        if not state.skip_step:
            # kept on the device: reading it every batch would synchronise a GPU
            state.loss_sum = state.loss_sum + state.batch_loss.double()
            state.loss_count += 1
        cbs.fire(Event.BATCH_END, state)
        if state.stop_reason is not None:
            return


def validate(state: State) -> dict:
    """This epoch's figures: running training loss, validation loss and metrics, learning rate."""
    row = {"epoch": state.epoch + 1, "step": state.step,
           "train_loss_running_mean": state.train_loss_running_mean, "lr": state.lr}
    if "validation" in state.splits:
        Xv, yv = state.splits["validation"]
        if is_objective_model(state.model):   # generative models: their own figures
            figures = objective_figures(state.model, Xv, yv)
        else:
            with state.precision.autocast():
                out = model_outputs(state.model, Xv)
            figures = evaluate_outputs(out, yv, state.loss_fn, state.loss_kind, state.info)
        row.update({f"val_{k}": v for k, v in figures.items()})
    return row


def fit(state: State, callbacks) -> State:
    """Train until the recipe's epochs are done or a callback asks to stop."""
    cbs = callbacks if isinstance(callbacks, CallbackList) else CallbackList(callbacks)
    epochs = state.recipe.train.epochs
    monitor = state.recipe.train.early_stopping.monitor
    cbs.fire(Event.FIT_START, state)
    while state.epoch < epochs and state.stop_reason is None:
        cbs.fire(Event.EPOCH_START, state)
        train_one_epoch(state, cbs)
        if state.stop_reason is not None and state.batch < state.batches_per_epoch:
            break  # stopped mid-epoch (e.g. a rescue gave up): no validation of half an epoch
        # a callback may put other weights in for validation here (train.ema puts the average in)
        cbs.fire(Event.VALIDATION_START, state)
        state.metrics = validate(state)
        value = state.metrics.get(monitor)
        state.schedule.epoch_end(value if value is not None and not math.isnan(value) else None)
        cbs.fire(Event.VALIDATION_END, state)
        state.history.append(dict(state.metrics))
        state.epoch += 1
        state.batch, state.loss_sum, state.loss_count = 0, 0.0, 0
        cbs.fire(Event.EPOCH_END, state)
    cbs.fire(Event.FIT_END, state)
    return state
