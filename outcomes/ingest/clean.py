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
    "json_records",
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


def _arrow(values: pd.Series):
    """The Arrow string data behind a Series (zero-copy for ``string[pyarrow]``)."""
    return values.astype(_STR).array.__arrow_array__()


def normalize_ids(values: pd.Series) -> pd.Series:
    """Remove invisible characters and trim whitespace (incl. NBSP) so joins work.

    Zero-width characters and BOMs are removed anywhere; Unicode whitespace only at both ends.
    Returns a new ``string[pyarrow]`` Series; empty strings stay empty.

    Notes
    -----
    Vectorised with Arrow (RE2 + ``utf8_trim_whitespace``, which trims every Unicode space
    separator: NBSP, thin and ideographic spaces). The invisible characters are all non-ASCII,
    so an all-ASCII column (the usual ID column) skips the regex: the ASCII test is a byte scan,
    several times cheaper than RE2 over every cell.
    """
    import pyarrow.compute as pc

    arr = _arrow(values)
    if (len(arr) and not pc.all(pc.string_is_ascii(arr)).as_py()
            and pc.any(pc.match_substring_regex(arr, _INVISIBLE)).as_py()):
        arr = pc.replace_substring_regex(arr, _INVISIBLE, "")
    return pd.Series(pd.arrays.ArrowStringArray(pc.utf8_trim_whitespace(arr)),
                     index=values.index, name=values.name)


def _is_empty(values: pd.Series) -> np.ndarray:
    """True where a text cell is missing or the empty string (numpy bool)."""
    import pyarrow.compute as pc

    arr = _arrow(values)
    empty = pc.fill_null(pc.equal(pc.utf8_length(arr), 0), True)
    return np.asarray(empty.to_numpy(zero_copy_only=False), dtype=bool)


class _Factor:
    """A low-cardinality column: distinct normalised texts ``u`` (last = NA) and row codes.

    Parsing runs once per distinct text and is broadcast back to rows with :meth:`rows`.
    ``raw_u`` keeps the distinct input texts (``u`` without normalising), ``values`` the input.
    """

    def __init__(self, values: pd.Series, mapping: dict[str, str] | None) -> None:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        self.raw_u = pd.Series(uniques, dtype=_STR)
        u = normalize_ids(self.raw_u)
        if mapping:
            u = u.replace(mapping).astype(_STR)
        self.u = pd.concat([u, pd.Series([pd.NA], dtype=_STR)], ignore_index=True)
        codes[codes < 0] = len(uniques)  # missing -> the NA at the end of u (in place: no copy)
        self.idx = codes
        self.values = values

    def rows(self, on_u: pd.Series | np.ndarray) -> np.ndarray:
        return np.asarray(on_u)[self.idx]

    def text(self) -> pd.Series:
        """Row texts (empty -> NA) as ``string[pyarrow]``.

        When normalising changed no distinct text and none is empty, the row texts are the
        input's: its Arrow data is shared (immutable) instead of rebuilt row by row.
        """
        u = self.u.mask(self.u == "")
        if u.iloc[:-1].equals(self.raw_u):
            return pd.Series(pd.arrays.ArrowStringArray(_arrow(self.values)),
                             index=self.values.index)
        return pd.Series(u.array.take(self.idx), index=self.values.index)


def _bool(mask) -> np.ndarray:
    """A mask as a numpy bool array, missing -> False (numpy bool input passes through)."""
    if isinstance(mask, np.ndarray) and mask.dtype == bool:
        return mask
    return np.asarray(pd.array(mask, dtype="boolean").fillna(False), dtype=bool)


class _Flags:
    """First reason per row, in the order checks run; later checks never overwrite."""

    def __init__(self, n: int) -> None:
        self.code = np.full(n, None, dtype=object)
        self.text = np.full(n, None, dtype=object)
        self._ok = np.ones(n, dtype=bool)

    def add(self, mask, code: str, text: str | np.ndarray) -> None:
        """Flag rows where ``mask`` is true (missing counts as false) and no reason is set yet."""
        sel = _bool(mask) & self._ok
        if sel.any():
            self.code[sel] = code
            self.text[sel] = text[sel] if isinstance(text, np.ndarray) else text
            self._ok &= ~sel

    @property
    def ok(self) -> np.ndarray:
        """True where no check has flagged the row yet (a copy: safe to keep)."""
        return self._ok.copy()


