"""Row-level parsing and validation of a visit export: clean rows, quarantined rows, counts.

DataFrame in, new DataFrames out; nothing here touches files or the store. The input is the export
as text (canonical column names, one string per cell, index = the row number a user would see in
a spreadsheet). Every row ends up in exactly one of: the clean visit table, the quarantine (with a
reason code), the exact-duplicate count or the blank-row count.

Reason codes
------------
``totals_row``, ``missing_key``, ``missing_value``, ``bad_date``, ``impossible_date``,
``future_date``, ``bad_visit_type``, ``score_not_numeric``, ``score_not_integer``,
``score_out_of_range``, ``bad_value``, ``before_intake``, ``conflicting_duplicate`` (and, from
:mod:`outcomes.ingest`, ``ragged_row``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from outcomes.instruments import INSTRUMENTS
from outcomes.schema import ID_COLUMNS, SCORE_COLUMNS, VISIT_COLUMNS, VISIT_TYPES

__all__ = [
    "DEFAULT_MISSING",
    "EARLIEST_DATE",
    "CleanResult",
    "clean_visits",
    "reconcile_visits",
    "normalize_ids",
    "fingerprint_rows",
    "quarantine_frame",
]

#: Score-cell texts that mean "not recorded" unless a profile says otherwise (case-insensitive).
DEFAULT_MISSING = ("", "N/A", "NA")
#: Visits dated before this are implausible for an EMR export (Excel serial 0 is 1899-12-30).
EARLIEST_DATE = pd.Timestamp("1970-01-01")

# zero-width space/joiners, word joiner, BOM, soft hyphen: invisible, never part of an ID
_INVISIBLE = "[\u200b\u200c\u200d\u2060\ufeff\u00ad]"
# ASCII and Unicode spaces (NBSP, thin, ideographic...) trimmed from both ends of every cell
_SPACE = "[\\s\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_TOTALS = r"(?i)^(?:grand\s*)?(?:totals?|sum|subtotals?)\b"
_NUMBER = r"[+-]?(\d+(\.\d*)?|\.\d+)"
_TRUE = ("1", "1.0", "true", "t", "yes", "y")
_FALSE = ("0", "0.0", "false", "f", "no", "n")
_BOOL_COLUMNS = ("prior_pt", "prior_injection", "surgery_recommended")
_STRING_COLUMNS = ("visit_id", "patient_id", "clinic_id", "therapist_id", "visit_type",
                   "cpt_codes", "icd10", "technique_notes", "sex", "payer")
_STR = pd.StringDtype("pyarrow")


@dataclass
class CleanResult:
    """What :func:`clean_visits` returns.

    Attributes
    ----------
    visits : DataFrame
        Clean rows, columns :data:`~outcomes.schema.VISIT_COLUMNS`, index = row numbers.
    quarantine : DataFrame
        ``row_number, visit_id, reason_code, reason_text, raw_row`` (raw row as JSON).
    n_blank, n_duplicate : int
        Blank rows skipped; exact duplicates dropped (one copy kept).
    warnings : dict
        Counts of values changed but kept (``age_top_coded``).
    """

    visits: pd.DataFrame
    quarantine: pd.DataFrame
    n_blank: int = 0
    n_duplicate: int = 0
    warnings: dict[str, int] = field(default_factory=dict)


def normalize_ids(values: pd.Series) -> pd.Series:
    """Remove invisible characters and trim whitespace (incl. NBSP) so joins work.

    Zero-width characters and BOMs are removed anywhere; spaces only at both ends.
    Returns a new ``string[pyarrow]`` Series; empty strings stay empty.
    """
    text = values.astype(_STR).str.replace(_INVISIBLE, "", regex=True)
    return text.str.replace(f"^{_SPACE}+|{_SPACE}+$", "", regex=True)


class _Flags:
    """First reason per row, in the order checks run; later checks never overwrite."""

    def __init__(self, index: pd.Index) -> None:
        self.code = pd.Series(pd.NA, index=index, dtype=object)
        self.text = pd.Series(pd.NA, index=index, dtype=object)

    def add(self, mask: pd.Series, code: str, text: str) -> None:
        mask = mask.fillna(False).astype(bool) & self.code.isna()
        self.code[mask] = code
        self.text[mask] = text

    @property
    def ok(self) -> pd.Series:
        return self.code.isna()


def clean_visits(
    data: pd.DataFrame,
    *,
    date_format: str = "%Y-%m-%d",
    decimal: str = ".",
    missing_values: tuple[str, ...] | list[str] = DEFAULT_MISSING,
    value_map: dict[str, dict[str, str]] | None = None,
    today: pd.Timestamp | str | None = None,
    known_evaluations: pd.Series | None = None,
    gap_days: int = 60,
) -> CleanResult:
    """Parse and validate export rows; split them into clean, quarantined, duplicate, blank.

    Parameters
    ----------
    data : DataFrame
        The export as text: canonical column names (optional columns may be absent), one string
        per cell, index = row numbers. Not modified.
    date_format : str
        ``strftime`` format of ``visit_date`` (default ISO), or ``excel_serial`` /
        ``excel_1904`` for Excel day numbers. Nothing else is tried: no per-row guessing.
    decimal : str
        ``"."`` or ``","``: the decimal mark of numeric cells.
    missing_values : sequence of str
        Cell texts meaning "not recorded" in numeric columns (case-insensitive).
    value_map : dict, optional
        Per column, exact text -> canonical text (e.g. ``{"visit_type": {"IE": "evaluation"}}``).
    today : date, optional
        The ingest date; later visits are ``future_date`` (default: today, UTC).
    known_evaluations : Series, optional
        Earliest evaluation date per patient already in the store (index patient_id).
    gap_days : int
        A non-evaluation visit up to this many days before the patient's first evaluation is
        ``before_intake`` (it would fall inside that episode but precede its start).

    Returns
    -------
    CleanResult

    Notes
    -----
    Invariant: ``len(data) == len(visits) + len(quarantine) + n_duplicate + n_blank``.
    Exact duplicates are rows equal in every canonical column after parsing (``5`` and ``5.0``
    are equal); rows sharing a ``visit_id`` with different values are all quarantined as
    ``conflicting_duplicate``.
    """
    text = _normalise(data, value_map or {})
    blank = (text.fillna("") == "").all(axis=1)
    text = text[~blank]
    flags = _Flags(text.index)
    typed, warnings = _parse(text, flags, date_format, decimal, missing_values, today)
    _flag_before_intake(typed, flags, known_evaluations, gap_days)
    dup, conflict = _duplicates(typed, flags.ok)
    flags.add(conflict, "conflicting_duplicate",
              "visit_id appears on several rows with different values in this file")
    flags.add(_shadowed(typed, flags), "conflicting_duplicate",
              "visit_id also appears on a quarantined row of this file")
    dup &= flags.ok
    keep = flags.ok & ~dup
    return CleanResult(
        visits=typed[keep],
        quarantine=quarantine_frame(data, flags.code.dropna().index, flags.code, flags.text),
        n_blank=int(blank.sum()),
        n_duplicate=int(dup.sum()),
        warnings=warnings,
    )


def _normalise(data: pd.DataFrame, value_map: dict[str, dict[str, str]]) -> pd.DataFrame:
    """Canonical columns as trimmed text (absent optional columns become NA)."""
    out = pd.DataFrame(index=data.index)
    for col in VISIT_COLUMNS:
        if col not in data:
            out[col] = pd.Series(pd.NA, index=data.index, dtype=_STR)
            continue
        values = normalize_ids(data[col])
        if col in value_map:
            values = values.replace(value_map[col])
        out[col] = values
    return out


def _parse(text: pd.DataFrame, flags: _Flags, date_format: str, decimal: str,
           missing_values, today) -> tuple[pd.DataFrame, dict[str, int]]:
    """Run the row checks in order; return typed columns and warning counts."""
    _flag_totals(text, flags)
    for col in ID_COLUMNS:
        flags.add(_empty(text[col]), "missing_key", f"missing {col}")
    dates = parse_dates(text["visit_date"], date_format, flags, today)
    flags.add(_empty(text["icd10"]), "missing_value", "missing icd10")
    visit_type = text["visit_type"].str.lower()
    flags.add(~visit_type.isin(VISIT_TYPES).fillna(False), "bad_visit_type",
              f"visit_type is not one of {', '.join(VISIT_TYPES)}")
    missing = {m.strip().lower() for m in missing_values}
    typed = pd.DataFrame(index=text.index)
    for col in _STRING_COLUMNS:
        typed[col] = text[col].mask(_empty(text[col]))
    typed["visit_type"] = visit_type
    typed["visit_date"] = dates
    for col in SCORE_COLUMNS:
        typed[col] = _parse_score(text[col], col, decimal, missing, flags)
    warnings = _parse_covariates(text, typed, decimal, missing, flags)
    return typed[list(VISIT_COLUMNS)], warnings


def _empty(values: pd.Series) -> pd.Series:
    return values.isna() | (values == "")


def _flag_totals(text: pd.DataFrame, flags: _Flags) -> None:
    """Rows whose key cells read like ``Total`` / ``Grand total`` / ``Sum``."""
    hit = pd.Series(False, index=text.index)
    for col in ("visit_id", "patient_id", "clinic_id", "therapist_id"):
        hit |= text[col].str.contains(_TOTALS, regex=True).fillna(False).astype(bool)
    flags.add(hit, "totals_row", "a totals/summary row, not a visit")


def _date_shape(date_format: str) -> str:
    """A regex for the *shape* of dates in ``date_format`` (tells bad from impossible)."""
    parts = {"%Y": r"\d{4}", "%y": r"\d{2}", "%m": r"\d{1,2}", "%d": r"\d{1,2}",
             "%b": r"[A-Za-z]{3}", "%B": r"[A-Za-z]+", "%H": r"\d{1,2}", "%M": r"\d{2}",
             "%S": r"\d{2}", "%j": r"\d{1,3}"}
    pattern = re.escape(date_format)
    for key, rx in parts.items():
        pattern = pattern.replace(re.escape(key), rx)
    return pattern


def parse_dates(values: pd.Series, date_format: str, flags: _Flags,
                today: pd.Timestamp | str | None = None) -> pd.Series:
    """Parse dates exactly as declared; flag bad, impossible and future ones.

    ``excel_serial`` counts days from 1899-12-30 (Excel's 1900 system, including its phantom
    1900-02-29); ``excel_1904`` from 1904-01-01.
    """
    present = ~_empty(values)
    if date_format in ("excel_serial", "excel_1904"):
        origin = "1899-12-30" if date_format == "excel_serial" else "1904-01-01"
        shape = values.str.fullmatch(r"\d+(\.\d+)?").fillna(False).astype(bool)
        days = pd.to_numeric(values.where(shape), errors="coerce").astype("float64")
        parsed = pd.to_datetime(np.floor(days), unit="D", origin=origin, errors="coerce")
        parsed = pd.Series(parsed, index=values.index)
    else:
        shape = values.str.fullmatch(_date_shape(date_format)).fillna(False).astype(bool)
        parsed = pd.to_datetime(values.where(shape).astype(object), format=date_format,
                                errors="coerce")
    parsed = parsed.astype("datetime64[ns]")
    flags.add(~present, "bad_date", "missing visit_date")
    flags.add(~shape, "bad_date", f"visit_date does not match the declared format {date_format}")
    flags.add(parsed.isna(), "impossible_date", "visit_date is not a real calendar date")
    flags.add(parsed < EARLIEST_DATE, "impossible_date",
              f"visit_date before {EARLIEST_DATE.date()}")
    limit = pd.Timestamp(today) if today is not None else pd.Timestamp.now(tz="UTC")
    limit = limit.tz_localize(None) if limit.tzinfo else limit
    flags.add(parsed > limit.normalize(), "future_date",
              f"visit_date after the ingest date {limit.date()}")
    return parsed


def _to_number(values: pd.Series, decimal: str, missing: set[str]) -> tuple[pd.Series, ...]:
    """(numbers as float64, recorded-missing mask, not-a-number mask, decimal-comma mask)."""
    is_missing = values.isna() | values.str.lower().isin(missing).fillna(False).astype(bool)
    text = values.mask(is_missing)
    comma = text.str.fullmatch(r"[+-]?\d+,\d+").fillna(False).astype(bool)
    if decimal == ",":
        text = text.mask(text.str.contains(".", regex=False).fillna(False).astype(bool), "x")
        text = text.str.replace(",", ".", regex=False)
    number = text.str.fullmatch(_NUMBER).fillna(False).astype(bool)
    out = pd.to_numeric(text.where(number), errors="coerce").astype("float64")
    bad = ~is_missing & ~number
    return out, is_missing, bad, comma & (decimal != ",")


def _parse_score(values: pd.Series, col: str, decimal: str, missing: set[str],
                 flags: _Flags) -> pd.Series:
    """One score column: explicit missing mappings only; range and integer checks."""
    out, _, bad, comma = _to_number(values, decimal, missing)
    inst = INSTRUMENTS[col]
    flags.add(bad & comma, "score_not_numeric",
              f"{col} has a decimal comma; declare decimal = \",\" in the profile if intended")
    flags.add(bad, "score_not_numeric",
              f"{col} is text, not a number (only the profile's missing_values map to missing)")
    flags.add((out < inst.low) | (out > inst.high), "score_out_of_range",
              f"{col} outside the {inst.name} range {inst.range_text}")
    if inst.integer:
        flags.add(out.notna() & (out % 1 != 0), "score_not_integer",
                  f"{col} must be a whole number ({inst.name} range {inst.range_text})")
    return out


def _parse_covariates(text: pd.DataFrame, typed: pd.DataFrame, decimal: str,
                      missing: set[str], flags: _Flags) -> dict[str, int]:
    """Age (top-coded at 90), symptom duration, sex, yes/no flags."""
    age, _, bad_age, _ = _to_number(text["age"], decimal, missing)
    flags.add(bad_age | (age < 0), "bad_value", "age is not a non-negative number")
    top = age > 90
    typed["age"] = age.mask(top, 90.0)
    weeks, _, bad_weeks, _ = _to_number(text["symptom_duration_weeks"], decimal, missing)
    flags.add(bad_weeks | (weeks < 0), "bad_value",
              "symptom_duration_weeks is not a non-negative number")
    typed["symptom_duration_weeks"] = weeks
    sex = text["sex"].str.upper().mask(_empty(text["sex"]))
    flags.add(sex.notna() & ~sex.isin(("F", "M", "X")).fillna(False), "bad_value",
              "sex is not F, M or X")
    typed["sex"] = sex
    for col in _BOOL_COLUMNS:
        low = text[col].str.lower()
        value = pd.Series(np.nan, index=text.index)
        value[low.isin(_TRUE).fillna(False).astype(bool)] = 1.0
        value[low.isin(_FALSE).fillna(False).astype(bool)] = 0.0
        recorded = ~(low.isna() | low.isin(missing).fillna(False).astype(bool))
        flags.add(recorded & value.isna(), "bad_value", f"{col} is not yes/no (1/0)")
        typed[col] = value
    return {"age_top_coded": int((top & flags.ok).sum())}


def _flag_before_intake(typed: pd.DataFrame, flags: _Flags,
                        known: pd.Series | None, gap_days: int) -> None:
    """Non-evaluation visits dated (within ``gap_days``) before the patient's first evaluation."""
    ok = flags.ok
    evals = typed.loc[ok & (typed["visit_type"] == "evaluation"), ["patient_id", "visit_date"]]
    first = evals.groupby("patient_id")["visit_date"].min()
    if known is not None and len(known):
        first = pd.concat([first, known.astype("datetime64[ns]")]).groupby(level=0).min()
    if first.empty:
        return
    first_eval = typed["patient_id"].map(first)
    lead = (first_eval - typed["visit_date"]).dt.days
    hit = ok & (typed["visit_type"] != "evaluation") & (lead > 0) & (lead <= gap_days)
    flags.add(hit, "before_intake", "visit dated before the patient's initial evaluation")


