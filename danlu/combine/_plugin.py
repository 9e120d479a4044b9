"""The combination capability's registration: a folder written by `danlu ensemble` (ensemble.json,
no recipe.yaml) is a run of the ensemble kind."""
from ..training._runs import register_run_kind


def is_ensemble_folder(path) -> bool:
    from . import is_ensemble_dir

    return is_ensemble_dir(path)


register_run_kind("ensemble", "danlu.combine._runs:EnsembleRuns", folder=is_ensemble_folder, order=40)
