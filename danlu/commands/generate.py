"""``danlu generate RUN``: new images from a diffusion or VAE run, as a PNG grid (生成).

For diffusion runs the picture is fixed by its settings, as in the Stable Diffusion WebUI: the
seed fixes the starting noise (image i uses seed + i), ``--ensd`` offsets the seed of the noise an
ancestral sampler adds along the way, and ``--cfg-scale`` weighs the condition (0: unconditional).
The settings are printed as one line and saved beside the PNG as JSON, with the command that
draws the same picture again.
"""
from __future__ import annotations

HELP = "new images from a diffusion run (label or text prompt, CFG, seeds, ENSD) or a vae run, as a PNG grid"

GENERATIVE_KINDS = ("diffusion", "vae")

EPILOG = """examples:
  danlu generate runs/digits_diffusion --label 3                      # the recipe's guidance scale
  danlu generate runs/digits_diffusion --label 3 --cfg-scale 7 --steps 25 --seed 42 -n 16 -o three.png
  danlu generate runs/digits_diffusion --label 7 --sampler ancestral --eta 1 --ensd 31337
  danlu generate runs/digits_diffusion --prompt "a handwritten seven"  # needs pip install "danlu[text]"
  danlu generate runs/digits_diffusion --cfg-scale 0                  # unconditional
  danlu generate runs/digits_vae -n 64
"""