_HIGH_CARDINALITY = ("visit_id", "patient_id", "technique_notes")


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
    validate: bool = True,
) -> CleanResult:
    """Parse and validate export rows; split them into clean, quarantined, duplicate, blank.

    Parameters
    ----------
    data : DataFrame
        The export as text: canonical column names (optional columns may be absent), one string
        per cell, index = row numbers (unique). Not modified.
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
    validate : bool
        Check the clean rows against :class:`outcomes.schema.VisitSchema` with pandera. False is
        for ingest, which checks the same schema in SQL once the rows are stored
        (:func:`outcomes.store.check_visits`: cheaper than pandera at a million rows).

    Returns
    -------
    CleanResult
        ``visits`` pass :class:`outcomes.schema.VisitSchema`.

    Notes
    -----
    Invariant: ``len(data) == len(visits) + len(quarantine) + n_duplicate + n_blank``.
    Exact duplicates are rows equal in every canonical column after parsing (``5`` and ``5.0``
    are equal); rows sharing a ``visit_id`` with different values are all quarantined as
    ``conflicting_duplicate``. Low-cardinality columns are parsed once per distinct text and
    broadcast back to rows, so cost grows with rows only through Arrow/numpy kernels.
    """
    cols = _columns(data, value_map or {})
    flags = _Flags(len(data))
    blank = _blank_rows(cols)
    flags.add(blank, "_blank", "")
    typed, warnings = _parse(cols, flags, date_format, decimal, missing_values, today)
    _flag_before_intake(typed, flags, known_evaluations, gap_days)
    dup, conflict = _duplicates(typed, flags.ok)
    flags.add(conflict, "conflicting_duplicate",
              "visit_id appears on several rows with different values in this file")
    flags.add(_shadowed(typed, flags), "conflicting_duplicate",
              "visit_id also appears on a quarantined row of this file")
    dup &= flags.ok
    keep = flags.ok & ~dup
    visits = typed if keep.all() else typed[keep]
    if validate:
        visits = validate_visits(visits)
    bad = np.flatnonzero(~flags.ok & ~blank)
    return CleanResult(
        visits=visits,
        quarantine=quarantine_frame(data, data.index[bad], flags.code[bad], flags.text[bad],
                                    typed["visit_id"]),
        n_blank=int(blank.sum()),
        n_duplicate=int(dup.sum()),
        warnings=warnings,
    )


def validate_visits(visits: pd.DataFrame) -> pd.DataFrame:
    """Check clean rows against :class:`outcomes.schema.VisitSchema` (pandera); return them.

    The schema's own checks run (unique ``visit_id``, ``visit_type`` values, score ranges...);
    string columns keep their Arrow dtype instead of being coerced to Python objects. A failure
    here means a row check above let a bad row through: a bug, raised as AssertionError.
    """
    import pandera.errors

    schema = _visit_schema()
    try:
        return schema.validate(visits, lazy=True, inplace=True)  # our own frame: no copy
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases[["column", "check"]].drop_duplicates().head(5)
        raise AssertionError(f"clean rows fail VisitSchema: {cases.to_dict('records')}") from None


def _visit_schema():
    from outcomes.schema import VisitSchema

    schema = VisitSchema.to_schema()
    update = {c: {"dtype": _STR} for c in _STRING_COLUMNS}
    update["visit_date"] = {"dtype": "datetime64[ns]"}
    schema = schema.update_columns(update)
    schema.coerce = False
    return schema


def _columns(data: pd.DataFrame, value_map: dict) -> dict[str, pd.Series | _Factor]:
    """Normalised text per canonical column: a Series for IDs/notes, a _Factor otherwise."""
    from concurrent.futures import ThreadPoolExecutor

    raws = [data[c] if c in data else pd.Series(pd.NA, index=data.index, dtype=_STR)
            for c in VISIT_COLUMNS]  # the frame is only touched from this thread
    # Arrow kernels (hashing, regex, trim) release the GIL: two columns at a time
    with ThreadPoolExecutor(max_workers=2) as pool:
        parsed = pool.map(lambda c, raw: _column(raw, c, value_map), VISIT_COLUMNS, raws)
        return dict(zip(VISIT_COLUMNS, parsed, strict=True))


def _column(raw: pd.Series, col: str, value_map: dict) -> pd.Series | _Factor:
    if col in _HIGH_CARDINALITY:
        text = normalize_ids(raw)
        return text.replace(value_map[col]).astype(_STR) if col in value_map else text
    return _Factor(raw, value_map.get(col))


