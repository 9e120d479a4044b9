"""``danlu embed RUN|minilm INPUT -o OUT``: vectors, nearest neighbours and a 2-D map (嵌入)."""
from __future__ import annotations

HELP = "embeddings of rows or sentences (a run's penultimate layer, or minilm): vectors, neighbours, 2-D map"


def add_arguments(parser) -> None:
    parser.add_argument("source", nargs="?",
                        help="a finished run directory, or 'minilm' for the packaged sentence encoder")
    parser.add_argument("input", nargs="?",
                        help="CSV rows (minilm: a 'text' column, or a .txt file with one sentence a line)")
    parser.add_argument("--graph", metavar="EDGES.csv",
                        help="instead: embed the nodes of an edge list (random walks + skip-gram); -o .csv or .safetensors")
    parser.add_argument("--dim", type=int, default=16, help="--graph: vector size (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="--graph: seed of the walks and the training")
    parser.add_argument("-o", "--output", required=True, help="vectors file: .npy or .csv")
    parser.add_argument("--map", dest="map_png", default=None, help="write a 2-D map of the vectors to this PNG")
    parser.add_argument("--method", choices=("pca", "tsne"), default="pca", help="2-D map method (default pca)")
    parser.add_argument("--neighbours", type=int, default=5, metavar="K",
                        help="nearest neighbours (cosine) per row, written beside OUT as *.neighbours.csv "
                             "(default 5; 0: none)")
    parser.add_argument("--text-column", default="text", help="minilm: the CSV column holding the text")
    parser.add_argument("--label-column", default="label", help="column that colours the map (if present)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def run(args) -> int:
    from pathlib import Path

    from ..errors import UserError

    out = Path(args.output)
    if args.graph:
        if out.exists() and not args.overwrite:
            raise UserError(f"{out}: already exists; choose another -o path or pass --overwrite")
        from ..transfer import embed_graph_file

        print(f"vectors: {embed_graph_file(args.graph, out, dim=args.dim, seed=args.seed)}")
        return 0
    if not args.source or not args.input:
        raise UserError("give RUN|minilm and INPUT (or --graph EDGES.csv); see `danlu embed --help`")
    neighbours = out.with_name(out.stem + ".neighbours.csv")
    planned = [out] + ([neighbours] if args.neighbours > 0 else []) + ([Path(args.map_png)] if args.map_png else [])
    for path in planned:
        if path.exists() and not args.overwrite:
            raise UserError(f"{path}: already exists; choose another -o / --map path or pass --overwrite")
    if args.neighbours < 0:
        raise UserError(f"--neighbours must be >= 0, got {args.neighbours}")
    from ..transfer import embed, map_2d, plot_map, write_neighbours, write_vectors   # heavy: after the checks

    emb = embed(args.source, args.input, text_column=args.text_column, label_column=args.label_column)
    write_vectors(emb, out)
    print(f"vectors: {out} ({emb.vectors.shape[0]} rows x {emb.vectors.shape[1]})")
    if args.neighbours > 0 and len(emb.vectors) > 1:
        write_neighbours(emb, args.neighbours, neighbours)
        print(f"nearest neighbours: {neighbours}")
    if args.map_png:
        if len(emb.vectors) < 3:
            raise UserError(f"{args.input}: a 2-D map needs at least 3 rows, got {len(emb.vectors)}")
        points = map_2d(emb.vectors, args.method)
        plot_map(points, emb.labels, args.map_png, f"{args.source}: {args.method} map of {Path(args.input).name}")
        print(f"map: {args.map_png}")
    return 0
