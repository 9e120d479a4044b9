"""Classifier-free guidance benchmark: how often a separately trained classifier recognises the
requested digit, and how varied the samples stay, as the CFG scale grows.

    python benchmarks/bench_cfg.py                   # trains what it needs under /tmp/danlu-bench-cfg
    python benchmarks/bench_cfg.py --per-label 50 --scales 0 1 1.5 2 3 5 7 --plot docs/cfg_curve.png

It trains ``recipes/digits_diffusion.yaml`` (the generator) and ``recipes/digits_cnn.yaml`` (the
judge: a danlu classifier that never sees a generated image), reusing finished runs in ``--work``.
For every scale it draws ``--per-label`` images of each of the 10 labels with fixed seeds and
reports

* share: the fraction the judge assigns to the requested label (chance: 10 %);
* diversity: the mean pairwise L2 distance (pixels in [0, 1]) between images of the same label,
  averaged over labels, beside the same figure for the real test digits.

The recommended scale is the smallest whose share reaches ``--target`` (90 %): beyond it guidance
buys little recognisability and costs variety. The recipe's ``model.guidance`` should be it.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import danlu  # noqa: E402
from danlu import _run  # noqa: E402
from danlu.generative import save_grid  # noqa: E402
from danlu.generative._samplers import SamplerSettings, sample  # noqa: E402
from danlu.recipe import Recipe  # noqa: E402


def train(recipe_file: str, run_dir: Path) -> Path:
    if (run_dir / "summary.json").is_file():
        print(f"reusing {run_dir}", file=sys.stderr)
        return run_dir
    started = time.perf_counter()
    danlu.train(Recipe.from_yaml(ROOT / "recipes" / recipe_file), run_dir, overwrite=True, progress="lines")
    print(f"trained {recipe_file} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return run_dir


class Judge:
    """The classifier run, applied to generated images exactly as to its own inputs."""

    def __init__(self, run_dir: Path):
        self.model, self.pipeline, _meta, _recipe = runs.load_model(run_dir)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.pipeline.scaler.apply(images)).argmax(dim=1)


def diversity(images: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean pairwise L2 distance between images of the same label, averaged over the labels."""
    per_label = [torch.pdist(images[labels == c].flatten(1)).mean() for c in labels.unique()]
    return float(torch.stack(per_label).mean())


def real_diversity(diffusion_run: Path) -> float:
    """The same figure for the real digits of the diffusion run's test split (the reference)."""
    scoring = runs.scoring(diffusion_run)
    X, y = scoring.split("test", diffusion_run)
    return diversity(X, y)


def measure(model, judge: Judge, scales, per_label: int, settings: SamplerSettings, grid_dir: Path) -> list[dict]:
    n_classes = model.n_classes
    wanted = torch.arange(n_classes).repeat_interleave(per_label)
    rows = []
    for scale in scales:
        started = time.perf_counter()
        run_settings = SamplerSettings(**(settings.as_dict() | {"cfg_scale": scale}))
        images = sample(model, model.conditions(wanted), len(wanted), run_settings)
        share = float((judge.predict(images) == wanted).float().mean())
        rows.append({"scale": scale, "share": share, "diversity": diversity(images, wanted),
                     "seconds": time.perf_counter() - started})
        # ten images of each label, one label per row, for looking at
        first = torch.cat([images[c * per_label:c * per_label + 10] for c in range(n_classes)])
        save_grid(first, grid_dir / f"scale-{scale:g}.png", nrow=10)
        print(f"scale {scale:g}: share {share:.1%}, diversity {rows[-1]['diversity']:.3f} "
              f"({rows[-1]['seconds']:.0f} s)", file=sys.stderr)
    return rows


def recommend(rows: list[dict], target: float) -> float:
    """The smallest scale whose share reaches ``target``; the best share when none does."""
    reaching = [r["scale"] for r in rows if r["share"] >= target]
    return min(reaching) if reaching else max(rows, key=lambda r: r["share"])["scale"]


def plot(rows: list[dict], real: float, recommended: float, target: float, path: Path, title: str) -> Path:
    from danlu.report._plots import _figure, _save

    fig, ax = _figure(6.4, 4.0)
    scales = [r["scale"] for r in rows]
    ax.plot(scales, [100 * r["share"] for r in rows], "o-", color="tab:blue", label="share classified as the label")
    ax.axhline(100 * target, color="tab:blue", linestyle=":", linewidth=1, label=f"target {target:.0%}")
    ax.axvline(recommended, color="grey", linestyle="--", linewidth=1, label=f"recommended scale {recommended:g}")
    ax.set_xlabel("classifier-free guidance scale")
    ax.set_ylabel("share classified as the requested label (%)", color="tab:blue")
    ax.set_ylim(0, 100)
    right = ax.twinx()
    right.plot(scales, [r["diversity"] for r in rows], "s-", color="tab:orange", label="diversity (samples)")
    right.axhline(real, color="tab:orange", linestyle=":", linewidth=1, label="diversity (real digits)")
    right.set_ylabel("mean pairwise L2 distance, same label", color="tab:orange")
    right.set_ylim(0, max(real, *[r["diversity"] for r in rows]) * 1.15)
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/danlu-bench-cfg"), help="runs are kept here")
    parser.add_argument("--scales", type=float, nargs="+", default=[0, 1, 1.5, 2, 3, 5, 7])
    parser.add_argument("--per-label", type=int, default=50, help="images per label and scale (default 50)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--sampler", choices=("ddim", "ancestral"), default="ddim")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.9, help="share the recommended scale must reach")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "cfg_curve.png")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    diffusion_run = train("digits_diffusion.yaml", args.work / "diffusion")
    judge_run = train("digits_cnn.yaml", args.work / "classifier")
    judge_accuracy = json.loads((judge_run / "summary.json").read_text())["test"]["accuracy"]
    model = runs.load_model(diffusion_run)[0]
    settings = SamplerSettings(sampler=args.sampler, steps=args.steps, seed=args.seed)
    rows = measure(model, Judge(judge_run), args.scales, args.per_label, settings, args.work / "grids")
    real = real_diversity(diffusion_run)
    best = recommend(rows, args.target)

    print(f"CFG benchmark: {args.per_label} images x {model.n_classes} labels per scale, {args.sampler} "
          f"{args.steps} steps, seed {args.seed}; judge digits_cnn (test accuracy {judge_accuracy:.1%}); "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"{'scale':>6}  {'share':>7}  {'diversity':>9}")
    for r in rows:
        print(f"{r['scale']:>6g}  {r['share']:>7.1%}  {r['diversity']:>9.3f}")
    print(f"{'real':>6}  {'':>7}  {real:>9.3f}")
    shipped = Recipe.from_yaml(ROOT / "recipes" / "digits_diffusion.yaml").model.guidance
    print(f"recommended scale: {best:g} (smallest reaching {args.target:.0%}); "
          f"recipes/digits_diffusion.yaml has model.guidance {shipped:g}")
    title = f"digits diffusion: guidance vs. recognisability and variety ({args.sampler}, {args.steps} steps)"
    print(f"curve: {plot(rows, real, best, args.target, args.plot, title)}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "real_diversity": real, "recommended": best,
                                         "judge_test_accuracy": judge_accuracy}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
