"""``danlu textual-inversion RUN --images PATH --name NAME``: learn a new concept for a diffusion
run from a few images, with the model frozen (文本反演).

The images are read through the run's own pipeline, exactly as ``danlu predict`` reads rows: a
CSV with the training columns or a .npy/.npz file for a run on tabular pixels (the digits), image
files or a folder for a run on images. One condition vector is fitted to them by the model's own
denoising loss (see ``danlu/generative/_inversion.py``) and saved as safetensors, by default as
``RUN/concepts/NAME.safetensors``; ``danlu generate RUN --concept FILE`` draws it.
"""
from __future__ import annotations

HELP = "learn a new concept (one condition vector) for a diffusion run from a few images; the model stays frozen"

EPILOG = """examples:
  danlu textual-inversion runs/digits_diffusion --images sevens.csv --name my-seven
  danlu generate runs/digits_diffusion --concept runs/digits_diffusion/concepts/my-seven.safetensors
"""


def add_arguments(parser) -> None:
    import argparse

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("run_dir", metavar="RUN", help="a finished diffusion run directory")
    parser.add_argument("--images", required=True, metavar="PATH",
                        help="the concept's images, as `danlu predict` reads them for this run (CSV with the "
                             "training columns, .npy/.npz, or image files / a folder)")
    parser.add_argument("--name", required=True, help="the concept's name (letters, digits, - and _)")
    parser.add_argument("-o", "--output", default=None,
                        help="where to save it (default RUN/concepts/NAME.safetensors)")
    parser.add_argument("--steps", type=int, default=400, help="optimisation steps (default 400)")
    parser.add_argument("--lr", type=float, default=0.02, help="Adam learning rate of the vector (default 0.02)")
    parser.add_argument("--batch-size", type=int, default=32, help="images (with their own noise) per step "
                                                                  "(default 32; images repeat when fewer)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the steps, noise and image order (default 0)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the network runs (default auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing concept file")


def run(args) -> int:
    import re
    import sys
    from pathlib import Path

    from .. import training as runs
    from ..errors import UserError

    if not re.fullmatch(r"[\w-]+", args.name):
        raise UserError(f"--name {args.name!r}: use letters, digits, - and _ (it names the file)")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    recipe = runs.read_run_recipe(args.run_dir)
    if recipe.model.kind != "diffusion":
        raise UserError(f"{args.run_dir}: model kind {recipe.model.kind!r}; textual inversion learns a condition "
                        f"for a diffusion run (e.g. one trained from recipes/digits_diffusion.yaml)")
    output = Path(args.output) if args.output else Path(args.run_dir) / "concepts" / f"{args.name}.safetensors"
    if output.suffix != ".safetensors":
        raise UserError(f"-o {output}: a concept is saved as safetensors; give a path ending in .safetensors")
    if output.exists() and not args.overwrite:
        raise UserError(f"{output}: already exists; choose another --name or -o, or pass --overwrite")
    from .generate import _device
    from ..generative._inversion import learn_concept, save_concept

    model, pipeline, _meta, _recipe = runs.load_model(args.run_dir, device=_device(args.device))
    X, _rows = pipeline.load_input(str(args.images))
    shown = getattr(args, "progress", None) != "none"

    def progress(step: int, total: int, loss: float) -> None:
        if step == 1 or step % max(1, total // 5) == 0 or step == total:
            print(f"textual inversion: step {step}/{total}  loss {loss:.4f}", file=sys.stderr, flush=True)

    concept = learn_concept(model, X, args.name, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                            seed=args.seed, source=str(args.images), progress=progress if shown else None)
    path = save_concept(concept, output, args.run_dir, overwrite=args.overwrite)
    loss = concept.meta["loss"]
    classes = list(pipeline.info.classes)
    nearest = concept.meta["nearest_class"]
    print(f"concept {args.name!r} from {concept.meta['images']} images: denoising loss on them "
          f"{loss['learned']:.4f} (no condition {loss['null']:.4f}, the mean of the classes {loss['start']:.4f}); "
          f"closest class: {classes[nearest['index']]} (cosine {nearest['cosine']:.2f})")
    print(f"concept: {path}; draw it with `danlu generate {args.run_dir} --concept {path}`")
    return 0