def _empty_rows(col: pd.Series | _Factor) -> np.ndarray:
    return col.rows(_is_empty(col.u)) if isinstance(col, _Factor) else _is_empty(col)


def _blank_rows(cols: dict[str, pd.Series | _Factor]) -> np.ndarray:
    """Rows empty in every column; stops at the first column that leaves no candidate."""
    blank = None
    for col in cols.values():
        empty = _empty_rows(col)
        blank = empty if blank is None else blank & empty
        if not blank.any():  # the usual export: the first column already rules out every row
            break
    return blank


def _text(col: pd.Series | _Factor) -> pd.Series:
    """Typed text of a column: empty -> NA (an ID/notes column without empties as it is)."""
    import pyarrow.compute as pc

    if isinstance(col, _Factor):
        return col.text()
    return col.mask(col == "") if pc.any(pc.equal(_arrow(col), "")).as_py() else col


def _add(flags: _Flags, factor: _Factor, checks: list[tuple[pd.Series, str, str]]) -> None:
    """Flag the rows of ``factor`` whose distinct text fails a check, in the order given."""
    for mask_u, code, text in checks:
        hit_u = _bool(mask_u)
        if hit_u.any():  # most checks pass every distinct text: no million-row broadcast
            flags.add(factor.rows(hit_u), code, text)


def _parse(cols: dict, flags: _Flags, date_format: str, decimal: str, missing_values,
           today) -> tuple[pd.DataFrame, dict[str, int]]:
    """Run the row checks in order; return typed columns and warning counts."""
    _flag_totals(cols, flags)
    for col in ID_COLUMNS:
        flags.add(_empty_rows(cols[col]), "missing_key", f"missing {col}")
    dates, checks = _parse_dates(cols["visit_date"].u, date_format, today)
    _add(flags, cols["visit_date"], checks)
    flags.add(_empty_rows(cols["icd10"]), "missing_value", "missing icd10")
    vt = cols["visit_type"]
    vt.u = vt.u.str.lower()
    _add(flags, vt, [(~vt.u.isin(VISIT_TYPES), "bad_visit_type",
                      f"visit_type is not one of {', '.join(VISIT_TYPES)}")])
    missing = {m.strip().lower() for m in missing_values}
    typed = {"visit_date": cols["visit_date"].rows(dates.to_numpy())}
    for col in SCORE_COLUMNS:
        values, checks = _parse_score(cols[col].u, col, decimal, missing)
        _add(flags, cols[col], checks)
        typed[col] = cols[col].rows(values.to_numpy())
    warnings = _parse_covariates(cols, typed, decimal, missing, flags)
    typed.update({c: _text(cols[c]) for c in _STRING_COLUMNS})  # after re-casing above
    # one frame in column order, no copies (inserting then reordering copied every column)
    return pd.DataFrame({c: typed[c] for c in VISIT_COLUMNS}, index=_row_index(cols),
                        copy=False), warnings


def _row_index(cols: dict) -> pd.Index:
    return cols["visit_id"].index


def _flag_totals(cols: dict, flags: _Flags) -> None:
    """Rows whose key cells read like ``Total`` / ``Grand total`` / ``Sum``."""
    hit = np.zeros(len(flags.code), dtype=bool)
    for col in ID_COLUMNS:
        c = cols[col]
        if isinstance(c, _Factor):
            hit |= c.rows(c.u.str.contains(_TOTALS, regex=True).fillna(False).astype(bool))
        else:
            hit |= c.str.contains(_TOTALS, regex=True).fillna(False).to_numpy(dtype=bool)
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


