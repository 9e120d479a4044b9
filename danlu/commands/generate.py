"""``danlu generate RUN``: new images from a diffusion or VAE run, as a PNG grid (生成).

For diffusion runs the picture is fixed by its settings, as in the Stable Diffusion WebUI: the
seed fixes the starting noise (image i uses seed + i), ``--ensd`` offsets the seed of the noise an
ancestral sampler adds along the way, and ``--cfg-scale`` weighs the condition (0: unconditional).
The settings are printed as one line and saved beside the PNG as JSON, with the command that
draws the same picture again. Default file names carry the settings that tell pictures apart
(label or prompt, CFG scale, seed, ENSD, sampler), so trying settings needs no ``-o``; a name
already taken gets a counter (``-2``, ``-3``...): nothing is overwritten without ``--overwrite``.
``--grid`` draws one picture per CFG scale (rows) and seed (columns), labelled, as the WebUI's
X/Y plot does.
"""
from __future__ import annotations

HELP = "new images from a diffusion run (label or text prompt, CFG, seeds, ENSD) or a vae run, as a PNG grid"

GENERATIVE_KINDS = ("diffusion", "vae")

EPILOG = """examples:
  danlu generate runs/digits_diffusion --label 3                      # the recipe's guidance scale
  danlu generate runs/digits_diffusion --label 3 --cfg-scale 7 --steps 25 --seed 42 -n 16 -o three.png
  danlu generate runs/digits_diffusion --label 7 --sampler ancestral --eta 1 --ensd 31337
  danlu generate runs/digits_diffusion --label 7 --grid --cfg 0,1.5,3 --seed 0,1,2   # a labelled CFG x seed grid
  danlu generate runs/digits_diffusion --prompt "a handwritten seven"  # needs pip install "danlu[text]"
  danlu generate runs/digits_diffusion --prompt "a handwritten seven" --clip-skip 1
  danlu generate runs/digits_diffusion --concept runs/digits_diffusion/concepts/my-seven.safetensors
  danlu generate runs/digits_diffusion --prompt "<my-seven>"          # the same: RUN/concepts/my-seven.safetensors
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
    condition.add_argument("--concept", default=None, metavar="FILE",
                           help="a concept learned by `danlu textual-inversion` (.safetensors), drawn like a class")
    parser.add_argument("--cfg-scale", "--cfg", dest="cfg_scale", default=None, metavar="SCALE",
                        help="classifier-free guidance scale: 0 unconditional, 1 plain conditional, more "
                             "follows the condition harder (default: the recipe's model.guidance); with --grid "
                             "a comma list, e.g. 0,1.5,3")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default 25)")
    parser.add_argument("--sampler", choices=("ddim", "ancestral"), default=None,
                        help="ddim: jumps along the predicted noise (eta 1: noise of the posterior variance "
                             "beta-tilde); ancestral: DDPM's ancestral sampler, posterior mean plus fresh noise "
                             "of variance beta every step (default ddim)")
    parser.add_argument("--eta", type=float, default=None,
                        help="fresh noise per step, 0 (deterministic) to 1 (default: ddim 0, ancestral 1)")
    parser.add_argument("--seed", default="0", help="seed of the starting noise; image i uses seed + i "
                                                    "(default 0); with --grid a comma list, e.g. 0,1,2")
    parser.add_argument("--ensd", type=int, default=None,
                        help="eta noise seed delta: the added noise uses seed + i + ENSD (default 0: it "
                             "continues each image's own noise stream)")
    parser.add_argument("-n", type=int, default=None, help="number of images (default 16)")
    parser.add_argument("--grid", action="store_true",
                        help="one image per CFG scale (rows) and seed (columns) in one labelled picture")
    parser.add_argument("--clip-skip", type=int, default=None, metavar="N",
                        help="--prompt: read it from the sentence encoder's layer N before the last "
                             "(hidden_states[-1-N], mean-pooled), as the WebUI's CLIP skip (default 0)")
    parser.add_argument("--nrow", type=int, default=None, help="images per grid row (default: a square grid)")
    parser.add_argument("-o", "--output", default=None,
                        help="PNG grid (default RUN/samples/<label-or-prompt>-cfg<scale>-s<seed>-ensd<ensd>-"
                             "<sampler>.png, numbered if taken); settings go beside it as .json")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the network runs; the noise is drawn on the CPU either way (default auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output PNG and its .json")


def run(args) -> int:
    import json

    from .. import training as runs
    from ..errors import UserError
    from ..training import _checkpoint as ck

    _read_lists(args)
    _check_numbers(args)
    recipe = runs.read_run_recipe(args.run_dir)
    kind = recipe.model.kind
    if kind not in GENERATIVE_KINDS:
        raise UserError(f"{args.run_dir}: model kind {kind!r} does not generate images; danlu generate works on "
                        f"runs of kind {' or '.join(GENERATIVE_KINDS)} (e.g. recipes/digits_diffusion.yaml)")
    if kind == "vae":
        _refuse_conditions(args)
    _check_output(args)
    device = _device(args.device)
    model, pipeline, _meta, _recipe = runs.load_model(args.run_dir, device=device)
    labels = None
    if kind == "vae":
        from ..generative._vae import vae_samples

        images = vae_samples(model, args.n, args.seed)
        record = {"kind": "vae", "n": args.n, "seed": args.seed}
        infotext = f"VAE samples, Seed: {args.seed}, n: {args.n}"
    elif args.grid:
        images, record, infotext, labels = _diffusion_grid(args, model, list(pipeline.info.classes))
    else:
        images, record, infotext = _diffusion(args, model, list(pipeline.info.classes))
    from ..generative import save_grid
    from ..generative._grid import save_labeled_grid

    png, settings_path = _outputs(args, kind, record)
    if labels is not None:
        save_labeled_grid(images, png, *labels)
    else:
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

def _read_lists(args) -> None:
    """--cfg-scale and --seed as lists (args.cfg_scales, args.seeds); several values need --grid.
    args.cfg_scale and args.seed keep the first value, args.n the image count."""
    from ..errors import UserError

    args.cfg_scales = None if args.cfg_scale is None else _numbers("--cfg-scale", args.cfg_scale, float)
    args.seeds = _numbers("--seed", args.seed, int)
    for flag, values in (("--cfg-scale", args.cfg_scales), ("--seed", args.seeds)):
        if values is not None and len(values) > 1 and not args.grid:
            raise UserError(f"{flag} {','.join(map(_text, values))}: several values draw a grid; add --grid "
                            f"(or give one value)")
    if args.grid:
        if args.n is not None:
            raise UserError("--grid draws one image per CFG scale and seed; drop -n (give the seeds with --seed)")
        if args.nrow is not None:
            raise UserError("--grid puts one CFG scale per row; drop --nrow")
    args.cfg_scale = None if args.cfg_scales is None else args.cfg_scales[0]
    args.seed = args.seeds[0]
    args.n = 16 if args.n is None else args.n
    if args.clip_skip is not None and args.prompt is None:
        raise UserError("--clip-skip changes how a --prompt is read; give --prompt, or drop --clip-skip")


def _numbers(flag: str, text: str, kind):
    from ..errors import UserError

    try:
        values = [kind(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise UserError(f"{flag} {text}: give a number or a comma list of numbers, e.g. "
                        f"{'0,1.5,3' if kind is float else '0,1,2'}") from None
    if not values:
        raise UserError(f"{flag}: give at least one value")
    return values


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check_numbers(args) -> None:
    from ..errors import UserError

    checks = [("-n", [args.n], 1), ("--seed", args.seeds, 0), ("--steps", [args.steps], 1),
              ("--ensd", [args.ensd], 0), ("--eta", [args.eta], 0), ("--cfg-scale", args.cfg_scales or [], 0),
              ("--nrow", [args.nrow], 1), ("--clip-skip", [args.clip_skip], 0)]
    for flag, values, low in checks:
        for value in values:
            if value is not None and value < low:
                raise UserError(f"{flag} must be >= {low}, got {_text(value)}")


def _refuse_conditions(args) -> None:
    """A VAE draws from one unconditional prior in one decode: the diffusion flags mean nothing."""
    from ..errors import UserError

    given = [flag for flag, value in (("--label", args.label), ("--prompt", args.prompt), ("--concept", args.concept),
                                      ("--cfg-scale", args.cfg_scale), ("--steps", args.steps),
                                      ("--sampler", args.sampler), ("--eta", args.eta), ("--ensd", args.ensd),
                                      ("--grid", args.grid or None))
             if value is not None]
    if given:
        raise UserError(f"{args.run_dir}: a vae run is unconditional and decodes in one step, so "
                        f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply; drop "
                        f"{'it' if len(given) == 1 else 'them'} (only -n, --seed, -o work) or use a "
                        f"diffusion run")


def _check_output(args) -> None:
    """An explicit -o: a PNG path, and an existing PNG or JSON is kept unless --overwrite."""
    from pathlib import Path

    from ..errors import UserError

    if not args.output:
        return
    png = Path(args.output)
    if png.suffix.lower() != ".png":
        raise UserError(f"-o {args.output}: the grid is written as PNG; give a path ending in .png")
    for path in (png, png.with_suffix(".json")):
        if path.exists() and not args.overwrite:
            raise UserError(f"{path}: already exists; choose another -o path, or pass --overwrite")


def _outputs(args, kind: str, record: dict):
    """(PNG path, settings JSON path). The default name carries the settings (see the module
    docstring); when it is taken, a counter is added (--overwrite replaces it instead)."""
    from pathlib import Path

    from .._rundir import numbered

    if args.output:
        png = Path(args.output)
        return png, png.with_suffix(".json")
    folder = Path(args.run_dir) / "samples"
    stem = _default_stem(args, kind, record)
    if args.overwrite:
        png = folder / f"{stem}.png"
    else:   # stem.png, stem-2.png, ...: the first whose picture and record are both free
        png = numbered(folder / stem, lambda p: p.exists() or p.with_suffix(".json").exists(), suffix=".png")
    return png, png.with_suffix(".json")


def _default_stem(args, kind: str, record: dict) -> str:
    """e.g. 7-cfg1.5-s0-ensd0-ddim; grids: 7-grid-cfg0_1.5_3-s0_1_2-ensd0-ddim; vae-s0."""
    subject = _subject(args, kind)
    if kind == "vae":
        return f"{subject}-s{record['seed']}"
    grid = record.get("grid")
    scales = grid["cfg_scales"] if grid else [record["cfg_scale"]]
    seeds = grid["seeds"] if grid else [record["seed"]]
    parts = [subject] + (["grid"] if grid else [])
    parts += [f"cfg{'_'.join(map(_text, scales))}", f"s{'_'.join(map(str, seeds))}", f"ensd{record['ensd']}",
              record["sampler"]]
    if record.get("clip_skip"):
        parts.append(f"clipskip{record['clip_skip']}")
    return "-".join(parts)


def _subject(args, kind: str) -> str:
    """The file name's first part: the label, a slug of the prompt, 'uncond' or 'vae'."""
    import re

    if kind == "vae":
        return "vae"
    if args.prompt is not None:
        return re.sub(r"[^\w]+", "-", args.prompt.strip().lower()).strip("-")[:40] or "prompt"
    if args.label is not None:
        return re.sub(r"[^\w]+", "-", args.label).strip("-") or "label"
    if args.concept is not None:
        from pathlib import Path

        return "concept-" + (re.sub(r"[^\w]+", "-", Path(args.concept).stem).strip("-") or "file")
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

    scale = _scales(args, model)[0]
    steps = _steps(args, model)
    settings = SamplerSettings(sampler=args.sampler or "ddim", steps=steps, eta=args.eta, cfg_scale=scale,
                               seed=args.seed, ensd=args.ensd or 0)
    cond, record = _condition(args, model, classes)
    shown = getattr(args, "progress", None) != "none"
    images = sample(model, cond, args.n, settings, progress=_progress(args.n, steps) if shown else None)
    record = {"kind": "diffusion", **record, **settings.as_dict(), "n": args.n}
    return images.cpu(), record, _infotext(record, model.image_shape)


