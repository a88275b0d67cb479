"""Helpers of :func:`outcomes.privacy.suppress_small_cells`: argument checks, complementary cells."""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pandas as pd

from outcomes.errors import InputError


def check_suppression_args(table, counts, derived, threshold, total_row, total_column) -> None:
    missing = [
        c for c in [*counts, *(d for ds in derived.values() for d in ds)] if c not in table.columns
    ]
    if missing:
        raise InputError(f"suppress_small_cells: column {missing[0]!r} is not in the table")
    if unknown := [c for c in derived if c not in counts]:
        raise InputError(f"derived: {unknown[0]!r} is not one of count_columns")
    if not isinstance(threshold, int | np.integer) or threshold < 1:
        raise InputError("threshold: must be a positive integer (the CMS rule uses 11)")
    if total_row is not None and total_row not in table.index:
        raise InputError(f"total_row: {total_row!r} is not in the table index")
    if not table.index.is_unique:
        raise InputError("suppress_small_cells: the table index must be unique")


def count_matrix(table: pd.DataFrame, counts: list[Hashable]) -> pd.DataFrame:
    values = table[counts].apply(pd.to_numeric, errors="coerce")
    bad = values.isna() & table[counts].notna()
    if bad.any().any():
        column = bad.any()[bad.any()].index[0]
        raise InputError(f"count column {column!r} holds non-numeric values")
    if (values < 0).any().any():
        column = (values < 0).any()[(values < 0).any()].index[0]
        raise InputError(f"count column {column!r} holds negative counts")
    return values


def _complement(values: np.ndarray, hidden: np.ndarray, total: int) -> int | None:
    """Position of the cell to hide so a group's one hidden cell cannot be recovered from its
    total: the smallest shown non-zero member, else any shown member, else the total itself."""
    members = np.arange(len(values)) != total
    if hidden[total] or int(hidden[members].sum()) != 1:
        return None
    candidates = members & ~hidden & ~np.isnan(values)
    if not candidates.any():
        return total
    if (candidates & (values > 0)).any():
        candidates &= values > 0
    positions = np.flatnonzero(candidates)
    return int(positions[np.argmin(values[positions])])  # first of equal minima: stable


def complementary(values: pd.DataFrame, hidden: pd.DataFrame, total_row, total_column):
    """Hide further cells until no group with a shown total has exactly one hidden cell."""
    vals, mask = values.to_numpy(dtype=float), hidden.to_numpy(dtype=bool).copy()
    r = None if total_row is None else values.index.get_loc(total_row)
    c = None if total_column is None else values.columns.get_loc(total_column)
    for _ in range(mask.size + 1):
        changed = False
        for j in range(mask.shape[1]) if r is not None else ():
            i = _complement(vals[:, j], mask[:, j], r)
            if i is not None:
                mask[i, j] = changed = True
        for i in range(mask.shape[0]) if c is not None else ():
            j = _complement(vals[i, :], mask[i, :], c)
            if j is not None:
                mask[i, j] = changed = True
        if not changed:
            break
    return pd.DataFrame(mask, index=hidden.index, columns=hidden.columns)