def _parse_dates(values: pd.Series, date_format: str, today=None):
    """Parse distinct date texts exactly as declared; return dates and (mask, code, text) checks.

    ``excel_serial`` counts days from 1899-12-30 (Excel's 1900 system, including its phantom
    1900-02-29); ``excel_1904`` from 1904-01-01.
    """
    present = ~(values.isna() | (values == ""))
    if date_format in ("excel_serial", "excel_1904"):
        origin = "1899-12-30" if date_format == "excel_serial" else "1904-01-01"
        shape = values.str.fullmatch(r"\d+(\.\d+)?").fillna(False).astype(bool)
        days = pd.to_numeric(values.where(shape), errors="coerce").astype("float64")
        parsed = pd.Series(pd.to_datetime(np.floor(days), unit="D", origin=origin,
                                          errors="coerce"), index=values.index)
    else:
        shape = values.str.fullmatch(_date_shape(date_format)).fillna(False).astype(bool)
        parsed = pd.to_datetime(values.where(shape).astype(object), format=date_format,
                                errors="coerce")
    parsed = parsed.astype("datetime64[ns]")
    limit = pd.Timestamp(today) if today is not None else pd.Timestamp.now(tz="UTC")
    limit = (limit.tz_convert(None) if limit.tzinfo else limit).normalize()
    return parsed, [
        (~present, "bad_date", "missing visit_date"),
        (~shape, "bad_date", f"visit_date does not match the declared format {date_format}"),
        (parsed.isna(), "impossible_date", "visit_date is not a real calendar date"),
        (parsed < EARLIEST_DATE, "impossible_date", f"visit_date before {EARLIEST_DATE.date()}"),
        (parsed > limit, "future_date", f"visit_date after the ingest date {limit.date()}"),
    ]


def _to_number(values: pd.Series, decimal: str, missing: set[str]) -> tuple[pd.Series, ...]:
    """(numbers as float64, not-a-number mask, decimal-comma mask) for distinct texts."""
    is_missing = values.isna() | values.str.lower().isin(missing).fillna(False).astype(bool)
    text = values.mask(is_missing)
    comma = text.str.fullmatch(r"[+-]?\d+,\d+").fillna(False).astype(bool)
    if decimal == ",":
        text = text.mask(text.str.contains(".", regex=False).fillna(False).astype(bool), "x")
        text = text.str.replace(",", ".", regex=False)
    number = text.str.fullmatch(_NUMBER).fillna(False).astype(bool)
    out = pd.to_numeric(text.where(number), errors="coerce").astype("float64")
    bad = ~is_missing & ~number
    return out, bad, comma & (decimal != ",")


def _parse_score(values: pd.Series, col: str, decimal: str, missing: set[str]):
    """One score column: explicit missing mappings only; range and integer checks."""
    out, bad, comma = _to_number(values, decimal, missing)
    inst = INSTRUMENTS[col]
    checks = [
        (bad & comma, "score_not_numeric",
         f"{col} has a decimal comma; declare decimal = \",\" in the profile if intended"),
        (bad, "score_not_numeric",
         f"{col} is text, not a number (only the profile's missing_values map to missing)"),
        ((out < inst.low) | (out > inst.high), "score_out_of_range",
         f"{col} outside the {inst.name} range {inst.range_text}"),
    ]
    if inst.integer:
        checks.append((out.notna() & (out % 1 != 0), "score_not_integer",
                       f"{col} must be a whole number ({inst.name} range {inst.range_text})"))
    return out, checks


def _parse_covariates(cols: dict, typed: dict[str, np.ndarray], decimal: str,
                      missing: set[str], flags: _Flags) -> dict[str, int]:
    """Age (top-coded at 90), symptom duration, sex, yes/no flags; numbers go into ``typed``."""
    age_f = cols["age"]
    age, bad_age, _ = _to_number(age_f.u, decimal, missing)
    _add(flags, age_f, [(bad_age | (age < 0), "bad_value", "age is not a non-negative number")])
    top = age_f.rows((age > 90).to_numpy())
    typed["age"] = age_f.rows(age.clip(upper=90.0).to_numpy())
    wk = cols["symptom_duration_weeks"]
    weeks, bad_weeks, _ = _to_number(wk.u, decimal, missing)
    _add(flags, wk, [(bad_weeks | (weeks < 0), "bad_value",
                      "symptom_duration_weeks is not a non-negative number")])
    typed["symptom_duration_weeks"] = wk.rows(weeks.to_numpy())
    sex = cols["sex"]
    sex.u = sex.u.str.upper()
    _add(flags, sex, [(~(sex.u.isna() | (sex.u == "") | sex.u.isin(("F", "M", "X"))),
                       "bad_value", "sex is not F, M or X")])
    for col in _BOOL_COLUMNS:
        f = cols[col]
        low = f.u.str.lower()
        value = pd.Series(np.where(low.isin(_TRUE).fillna(False), 1.0,
                                   np.where(low.isin(_FALSE).fillna(False), 0.0, np.nan)))
        recorded = ~(low.isna() | low.isin(missing).fillna(False).astype(bool))
        _add(flags, f, [(recorded & value.isna(), "bad_value", f"{col} is not yes/no (1/0)")])
        typed[col] = f.rows(value.to_numpy())
    return {"age_top_coded": int((top & flags.ok).sum())}


