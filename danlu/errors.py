"""Errors a user can cause and fix.

Every error that comes from the user's input (a recipe, a data file, a run directory) is a
``UserError``: the command line prints its one-line message and exits with code 2. Anything
else is a bug in danlu and exits with code 1 and a traceback.
"""
from __future__ import annotations

import difflib


class UserError(Exception):
    """Something the user gave us is wrong; the message says what, where and how to fix it."""

    exit_code = 2


class RecipeError(UserError):
    """A recipe key is unknown, has the wrong type or is out of range."""


class DataError(UserError):
    """The data cannot be used as asked: missing values, bad labels, empty split, ..."""


class CheckpointError(UserError):
    """A checkpoint or run directory is missing, truncated, tampered with or of a refused format."""


def did_you_mean(word: str, options) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
