"""PHI in free text: find (:func:`scan_phi`) and redact (:func:`redact_phi`) identifiers in notes.

Names, phones, emails, URLs, SSNs, record numbers, dates of birth, street addresses and ages over
89. The patterns and their cheap pre-filters live in :mod:`outcomes.privacy.patterns`. Nothing
here prints, logs or raises with a data value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd

from outcomes.errors import InputError
from outcomes.privacy.patterns import (
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

__all__ = ["PHI_KINDS", "scan_phi", "redact_phi"]

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
    the Python detectors in :mod:`outcomes.privacy.patterns` of the kinds whose trigger it hits.
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


