"""Textual inversion benchmark: does one learned condition vector draw the concept it was learned from?

    python benchmarks/bench_inversion.py            # trains the diffusion run under /tmp/danlu-bench-inversion

It trains ``recipes/digits_diffusion.yaml`` (reused when finished in ``--work``), then for each
concept learns a vector from ``--images`` pictures (8, seeded choice) with the model frozen
(``danlu.generative._inversion.learn_concept``, default settings), draws ``--samples`` images
with it (DDIM 25 steps, CFG 1.5, seeds 0..n-1) and asks a judge how many show the concept. The
judge is scikit-learn's SVC trained on all the digits (a model that never saw a generated image).

Concepts: the digits 7 and 3, which are classes of the model (the vector should land next to their
class embedding and draw them about as well as the label does), and the same digits turned
upside down, which the model never saw (a sample counts when, turned back, it is read as the digit).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import danlu  # noqa: E402
from danlu import _run  # noqa: E402
from danlu.generative._inversion import learn_concept  # noqa: E402
from danlu.generative._samplers import SamplerSettings, sample  # noqa: E402
from danlu.recipe import Recipe  # noqa: E402


def train(run_dir: Path) -> Path:
    if (run_dir / "summary.json").is_file():
        print(f"reusing {run_dir}", file=sys.stderr)
        return run_dir
    danlu.train(Recipe.from_yaml(ROOT / "recipes" / "digits_diffusion.yaml"), run_dir, overwrite=True,
                progress="lines")
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/danlu-bench-inversion")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    digits = load_digits()
    pixels = digits.data / 16.0
    judge = SVC(gamma=0.001, C=10).fit(pixels, digits.target)
    model, _pipeline, _meta, _recipe = runs.load_model(train(Path(args.work) / "digits_diffusion"))
    settings = SamplerSettings(steps=25, cfg_scale=1.5, seed=0)
    rng = np.random.default_rng(0)

    def share(images: torch.Tensor, digit: int, turned: bool) -> float:
        x = images.reshape(len(images), -1).numpy()
        return float((judge.predict(x[:, ::-1] if turned else x) == digit).mean())

    print(f"{'concept':<14} {'loss null':>9} {'start':>7} {'learned':>8}  {'nearest class':<16} "
          f"{'concept samples':>15} {'label samples':>13} {'cpu s':>6}")
    for digit in (7, 3):
        rows = rng.choice(np.flatnonzero(digits.target == digit), args.images, replace=False)
        for turned in (False, True):
            X = torch.tensor(pixels[rows], dtype=torch.float32)
            X = X.flip(1) if turned else X   # reversing the 64 pixels turns the 8x8 image by 180 degrees
            started = time.process_time()
            concept = learn_concept(model, X, f"{digit}")
            seconds = time.process_time() - started
            drawn = sample(model, concept.vector.expand(args.samples, -1), args.samples, settings)
            labelled = sample(model, model.conditions(torch.full((args.samples,), digit)), args.samples, settings)
            loss, near = concept.meta["loss"], concept.meta["nearest_class"]
            name = f"{digit} upside down" if turned else f"{digit}"
            print(f"{name:<14} {loss['null']:9.4f} {loss['start']:7.4f} {loss['learned']:8.4f}  "
                  f"{near['index']} (cos {near['cosine']:.2f}){'':<4} {share(drawn, digit, turned):15.0%} "
                  f"{share(labelled, digit, turned):13.0%} {seconds:6.1f}")


if __name__ == "__main__":
    main()
