"""A rescued run: its monitors' state goes through checkpoints (exact resume still holds), and
`danlu diagnose` tells its story in English and Chinese."""
import shutil

import pytest
import torch
from safetensors.torch import load_file

import danlu
from danlu.diagnose import ConvergenceMonitor, DivergenceMonitor, FitMonitor, GradientMonitor, default_monitors, story
from danlu.errors import RecipeError, UserError
from danlu.training import _checkpoint as ck
from diagnose_testkit import events, recipe, run


@pytest.fixture(scope="module")
def rescued(tmp_path_factory):
    """SGD at lr 5 blows up within the first steps and is rescued; a checkpoint every 3 steps."""
    root = tmp_path_factory.mktemp("rescued")
    r = run(root, optimizer={"kind": "sgd", "lr": 5.0}, model={"kind": "mlp"}, train={"epochs": 2},
            checkpoint={"every_steps": 3, "keep_last": 100})
    assert events(r.path, "rescue"), "the fixture run must have been rescued"
    return r.path


def _same_files(a, b, names=("model.safetensors", "events.jsonl", "metrics.jsonl", "grad_norms.jsonl")):
    for name in names:
        if name.endswith(".safetensors"):
            wa, wb = load_file(str(a / name)), load_file(str(b / name))
            assert all(torch.equal(wa[k], wb[k]) for k in wa), name
        else:
            assert (a / name).read_text() == (b / name).read_text(), name


@pytest.mark.parametrize("where", ["before", "after"])
def test_resume_around_a_rescue_gives_the_same_run(rescued, tmp_path, where):
    rescue_step = events(rescued, "rescue")[0]["step"]
    names = [p.name for p in ck.list_checkpoints(rescued / "checkpoints")]
    steps = [int(n.split("-")[1]) for n in names]
    pick = max(s for s in steps if s <= rescue_step) if where == "before" else min(s for s in steps if s > rescue_step)
    copy = tmp_path / "copy"
    shutil.copytree(rescued, copy)
    danlu.resume(copy, checkpoint=ck.checkpoint_name(pick))
    _same_files(rescued, copy)


def test_monitor_state_round_trips_through_a_checkpoint(rescued):
    _, saved = ck.read_checkpoint(ck.list_checkpoints(rescued / "checkpoints")[-1])
    callbacks = saved["callbacks"]
    for monitor in (DivergenceMonitor(), GradientMonitor(), FitMonitor(), ConvergenceMonitor()):
        monitor.load_state_dict(callbacks[monitor.name])
        again = monitor.state_dict()
        tensors_a, tensors_b = {}, {}
        assert ck.split_tensors(again, tensors_a) == ck.split_tensors(callbacks[monitor.name], tensors_b)
        assert tensors_a.keys() == tensors_b.keys()
        assert all(torch.equal(tensors_a[k], tensors_b[k]) for k in tensors_a)
    divergence = callbacks["monitor_divergence"]
    assert divergence["rescues"] == 1 and divergence["skip_batches"]
    assert set(divergence["snapshot"]["model"]) == set(load_file(str(rescued / "model.safetensors")))
    assert divergence["snapshot"]["optimizer"]["param_groups"]


def test_story_in_english_names_events_actions_and_keys(rescued):
    text = story(rescued, "en")
    for part in ("What happened", "What danlu did", "What to try next", "Rescue 1", "loss spike",
                 "optimizer.lr: 5 -> try 0.5", "train.grad_clip: null -> try 1"):
        assert part in text, part


def test_story_in_chinese(rescued):
    text = story(rescued, "zh")
    for part in ("经过", "danlu 做了什么", "下一步可以试试", "第 1 次救援", "学习率", "optimizer.lr：5 -> 试试 0.5"):
        assert part in text, part
    assert "What happened" not in text


def test_story_of_a_clean_run(tmp_path):
    # issue 14: "nothing needs fixing" only once training has finished (2 epochs are still improving)
    r = run(tmp_path, train={"epochs": 12}, optimizer={"lr": 0.003})
    assert "A clean run" in story(r.path, "en") and "Nothing needs fixing" in story(r.path, "en")
    assert "训练过程正常" in story(r.path, "zh")


def test_story_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(UserError, match="no such run directory"):
        story(tmp_path / "missing", "en")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no events.jsonl"):
        story(tmp_path / "empty", "en")
    with pytest.raises(UserError, match="--lang must be en or zh"):
        story(tmp_path / "empty", "fr")


def test_diagnose_command(rescued, run_cli, tmp_path):
    done = run_cli("diagnose", rescued, "--lang", "zh")
    assert done.returncode == 0 and "救援" in done.stdout
    done = run_cli("diagnose", tmp_path / "nope")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no such run directory" in done.stderr


def test_monitor_keys_are_checked_and_switch_monitors_off():
    assert [type(m).__name__ for m in default_monitors(recipe())] == \
        ["GradientMonitor", "DivergenceMonitor", "FitMonitor", "ConvergenceMonitor", "VerdictMonitor"]
    off = recipe(monitors={"divergence": {"enabled": False}, "fit": {"enabled": False}})
    assert [type(m).__name__ for m in default_monitors(off)] == ["GradientMonitor", "ConvergenceMonitor",
                                                                 "VerdictMonitor"]
    with pytest.raises(RecipeError, match="monitors.divergence.lr_factor must be > 0"):
        recipe(monitors={"divergence": {"lr_factor": 0}})
    with pytest.raises(RecipeError, match="unknown key monitors.gradients.evry"):
        recipe(monitors={"gradients": {"evry": 3}})
