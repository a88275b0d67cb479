"""Long-format outcome measures: EMR measure names -> instruments, and scores -> visits.

A flowsheet export has one row per patient, date, measure and score ("Numeric Pain Rating
Scale", "LEFS Total", "Oswestry"). An editable vocabulary (``outcomes/data/measures.toml``,
plus the profile's ``[measures.names]``) maps names and codes to instruments; each score is then
attached to the one visit of its patient on its date (within the profile's tolerance). DataFrame
in, new DataFrames out; nothing here touches files or the store.

Reason codes (measure rows)
---------------------------
``missing_key``, ``bad_date``, ``impossible_date``, ``future_date``, ``unknown_measure``,
``missing_score``, ``score_not_numeric``, ``score_not_integer``, ``score_out_of_range``,
``measure_no_visit``, ``measure_ambiguous_visit``, ``measure_conflict``, ``measure_not_kept``
(and, after the load, ``visit_quarantined``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from outcomes.episodes import stable_argsort
from outcomes.errors import ProfileError
from outcomes.ingest.clean import _Flags, _is_empty, _parse_dates, _to_number, normalize_ids
from outcomes.instruments import Instrument

__all__ = ["MEASURE_COLUMNS", "load_measure_vocabulary", "normalize_measure_name",
           "MeasureMatch", "match_measures"]

#: Canonical columns of a long measures file (after the profile's column mapping).
MEASURE_COLUMNS = ("patient_id", "measure_date", "measure_name", "measure_code", "score")
_DEFAULT_VOCAB = Path(__file__).resolve().parent.parent / "data" / "measures.toml"


def normalize_measure_name(text: str) -> str:
    """Lower case, every run of non-letters/digits one space (``"LEFS-Total "`` -> ``"lefs total"``)."""
    return re.sub(r"[^a-z0-9%]+", " ", str(text).lower()).strip()


def load_measure_vocabulary(path: str | Path | None = None,
                            extra: dict[str, str] | None = None,
                            instruments: dict[str, Instrument] | None = None) -> dict[str, str]:
    """Measure names and codes -> instrument codes.

    Parameters
    ----------
    path : path, optional
        A vocabulary TOML (default ``outcomes/data/measures.toml``).
    extra : dict, optional
        The profile's ``[measures.names]``: EMR name or code -> instrument code; wins.
    instruments : dict, optional
        The instrument registry the codes must belong to (default: the built-in one).

    Returns
    -------
    dict
        Keys ``name:<normalised name>`` and ``code:<code>``.

    Raises
    ------
    ProfileError
        A vocabulary entry or profile name maps to an unknown instrument.
    """
    import tomllib

    from outcomes.instruments import INSTRUMENTS

    known = instruments or INSTRUMENTS
    with open(path or _DEFAULT_VOCAB, "rb") as fh:
        data = tomllib.load(fh)
    vocab: dict[str, str] = {}
    for code, entry in data.get("instruments", {}).items():
        vocab.update({f"name:{normalize_measure_name(n)}": code for n in entry.get("names", [])})
        vocab.update({f"code:{str(c).strip()}": code for c in entry.get("codes", [])})
        vocab[f"name:{normalize_measure_name(code)}"] = code
    for name, code in (extra or {}).items():
        vocab[f"name:{normalize_measure_name(name)}"] = code
        vocab[f"code:{str(name).strip()}"] = code
    bad = sorted({c for c in vocab.values() if c not in known})
    if bad:
        raise ProfileError(f"measure vocabulary maps to unknown instrument(s) {', '.join(bad)}; "
                           "add them under [instruments] in the profile")
    return vocab


@dataclass
class MeasureMatch:
    """What :func:`match_measures` returns.

    Attributes
    ----------
    attached : DataFrame
        One row per kept score: ``row_number`` (measures file), ``visit_row`` (visits file
        row number), ``visit_id``, ``instrument``, ``score``.
    quarantine : DataFrame
        ``row_number, reason_code, reason_text`` of measure rows kept aside.
    n_blank, n_duplicate : int
        Blank measure rows; repeated scores (same visit, instrument and value) counted once.
    unmapped : dict
        Measure names (or codes) that map to no instrument -> rows.
    """

    attached: pd.DataFrame
    quarantine: pd.DataFrame
    n_blank: int = 0
    n_duplicate: int = 0
    unmapped: dict[str, int] = field(default_factory=dict)


def match_measures(measures: pd.DataFrame, visits: pd.DataFrame, *,
                   vocabulary: dict[str, str], instruments: dict[str, Instrument],
                   date_format: str = "%Y-%m-%d", decimal: str = ".",
                   missing_values=("", "N/A", "NA"), tolerance_days: int = 0,
                   keep: str | None = None, today=None) -> MeasureMatch:
    """Validate long-format scores and attach each to one visit of its patient.

    Parameters
    ----------
    measures : DataFrame
        Text columns :data:`MEASURE_COLUMNS` (``measure_code`` optional), index = row numbers.
    visits : DataFrame
        Text columns ``visit_id, patient_id, visit_date``, index = row numbers.
    vocabulary, instruments : dict
        From :func:`load_measure_vocabulary` and :func:`outcomes.instruments.instrument_registry`.
    tolerance_days : int
        A score may be dated this many days from its visit; the nearest visit wins, a tie
        between two visits is ``measure_ambiguous_visit``.
    keep : str, optional
        Of several different scores of one instrument on one visit keep the ``first`` /
        ``last`` (file order) / ``min`` / ``max``; default: quarantine them all.

    Returns
    -------
    MeasureMatch

    Notes
    -----
    Invariant: ``len(measures) == len(attached) + len(quarantine) + n_duplicate + n_blank``.
    A score is never attached to a visit of another patient or date (outside the tolerance).

    A flowsheet has a million rows but few distinct names, dates and score texts: each distinct
    text is parsed once, and rows are matched to visits and to each other by integer codes.
    """
    text = {c: normalize_ids(measures[c]) if c in measures else
            pd.Series("", index=measures.index, dtype="string[pyarrow]") for c in MEASURE_COLUMNS}
    flags = _Flags(len(measures))
    blank = np.logical_and.reduce([_is_empty(t) for t in text.values()])
    flags.add(blank, "_blank", "")
    flags.add(_is_empty(text["patient_id"]), "missing_key", "missing patient_id")
    dates, checks = _dates(text["measure_date"], date_format, today)
    for mask, code, reason in checks:
        flags.add(mask, code, reason.replace("visit_date", "measure date"))
    inst, names = _instrument_of(text, vocabulary)
    unknown = flags.ok & (inst < 0)
    unmapped = _unmapped(text, unknown)
    flags.add(unknown, "unknown_measure", "measure name/code is not in the measure vocabulary "
              "(outcomes/data/measures.toml or the profile's [measures.names])")
    scores = _check_scores(text["score"], inst, names, instruments, flags, decimal,
                           missing_values)
    visit, visit_row, visit_id = _nearest_visit(text["patient_id"], dates, visits, flags,
                                                date_format, tolerance_days, today)
    instrument = pd.array(names, dtype="string").take(inst, allow_fill=True)
    frame = pd.DataFrame({"row_number": np.asarray(measures.index), "visit_row": visit_row,
                          "visit_id": visit_id, "instrument": instrument, "score": scores})
    dup = _resolve_repeats(frame, visit * len(names) + inst, flags, keep)
    attached = frame[flags.ok & ~dup].reset_index(drop=True)
    bad = ~flags.ok & ~blank
    quarantine = pd.DataFrame({"row_number": measures.index[bad], "reason_code": flags.code[bad],
                               "reason_text": flags.text[bad]})
    return MeasureMatch(attached, quarantine, int(blank.sum()), int(dup.sum()), unmapped)


def _factorize(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Row codes into the distinct texts (the last one NA), for parsing each text once."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    distinct = pd.concat([pd.Series(uniques, dtype="string[pyarrow]"),
                          pd.Series([pd.NA], dtype="string[pyarrow]")], ignore_index=True)
    return np.where(codes < 0, len(uniques), codes), distinct


def _dates(values: pd.Series, date_format: str, today) -> tuple[np.ndarray, list]:
    """:func:`outcomes.ingest.clean._parse_dates` on the distinct texts, broadcast to rows:
    a flowsheet of a million rows holds a few hundred distinct dates."""
    codes, distinct = _factorize(values)
    parsed, checks = _parse_dates(distinct, date_format, today)
    return (parsed.to_numpy()[codes],
            [(np.asarray(mask.to_numpy(bool))[codes], code, text) for mask, code, text in checks])


def _instrument_of(text: dict, vocabulary: dict[str, str]) -> tuple[np.ndarray, list[str]]:
    """Instrument per row, by code first (exact), then by normalised name.

    Returns row codes into the list of instrument codes found (-1: none) and that list.
    """
    # a flowsheet repeats a few dozen names a million times: look each distinct text up once
    c_rows, codes = _factorize(text["measure_code"])
    by_code = [vocabulary.get(f"code:{c}") if isinstance(c, str) else None
               for c in codes.astype(object)]
    n_rows, names = _factorize(text["measure_name"])
    by_name = [vocabulary.get(f"name:{normalize_measure_name(n)}") if isinstance(n, str)
               else None for n in names.astype(object)]
    found = list(dict.fromkeys(i for i in by_code + by_name if i is not None))
    number = {code: k for k, code in enumerate(found)}
    code_inst = np.array([number.get(i, -1) for i in by_code], dtype=np.int64)[c_rows]
    name_inst = np.array([number.get(i, -1) for i in by_name], dtype=np.int64)[n_rows]
    return np.where(code_inst >= 0, code_inst, name_inst), found


def _unmapped(text: dict, unknown: np.ndarray) -> dict[str, int]:
    name, code = text["measure_name"][unknown], text["measure_code"][unknown]
    shown = name.where(name.fillna("") != "", code)
    counts = shown.fillna("(no name)").value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def _check_scores(score: pd.Series, inst: np.ndarray, names: list[str],
                  registry: dict[str, Instrument], flags: _Flags, decimal: str,
                  missing_values) -> np.ndarray:
    """Parse scores (explicit missing texts only) and check each against its instrument
    (``inst``: row codes into the instrument codes ``names``, -1 none)."""
    missing = {m.strip().lower() for m in missing_values}
    codes, uniques = _factorize(score)
    value, not_number, comma = (np.asarray(s.to_numpy())[codes] for s in
                                _to_number(uniques, decimal, missing))
    is_missing = pd.isna(value) & ~not_number
    flags.add(is_missing, "missing_score", "score is empty or marked missing")
    flags.add(not_number & comma, "score_not_numeric",
              "score has a decimal comma; declare decimal = \",\" in the profile if intended")
    flags.add(not_number, "score_not_numeric",
              "score is text, not a number (only the profile's missing_values map to missing)")
    for k, code in enumerate(names):
        inst_k = registry[code]
        rows = inst == k
        out = rows & ((value < inst_k.low) | (value > inst_k.high))
        flags.add(out, "score_out_of_range",
                  f"{code} score outside the {inst_k.name} range {inst_k.range_text}")
        if inst_k.integer:
            flags.add(rows & (value % 1 != 0), "score_not_integer",
                      f"{code} must be a whole number ({inst_k.name} range "
                      f"{inst_k.range_text})")
    return value.astype("float64")


def _nearest_visit(patient: pd.Series, dates: np.ndarray, visits: pd.DataFrame, flags: _Flags,
                   date_format: str, tolerance: int,
                   today) -> tuple[np.ndarray, np.ndarray, pd.api.extensions.ExtensionArray]:
    """The nearest visit of the same patient within the tolerance, for the rows still ok.

    Returns, per row, the visit's position among the distinct visits (-1: none), its row
    number (-1) and its ``visit_id`` (missing), the last as Arrow-backed text.

    Notes
    -----
    A score matches a visit dated a whole number of days (at most ``tolerance``) from it, at
    the same time of day. Visits and scores get one integer key each, ordered by patient, time
    of day and date, with a gap of more than twice the tolerance between two patients; the
    visits' keys are sorted once, and a binary search per score finds the nearest visit
    before and after it and how many visits lie at that distance (two or more: ambiguous).
    """
    v = pd.DataFrame({"visit_row": visits.index, "visit_id": normalize_ids(visits["visit_id"]).array,
                      "patient_id": normalize_ids(visits["patient_id"]).array,
                      "date": _dates(normalize_ids(visits["visit_date"]), date_format,
                                     today)[0]})
    v = v.dropna().drop_duplicates("visit_id")  # a repeated visit row is one visit
    ok = np.flatnonzero(flags.ok)
    visit = np.full(len(dates), -1, dtype=np.int64)
    if len(v) and len(ok):
        keys = _day_keys(pd.concat([v["patient_id"], patient.iloc[ok]], ignore_index=True),
                         np.concatenate([v["date"].to_numpy("datetime64[ns]"), dates[ok]]),
                         tolerance)
        order = stable_argsort(keys[:len(v)])  # keys are >= 0: a radix sort
        sorted_keys = keys[:len(v)][order]
        by_key = stable_argsort(keys[len(v):])  # sorted queries: the searches walk in order
        key, rows = keys[len(v):][by_key], ok[by_key]
        at = np.searchsorted(sorted_keys, key)  # the first visit on or after the date
        none = np.iinfo(np.int64).max
        before = np.where(at > 0, key - sorted_keys[np.maximum(at - 1, 0)], none)
        after = np.where(at < len(v), sorted_keys[np.minimum(at, len(v) - 1)] - key, none)
        gap = np.minimum(before, after)
        near = gap <= tolerance
        first = np.searchsorted(sorted_keys, key[near] - gap[near])
        count = np.searchsorted(sorted_keys, key[near] + gap[near], side="right") - first
        rows = rows[near]
        flags.add(_mask(len(dates), rows[count > 1]), "measure_ambiguous_visit",
                  "two visits of this patient are equally near the measure date; cannot choose")
        visit[rows[count == 1]] = order[first[count == 1]]
    flags.add(flags.ok & (visit < 0), "measure_no_visit",
              f"no visit of this patient within {tolerance} day(s) of the measure date")
    found = visit >= 0
    row = np.full(len(dates), -1, dtype="int64")
    row[found] = v["visit_row"].to_numpy()[visit[found]]
    vid = v["visit_id"].array.take(visit, allow_fill=True)  # -1: missing; no Python strings
    return visit, row, vid


def _day_keys(patient: pd.Series, when: np.ndarray, tolerance: int) -> np.ndarray:
    """One int64 per row: patient and time of day, then whole days.

    Two rows of one patient and time of day differ by their distance in days; rows of
    different ones by more than ``2 * tolerance + 1``.
    """
    day, time_of_day = np.divmod(when.view(np.int64), 86_400 * 10**9)
    person, _ = pd.factorize(patient)
    clock, clocks = pd.factorize(time_of_day)  # all midnight unless the format has a time
    day -= day.min()
    width = int(day.max()) + 2 * tolerance + 2
    return (person.astype(np.int64) * len(clocks) + clock) * width + day


def _mask(n: int, rows: np.ndarray) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[rows] = True
    return out


def _resolve_repeats(frame: pd.DataFrame, key: np.ndarray, flags: _Flags,
                     keep: str | None) -> np.ndarray:
    """Repeated equal scores -> duplicates; different scores -> conflict or the kept one.

    ``key`` numbers each row's (visit, instrument) pair (meaningful on the rows still ok).
    """
    ok = np.flatnonzero(flags.ok)
    score, scores = pd.factorize(frame["score"].to_numpy()[ok])
    repeat = pd.Series(key[ok] * max(len(scores), 1) + score).duplicated().to_numpy()
    dup = _mask(len(frame), ok[repeat])
    live = ok[~repeat]
    group = pd.factorize(key[live])[0]  # a hash pass: no sort of the keys
    n = np.bincount(group)
    multi = _mask(len(frame), live[n[group] > 1])
    if not multi.any():
        return dup
    if keep is None:
        flags.add(multi, "measure_conflict",
                  "several different scores of this instrument on one visit; set measures.keep "
                  "in the profile to choose one")
        return dup
    chosen = _chosen(frame[multi], ["visit_id", "instrument"], keep)
    flags.add(multi & ~frame.index.isin(chosen), "measure_not_kept",
              f"another score of this instrument on this visit was kept (measures.keep = {keep})")
    return dup


def _chosen(rows: pd.DataFrame, key: list[str], keep: str) -> pd.Index:
    """Index labels of the row kept per (visit, instrument) under ``keep``."""
    if keep in ("first", "last"):
        ordered = rows.sort_values("row_number")
        return ordered.drop_duplicates(key, keep=keep).index
    return rows.sort_values("score", ascending=keep == "min").drop_duplicates(key).index
