"""The live progress bar on a real 80-column terminal (tmux): no line wider than the window, an
ETA shown, and the bar redrawn in place rather than stacked into one line per refresh."""
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = 80
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

SCRIPT = """
import time
from pathlib import Path

import danlu

class Pause:
    # in epoch 2, let 0.2 s pass after each of the first batches (so the bar redraws with a
    # measured ETA), then wait until the test has looked at the screen
    def on_batch_end(self, state):
        if state.epoch == 1 and state.batch <= 4:
            time.sleep(0.2)
            if state.batch == 4:
                Path(%(paused)r).touch()
                while not Path(%(resume)r).exists():
                    time.sleep(0.05)

danlu.train({"seed": 0, "data": {"source": "sklearn", "name": "digits"},
             "model": {"kind": "mlp", "hidden": [16]}, "train": {"epochs": 2, "batch_size": 16},
             "checkpoint": {"every_epochs": 0}, "monitors": {"gradients": {"enabled": False}},
             "output": {"runs_dir": %(runs)r}}, callbacks=[Pause()])
"""

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")


def _tmux(sock: str, *args) -> str:
    return subprocess.run(["tmux", "-L", sock, "-f", "/dev/null", *args], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def _wait_for(path: Path, sock: str) -> None:
    deadline = time.monotonic() + 240
    while not path.exists():
        assert time.monotonic() < deadline, _tmux(sock, "capture-pane", "-p", "-t", "t")
        time.sleep(0.1)


def _screen(sock: str) -> list[str]:
    # -J joins lines the terminal wrapped: a joined line wider than the window was wrapped
    text = _tmux(sock, "capture-pane", "-p", "-J", "-t", "t", "-S", "-")
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def test_bar_fits_80_columns_shows_eta_and_redraws_in_place(tmp_path):
    paused, resume, done = tmp_path / "paused", tmp_path / "resume", tmp_path / "done"
    script = tmp_path / "train.py"
    script.write_text(SCRIPT % {"paused": str(paused), "resume": str(resume), "runs": str(tmp_path / "runs")})
    command = f"cd {ROOT} && OMP_NUM_THREADS=1 {sys.executable} {script}; touch {done}; sleep 600"
    sock = f"danlu-test-{tmp_path.name}"
    _tmux(sock, "new-session", "-d", "-x", str(COLUMNS), "-y", "40", "-s", "t", command)
    try:
        _wait_for(paused, sock)
        time.sleep(0.2)   # the terminal has drawn what was written
        during = _screen(sock)
        resume.touch()
        _wait_for(done, sock)
        time.sleep(0.2)
        after = _screen(sock)
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)

    # mid-epoch: one bar line, redrawn in place after each of 4 batches (not 4 stacked lines)
    bars = [line for line in during if line.startswith("epoch 2/2 |")]
    assert len(bars) == 1, during
    assert re.search(r"\| 4/\d+ eta \d\d:\d\d", bars[0]), bars[0]   # measured ETA of the epoch
    assert "running_loss" in bars[0]
    assert all(len(line) <= COLUMNS for line in during), during
    assert len(during) <= 6, during

    # at the end: the bar is gone, every line fits, and the fit's ETA was shown after epoch 1
    assert any(line.startswith("danlu: finished after 2 epochs") for line in after), after
    assert all(len(line) <= COLUMNS for line in after), [line for line in after if len(line) > COLUMNS]
    assert not any("|" in line for line in after), after
    assert any(re.search(r"eta \d\d:\d\d", line) for line in after), after
    assert len(after) <= 14, after   # header, 2 epoch lines, the end, and a diagnosis or two


def test_hand_drawn_lines_and_messages_fit_the_window_too(monkeypatch):
    """The RL display redraws its own line; diagnoses are long sentences: both fit 60 columns."""
    import io

    from danlu.rl._progress import ReturnProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv("COLUMNS", "60")
    screen = Terminal()
    shown = ReturnProgress(mode="auto", stream=screen)
    shown.updates, shown._last = 10, float("-inf")
    shown.update({"update": 3, "step": 1234, "episodes": 20, "mean_return_100": 22.5,
                  "best_mean_return_100": 30.0, "lr": 3e-4})
    shown.show_event({"kind": "plateau", "message": "the loss has not moved for 3 epochs " * 4})
    segments = [s for s in re.split(r"[\r\n]", ANSI.sub("", screen.getvalue())) if s]
    assert segments[0].startswith("[#######...") and len(segments) > 2
    assert max(len(s) for s in segments) <= 60, segments
