"""``danlu report RUN``: the run's report as one self-contained HTML page plus PNG plots."""
from __future__ import annotations

HELP = "write a run's HTML report with its plots (curves, LR, gradients, ROC/PR/confusion or residuals)"


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a run directory, e.g. runs/digits_cnn")
    parser.add_argument("-o", "--output", default=None, metavar="DIR",
                        help="folder for report.html and plots/ (default: the run directory); "
                             "a path ending in .html names the page itself")
    parser.add_argument("--lang", choices=("en", "zh"), default=None,
                        help="language; zh gives bilingual headings (default: from the locale)")


def run(args) -> int:
    import sys

    from ..report import write_report

    path = write_report(args.run_dir, args.output, args.lang)
    print(f"report written to {path} (plots in {path.parent / 'plots'})", file=sys.stderr)
    print(path)
    return 0
