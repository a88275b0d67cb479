"""Privacy layer: PHI in free text, data regimes, small cells, spreadsheet formulas, HTML escaping.

- :func:`scan_phi` / :func:`redact_phi` find and redact identifiers in free-text notes (names,
  phones, emails, URLs, SSNs, record numbers, dates of birth, street addresses, ages over 89).
- :func:`check_regime` checks a visit table against its declared HIPAA regime (limited data set or
  Safe Harbor).
- :func:`suppress_small_cells` applies the CMS cell-size rule to a published table.
- :func:`neutralize_formulas` defuses spreadsheet formulas in exported text cells.
- :func:`escape_text` makes a string inert in HTML and template output.

No function here prints, logs or raises with a data value: errors name the column and the kind of
problem only.
"""

from __future__ import annotations

import html
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from outcomes._phi_patterns import (
    CLINICAL_ALLOWLIST,
    DETECTORS,
    KINDS,
    LABELS,
    Detector,
    address_ok,
    candidates,
    name_length,
    trigger_matrix,
)
from outcomes._suppression import check_suppression_args, complementary, count_matrix
from outcomes.errors import InputError

__all__ = [
    "PHI_KINDS",
    "scan_phi",
    "redact_phi",
    "check_regime",
    "REGIMES",
    "suppress_small_cells",
    "is_suppressed",
    "neutralize_formulas",
    "escape_text",
]

#: Kinds of identifier :func:`scan_phi` reports, and the label :func:`redact_phi` puts in place.
PHI_KINDS = LABELS

# Ties at the same start and length go to the more specific kind.
_PRIORITY = {
    k: i
    for i, k in enumerate(("ssn", "mrn", "dob", "email", "phone", "url", "address", "age", "name"))
}


# --------------------------------------------------------------------------------------------
# PHI scanning
# --------------------------------------------------------------------------------------------


_CUES = ("title", "strong", "weak")


def _span(det: Detector, m: re.Match[str]) -> tuple[int, int] | None:
    """The identifier's span in a detector match, after the allowlist check; None to drop it."""
    group = "v" if "v" in det.regex.groupindex else 0
    start, end = m.span(group)
    if det.mode == "plain":
        return start, end
    if det.mode == "address":
        return (start, end) if address_ok(m.group(group)) else None
    if det.mode == "post":  # a name before a verb: every word must be a name word
        words = m.group(group).split()
        return None if any(w.lower() in CLINICAL_ALLOWLIST for w in words) else (start, end)
    cue = det.mode if det.mode != "cue" else next(c for c in _CUES if m.group(c) is not None)
    length = name_length(m.group(group), cue)
    return (start, start + length) if length else None


