"""The training layer: the loop, its state and events, the built-in callbacks, checkpoints, the
factory of losses, optimizers and schedules — and runs: the verbs train, resume, evaluate, predict
and load_model over every registered run kind, and the registries capabilities extend them by.

Importing this package does not import torch (plugins register run kinds and callbacks at recipe
validation time); each name loads its module on first use.
"""
from .._lazy import lazy_getattr
from ._extend import (register_callbacks, register_process_group, register_quantized_loader, recipe_callbacks,
                      resolve, transform_model)
from ._runs import (Run, RunKind, as_recipe, evaluate, kind_of_dir, kind_of_recipe, load_model, predict,
                    prepare_run_data, register_run_kind, resume, run_kinds, train)

_LAZY = {  # public name -> private module (these import torch)
    "Checkpointer": "_callbacks", "EarlyStopping": "_callbacks", "MetricsLog": "_callbacks",
    "OUTPUT_MODES": "_factory", "Schedule": "_factory", "build_loss": "_factory", "build_optimizer": "_factory",
    "build_schedule": "_factory", "loss_from_callable": "_factory", "loss_outputs": "_factory",
    "output_dim": "_factory", "register_loss": "_factory", "registered_losses": "_factory",
    "resolve_loss_kind": "_factory", "scores_to_proba": "_factory", "unregister_loss": "_factory",
    "epoch_permutation": "_loop", "evaluate_outputs": "_loop", "fit": "_loop", "model_outputs": "_loop",
    "Progress": "_progress",
    "CallbackList": "_state", "Event": "_state", "State": "_state", "on": "_state",
    "check_callback": "_conformance", "check_loss": "_factory",
    "Session": "_session", "build_session": "_session", "resolve_device": "_session",
    "seed_everything": "_session", "finish": "_session",
    "NeuralRuns": "_neural", "Scoring": "_neural", "refuse_generative": "_neural", "scoring": "_neural",
    "index_run_dir": "_session", "TargetScaled": "_target", "RUN_FILES": "_runfiles",
    "load_pipeline": "_runfiles", "save_pipeline": "_runfiles", "read_run_recipe": "_runfiles",
    "read_model_meta": "_runfiles", "read_rows": "_runfiles", "plan_run_dir": "_runfiles",
    "write_csv": "_runfiles",
}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = sorted([*_LAZY, "Run", "RunKind", "as_recipe", "evaluate", "kind_of_dir", "kind_of_recipe", "load_model",
                  "predict", "prepare_run_data", "register_callbacks", "register_process_group",
                  "register_quantized_loader", "register_run_kind", "recipe_callbacks", "resolve", "resume",
                  "run_kinds", "train", "transform_model"])
