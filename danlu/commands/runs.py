"""``danlu runs``: list the runs of a folder from its SQLite index, filtered and sorted."""
from __future__ import annotations

HELP = "list runs (name, path, created, model, data, epochs, main test figure) from <runs-dir>/index.sqlite"


def add_arguments(parser) -> None:
    parser.add_argument("--runs-dir", default="runs", help="folder holding the runs (default: runs)")
    parser.add_argument("--filter", dest="filters", action="append", default=[], metavar="KEY=VALUE",
                        help="keep runs where a recipe key or figure matches, e.g. model.kind=mlp, "
                             "data.name=digits, test.accuracy>0.9 (repeatable; also !=, >=, <, <=)")
    parser.add_argument("--sort", metavar="KEY",
                        help="sort by a metric (accuracy = test.accuracy, best first), a key, or created "
                             "(default: newest first)")
    parser.add_argument("--limit", type=int, default=None, help="show at most this many runs")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the index from the run folders")
    parser.add_argument("--json", action="store_true", help="print JSON (with each run's recipe and summary)")


def run(args) -> int:
    import json

    from .._index import format_runs, list_runs

    rows = list_runs(args.runs_dir, args.filters, args.sort, rebuild=args.rebuild)
    if args.limit is not None:
        rows = rows[:max(args.limit, 0)]
    if args.json:
        print(json.dumps(rows, indent=1, ensure_ascii=False, default=str))
    else:
        print(format_runs(rows, args.sort))
    return 0