def _flag_before_intake(typed: pd.DataFrame, flags: _Flags,
                        known: pd.Series | None, gap_days: int) -> None:
    """Non-evaluation visits dated (within ``gap_days``) before the patient's first evaluation."""
    ok = flags.ok
    is_eval = (typed["visit_type"] == "evaluation").fillna(False).to_numpy(dtype=bool)
    # patients as integer codes: one hash of the ids, then numpy (no text groupby or map)
    codes, patients = pd.factorize(typed["patient_id"])
    date = typed["visit_date"].to_numpy("datetime64[ns]")
    first = np.full(len(patients), np.datetime64("NaT"), dtype="datetime64[ns]")
    rows = ok & is_eval & (codes >= 0) & ~np.isnat(date)
    np.fmin.at(first, codes[rows], date[rows])  # earliest evaluation per patient (no sort)
    if known is not None and len(known):
        pos = pd.Index(patients).get_indexer(known.index)
        stored = known.astype("datetime64[ns]").to_numpy()[pos >= 0]
        first[pos[pos >= 0]] = np.fmin(first[pos[pos >= 0]], stored)
    if np.isnat(first).all():
        return
    first_eval = np.where(codes >= 0, first[codes], np.datetime64("NaT"))
    lead = pd.TimedeltaIndex(first_eval - date).days.to_numpy()
    hit = ok & ~is_eval & (lead > 0) & (lead <= gap_days)
    flags.add(hit, "before_intake", "visit dated before the patient's initial evaluation")


def _shadowed(typed: pd.DataFrame, flags: _Flags) -> np.ndarray:
    """Clean rows sharing a visit_id with a row quarantined for its values (which is right?)."""
    flagged = np.flatnonzero(~flags.ok)  # few rows: compare their codes only, not a million
    unkeyed = pd.Index(flags.code[flagged]).isin(["missing_key", "totals_row", "_blank"])
    keyed = np.zeros(len(typed), dtype=bool)
    keyed[flagged[~unkeyed]] = True
    if not keyed.any():
        return np.zeros(len(typed), dtype=bool)
    bad_ids = typed.loc[keyed, "visit_id"].dropna()
    return flags.ok & typed["visit_id"].isin(bad_ids).fillna(False).to_numpy(dtype=bool)


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


