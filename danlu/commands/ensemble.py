"""``danlu ensemble RUN... --method M``: model fusion (模型融合) of finished runs."""
from __future__ import annotations

HELP = ("combine finished runs (模型融合: vote, soft-vote, weighted, stack, bayes) and compare members and "
        "ensemble on the same test split")

METHODS = ("vote", "soft-vote", "average", "weighted", "stack", "bayes")
SHOWN = {"classification": ("weight", "accuracy", "f1_macro", "log_loss", "roc_auc"),
         "regression": ("weight", "rmse", "mae", "r2")}


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="finished run directories (neural or classical) trained on the same data and seed")
    parser.add_argument("--method", default="soft-vote", choices=METHODS,
                        help="vote: majority of predicted classes; soft-vote/average: mean of outputs; weighted: "
                             "weights fitted on the validation split; stack: a meta-model fitted on the validation "
                             "split; bayes: weights softmax(validation log-likelihood / T) (default: soft-vote)")
    parser.add_argument("-o", "--out", dest="out_dir", default=None,
                        help="folder for ensemble.json (default: runs/ensemble-<method>, numbered if taken)")
    parser.add_argument("--overwrite", action="store_true", help="replace the ensemble.json of an existing -o folder")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="bayes: T in softmax(log-likelihood / T); larger spreads the weights (default: 1)")
    parser.add_argument("--stack-c", type=float, default=10.0,
                        help="stack: inverse L2 strength of the logistic-regression meta-model (default: 10)")
    parser.add_argument("--ridge-alpha", type=float, default=1.0,
                        help="stack, regression: penalty of the ridge meta-model (default: 1)")
    parser.add_argument("--json", action="store_true", help="print ensemble.json instead of the tables")


def run(args) -> int:
    import json

    from ..combine import ensemble, table_rows
    from ..errors import UserError
    from ..evaluation import format_table

    for flag, value in (("--stack-c", args.stack_c), ("--ridge-alpha", args.ridge_alpha)):
        if not value > 0:
            raise UserError(f"{flag} must be > 0, got {value}")
    result = ensemble(args.runs, args.method, args.out_dir, overwrite=args.overwrite, temperature=args.temperature,
                      stack_c=args.stack_c, ridge_alpha=args.ridge_alpha, progress=args.progress != "none")
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    shown = SHOWN[result["task"]]
    for split in ("validation", "test"):
        if split not in result["ensemble"]:
            continue
        note = " (the weights / meta-model were fitted here)" if result["fitted_on"] == split else ""
        print(f"{split} split, {result['rows'][split]} rows{note}:")
        rows = {name: {k: figs.get(k) for k in shown if k in figs} for name, figs in table_rows(result, split).items()}
        print(format_table(rows).replace("split", "run  ", 1))   # rows are runs here, not splits
        print()
    print(f"ensemble.json written to {result['path']}")
    return 0
