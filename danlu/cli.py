"""The ``danlu`` command. It parses, dispatches and turns user errors into one line (exit 2).

Heavy modules (torch, numpy, scikit-learn) are imported inside the command functions, so that
``danlu --help`` and ``danlu explain`` answer at once.
"""
from __future__ import annotations

import argparse
import json
import sys

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3      # training kept blowing up and the rescues ran out (see `danlu diagnose RUN`)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    p.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default=None,
                   help="progress display (default: the recipe's output.progress)")


def _add_nproc(p: argparse.ArgumentParser) -> None:
    # danlu.distributed: the same command again in N processes under torchrun
    p.add_argument("--nproc", type=int, default=None, metavar="N",
                   help="train in N processes on this machine with torchrun (DistributedDataParallel); "
                        "train.batch_size stays the global batch")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="danlu",
        description="丹炉 danlu — train, watch, rescue, evaluate and explain models from one recipe.",
        epilog="examples:\n  danlu train recipes/digits_cnn.yaml\n  danlu train r.yaml --set optimizer.lr=0.01\n"
               "  danlu resume runs/digits_cnn\n  danlu eval runs/digits_cnn --split test\n"
               "  danlu predict runs/digits_cnn rows.csv -o predictions.csv\n  danlu explain 炸炉",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a recipe into a new run directory (炼丹)")
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--run-dir", help="run directory (default: <output.runs_dir>/<name>, numbered if taken)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set optimizer.lr=0.01 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --run-dir")
    _add_nproc(p)
    _add_common(p)

    p = sub.add_parser("resume", help="continue a killed or interrupted run from its last checkpoint (断点续训)")
    p.add_argument("run_dir")
    p.add_argument("--checkpoint", help="a checkpoint folder name (e.g. step-00000120) instead of the newest")
    p.add_argument("--force-foreign-checkpoint", action="store_true",
                   help="continue from a --checkpoint that another run wrote (refused otherwise; warns)")
    _add_nproc(p)
    _add_common(p)

    p = sub.add_parser("eval", help="metrics of a finished run on a split")
    p.add_argument("run_dir")
    p.add_argument("--split", default="test", help="train, validation, test or all (default: test)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--baseline", action="store_true",
                   help="show the trivial baselines beside the model, with a significance test (基线)")
    p.add_argument("--quantized", metavar="DIR", help="evaluate the quantized model in DIR (from danlu quantize)")
    _add_common(p)

    p = sub.add_parser("predict", help="predict new rows with a finished run (推理)")
    p.add_argument("run_dir")
    p.add_argument("input", help="CSV, .npy or .npz file (or image folder for image runs)")
    p.add_argument("-o", "--output", default="-", help="output CSV (default: standard output)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quantized", metavar="DIR", help="predict with the quantized model in DIR (from danlu quantize)")
    _add_common(p)

    p = sub.add_parser("explain", help="explain a term in English or Chinese (e.g. danlu explain lr)")
    p.add_argument("term", nargs="*", help="a term, alias or recipe key (炸炉, lr, bs, epoch, ...)")
    p.add_argument("--lang", choices=("en", "zh"), default=None, help="language (default: from the locale)")
    p.add_argument("--list", action="store_true", help="list every term")
    _add_common(p)

    p = sub.add_parser("diagnose", help="tell the story of a run: what went wrong, what danlu did, what to try")
    p.add_argument("run_dir")
    p.add_argument("--lang", choices=("en", "zh"), default=None)
    _add_common(p)

    p = sub.add_parser("keys", help="list every recipe key with its default, and each model kind's keys")
    _add_common(p)

    for name, module in _command_modules().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        _add_common(p)
    return parser


# Commands of the later packages live in danlu/commands/<name>.py: each module is torch-free at
# import time and defines HELP, add_arguments(parser) and run(args) -> int. The command name is
# the module name with "_" read as "-".
COMMAND_MODULES = ("cv", "compare", "runs", "report", "lr_find", "tune", "quantize", "distill", "ensemble",
                   "finetune", "embed", "generate", "latent", "serve", "export", "textual_inversion",
                   "summary")


def _command_modules() -> dict:
    import importlib

    found = {}
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"danlu.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name not in (f"danlu.commands.{name}", "danlu.commands"):
                raise
            continue
        found[name.replace("_", "-")] = module
    return found


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------

def _print_summary(summary: dict, run_dir) -> None:
    from .evaluation import format_table

    table = {k: v for k, v in summary.items() if k in ("train", "validation", "test")}
    base = summary.get("baseline")
    if base:
        table[f"test baseline ({base['against']})"] = base["baseline"][base["against"]]
    print(format_table(table, positive_class=summary.get("positive_class")))
    if base:
        print(f"against the baseline: {base['significance']['verdict']}")
    print(f"run directory: {run_dir}")


def _relaunch_args(args, command: list[str], options: dict) -> list[str]:
    """The command line again, without --nproc, for each process that torchrun starts."""
    out = list(command)
    for flag, value in {**options, "--progress": args.progress}.items():
        if value is not None:
            out += [flag, value]
    for item in getattr(args, "overrides", []):
        out += ["--set", item]
    return out + ["--overwrite"] * bool(getattr(args, "overwrite", False)) + ["--debug"] * bool(args.debug)


def cmd_train(args) -> int:
    from .recipe import Recipe

    recipe = Recipe.from_yaml(args.recipe, args.overrides)   # mistakes answered once, before any launch
    if args.nproc is not None and args.nproc > 1:   # danlu.distributed: relaunch under torchrun
        from .distributed import check_batch_size, launch

        check_batch_size(recipe, args.nproc)
        return launch(args.nproc, _relaunch_args(args, ["train", args.recipe], {"--run-dir": args.run_dir}))
    from . import training as runs
    from .distributed import is_main_process

    run = runs.train(recipe, args.run_dir, overwrite=args.overwrite, progress=args.progress)
    if is_main_process():   # under torchrun only rank 0 prints
        _print_summary(run.summary, run.path)
    return _stopped_by_monitors(run, is_main_process())


