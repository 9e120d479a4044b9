"""``danlu latent RUN``: the latent space of a VAE or autoencoder run as pictures (潜空间).

Two PNGs: a 2-D map of the latent points of one split coloured by label (the latent itself
when it has two units, its first two principal components otherwise), and a strip that decodes
the straight line between the latent points of two inputs.
"""
from __future__ import annotations

HELP = "latent space of a vae or autoencoder run: 2-D map coloured by label and an interpolation strip (PNG)"

LATENT_KINDS = ("vae", "autoencoder")


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="a finished vae or autoencoder run directory")
    parser.add_argument("--split", default="test", choices=("train", "validation", "test"),
                        help="rows whose latent points are drawn (default: test)")
    parser.add_argument("-o", "--output", default=None,
                        help="latent map PNG (default: RUN/plots/latent_map.png)")
    parser.add_argument("--strip", default=None,
                        help="interpolation PNG (default: RUN/plots/interpolation.png, or beside -o as "
                             "<name>.interpolation.png)")
    parser.add_argument("--between", nargs=2, type=int, default=None, metavar=("I", "J"),
                        help="rows of the split to interpolate between (default: row 0 and the first row "
                             "with another label)")
    parser.add_argument("--steps", type=int, default=10, help="decoded points between the two inputs (default 10)")
    parser.add_argument("--max-points", type=int, default=2000,
                        help="at most this many rows on the map, evenly spaced through the split (default 2000)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing -o / --strip files")


def _outputs(args):
    """(map path, strip path, paths the user named). Files under RUN/plots belong to the run and
    are redrawn freely; a file the user named is kept unless --overwrite."""
    from pathlib import Path

    plots = Path(args.run_dir) / "plots"
    latent_map = Path(args.output) if args.output else plots / "latent_map.png"
    if args.strip:
        strip = Path(args.strip)
    elif args.output:
        strip = latent_map.with_name(latent_map.stem + ".interpolation.png")
    else:
        strip = plots / "interpolation.png"
    named = [p for p, given in ((latent_map, args.output), (strip, args.output or args.strip)) if given]
    return latent_map, strip, named


def _check_arguments(args, named) -> None:
    from ..errors import UserError

    if args.steps < 2:
        raise UserError(f"--steps must be >= 2 (the two ends and the points between), got {args.steps}")
    if args.max_points < 3:
        raise UserError(f"--max-points must be >= 3, got {args.max_points}")
    for path in named:
        if path.exists() and not args.overwrite:
            raise UserError(f"{path}: already exists; choose another -o / --strip path or pass --overwrite")


def _pair(args, y, n: int) -> tuple[int, int]:
    from ..errors import UserError
    from ..generative._vae import default_pair

    if n < 2:
        raise UserError(f"{args.run_dir}: the {args.split} split has {n} row(s); an interpolation needs two; "
                        f"use --split train")
    if args.between is None:
        return default_pair(y)
    i, j = args.between
    for k in (i, j):
        if not 0 <= k < n:
            raise UserError(f"--between {i} {j}: the {args.split} split has {n} rows; give row numbers 0 to {n - 1}")
    return i, j


def _row(i: int, labels, classes: list) -> str:
    return f"row {i} (label {classes[int(labels[i])]})" if classes else f"row {i}"


def run(args) -> int:
    from .. import training as runs
    from ..errors import UserError

    latent_map, strip_path, named = _outputs(args)
    _check_arguments(args, named)
    sc = runs.scoring(args.run_dir)
    model = sc.model
    if not (callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None))):
        raise UserError(f"{args.run_dir}: model kind {sc.recipe.model.kind!r} has no latent space; danlu latent "
                        f"works on runs of kind {' or '.join(LATENT_KINDS)}")

    import numpy as np

    from ..generative import save_grid
    from ..generative._vae import interpolation, latent_means, map_points, plot_latent_map

    X, y = sc.split(args.split, args.run_dir)
    labels = y.cpu().numpy()
    i, j = _pair(args, labels, len(X))   # a bad --between is answered before anything is written
    points, axes = map_points(latent_means(model, X))
    shown = np.unique(np.linspace(0, len(points) - 1, min(args.max_points, len(points))).round().astype(int))
    title = f"{sc.recipe.model.kind} latent space ({args.split} split, {len(shown)} rows)"
    classes = list(sc.prepared.info.classes)
    plot_latent_map(points[shown], labels[shown], classes, latent_map, title, axes)
    print(f"latent map: {latent_map}")

    save_grid(interpolation(model, X[i], X[j], args.steps), strip_path, nrow=args.steps + 2)
    print(f"interpolation: {strip_path} ({_row(i, labels, classes)} -> {_row(j, labels, classes)} of the "
          f"{args.split} split, {args.steps} decodes between the two inputs)")
    return 0