def add_arguments(parser) -> None:
    import argparse

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("run_dir", metavar="RUN", help="a finished diffusion or vae run directory")
    condition = parser.add_mutually_exclusive_group()
    condition.add_argument("--label", default=None, help="class to draw (a class name of the run, e.g. 3)")
    condition.add_argument("--prompt", default=None, metavar="TEXT",
                           help="describe the class in words, e.g. 'a handwritten seven' (needs danlu[text])")
    parser.add_argument("--cfg-scale", type=float, default=None,
                        help="classifier-free guidance scale: 0 unconditional, 1 plain conditional, more "
                             "follows the condition harder (default: the recipe's model.guidance)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default 25)")
    parser.add_argument("--sampler", choices=("ddim", "ancestral"), default=None,
                        help="ddim: jumps along the predicted noise; ancestral: draws each step from the DDPM "
                             "posterior, fresh noise every step (default ddim)")
    parser.add_argument("--eta", type=float, default=None,
                        help="fresh noise per step, 0 (deterministic) to 1 (default: ddim 0, ancestral 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the starting noise; image i uses seed + i "
                                                            "(default 0)")
    parser.add_argument("--ensd", type=int, default=None,
                        help="eta noise seed delta: the added noise uses seed + i + ENSD (default 0: it "
                             "continues each image's own noise stream)")
    parser.add_argument("-n", type=int, default=16, help="number of images (default 16)")
    parser.add_argument("--nrow", type=int, default=None, help="images per grid row (default: a square grid)")
    parser.add_argument("-o", "--output", default=None,
                        help="PNG grid (default RUN/samples/<label-or-prompt>-s<seed>.png); settings go beside "
                             "it as .json")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the network runs; the noise is drawn on the CPU either way (default auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output PNG and its .json")


def run(args) -> int:
    import json

    from .. import _run
    from ..errors import UserError
    from ..training import _checkpoint as ck

    _check_numbers(args)
    recipe = _run.read_run_recipe(args.run_dir)
    kind = recipe.model.kind
    if kind not in GENERATIVE_KINDS:
        raise UserError(f"{args.run_dir}: model kind {kind!r} does not generate images; danlu generate works on "
                        f"runs of kind {' or '.join(GENERATIVE_KINDS)} (e.g. recipes/digits_diffusion.yaml)")
    if kind == "vae":
        _refuse_conditions(args)
    png, settings_path = _outputs(args, kind)
    device = _device(args.device)
    model, pipeline, _meta, _recipe = _run.load_model(args.run_dir, device=device)
    if kind == "vae":
        from ..generative._vae import vae_samples

        images = vae_samples(model, args.n, args.seed)
        record = {"kind": "vae", "n": args.n, "seed": args.seed}
        infotext = f"VAE samples, Seed: {args.seed}, n: {args.n}"
    else:
        images, record, infotext = _diffusion(args, model, list(pipeline.info.classes))
    from ..generative import save_grid

    save_grid(images, png, nrow=args.nrow)
    record = {"run": str(args.run_dir), "image": png.name, **record, "infotext": infotext,
              "command": _command(args, record)}
    ck.atomic_write_text(settings_path, json.dumps(record, indent=1, ensure_ascii=False))
    print(infotext)
    print(f"samples: {png} (settings: {settings_path.name})")
    return 0


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------

def _check_numbers(args) -> None:
    from ..errors import UserError

    checks = [("-n", args.n, 1), ("--seed", args.seed, 0), ("--steps", args.steps, 1), ("--ensd", args.ensd, 0),
              ("--eta", args.eta, 0), ("--cfg-scale", args.cfg_scale, 0), ("--nrow", args.nrow, 1)]
    for flag, value, low in checks:
        if value is not None and value < low:
            raise UserError(f"{flag} must be >= {low}, got {value}")


def _refuse_conditions(args) -> None:
    """A VAE draws from one unconditional prior in one decode: the diffusion flags mean nothing."""
    from ..errors import UserError

    given = [flag for flag, value in (("--label", args.label), ("--prompt", args.prompt),
                                      ("--cfg-scale", args.cfg_scale), ("--steps", args.steps),
                                      ("--sampler", args.sampler), ("--eta", args.eta), ("--ensd", args.ensd))
             if value is not None]
    if given:
        raise UserError(f"{args.run_dir}: a vae run is unconditional and decodes in one step, so "
                        f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply; drop "
                        f"{'it' if len(given) == 1 else 'them'} (only -n, --seed, -o work) or use a "
                        f"diffusion run")


def _outputs(args, kind: str):
    """(PNG path, settings JSON path); an existing PNG or JSON is kept unless --overwrite."""
    from pathlib import Path

    from ..errors import UserError

    if args.output:
        png = Path(args.output)
        if png.suffix.lower() != ".png":
            raise UserError(f"-o {args.output}: the grid is written as PNG; give a path ending in .png")
    else:
        png = Path(args.run_dir) / "samples" / f"{_subject(args, kind)}-s{args.seed}.png"
    settings = png.with_suffix(".json")
    for path in (png, settings):
        if path.exists() and not args.overwrite:
            raise UserError(f"{path}: already exists; choose another -o path or --seed, or pass --overwrite")
    return png, settings


def _subject(args, kind: str) -> str:
    """The file name's first part: the label, a slug of the prompt, 'uncond' or 'vae'."""
    import re

    if kind == "vae":
        return "vae"
    if args.prompt is not None:
        return re.sub(r"[^\w]+", "-", args.prompt.strip().lower()).strip("-")[:40] or "prompt"
    if args.label is not None:
        return re.sub(r"[^\w]+", "-", args.label).strip("-") or "label"
    return "uncond"


def _device(name: str):
    import torch

    from ..errors import UserError

    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


# ---------------------------------------------------------------------------------------------
# Diffusion runs
# ---------------------------------------------------------------------------------------------

def _diffusion(args, model, classes: list):
    """(images, settings record, infotext) of a diffusion run."""
    from ..errors import UserError
    from ..generative._samplers import SamplerSettings, sample

    conditioned = args.label is not None or args.prompt is not None
    if not conditioned and args.cfg_scale not in (None, 0):
        raise UserError(f"--cfg-scale {args.cfg_scale:g} needs a condition: give --label or --prompt "
                        f"(or --cfg-scale 0 for unconditional samples)")
    scale = (model.guidance if args.cfg_scale is None else args.cfg_scale) if conditioned else 0.0
    steps = args.steps or min(25, model.timesteps)
    if steps > model.timesteps:
        raise UserError(f"--steps {steps}: the model was trained with {model.timesteps} timesteps; "
                        f"give --steps {model.timesteps} or fewer")
    settings = SamplerSettings(sampler=args.sampler or "ddim", steps=steps, eta=args.eta, cfg_scale=scale,
                               seed=args.seed, ensd=args.ensd or 0)
    cond, record = _condition(args, model, classes)
    shown = getattr(args, "progress", None) != "none"
    images = sample(model, cond, args.n, settings, progress=_progress(args.n, steps) if shown else None)
    record = {"kind": "diffusion", **record, **settings.as_dict(), "n": args.n}
    return images.cpu(), record, _infotext(record, model.image_shape)


def _condition(args, model, classes: list):
    """(condition vectors or None, what they were made of) for --label / --prompt / neither."""
    import torch

    from ..errors import UserError

    device = model.alpha_bar.device
    if args.label is not None:
        names = [str(c) for c in classes]
        if args.label not in names:
            raise UserError(f"--label {args.label}: not a class of this run; use one of {', '.join(names)}")
        labels = torch.full((args.n,), names.index(args.label), dtype=torch.long, device=device)
        return model.conditions(labels), {"label": args.label}
    if args.prompt is not None:
        from ..generative._prompt import match_prompt

        match = match_prompt(args.prompt, classes)
        print(f"prompt {args.prompt!r} read as: {match.summary()}")
        weights = torch.tensor(match.weights).expand(args.n, -1)
        weights_by_class = {str(c): round(w, 4) for c, w in zip(match.classes, match.weights)}
        return model.mixed_condition(weights), {"prompt": args.prompt, "prompt_weights": weights_by_class}
    return None, {"label": None}


def _progress(n: int, steps: int):
    """Plain progress lines on stderr, about five per run, for runs long enough to wait for."""
    import sys

    every = max(1, steps // 5)
    if n * steps < 2000:
        return None

    def show(i: int, total: int) -> None:
        if i % every == 0 or i == total:
            print(f"danlu: sampling {n} images, step {i}/{total}", file=sys.stderr, flush=True)

    return show


def _infotext(record: dict, shape: tuple) -> str:
    """One line in the WebUI's manner: what was asked, then every setting that fixes the picture."""
    if record.get("prompt") is not None:
        subject = f"prompt: {record['prompt']}"
    elif record.get("label") is not None:
        subject = f"label: {record['label']}"
    else:
        subject = "unconditional"
    return (f"{subject}, Steps: {record['steps']}, Sampler: {record['sampler']}, Eta: {record['eta']:g}, "
            f"CFG scale: {record['cfg_scale']:g}, Seed: {record['seed']}, ENSD: {record['ensd']}, "
            f"Size: {shape[-2]}x{shape[-1]}, n: {record['n']}")


def _command(args, record: dict) -> str:
    """The command that draws the same picture (every setting spelled out)."""
    import shlex

    parts = ["danlu", "generate", str(args.run_dir)]
    if record.get("kind") != "vae":
        if record.get("label") is not None:
            parts += ["--label", str(record["label"])]
        if record.get("prompt") is not None:
            parts += ["--prompt", record["prompt"]]
        parts += ["--cfg-scale", f"{record['cfg_scale']:g}", "--steps", str(record["steps"]),
                  "--sampler", record["sampler"], "--eta", f"{record['eta']:g}", "--ensd", str(record["ensd"])]
    parts += ["--seed", str(args.seed), "-n", str(args.n)]
    return " ".join(shlex.quote(p) for p in parts)
