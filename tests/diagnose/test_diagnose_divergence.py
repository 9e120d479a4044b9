"""炸炉 on purpose: NaN batches, NaN gradients, a learning rate far too high, and a run that
cannot be saved. Each must be caught, skipped or rescued, and recorded."""
import pytest
import torch

from diagnose_testkit import BUILT, events, metrics, poisoned_model, run, weights_finite

BATCHES = 20   # digits: 1274 training rows / 64


def test_one_nan_batch_is_skipped_without_a_rescue(tmp_path):
    r = run(tmp_path, model=poisoned_model(nan_loss_at=[5]))
    bad = events(r.path, "nan_loss")
    assert len(bad) == 1 and bad[0]["what"] == "loss" and bad[0]["batch"] == 5 and bad[0]["epoch"] == 0
    assert bad[0]["message"] and bad[0]["term"]
    assert not events(r.path, "rescue")
    assert r.summary["run"]["steps"] == 3 * BATCHES - 1   # exactly the poisoned step was dropped
    assert weights_finite(r.path)
    assert r.summary["test"]["accuracy"] > 0.85


def test_nan_gradient_with_a_finite_loss_is_caught_on_a_sampled_step(tmp_path):
    r = run(tmp_path, model=poisoned_model(nan_grad_at=[7]), monitors={"gradients": {"every": 1}})
    bad = events(r.path, "nan_loss")
    assert [(e["what"], e["batch"]) for e in bad] == [("gradients", 7)]
    assert r.summary["run"]["steps"] == 3 * BATCHES - 1
    assert weights_finite(r.path)


def test_poisoned_weights_are_rolled_back_at_once(tmp_path):
    # Between gradient samples a NaN gradient is applied; the next loss is NaN and the weights
    # are found poisoned: no point in waiting for `patience` bad steps.
    r = run(tmp_path, model=poisoned_model(nan_grad_at=[7]))
    kinds = [e["kind"] for e in events(r.path)]
    assert kinds[:3] == ["nan_loss", "divergence", "rescue"]
    assert events(r.path, "divergence")[0]["variant"] == "weights"
    rescue = events(r.path, "rescue")[0]
    assert rescue["to_step"] <= 7 and rescue["lr_after"] == pytest.approx(rescue["lr_before"] * 0.1)
    assert weights_finite(r.path)
    assert r.summary["test"]["accuracy"] > 0.7   # it learned on, at a tenth of the rate


def test_recurring_nan_batches_roll_back_lower_the_lr_and_go_on(tmp_path):
    r = run(tmp_path, model=poisoned_model(nan_loss_at=[30, 31, 32]),
            monitors={"divergence": {"snapshot_every": 5}})
    kinds = [e["kind"] for e in events(r.path)]
    assert kinds == ["nan_loss", "nan_loss", "nan_loss", "divergence", "rescue"]
    rescue = events(r.path, "rescue")[0]
    # snapshots at the first good step after the epoch end (step 20), then after 5 more good steps
    assert rescue["to_step"] == 25
    assert rescue["batches"] == [[1, 10], [1, 11], [1, 12]]
    assert rescue["lr_before"] == pytest.approx(0.01) and rescue["lr_after"] == pytest.approx(0.001)
    rows = metrics(r.path)
    assert rows[0]["lr"] == pytest.approx(0.01) and rows[-1]["lr"] == pytest.approx(0.001)  # the cut lasts
    assert len(rows) == 3 and weights_finite(r.path)


def test_rescue_exhausted_stops_instead_of_looping(tmp_path):
    BUILT.clear()
    r = run(tmp_path, model=poisoned_model(nan_loss_at=range(6, 10_000)),
            monitors={"divergence": {"max_rescues": 1}}, train={"epochs": 50})
    kinds = [e["kind"] for e in events(r.path)]
    assert kinds.count("rescue") == 1 and kinds[-1] == "rescue_exhausted"
    assert "rescue exhausted" in r.summary["run"]["stop_reason"]
    assert BUILT[-1].calls == 5 + 3 + 3          # 5 good steps, 3 bad, rescue, 3 bad, stop
    assert r.summary["run"]["epochs"] == 0 and r.summary["run"]["steps"] == 5
    assert weights_finite(r.path)                 # the last good weights, not NaN


def test_a_learning_rate_far_too_high_is_rescued(tmp_path):
    r = run(tmp_path, optimizer={"kind": "sgd", "lr": 5.0}, model={"kind": "mlp"}, train={"epochs": 6})
    rescues = events(r.path, "rescue")
    assert rescues and rescues[0]["lr_after"] == pytest.approx(0.5)
    assert events(r.path, "loss_spike") or events(r.path, "nan_loss")
    assert metrics(r.path)[-1]["lr"] <= 0.5
    assert not events(r.path, "rescue_exhausted")
    assert r.summary["test"]["accuracy"] > 0.9     # it finished as a sensible model


def test_without_the_monitor_the_same_run_is_ruined(tmp_path):
    # The control for the test above: the rescue, not luck, saved it.
    r = run(tmp_path, optimizer={"kind": "sgd", "lr": 5.0}, model={"kind": "mlp"}, train={"epochs": 2},
            monitors={"divergence": {"enabled": False}})
    assert r.summary["test"]["accuracy"] < 0.5


def test_spike_threshold_follows_the_running_median():
    from types import SimpleNamespace

    from danlu.diagnose import DivergenceMonitor

    mon = DivergenceMonitor(spike_factor=10, window=8, patience=100)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    recorded = []
    state = SimpleNamespace(epoch=0, batch=0, step=0, grad_total=None, model=model, optimizer=opt, skip_step=False,
                            record_event=lambda kind, **f: recorded.append((kind, f)))
    mon.on_fit_start(state)
    for i, loss in enumerate([1.0, 0.9, 1.1, 0.8, 1.0, 9.9, 10.5, 1.0]):
        state.batch, state.skip_step, state.batch_loss = i + 1, False, torch.tensor(loss)
        mon.on_backward_end(state)
        assert state.skip_step == (loss == 10.5), loss   # 10x the median (1.0) is a spike, 9.9 is not
    assert [k for k, _ in recorded] == ["loss_spike"]
    assert recorded[0][1]["median"] == pytest.approx(1.0) and recorded[0][1]["ratio"] == pytest.approx(10.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rescue_on_cuda(tmp_path):
    r = run(tmp_path, device="cuda", optimizer={"kind": "sgd", "lr": 5.0}, model={"kind": "mlp"},
            train={"epochs": 4})
    assert events(r.path, "rescue") and r.summary["run"]["device"].startswith("cuda")
    assert weights_finite(r.path) and r.summary["test"]["accuracy"] > 0.85