def _scales(args, model) -> list[float]:
    """The CFG scales asked for (default: the recipe's guidance); without a condition only 0."""
    from ..errors import UserError

    conditioned = args.label is not None or args.prompt is not None or args.concept is not None
    given = args.cfg_scales
    if not conditioned:
        if given and any(s != 0 for s in given):
            raise UserError(f"--cfg-scale {','.join(map(_text, given))} needs a condition: give --label, --prompt "
                            f"or --concept (or --cfg-scale 0 for unconditional samples)")
        return [0.0]
    return [float(model.guidance)] if given is None else given


def _steps(args, model) -> int:
    from ..errors import UserError

    steps = args.steps or min(25, model.timesteps)
    if steps > model.timesteps:
        raise UserError(f"--steps {steps}: the model was trained with {model.timesteps} timesteps; "
                        f"give --steps {model.timesteps} or fewer")
    return steps


def _diffusion_grid(args, model, classes: list):
    """(images, record, infotext, (row labels, column labels)): one image per CFG scale (rows) and
    seed (columns). Each cell is the image that the same settings draw alone with -n 1."""
    import torch

    from ..generative._samplers import SamplerSettings, sample

    scales, seeds, steps = _scales(args, model), args.seeds, _steps(args, model)
    args.n = 1
    cond, record = _condition(args, model, classes)
    images, first = [], None
    for scale in scales:
        for seed in seeds:
            settings = SamplerSettings(sampler=args.sampler or "ddim", steps=steps, eta=args.eta, cfg_scale=scale,
                                       seed=seed, ensd=args.ensd or 0)
            first = first or settings
            images.append(sample(model, cond, 1, settings).cpu())
    args.n = len(images)
    record = {"kind": "diffusion", **record, **first.as_dict(), "n": len(images),
              "grid": {"rows": "cfg_scale", "columns": "seed", "cfg_scales": scales, "seeds": seeds}}
    labels = ([f"CFG {_text(s)}" for s in scales], [f"seed {s}" for s in seeds])
    return torch.cat(images), record, _infotext(record, model.image_shape), labels


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
    token = _concept_token(args)
    if token is not None:   # --prompt "<name>": the concept that textual inversion saved under that name
        from ..generative._inversion import load_concept

        concept = load_concept(token, model)
        print(f"prompt {args.prompt!r} is the concept {concept.name!r} ({token})")
        return concept.vector.to(device).expand(args.n, -1), {"prompt": args.prompt, "concept_name": concept.name}
    if args.prompt is not None:
        from ..generative._prompt import match_prompt

        skip = args.clip_skip or 0
        match = match_prompt(args.prompt, classes, clip_skip=skip)
        print(f"prompt {args.prompt!r} read as: {match.summary()}" + (f" (clip skip {skip})" if skip else ""))
        weights = torch.tensor(match.weights).expand(args.n, -1)
        weights_by_class = {str(c): round(w, 4) for c, w in zip(match.classes, match.weights)}
        return model.mixed_condition(weights), {"prompt": args.prompt, "prompt_weights": weights_by_class,
                                                "clip_skip": skip}
    if args.concept is not None:
        from ..generative._inversion import load_concept

        concept = load_concept(args.concept, model)
        return concept.vector.to(device).expand(args.n, -1), {"concept": str(args.concept),
                                                              "concept_name": concept.name}
    return None, {"label": None}