def cmd_resume(args) -> int:
    if args.nproc is not None and args.nproc > 1:   # danlu.distributed: relaunch under torchrun
        from pathlib import Path

        from .distributed import check_batch_size, launch
        from .recipe import Recipe

        if (Path(args.run_dir) / "recipe.yaml").is_file():   # answered once, before any launch
            check_batch_size(Recipe.from_yaml(Path(args.run_dir) / "recipe.yaml"), args.nproc)
        command = ["resume", args.run_dir] + ["--force-foreign-checkpoint"] * args.force_foreign_checkpoint
        return launch(args.nproc, _relaunch_args(args, command, {"--checkpoint": args.checkpoint}))
    from . import training as runs
    from .distributed import is_main_process

    run = runs.resume(args.run_dir, args.checkpoint, progress=args.progress,
                      force_foreign_checkpoint=args.force_foreign_checkpoint)
    if is_main_process():   # under torchrun only rank 0 prints
        _print_summary(run.summary, run.path)
    return _stopped_by_monitors(run, is_main_process())


def _stopped_by_monitors(run, speak: bool) -> int:
    """A run the divergence monitor had to stop (its rescues ran out) ends with its own exit code
    and one line on stderr, whatever the progress display."""
    reason = ((run.summary or {}).get("run") or {}).get("stop_reason") or ""
    if not reason.startswith("rescue exhausted"):
        return 0
    if speak:
        print(f"danlu: error: {run.path}: {reason}", file=sys.stderr)
    return EXIT_DIVERGED


def cmd_eval(args) -> int:
    from . import training as runs
    from .errors import UserError
    from .evaluation import format_table

    if args.baseline:
        from .experiments import evaluate_with_baseline

        if args.split == "all":
            raise UserError("--baseline takes one split: --split train, validation or test")
        got = evaluate_with_baseline(args.run_dir, args.split)
        if args.json:
            print(json.dumps(got, indent=1, default=float))
        else:
            print(format_table({args.split: got["model"],
                                **{f"{name} baseline": v for name, v in got["baseline"].items()}}))
            print(f"against the baseline: {got['significance']['verdict']}")
        return 0
    figures = runs.evaluate(args.run_dir, args.split, quantized=args.quantized)
    print(json.dumps(figures, indent=1) if args.json else format_table(figures))
    return 0


def cmd_predict(args) -> int:
    from . import training as runs

    rows = runs.predict(args.run_dir, args.input, args.output, overwrite=args.overwrite,
                        quantized=args.quantized)
    if args.output != "-":
        print(f"{len(rows)} predictions written to {args.output}", file=sys.stderr)
    return 0


def cmd_explain(args) -> int:
    from . import glossary

    lang = args.lang or glossary.default_lang()
    if args.list or not args.term:
        print(glossary.list_terms(lang))
        return 0
    print(glossary.explain(" ".join(args.term), lang))
    return 0


def cmd_diagnose(args) -> int:
    from .diagnose import story

    print(story(args.run_dir, args.lang))
    return 0


def cmd_keys(args) -> int:
    from .recipe import describe

    for path, default, doc in describe():
        print(f"{path:36s} {default:14s} {doc}")
    for kind, rows in model_kind_keys().items():
        print(f"\nmodel.kind: {kind}")
        for path, default, doc in rows:
            print(f"  {path:34s} {default:14s} {doc}")
    return 0


def model_kind_keys() -> dict[str, list[tuple[str, str, str]]]:
    """(key path, default, doc) of the model keys each kind takes: built-in, classical and any kind
    registered in this process (a kind registered without a schema takes any keys)."""
    import json

    from . import classical  # noqa: F401 — importing it registers the classical kinds (no torch)
    from .models import registered_params

    out = {}
    for kind, params in sorted(registered_params().items()):
        if params is None:
            out[kind] = [("model.*", "-", "any keys: this kind checks its own")]
            continue
        out[kind] = [(f"model.{key}", json.dumps(field.default), field.doc) for key, field in params.items()]
    return out


COMMANDS = {"train": cmd_train, "resume": cmd_resume, "eval": cmd_eval, "predict": cmd_predict,
            "explain": cmd_explain, "diagnose": cmd_diagnose, "keys": cmd_keys}


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"danlu {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 0
    handler = COMMANDS.get(args.command)
    if handler is None:
        handler = _command_modules()[args.command].run
    try:
        return handler(args)
    except BrokenPipeError:  # the reader went away (e.g. `danlu diagnose RUN | head`): not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("\ndanlu: interrupted; continue with `danlu resume RUN_DIR`", file=sys.stderr)
        return 130
    except Exception as err:  # one line for the user's mistakes, a traceback for ours
        from .errors import UserError

        if getattr(args, "debug", False):
            raise
        if isinstance(err, UserError):
            print(f"danlu: error: {err}", file=sys.stderr)
            return EXIT_USER_ERROR
        if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError)):
            print(f"danlu: error: {err.strerror}: {err.filename}", file=sys.stderr)
            return EXIT_USER_ERROR
        if isinstance(err, MemoryError):   # sizes the user chose; the checks before a run catch most
            print(f"danlu: error: out of memory{f' ({err})' if str(err) else ''}; lower the sizes in the recipe "
                  f"(model sizes, train.batch_size, data.samples) or free memory", file=sys.stderr)
            return EXIT_USER_ERROR
        raise


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