def _resolve(hits: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Drop overlapping hits: the earliest, then longest, then most specific one wins."""
    hits.sort(key=lambda h: (h[0], h[0] - h[1], _PRIORITY[h[2]]))
    out: list[tuple[int, int, str]] = []
    last_end = -1
    for hit in hits:
        if hit[0] >= last_end:
            out.append(hit)
            last_end = hit[1]
    return out


_BY_KIND = {kind: tuple(d for d in DETECTORS if d.kind == kind) for kind in KINDS}


def _scan_text(text: str, kinds: Iterable[str] = KINDS) -> list[tuple[int, int, str]]:
    """All non-overlapping (start, end, kind) hits in one note, using the detectors of ``kinds``."""
    hits = []
    for kind in kinds:
        for det in _BY_KIND[kind]:
            for m in det.regex.finditer(text):
                span = _span(det, m)
                if span is not None and span[1] > span[0]:
                    hits.append((span[0], span[1], det.kind))
    return _resolve(hits)


def _arrow_strings(texts: pd.Series):
    """The one-chunk Arrow array behind a pyarrow-backed string Series, else None."""
    if not isinstance(texts.array, pd.arrays.ArrowStringArray):
        return None
    import pyarrow as pa

    array = pa.array(texts.array)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


class _Scan(NamedTuple):
    """One scan: ``codes`` maps rows to ``values`` (the distinct notes scanned; -1 = missing
    or not scanned), ``hits`` maps a note's text to its hits; ``units``/``row_unit`` are the
    factorised values when the input was not Arrow-backed text (else None)."""

    codes: np.ndarray
    values: list[str]
    hits: dict[str, list[tuple[int, int, str]]]
    units: list[str] | None
    row_unit: np.ndarray | None


def _units(texts: pd.Series):
    """``(row_unit, units)``: what the pre-filter runs over, and each row's unit (-1 = missing).

    Arrow-backed strings: the rows themselves (``row_unit`` None). Anything else: the distinct
    values of ``pandas.factorize`` as ``str``.
    """
    arrow = _arrow_strings(texts)
    if arrow is not None:
        return None, arrow
    codes, uniques = pd.factorize(texts, use_na_sentinel=True)
    return codes, [v if isinstance(v, str) else str(v) for v in np.asarray(uniques, dtype=object)]


def _scan(texts: pd.Series, prefilter: bool = True) -> _Scan:
    """Scan each distinct candidate note once (see :func:`scan_phi`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not isinstance(texts, pd.Series):
        raise InputError("texts: expected a pandas Series of free-text notes")
    row_unit, units = _units(texts)
    try:
        arrow = units if row_unit is None else pa.array(units, type=pa.large_string())
    except (pa.ArrowInvalid, UnicodeError):  # a lone surrogate: every value is scanned
        arrow = None
    if arrow is None:
        per_unit, values, distinct = np.arange(len(units)), units, units
    else:
        pos = candidates(arrow, prefilter)
        encoded = pc.dictionary_encode(arrow.take(pos))
        distinct = encoded.dictionary
        values = distinct.to_pylist()
        per_unit = np.full(len(arrow), -1, dtype=np.intp)
        per_unit[pos] = encoded.indices.to_numpy(zero_copy_only=False)
    kinds = trigger_matrix(distinct, prefilter)
    hits = {}
    for u in np.flatnonzero(kinds.any(axis=1)):
        found = _scan_text(values[u], [KINDS[j] for j in np.flatnonzero(kinds[u])])
        if found:
            hits[values[u]] = found
    if row_unit is None:
        return _Scan(per_unit, values, hits, None, None)
    codes = np.append(per_unit, -1)[row_unit]  # row_unit -1 (missing) takes the last slot
    return _Scan(codes, values, hits, units, row_unit)


def _scan_unique(texts: pd.Series, prefilter: bool = True):
    """``(codes, values, hits)`` of :func:`_scan`."""
    scan = _scan(texts, prefilter)
    return scan.codes, scan.values, scan.hits


def scan_phi(texts: pd.Series, *, include_values: bool = False) -> pd.DataFrame:
    """Find identifiers (PHI) in free-text notes.

    Parameters
    ----------
    texts : pandas.Series
        Free-text values (e.g. ``technique_notes``); missing values are skipped, other non-strings
        are scanned as ``str(value)``.
    include_values : bool, default False
        Add a ``value`` column with the matched text. **For tests only**: values must never reach
        logs, errors or reports.

    Returns
    -------
    pandas.DataFrame
        One row per hit, ordered by row then position, with columns ``row`` (index label of
        ``texts``), ``kind`` (one of :data:`PHI_KINDS`), ``start``, ``end`` (character offsets,
        end exclusive), and ``value`` only when asked.

    Notes
    -----
    One RE2 pattern, the union of a cheap trigger per kind (pyarrow, vectorised over the rows
    of Arrow-backed text, else over the distinct values of ``pandas.factorize``), selects the
    notes that could hold any identifier; every non-ASCII note is selected too, because RE2's
    ``\\b``, ``\\d`` and ``\\s`` are ASCII-only. Each distinct selected note is scanned once, by
    the Python detectors in :mod:`outcomes._phi_patterns` of the kinds whose trigger it hits.
    Overlapping hits are resolved earliest-then-longest.
    Names are found after a cue (title, patient or relative keyword, ``per``/``with`` + common
    first name) or as a common first name + capitalised word; capitalised clinical words on an
    allowlist ("Left AIC", "Postural Restoration", "Patient tolerated") are never names.
    Recall and false-positive rates per kind on a labelled synthetic corpus are printed by
    ``benchmarks/phi_scan.py`` and asserted (on another seed) in ``tests/test_privacy.py``.
    """
    codes, values, hits = _scan_unique(texts)
    return _hits_frame(texts, codes, values, hits, include_values)


def _hits_frame(texts, codes, values, hits, include_values) -> pd.DataFrame:
    columns = ["row", "kind", "start", "end"] + (["value"] if include_values else [])
    per_note = [(u, k, s, e) for u, text in enumerate(values) for s, e, k in hits.get(text, ())]
    if not per_note:
        return pd.DataFrame(
            {
                c: pd.Series(dtype=object if c in ("row", "kind", "value") else "int64")
                for c in columns
            }
        )
    note_hits = pd.DataFrame(per_note, columns=["code", "kind", "start", "end"])
    positions = np.flatnonzero(np.isin(codes, note_hits["code"].to_numpy()))
    rows = pd.DataFrame({"pos": positions, "code": codes[positions]})
    out = rows.merge(note_hits, on="code").sort_values(["pos", "start"], kind="stable")
    out.insert(0, "row", texts.index.to_numpy()[out["pos"].to_numpy()])
    if include_values:
        out["value"] = [
            values[c][s:e] for c, s, e in zip(out["code"], out["start"], out["end"], strict=True)
        ]
    return out[columns].reset_index(drop=True)


def _redact_text(text: str, found: list[tuple[int, int, str]]) -> str:
    parts, last = [], 0
    for start, end, kind in found:
        parts.append(text[last:start])
        parts.append(LABELS[kind])
        last = end
    parts.append(text[last:])
    return "".join(parts)


def redact_phi(texts: pd.Series) -> tuple[pd.Series, dict[str, int]]:
    """Replace identifiers in free-text notes by labels such as ``[NAME]`` and count them.

    Parameters
    ----------
    texts : pandas.Series
        Free-text values; missing values stay missing.

    Returns
    -------
    redacted : pandas.Series
        Same index and name as ``texts``; each hit replaced by its label (``[NAME]``,
        ``[PHONE]``, ``[EMAIL]``, ``[URL]``, ``[SSN]``, ``[MRN]``, ``[DOB]``, ``[ADDRESS]``,
        ``[AGE>89]``). Notes without hits are returned unchanged. The input is not modified.
    counts : dict of str to int
        Hits by kind over *rows* (a note repeated in 10 rows counts 10 times); every kind is a key.

    Notes
    -----
    Detection is :func:`scan_phi`'s; each distinct note with a trigger hit is scanned and
    redacted once and the result is broadcast back to the rows. Arrow-backed text is filtered
    and copied in Arrow, so rows without identifiers never become Python objects.
    """
    scan = _scan(texts)
    codes, values, hits = scan.codes, scan.values, scan.hits
    hit_codes = [u for u, text in enumerate(values) if text in hits]
    has_hit = np.zeros(len(values) + 1, dtype=bool)  # last slot: codes of -1
    has_hit[hit_codes] = True
    rows = np.flatnonzero(has_hit[codes])
    freq = np.bincount(codes[rows], minlength=len(values))
    counts = dict.fromkeys(KINDS, 0)
    redacted = {}
    for u in hit_codes:
        found = hits[values[u]]
        redacted[u] = _redact_text(values[u], found)
        for _, _, kind in found:
            counts[kind] += int(freq[u])
    if scan.units is None:  # Arrow-backed text: copied in Arrow
        return _replace_rows(texts, rows, [redacted[u] for u in codes[rows]]), counts
    by_text = {values[u]: redacted[u] for u in hit_codes}
    out = np.asarray(scan.units + [None], dtype=object)  # last slot: missing
    for i in np.unique(scan.row_unit[rows]):
        out[i] = by_text[scan.units[i]]
    unit = np.where(scan.row_unit >= 0, scan.row_unit, len(scan.units))
    result = pd.Series(out[unit], index=texts.index, name=texts.name, dtype=object)
    result = result.where(scan.row_unit >= 0, texts)  # keep the input's own missing marker
    if isinstance(texts.dtype, pd.StringDtype):
        result = result.astype(texts.dtype)
    return result, counts


def _replace_rows(texts: pd.Series, rows: np.ndarray, new: list[str]) -> pd.Series:
    """A copy of Arrow-backed ``texts`` with ``new`` at positions ``rows`` (``replace_with_mask``)."""
    if len(rows) == 0:
        return texts.copy()
    import pyarrow as pa
    import pyarrow.compute as pc

    arrow = _arrow_strings(texts)
    mask = np.zeros(len(texts), dtype=bool)
    mask[rows] = True
    out = pc.replace_with_mask(arrow, pa.array(mask), pa.array(new, type=arrow.type))
    result = pd.Series(type(texts.array)(out), index=texts.index, name=texts.name)
    return result if result.dtype == texts.dtype else result.astype(texts.dtype)


# --------------------------------------------------------------------------------------------
# Export and HTML safety
# --------------------------------------------------------------------------------------------

#: Leading characters that make a spreadsheet treat a cell as a formula (OWASP CSV injection),
#: plus their full-width forms, which some spreadsheet locales also accept.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _neutralize(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def neutralize_formulas(data: pd.DataFrame) -> pd.DataFrame:
    """Defuse spreadsheet formulas in the text cells of a table about to be exported.

    Parameters
    ----------
    data : pandas.DataFrame
        The table to write to CSV or XLSX. Not modified.

    Returns
    -------
    pandas.DataFrame
        A copy in which every string cell (and string column label) starting with ``=``, ``+``,
        ``-``, ``@``, a tab or a carriage return (or a full-width ``＝ ＋ － ＠``) is prefixed with
        a single quote ``'``. Numeric columns are untouched, so a negative number stored as a
        number stays a number; a negative number stored as *text* is quoted, as OWASP advises.

    Notes
    -----
    Follows the OWASP "CSV Injection" guidance: prefix the cell with ``'`` so the spreadsheet
    shows it as text. Only object, string and categorical columns are inspected; a categorical
    column comes back as ``object``.
    """
    out = data.copy()
    for column in out.columns:
        col = out[column]
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.astype(object)
        elif not (col.dtype == object or isinstance(col.dtype, pd.StringDtype)):
            continue
        fixed = [_neutralize(v) for v in col.tolist()]
        if fixed != col.tolist() or col is not out[column]:
            out[column] = pd.Series(fixed, index=out.index, dtype=col.dtype)
    out.columns = [_neutralize(c) for c in out.columns]
    return out


def escape_text(value: Any) -> str:
    """Make a value inert in HTML and in Jinja-style templates.

    Parameters
    ----------
    value : object
        Anything; ``None`` and missing values become ``""``, others ``str(value)``.

    Returns
    -------
    str
        ``html.escape(text, quote=True)`` with ``{`` and ``}`` also replaced by ``&#123;`` and
        ``&#125;``, so ``<script>``, ``<img onerror=...>``, ``{{7*7}}`` and ``{% ... %}`` render
        as literal text and are never evaluated by a template engine.
    """
    if value is None or (not isinstance(value, str) and _is_missing(value)):
        return ""
    text = html.escape(str(value), quote=True)
    return text.replace("{", "&#123;").replace("}", "&#125;")


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------------------------
# Data regimes
# --------------------------------------------------------------------------------------------

#: Regimes a profile can declare. A limited data set may keep day-level dates, 5-digit ZIP codes
#: and exact ages; Safe Harbor data may keep years only, 3-digit ZIPs and ages top-coded at 90.
REGIMES = ("limited_data_set", "safe_harbor")

#: 3-digit ZIP prefixes with 20,000 people or fewer (HHS de-identification guidance, 2000 census):
#: under Safe Harbor they must be reported as ``000``.
RESTRICTED_ZIP3 = frozenset(
    "036 059 063 102 203 556 692 790 821 823 830 831 878 879 884 890 893".split()
)
_ZIP_COLUMN = re.compile(r"^(zip|zipcode|zip5|zip3|postal|postalcode|postcode)$")
_ZIP5 = re.compile(r"^\d{5}(-?\d{4})?$")
_YEAR_ONLY = re.compile(r"^\d{4}(\.0)?$")
#: Age at or above which Safe Harbor requires aggregation; the schema top-codes ages at 90, so
#: 90 itself is read as the "90 or older" category and only larger values are rejected.
_AGE_TOP_CODE = 90


def _flat(column: Hashable) -> str:
    return re.sub(r"[^a-z0-9]", "", str(column).lower())


def _identifier_problems(data: pd.DataFrame) -> list[str]:
    from outcomes.schema import is_direct_identifier  # pandera: import only when needed

    return [
        f"column {col!r} is a direct identifier; remove it from the export"
        for col in data.columns
        if is_direct_identifier(col)
    ]


def _is_date_column(column: Hashable, values: pd.Series) -> bool:
    name = str(column).lower()
    return (
        pd.api.types.is_datetime64_any_dtype(values)
        or name == "date"
        or name.endswith(("_date", "date", "_dt"))
    )


def _has_day_precision(values: pd.Series) -> bool:
    """True when a date column holds anything finer than a year."""
    present = values.dropna()
    if present.empty:
        return False
    if pd.api.types.is_datetime64_any_dtype(present):
        return bool(((present.dt.month != 1) | (present.dt.day != 1)).any())
    if pd.api.types.is_numeric_dtype(present):
        return bool((present > 9999).any())  # years are 4 digits; anything else is a serial date
    text = present.astype(str).str.strip()
    return not bool(text.str.match(_YEAR_ONLY).all())


def _safe_harbor_problems(data: pd.DataFrame) -> list[str]:
    problems = []
    for column in data.columns:
        values = data[column]
        if _is_date_column(column, values) and _has_day_precision(values):
            problems.append(
                f"column {column!r} has dates finer than a year; Safe Harbor allows the year only"
            )
        elif _ZIP_COLUMN.match(_flat(column)):
            problems.extend(_zip_problems(column, values))
        elif _flat(column) == "age":
            ages = pd.to_numeric(values, errors="coerce")
            if bool((ages > _AGE_TOP_CODE).any()):
                problems.append(
                    f"column {column!r} has ages over 89; Safe Harbor requires them top-coded at 90"
                )
    return problems


def _zip_problems(column: Hashable, values: pd.Series) -> list[str]:
    text = values.dropna().astype(str).str.strip()
    if text.str.match(_ZIP5).any():
        return [f"column {column!r} has 5-digit ZIP codes; Safe Harbor allows the first 3 digits"]
    if text.str[:3].isin(RESTRICTED_ZIP3).any():
        return [
            f"column {column!r} has 3-digit ZIP prefixes of areas under 20,000 people; "
            "Safe Harbor requires 000 for them"
        ]
    return []


def check_regime(
    data: pd.DataFrame, regime: str = "limited_data_set", *, strict: bool = False
) -> list[str]:
    """Check a visit table against the HIPAA data regime its profile declares.

    Parameters
    ----------
    data : pandas.DataFrame
        Visits with canonical column names (:data:`outcomes.schema.VISIT_COLUMNS`), possibly a
        ``zip`` column. Not modified.
    regime : {"limited_data_set", "safe_harbor"}
        ``limited_data_set`` (default) allows day-level dates, 5-digit ZIPs and exact ages;
        ``safe_harbor`` allows none of them.
    strict : bool, default False
        Raise :class:`~outcomes.errors.InputError` listing every problem instead of returning them.

    Returns
    -------
    list of str
        One message per problem, naming the column and never a value; empty when the table
        fits the regime.

    Notes
    -----
    Under both regimes a column whose name is a direct identifier
    (:func:`outcomes.schema.is_direct_identifier`) is a problem. Under Safe Harbor
    (45 CFR 164.514(b)(2)): any date column holding more than a year (a datetime that is not
    1 January, or text that is not a 4-digit year); a ZIP column holding 5-digit codes or one of
    the 17 restricted 3-digit prefixes; an ``age`` over 90 (the schema top-codes ages at 90, so
    90 is read as "90 or older").
    """
    if regime not in REGIMES:
        raise InputError(f"regime: unknown data regime {regime!r}; use one of {', '.join(REGIMES)}")
    problems = _identifier_problems(data)
    if regime == "safe_harbor":
        problems += _safe_harbor_problems(data)
    if strict and problems:
        raise InputError(f"data does not fit the {regime} regime: " + "; ".join(problems))
    return problems


# --------------------------------------------------------------------------------------------
# Small-cell suppression
# --------------------------------------------------------------------------------------------

#: The label a suppressed cell shows.
SUPPRESSED = "<11"


def is_suppressed(value: Any, label: str = SUPPRESSED) -> bool:
    """True when a display cell was suppressed by :func:`suppress_small_cells`."""
    return isinstance(value, str) and value == label


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
    out = table.copy()
    for column in counts:
        for target in [column, *derived.get(column, [])]:
            shown = out[target].astype(object)
            out[target] = shown.mask(hidden[column].to_numpy(), label)
    return out
