"""Exception types of the toolkit.

Every error a user can cause is an :class:`OutcomesError`. The CLI turns them into one line on
stderr starting ``error:`` and exit code 2; any other exception is a bug in the toolkit.
Messages name the file, row, column or parameter and say what to do. They never echo data
values that could identify a patient.
"""

from __future__ import annotations

__all__ = [
    "OutcomesError",
    "InputError",
    "ProfileError",
    "StoreError",
    "StoreBusyError",
    "ModelError",
    "ConvergenceError",
    "ReportError",
]


class OutcomesError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class InputError(OutcomesError):
    """A whole export file is rejected (missing column, identifier column, bad encoding...)."""


class ProfileError(OutcomesError):
    """An EMR profile file is malformed or inconsistent."""


class StoreError(OutcomesError):
    """The DuckDB store is missing, corrupt or of an unknown version."""


class StoreBusyError(StoreError):
    """Another process holds the store or report folder; try again when it finishes."""


class ModelError(OutcomesError):
    """A model cannot be fitted to the data given (too few rows, a constant column...)."""


class ConvergenceError(ModelError):
    """No optimizer reached a converged fit; the result would not be an answer."""


class ReportError(OutcomesError):
    """A report could not be rendered; names the notebook and cell."""
