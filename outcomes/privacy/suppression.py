"""The CMS small-cell rule for published tables: counts of 1-10 (and anything they can be derived
from) are shown as ``<11``; see :func:`suppress_small_cells`."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

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


# --------------------------------------------------------------------------------------------
# Small-cell suppression
# --------------------------------------------------------------------------------------------

#: The label a suppressed cell shows: a count of 1-10, or a statistic resting on 1-10 episodes.
SUPPRESSED = "<11"
#: The label of a cell withheld for another reason than its own size: hidden as a complement,
#: or a share whose complement (e.g. the non-responders) numbers 1-10.
WITHHELD = "*"
#: The footnote that explains :data:`WITHHELD` wherever it is shown.
WITHHELD_NOTE = ("* withheld so that a small count (1-10) cannot be worked out from it "
                 "and the figures shown beside it")


def is_suppressed(value: Any, label: str = SUPPRESSED) -> bool:
    """True when a display cell was suppressed by :func:`suppress_small_cells` (``label``),
    withheld (:data:`WITHHELD`) or replaced by a :func:`share_band`."""
    return isinstance(value, str) and (value in (label, WITHHELD) or value.startswith(
        (BAND_OVER, BAND_UNDER)))


#: Prefixes of a published band (see :func:`share_band`).
BAND_OVER, BAND_UNDER = "over ", "under "


def share_band(part: int, whole: int, threshold: int = 11, step: int = 10) -> str | None:
    """A safe band for the share ``part / whole`` withheld because ``part`` or ``whole - part``
    numbers 1 to ``threshold - 1``; None when no informative safe band exists.

    Parameters
    ----------
    part, whole : int
        The withheld share's numerator and denominator (e.g. responders and eligible).
    threshold : int, default 11
        Counts from 1 to ``threshold - 1`` are small.
    step : int, default 10
        Bands are whole multiples of ``step`` percentage points.

    Returns
    -------
    str or None
        ``"over X%"`` when the complement ``whole - part`` is small, ``"under X%"`` when
        ``part`` is; None when ``whole`` is itself small, when neither or both counts are
        small, or when the band would be ``over 0%`` / ``under 100%``.

    Notes
    -----
    With ``c = whole - part`` small, ``share >= (whole - (threshold - 1)) / whole``; the band
    publishes ``X = step * floor(100 (whole - threshold + 1) / (whole step))``. It is true for
    every ``c`` of 1 to ``threshold - 1`` and, read back, ``c <= whole (1 - X/100)`` allows every
    one of them: the band says no more than the ``<11`` it replaces, so no count of 1-10 can be
    derived from it even when ``whole`` is known.
    """
    small = threshold - 1
    if whole < threshold or (1 <= part <= small) == (1 <= whole - part <= small):
        return None  # the whole is small, or neither (or both) of the parts: no one-sided band
    bound = 100 * (whole - small) / whole
    x = int(step * np.floor(bound / step + 1e-9))
    if x <= 0:
        return None
    if whole - part <= small:
        return f"{BAND_OVER}{x}%"
    return f"{BAND_UNDER}{100 - x}%"


def _as_list(columns: str | Iterable[Hashable]) -> list[Hashable]:
    return [columns] if isinstance(columns, str) else list(columns)


def suppress_small_cells(
    table: pd.DataFrame,
    count_columns: str | Sequence[Hashable],
    *,
    derived: Mapping[Hashable, Sequence[Hashable]] | None = None,
    threshold: int = 11,
    label: str = SUPPRESSED,
    total_row: Hashable | None = None,
    total_column: Hashable | None = None,
    complement_label: str | None = None,
) -> pd.DataFrame:
    """Apply the CMS cell-size rule to a table about to be published.

    Parameters
    ----------
    table : pandas.DataFrame
        Aggregate table (one row per group). Not modified.
    count_columns : str or sequence
        Columns holding counts of patients or episodes.
    derived : mapping, optional
        For each count column, the columns computed from it (``{"n": ["pct_responder",
        "mean_change"]}``): they are hidden wherever their count is.
    threshold : int, default 11
        Counts from 1 to ``threshold - 1`` are hidden; 0 is shown as 0.
    label : str, default "<11"
        What a hidden cell shows.
    total_row : label, optional
        Index label of a row holding column totals of the count columns.
    total_column : label, optional
        Column holding, per row, the total of the other count columns (treated as a count
        column itself).

    Returns
    -------
    pandas.DataFrame
        A display copy: the count and derived columns become ``object`` columns whose hidden
        cells hold ``label``; every other cell keeps its value.

    Notes
    -----
    CMS cell-size suppression policy (CMS / ResDAC data use agreements): no cell with a value of
    1 to 10 may be displayed, nor any percentage, mean or other figure from which such a cell
    could be derived. Primary suppression hides counts ``1 <= n < threshold`` and their derived
    cells. Complementary suppression: when a group with a shown total (a column against
    ``total_row``, a row against ``total_column``) has exactly one hidden cell, the smallest
    shown non-zero cell of the group is hidden too (or the total, if nothing else is shown),
    repeated until stable, so no hidden count equals a total minus shown cells. A cell hidden
    as a complement shows ``label`` although its value may be 11 or more. Limits: only the
    totals named here are considered; a cell that another published table (or a margin not
    passed as ``total_row``/``total_column``) makes derivable is not detected.
    """
    counts = _as_list(count_columns)
    if total_column is not None and total_column not in counts:
        counts.append(total_column)
    derived = {k: _as_list(v) for k, v in (derived or {}).items()}
    check_suppression_args(table, counts, derived, threshold, total_row, total_column)
    values = count_matrix(table, counts)
    hidden = (values >= 1) & (values < threshold)
    hidden = complementary(values, hidden, total_row, total_column)
    small = ((values >= 1) & (values < threshold)).to_numpy()
    out = table.copy()
    other = label if complement_label is None else complement_label
    base: dict[Hashable, Hashable] = {}
    for column in counts:
        for target in derived.get(column, []):
            base.setdefault(target, column)
    # withheld first, so a cell whose own base count is small ends up reading `label`
    for own in (False, True):
        for column in counts:
            for target in [column, *derived.get(column, [])]:
                is_own = base.get(target, target) == column
                mask = hidden[column].to_numpy() & (small[:, counts.index(column)] if own
                                                    and is_own else not own)
                shown = out[target].astype(object)
                out[target] = shown.mask(mask, label if own else other)
    return out