def _concept_token(args):
    """The concept file a prompt of the form ``<name>`` stands for (RUN/concepts/name.safetensors), or None."""
    import re
    from pathlib import Path

    from ..errors import UserError

    match = re.fullmatch(r"<([\w-]+)>", (args.prompt or "").strip())
    if match is None:
        return None
    path = Path(args.run_dir) / "concepts" / f"{match[1]}.safetensors"
    if not path.is_file():
        raise UserError(f"--prompt {args.prompt}: no concept {match[1]!r} in {path.parent}; learn it with "
                        f"`danlu textual-inversion {args.run_dir} --images PATH --name {match[1]}`, or describe "
                        f"the class in words")
    if args.clip_skip:
        raise UserError(f"--clip-skip reads a prompt in words; {args.prompt} is a learned concept, drop --clip-skip")
    return path


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
    elif record.get("concept") is not None:
        subject = f"concept: {record['concept_name']}"
    else:
        subject = "unconditional"
    grid = record.get("grid")
    scales = ", ".join(map(_text, grid["cfg_scales"])) if grid else _text(float(record["cfg_scale"]))
    seeds = ", ".join(map(str, grid["seeds"])) if grid else str(record["seed"])
    clip = f", Clip skip: {record['clip_skip']}" if record.get("clip_skip") else ""
    return (f"{subject}, Steps: {record['steps']}, Sampler: {record['sampler']}, Eta: {record['eta']:g}, "
            f"CFG scale: {scales}, Seed: {seeds}, ENSD: {record['ensd']}{clip}, "
            f"Size: {shape[-2]}x{shape[-1]}, n: {record['n']}")


def _command(args, record: dict) -> str:
    """The command that draws the same picture (every setting spelled out)."""
    import shlex

    parts = ["danlu", "generate", str(args.run_dir)]
    if record.get("kind") != "vae":
        if record.get("label") is not None:
            parts += ["--label", str(record["label"])]
        if record.get("concept") is not None:
            parts += ["--concept", record["concept"]]
        if record.get("prompt") is not None:
            parts += ["--prompt", record["prompt"]]
            if record.get("clip_skip"):
                parts += ["--clip-skip", str(record["clip_skip"])]
        grid = record.get("grid")
        scales = ",".join(map(_text, grid["cfg_scales"])) if grid else f"{record['cfg_scale']:g}"
        parts += ["--cfg-scale", scales, "--steps", str(record["steps"]),
                  "--sampler", record["sampler"], "--eta", f"{record['eta']:g}", "--ensd", str(record["ensd"])]
        if grid:
            return " ".join(shlex.quote(p) for p in parts + ["--grid", "--seed", ",".join(map(str, grid["seeds"]))])
    parts += ["--seed", str(args.seed), "-n", str(args.n)]
    return " ".join(shlex.quote(p) for p in parts)
