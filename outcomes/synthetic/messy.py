"""Inject the row-level defects of QUALITY.md's bad-input table into a synthetic export.

Private to :mod:`outcomes.synthetic`. Every injected defect is recorded (kind, count, 0-based data
row numbers in the final file, visit_ids and details) so tests can check ingest finds each one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from outcomes.synthetic import text as txt

#: Row-level defect kinds sharing the ``rate`` budget, with their minimum count.
ROW_KINDS: dict[str, int] = {
    "exact_duplicate": 1,
    "conflicting_duplicate": 1,
    "blank_row": 2,
    "mixed_date_format": 2,
    "impossible_date": 3,
    "out_of_range_score": 4,
    "text_score": len(txt.TEXT_SCORES),
    "whitespace_id": 3,
    "unmapped_technique": 1,
    "phi_in_note": len(txt.PHI_SNIPPETS),
    "markup_in_note": len(txt.MARKUP_SNIPPETS),
    "ragged_row": 1,
}
INSERTED = ("exact_duplicate", "conflicting_duplicate", "blank_row")
RAGGED_EXTRA = "EXTRA"
#: How blank rows look in a CSV, alternating: a truly empty line, or delimiters only.
BLANK_FORMS = ("empty_line", "delimiters_only")
_INVISIBLE = (("nbsp_suffix", "", "\u00a0"), ("zero_width_prefix", "\u200b", ""),
              ("spaces", "  ", " "))


def kind_counts(n_rows: int, rate: float) -> dict[str, int]:
    """Defects per kind: ``rate * n_rows`` spread evenly, never below each kind's minimum."""
    each = int(round(rate * n_rows / len(ROW_KINDS)))
    return {kind: max(minimum, each) for kind, minimum in ROW_KINDS.items()}


