"""Data: sources (scikit-learn sets, CSV, numpy arrays, image folders, generated sequences, and
Python objects: arrays, DataFrames, torch Datasets),
checks with one-line errors, seeded splits, transforms fitted on the training rows, the
saved pipeline that re-applies them at predict time, augmentation and batching.
"""
from ._batches import iterate_batches
from ._info import DataInfo, InputRows
from ._pipeline import Pipeline
from ._prepare import Prepared, labelled_rows, prepare
from ._python import prepare_python, rows_from_python

__all__ = ["prepare", "Prepared", "DataInfo", "InputRows", "Pipeline", "iterate_batches", "prepare_python",
           "rows_from_python"]