def _duplicates(typed: pd.DataFrame, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exact duplicates to drop, conflicting copies) among rows that passed the checks."""
    ids = typed["visit_id"]
    if _increasing(ids):  # the usual export lists visits in id order: then no id repeats
        return np.zeros(len(typed), dtype=bool), np.zeros(len(typed), dtype=bool)
    codes, _ = pd.factorize(ids, use_na_sentinel=True)  # one hash pass; then integer counts
    counted = ok & (codes >= 0)
    multi = np.zeros(len(typed), dtype=bool)
    multi[counted] = np.bincount(codes[counted])[codes[counted]] > 1
    if not multi.any():
        return np.zeros(len(typed), dtype=bool), np.zeros(len(typed), dtype=bool)
    # every passing copy of a repeated id is in ``multi``: compare those few rows only
    vid = ids[multi]
    sub = pd.DataFrame({"vid": vid, "fp": fingerprint_rows(typed[multi])})
    n_versions = sub.groupby("vid", observed=True)["fp"].nunique()
    conflict, dup = np.zeros(len(typed), dtype=bool), np.zeros(len(typed), dtype=bool)
    conflict[multi] = vid.isin(n_versions.index[n_versions > 1]).to_numpy(dtype=bool)
    dup[multi] = vid.duplicated(keep="first").to_numpy(dtype=bool)
    return dup & ~conflict, conflict


def _increasing(values: pd.Series) -> bool:
    """True when the non-missing values are strictly increasing (so none repeats).

    One ordered comparison of neighbours in Arrow: much cheaper than hashing a million ids.
    """
    import pyarrow.compute as pc

    arr = pc.drop_null(_arrow(values))
    return len(arr) < 2 or pc.all(pc.less(arr[:-1], arr[1:])).as_py()


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
    vid = visits["visit_id"].astype(_STR)
    conflict = vid.isin(conflicted or set()).fillna(False).astype(bool)
    duplicate = pd.Series(False, index=visits.index)
    withdraw = existing.iloc[0:0]
    if len(existing):
        stored = pd.Series(fingerprint_rows(existing).to_numpy(),
                           index=existing["visit_id"].astype(str).to_numpy())
        vid = vid.astype(str)  # only when the store shares ids: the usual first load skips it
        stored_fp = vid.map(stored)
        same = stored_fp.notna() & (stored_fp == fingerprint_rows(visits))
        differ = stored_fp.notna() & ~same
        duplicate = same & ~conflict
        conflict = conflict | differ
        withdraw = existing[existing["visit_id"].astype(str).isin(vid[differ])]
    return Reconciled(load=~(duplicate | conflict), duplicate=duplicate.astype(bool),
                      conflict=conflict.astype(bool), withdraw=withdraw)


def quarantine_frame(data: pd.DataFrame, index: pd.Index, code, text,
                     visit_ids: pd.Series | None = None) -> pd.DataFrame:
    """Quarantine rows for ``data.loc[index]``: raw row as JSON plus reason code and text.

    ``code`` and ``text`` are one string for all rows or one value per row of ``index``;
    ``visit_ids`` (normalised, indexed like ``data``) default to ``data``'s own.
    """
    if len(index) == 0:  # a row-count slice: no per-column take over the whole export
        data = data.iloc[:0]
        visit_ids = None if visit_ids is None else visit_ids.iloc[:0]
    raw = data.loc[index]
    if visit_ids is None:
        visit_ids = normalize_ids(raw["visit_id"]) if "visit_id" in raw else pd.Series(
            pd.NA, index=index, dtype=object)
    ids = pd.Series(visit_ids.loc[index].to_numpy(), dtype=object)
    return pd.DataFrame({
        "row_number": np.asarray(index, dtype="int64"),
        "visit_id": ids.where(ids.notna() & (ids != ""), None),
        "reason_code": code if isinstance(code, str) else np.asarray(code, dtype=object),
        "reason_text": text if isinstance(text, str) else np.asarray(text, dtype=object),
        "raw_row": json_records(raw),
    })


def json_records(frame: pd.DataFrame, lead: dict | None = None,
                 ensure_ascii: bool = False) -> np.ndarray:
    """Each row of ``frame`` as JSON text: ``json.dumps`` of the row's dict, missing -> null.

    The same text as ``json.dumps({**lead, **row}, ensure_ascii=ensure_ascii, default=str)``
    per row (``lead``: constant keys written first, e.g. the file name), as an object array.

    Notes
    -----
    A quarantine can hold a large part of a big export (a flowsheet whose other measures are
    not in the vocabulary). So no dict is built per row: a text column is quoted in Arrow, only
    the values ``json`` would escape (quotes, backslashes, control characters; with
    ``ensure_ascii`` also non-ASCII) are encoded by ``json.dumps``, and the row texts are
    joined in Arrow. Columns that are not all text are encoded value by value.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    def dumps(value) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, default=str)

    text = pa.large_string()
    quote, none = pa.scalar('"', text), pa.scalar("", text)
    escaped = r'[^ -~]|["\\]' if ensure_ascii else r'[\x00-\x1f"\\]'  # json's own sets
    n = len(frame)
    literal, sep, args = "", "{", []
    for key, value in (lead or {}).items():
        literal += f"{sep}{dumps(str(key))}: {dumps(value)}"
        sep = ", "
    for column in frame.columns:
        literal += f"{sep}{dumps(str(column))}: "
        sep = ", "
        values = frame[column]
        if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
            cells = pa.array(values.astype(_STR).array, type=text)
            quoted = pc.binary_join_element_wise(quote, cells, quote, none)
            rare = pc.fill_null(pc.match_substring_regex(cells, escaped), False)
            if pc.any(rare).as_py():
                odd = cells.filter(rare).to_pylist()
                quoted = pc.replace_with_mask(quoted, rare, pa.array(map(dumps, odd), text))
            encoded = pc.fill_null(quoted, "null")
        else:
            encoded = pa.array([dumps(v) for v in values.astype(object).where(values.notna(),
                                                                               None)], text)
        args += [pa.scalar(literal, text), encoded]
        literal = ""
    literal += "}" if sep == ", " else "{}"
    if not args or n == 0:
        return np.full(n, literal, dtype=object)
    joined = pc.binary_join_element_wise(*args, pa.scalar(literal, text), none)
    return joined.to_numpy(zero_copy_only=False).astype(object)