def to_text_frame(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Columns as object arrays of the strings a CSV would hold (None for empty)."""
    out = {}
    for col in frame.columns:
        s = frame[col]
        text = s.astype("string").astype(object)
        out[col] = np.where(s.isna().to_numpy(), None, text.to_numpy())
    return out


def inject_defects(rng: np.random.Generator, frame: pd.DataFrame,
                   rate: float) -> tuple[pd.DataFrame, dict]:
    """Return the messy frame (all text) and the record of what was injected."""
    cols = to_text_frame(frame)
    n = len(frame)
    counts = kind_counts(n, rate)
    picker = _RowPicker(rng, n, cols)
    sources = {k: picker.take(counts[k]) for k in INSERTED[:2]}
    extra_cols, inserted_kind, inserted_src = _inserted_rows(rng, cols, sources, counts)
    # a ragged first data row makes pandas silently read column 1 as the index: keep it later
    mutations = {k: picker.take(counts[k], need=_needs(k), min_row=10 * (k == "ragged_row"))
                 for k in counts if k not in INSERTED}
    details = _apply_mutations(rng, cols, mutations)
    ext = {c: np.concatenate([cols[c], extra_cols[c]]) for c in cols}
    keys = np.concatenate([np.arange(n, dtype=float), rng.uniform(0, n, len(inserted_kind))])
    order = np.argsort(keys, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    messy = pd.DataFrame({c: ext[c][order] for c in ext})
    record = _record(cols, ext, position, n, inserted_kind, inserted_src, mutations, details)
    messy, record["totals_row"] = _append_totals(messy, n)
    return messy, record


class _RowPicker:
    """Draws distinct original rows, optionally only rows where a column is present."""

    def __init__(self, rng: np.random.Generator, n: int, cols: dict) -> None:
        self.order = rng.permutation(n)
        self.used = np.zeros(n, dtype=bool)
        self.cols = cols

    def take(self, k: int, need: str | None = None, min_row: int = 0) -> np.ndarray:
        ok = ~self.used[self.order] & (self.order >= min_row)
        if need is not None:
            ok &= pd.notna(self.cols[need][self.order])
        rows = self.order[ok][:k]
        self.used[rows] = True
        return rows


def _needs(kind: str) -> str | None:
    return {"out_of_range_score": "lefs"}.get(kind)


def _inserted_rows(rng, cols, sources, counts):
    dup, conf = sources["exact_duplicate"], sources["conflicting_duplicate"]
    n_blank = counts["blank_row"]
    extra = {}
    for c, values in cols.items():
        blank = np.full(n_blank, None, dtype=object)
        extra[c] = np.concatenate([values[dup], values[conf], blank])
    nprs = pd.to_numeric(pd.Series(cols["nprs"][conf]), errors="coerce").to_numpy()
    bumped = np.where(nprs >= 5, nprs - 2, nprs + 2).astype(int).astype(str).astype(object)
    extra["nprs"][len(dup): len(dup) + len(conf)] = bumped
    kinds = np.array(["exact_duplicate"] * len(dup) + ["conflicting_duplicate"] * len(conf)
                     + ["blank_row"] * n_blank, dtype=object)
    src = np.concatenate([dup, conf, np.full(n_blank, -1)])
    return extra, kinds, src


def _apply_mutations(rng: np.random.Generator, cols: dict, mutations: dict) -> dict:
    details = {}
    for kind, rows in mutations.items():
        details[kind] = [_MUTATORS[kind](rng, cols, int(r), i) for i, r in enumerate(rows)]
    return details


def _mut_mixed_date(rng, cols, r, i):
    y, m, d = cols["visit_date"][r].split("-")
    value = f"{m}/{d}/{y}" if i % 2 == 0 else f"{y}/{int(m)}/{int(d)}"
    cols["visit_date"][r] = value
    return {"column": "visit_date", "form": "MM/DD/YYYY" if i % 2 == 0 else "YYYY/M/D",
            "value": value}


def _mut_impossible_date(rng, cols, r, i):
    y, m, d = cols["visit_date"][r].split("-")
    forms = (("feb_30", f"{y}-02-30"), ("apr_31", f"{y}-04-31"), ("future", f"2062-{m}-{d}"))
    form, value = forms[i % 3]
    cols["visit_date"][r] = value
    return {"column": "visit_date", "form": form, "value": value}


def _mut_out_of_range(rng, cols, r, i):
    column, value = (("nprs", "11"), ("lefs", "81"), ("nprs", "-1"), ("lefs", "-4"))[i % 4]
    cols[column][r] = value
    return {"column": column, "value": value}


def _mut_text_score(rng, cols, r, i):
    value = txt.TEXT_SCORES[i % len(txt.TEXT_SCORES)]
    cols["nprs"][r] = value
    return {"column": "nprs", "value": value, "maps_to_missing": value == "N/A"}


def _mut_whitespace_id(rng, cols, r, i):
    column = ("patient_id", "therapist_id", "visit_id")[i % 3]
    form, pre, post = _INVISIBLE[(i // 3) % len(_INVISIBLE)]
    cols[column][r] = f"{pre}{cols[column][r]}{post}"
    return {"column": column, "form": form}


def _append_note(cols, r, text):
    note = cols["technique_notes"][r]
    cols["technique_notes"][r] = f"{note}; {text}" if note else text


def _mut_unmapped(rng, cols, r, i):
    text = txt.UNMAPPED_MESSY[i % len(txt.UNMAPPED_MESSY)]
    _append_note(cols, r, text)
    return {"column": "technique_notes", "value": text}


def _mut_phi(rng, cols, r, i):
    kind, text = list(txt.PHI_SNIPPETS.items())[i % len(txt.PHI_SNIPPETS)]
    _append_note(cols, r, text)
    return {"column": "technique_notes", "phi_kind": kind, "value": text}


def _mut_markup(rng, cols, r, i):
    kind, text = list(txt.MARKUP_SNIPPETS.items())[i % len(txt.MARKUP_SNIPPETS)]
    _append_note(cols, r, text)
    return {"column": "technique_notes", "form": kind, "value": text}


def _mut_ragged(rng, cols, r, i):
    return {"extra_cells": 1, "value": RAGGED_EXTRA}


_MUTATORS = {
    "mixed_date_format": _mut_mixed_date,
    "impossible_date": _mut_impossible_date,
    "out_of_range_score": _mut_out_of_range,
    "text_score": _mut_text_score,
    "whitespace_id": _mut_whitespace_id,
    "unmapped_technique": _mut_unmapped,
    "phi_in_note": _mut_phi,
    "markup_in_note": _mut_markup,
    "ragged_row": _mut_ragged,
}


def _record(cols, ext, position, n, inserted_kind, inserted_src, mutations, details) -> dict:
    rec: dict = {}
    for kind in INSERTED:
        idx = np.flatnonzero(inserted_kind == kind)
        copies = position[n + idx]
        # duplicates: rows[i] is the copy of original_rows[i]
        entry = {"count": int(len(idx)), "rows": [int(p) for p in copies]}
        if kind == "blank_row":
            entry["rows"].sort()
        if kind != "blank_row":
            src = inserted_src[idx]
            entry["original_rows"] = [int(position[s]) for s in src]
            entry["visit_ids"] = [str(ext["visit_id"][s]) for s in src]
        rec[kind] = entry
    n_blank = rec["blank_row"]["count"]
    rec["blank_row"]["forms"] = [BLANK_FORMS[i % 2] for i in range(n_blank)]
    for kind, rows in mutations.items():
        entries = [dict(row=int(position[r]), visit_id=str(ext["visit_id"][r]), **d)
                   for r, d in zip(rows, details[kind], strict=True)]
        entries.sort(key=lambda e: e["row"])
        rec[kind] = {"count": len(entries), "rows": [e["row"] for e in entries],
                     "visit_ids": [e["visit_id"] for e in entries], "details": entries}
    return rec


def _append_totals(messy: pd.DataFrame, n: int) -> tuple[pd.DataFrame, dict]:
    total = {c: None for c in messy.columns}
    total["visit_id"] = "TOTAL"
    total["patient_id"] = f"{n} visits"
    nprs = pd.to_numeric(messy["nprs"], errors="coerce")
    total["nprs"] = str(int(nprs.sum()))
    out = pd.concat([messy, pd.DataFrame([total])], ignore_index=True)
    return out, {"count": 1, "rows": [len(out) - 1], "visit_ids": ["TOTAL"]}