def _shadowed(typed: pd.DataFrame, flags: _Flags) -> pd.Series:
    """Clean rows sharing a visit_id with a row quarantined for its values (which is right?)."""
    keyed = flags.code.notna() & ~flags.code.isin(("missing_key", "totals_row"))
    bad_ids = typed.loc[keyed, "visit_id"].dropna()
    if bad_ids.empty:
        return pd.Series(False, index=typed.index)
    return flags.ok & typed["visit_id"].isin(bad_ids).fillna(False).astype(bool)


def fingerprint_rows(visits: pd.DataFrame) -> pd.Series:
    """A 64-bit hash of each row's canonical values (equal values -> equal hash)."""
    canon = pd.DataFrame(index=visits.index)
    for col in VISIT_COLUMNS:
        values = visits[col]
        if col == "visit_date":
            canon[col] = pd.to_datetime(values).astype("datetime64[ns]")
        elif col in _STRING_COLUMNS:
            canon[col] = values.astype(_STR)
        else:
            canon[col] = pd.to_numeric(values).astype("float64")
    return pd.util.hash_pandas_object(canon, index=False)


def _duplicates(typed: pd.DataFrame, ok: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(exact duplicates to drop, conflicting copies) among rows that passed the checks."""
    none = pd.Series(False, index=typed.index)
    vid = typed["visit_id"].where(ok)
    multi = vid.duplicated(keep=False) & ok
    if not multi.any():
        return none, none
    sub = pd.DataFrame({"vid": vid[multi], "fp": fingerprint_rows(typed[multi])})
    n_versions = sub.groupby("vid")["fp"].nunique()
    conflict = multi & vid.isin(n_versions.index[n_versions > 1]).fillna(False)
    dup = multi & ~conflict & vid.duplicated(keep="first")
    return dup.astype(bool), conflict.astype(bool)


@dataclass
class Reconciled:
    """How new clean rows relate to the store (see :func:`reconcile_visits`)."""

    load: pd.Series  # bool per new row: insert it
    duplicate: pd.Series  # bool: identical to a stored visit, counted, not loaded
    conflict: pd.Series  # bool: same visit_id as a stored/quarantined visit, different values
    withdraw: pd.DataFrame  # stored visits contradicted by this file (to move to quarantine)


def reconcile_visits(visits: pd.DataFrame, existing: pd.DataFrame,
                     conflicted: set[str] | None = None) -> Reconciled:
    """Compare new clean rows with the stored visits that share their ``visit_id``.

    Parameters
    ----------
    visits : DataFrame
        New clean rows (output of :func:`clean_visits`).
    existing : DataFrame
        Stored visits with the same ids (canonical columns).
    conflicted : set of str, optional
        Ids already quarantined as conflicting duplicates; new copies join them.

    Returns
    -------
    Reconciled
        Masks over ``visits`` (``load``, ``duplicate``, ``conflict``) and the stored rows to
        withdraw. Every new row is in exactly one mask.
    """
    vid = visits["visit_id"].astype(str)
    conflict = vid.isin(conflicted or set())
    duplicate = pd.Series(False, index=visits.index)
    withdraw = existing.iloc[0:0]
    if len(existing):
        stored = pd.Series(fingerprint_rows(existing).to_numpy(),
                           index=existing["visit_id"].astype(str).to_numpy())
        stored_fp = vid.map(stored)
        same = stored_fp.notna() & (stored_fp == fingerprint_rows(visits))
        differ = stored_fp.notna() & ~same
        duplicate = same & ~conflict
        conflict = conflict | differ
        withdraw = existing[existing["visit_id"].astype(str).isin(vid[differ])]
    return Reconciled(load=~(duplicate | conflict), duplicate=duplicate.astype(bool),
                      conflict=conflict.astype(bool), withdraw=withdraw)


def quarantine_frame(data: pd.DataFrame, index: pd.Index, code: pd.Series | str,
                     text: pd.Series | str, visit_ids: pd.Series | None = None) -> pd.DataFrame:
    """Quarantine rows for ``data.loc[index]``: raw row as JSON plus reason code and text."""
    raw = data.loc[index]
    if visit_ids is None:
        visit_ids = normalize_ids(raw["visit_id"]) if "visit_id" in raw else pd.Series(
            pd.NA, index=index, dtype=object)
    records = raw.astype(object).where(raw.notna(), None).to_dict("records")
    pick = (lambda s: s.loc[index].to_numpy()) if isinstance(code, pd.Series) else (
        lambda s: [s] * len(index))
    return pd.DataFrame({
        "row_number": np.asarray(index, dtype="int64"),
        "visit_id": pd.Series(visit_ids.loc[index].to_numpy(), dtype=object).replace("", None),
        "reason_code": pick(code),
        "reason_text": pick(text) if isinstance(text, pd.Series) else [text] * len(index),
        "raw_row": [json.dumps(r, ensure_ascii=False, default=str) for r in records],
    })
