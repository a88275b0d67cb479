"""Multi-file exports: a visit list, a long measures flowsheet and a patients file as one export.

The profile's ``[files]`` table says which file is which (file-name patterns) and its
``[measures]`` table names the flowsheet's columns. The files are read with the same readers
(and whole-file rejects) as a single export, joined into the canonical wide visit frame that
:func:`outcomes.ingest.pipeline.ingest_file` cleans, and loaded in one transaction: patients'
covariates by ``patient_id``, each score onto the one visit of its patient and date
(:mod:`outcomes.ingest.measures`). Conservation holds, and is reported, per file.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from outcomes.errors import InputError
from outcomes.ingest.clean import _arrow, json_records, normalize_ids
from outcomes.ingest.codes import normalize_codes
from outcomes.ingest.measures import (
    MEASURE_COLUMNS,
    MeasureMatch,
    load_measure_vocabulary,
    match_measures,
)
from outcomes.ingest.pipeline import (
    IngestResult,
    RawExport,
    _already,
    _by_reason,
    _check_regime,
    _load_in_transaction,
    _map_columns,
    _peek_previous,
    _Stages,
    dry_run_store,
)
from outcomes.ingest.profile import FILE_ROLES, Profile, load_profile
from outcomes.ingest.readers import (
    file_kind,
    read_csv_text,
    read_scanned,
    read_xlsx_text,
    reject,
)
from outcomes.schema import COVARIATE_COLUMNS, SCORE_COLUMNS

__all__ = ["ExportPart", "assign_roles", "read_part", "ingest_parts", "ingest_multifile"]

_STR = pd.StringDtype("pyarrow")
#: Exports with at least this many rows (all files) get a progress bar when asked for.
PROGRESS_MIN_ROWS = 200_000


@dataclass
class ExportPart:
    """One file of a multi-file export, read as text with canonical column names.

    ``bad_rows`` are ``(row_number, raw_text, kind)`` with kind ``ragged`` or ``blank``.
    """

    role: str  # visits, measures, patients; or a part folded into visits (procedures ...)
    name: str
    frame: pd.DataFrame
    bad_rows: list = field(default_factory=list)
    sha256: str = ""
    #: Folded parts (FHIR Procedure / Condition): rows whose Encounter is not in the export.
    lost: list[int] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        return len(self.frame) + len(self.bad_rows)


def assign_roles(paths: list[Path], prof: Profile) -> dict[str, Path]:
    """Match each file to one role by the profile's ``[files]`` patterns (case-insensitive).

    Raises
    ------
    InputError
        A file that matches no role or several, a role matched by several files, or a missing
        visits file; the message names the files and the profile's patterns.
    """
    if not prof.files:
        raise InputError("several files given but the profile has no [files] table saying "
                         "which is the visits, measures and patients file")
    roles: dict[str, Path] = {}
    for path in paths:
        hits = [r for r, pat in prof.files.items()
                if fnmatch.fnmatch(path.name.lower(), pat.lower())]
        if len(hits) != 1:
            what = "no" if not hits else "more than one"
            raise reject(path, f"matches {what} file pattern of the profile's [files] table "
                               f"({', '.join(f'{r} = {p!r}' for r, p in prof.files.items())})")
        if hits[0] in roles:
            raise reject(path, f"is a second {hits[0]} file (first: {roles[hits[0]].name}); "
                               "ingest one export at a time")
        roles[hits[0]] = path
    if "visits" not in roles:
        raise InputError(f"no visits file among {', '.join(p.name for p in paths)} "
                         f"(pattern {prof.files['visits']!r})")
    return {r: roles[r] for r in FILE_ROLES if r in roles}


def read_part(role: str, path: Path, prof: Profile) -> ExportPart:
    """Read one file of a multi-file export as text and map its columns (whole-file rejects)."""
    if not path.is_file():
        raise reject(path, "file not found")
    if path.stat().st_size == 0:
        raise reject(path, "file is empty")
    kind = file_kind(path)
    if kind not in ("csv", "xlsx"):
        raise reject(path, "multi-file exports are read from .csv or .xlsx files")
    reader = read_csv_text if kind == "csv" else read_xlsx_text
    sha, (frame, bad, _, _) = read_scanned(path, prof.encoding if kind == "csv" else None,
                                           lambda: reader(path, prof))
    if len(frame) + len(bad) == 0:
        raise reject(path, "has a header but no data rows")
    frame = _map_part(role, path, frame, prof)
    return ExportPart(role, path.name, frame, bad, sha)


def _map_part(role: str, path: Path, frame: pd.DataFrame, prof: Profile) -> pd.DataFrame:
    if role == "visits":
        names = {prof.columns.get(str(c), str(c)) for c in frame.columns}
        for col in SCORE_COLUMNS:  # scores may all come from the measures file
            if col not in names:
                frame[col] = pd.Series("", index=frame.index, dtype=_STR)
        return normalize_codes(_map_columns(path, frame, prof)[0])
    if role == "measures":
        mapping = {prof.measures[k]: c for k, c in zip(
            ("patient", "date", "name", "code", "score"), MEASURE_COLUMNS[:1] + (
                "measure_date", "measure_name", "measure_code", "score"), strict=True)
            if k in prof.measures}
        wanted = MEASURE_COLUMNS
    else:
        mapping, wanted = dict(prof.columns), ("patient_id", *COVARIATE_COLUMNS)
    frame.columns = [mapping.get(str(c), str(c)) for c in frame.columns]
    required = ("patient_id", "measure_date", "measure_name", "score") if role == "measures" \
        else ("patient_id",)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise reject(path, f"missing required column(s) {', '.join(missing)} for the {role} file "
                           "(check the profile's column names)")
    _check_regime(path, frame, prof)
    return frame[[c for c in wanted if c in frame.columns]]


def ingest_multifile(paths: list[str | os.PathLike], *, db=None, profile=None, today=None,
                     dry_run: bool = False, progress: bool = False) -> IngestResult:
    """Ingest a multi-file export (visits + measures + patients) in one transaction.

    Parameters
    ----------
    paths : list of path
        The export's files; the profile's ``[files]`` patterns say which is which.
    db, profile, today, dry_run, progress
        As for :func:`outcomes.ingest.ingest_file`.

    Returns
    -------
    IngestResult
        Counts of the visits file, plus ``files``: each file's own counts, where
        ``rows_in = rows_loaded + rows_quarantined + rows_duplicate + rows_blank``.

    Raises
    ------
    InputError
        A whole file is rejected (unreadable, missing or identifier column, no role...);
        nothing is written.
    """
    started = time.perf_counter()
    prof = load_profile(profile)
    roles = assign_roles([Path(p) for p in paths], prof)
    parts = [read_part(role, path, prof) for role, path in roles.items()]
    read = time.perf_counter() - started
    result = ingest_parts(parts, prof, db=db, today=today, dry_run=dry_run, progress=progress,
                          fmt="multi-file")
    result.timings = {"read": round(read, 3), **result.timings}
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def ingest_parts(parts: list[ExportPart], prof: Profile, *, db=None, today=None,
                 dry_run: bool = False, progress: bool = False,
                 fmt: str = "multi-file") -> IngestResult:
    """Join the parts of an export into canonical visit rows and load them (one transaction)."""
    by_role = {p.role: p for p in parts}
    sha = hashlib.sha256("|".join(f"{p.role}:{p.sha256}" for p in parts).encode()).hexdigest()
    name = "+".join(p.name for p in parts)
    previous = _peek_previous(db, sha)
    if previous is not None:
        return _already(Path(name), previous)
    stages = _Stages(progress and sum(p.rows_in for p in parts) >= PROGRESS_MIN_ROWS)
    try:
        joined = join_parts(by_role, prof, today)
        stages.step("join")
        raw = RawExport(Path(name), joined.visits, sha, fmt, by_role["visits"].bad_rows)
        with dry_run_store(db, dry_run) as target:
            result = _load_in_transaction(raw, prof, target, today, stages, dry_run=dry_run,
                                          after_load=joined.after_load)
    finally:
        stages.close()
    result.timings = stages.timings
    return result


@dataclass
class Joined:
    """The canonical visit frame of a multi-file export and what to write after it loads."""

    visits: pd.DataFrame
    parts: dict[str, ExportPart]
    match: MeasureMatch | None
    #: Parts whose counts are known before the load: patients, folded parts.
    fixed: list[dict]

    def after_load(self, con, result: IngestResult) -> None:
        """Per-file accounting, measure quarantine and extra-instrument scores (in the
        caller's transaction, after the visits are inserted)."""
        from outcomes.store import insert_frame

        visits_part = self.parts["visits"]
        result.files = [_file_counts(visits_part, result)]
        if self.match is not None:
            part = self.parts["measures"]
            loaded, counts = _measure_rows(con, self.match, part, result.ingest_id)
            extra = loaded[~loaded["instrument"].isin(SCORE_COLUMNS)]
            insert_frame(con, "visit_measures", extra[["visit_id", "instrument", "score"]],
                         ingest_id=result.ingest_id)
            result.files.append(counts)
            result.unmapped_measures = self.match.unmapped
        for fixed in self.fixed:
            insert_frame(con, "quarantine", fixed["quarantine"], ingest_id=result.ingest_id)
            result.files.append(fixed["counts"])
        for counts in result.files:
            _check_file_conservation(counts)


def _check_file_conservation(c: dict) -> None:
    accounted = c["rows_loaded"] + c["rows_quarantined"] + c["rows_duplicate"] + c["rows_blank"]
    if accounted != c["rows_in"]:
        raise AssertionError(f"{c['file']}: {c['rows_in']} rows read but {accounted} accounted "
                             "for; this is a bug in outcomes (nothing was written)")


def _file_counts(part: ExportPart, r: IngestResult) -> dict:
    return {"role": part.role, "file": part.name, "rows_in": r.rows_in,
            "rows_loaded": r.rows_loaded, "rows_quarantined": r.rows_quarantined,
            "rows_duplicate": r.rows_duplicate, "rows_blank": r.rows_blank,
            "quarantine_by_reason": dict(r.quarantine_by_reason)}


def join_parts(parts: dict[str, ExportPart], prof: Profile, today=None) -> Joined:
    """The canonical wide visit frame: visits + patients' covariates + measure scores."""
    from outcomes.instruments import instrument_registry

    visits = parts["visits"].frame
    fixed = [_folded(p) for p in parts.values() if p.role not in FILE_ROLES]
    if "patients" in parts:
        patients = _patients(parts["patients"], visits)
        visits = _add_covariates(visits, patients["covariates"])
        fixed.insert(0, patients)
    match = None
    if "measures" in parts:
        registry = instrument_registry(prof.instruments)
        m = prof.measures
        match = match_measures(
            parts["measures"].frame, visits,
            vocabulary=load_measure_vocabulary(extra=m.get("names"), instruments=registry),
            instruments=registry, date_format=prof.date_format, decimal=prof.decimal,
            missing_values=prof.missing_values, tolerance_days=m.get("tolerance_days", 0),
            keep=m.get("keep"), today=today)
        visits = _add_scores(visits, match.attached)
    return Joined(visits, parts, match, fixed)


def _add_scores(visits: pd.DataFrame, attached: pd.DataFrame) -> pd.DataFrame:
    """Write attached scores of the visit-table instruments into their (empty) text cells.

    The columns are built in Arrow: each distinct score is formatted once, and the texts are
    placed by ``take`` (no Python string per row).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    out = visits.copy(deep=False)  # whole columns are replaced, never written in place
    inst, found = pd.factorize(attached["instrument"])  # codes: one pass over the texts
    found = list(found)
    for col in SCORE_COLUMNS:
        if col in found:
            rows = attached[inst == found.index(col)]
            codes, distinct = pd.factorize(rows["score"])  # few distinct scores: format once
            texts = pa.array([f"{v:.15g}" for v in distinct], type=pa.large_string())
            source = np.full(len(out), -1, dtype=np.int64)  # per visit row: its score, or -1
            source[out.index.get_indexer(rows["visit_row"])] = codes
            placed = texts.take(pa.array(source, mask=source < 0))
            if col in out:  # the visit row's own text where no score was attached
                placed = pc.if_else(pc.is_valid(placed), placed, _arrow(out[col]))
            else:
                placed = pc.fill_null(placed, "")
            out[col] = pd.Series(pd.arrays.ArrowStringArray(placed), index=out.index)
    return out


def _measure_rows(con, match: MeasureMatch, part: ExportPart,
                  ingest_id: int) -> tuple[pd.DataFrame, dict]:
    """The attached scores loaded with their visits, quarantine rows written, file counts.

    A score is loaded with its visit; one whose visit was already stored by an earlier export
    is a duplicate; one whose visit was quarantined is quarantined too (``visit_quarantined``).
    """
    from outcomes.store import insert_frame

    rows = match.attached
    stored = _stored_ingest(con, rows["visit_id"])
    loaded = stored == ingest_id
    lost = rows[np.isnan(stored)]
    q = pd.concat([match.quarantine, pd.DataFrame({
        "row_number": lost["row_number"], "reason_code": "visit_quarantined",
        "reason_text": "the visit this score belongs to was quarantined"})], ignore_index=True)
    q = pd.concat([q, _ragged(part)], ignore_index=True)
    insert_frame(con, "quarantine", _quarantine_rows(part, q), ingest_id=ingest_id)
    counts = {"role": part.role, "file": part.name, "rows_in": part.rows_in,
              "rows_loaded": int(loaded.sum()),
              "rows_quarantined": len(q),
              "rows_duplicate": match.n_duplicate + len(rows) - int(loaded.sum()) - len(lost),
              "rows_blank": match.n_blank + _n_blank(part),
              "quarantine_by_reason": _by_reason(q)}
    return rows[loaded], counts


def _stored_ingest(con, visit_id: pd.Series) -> np.ndarray:
    """The ``ingest_id`` each row's visit is stored under (NaN: not in the store).

    Each distinct id is looked up once, and only integers come back from DuckDB.
    """
    import pyarrow as pa

    codes, ids = pd.factorize(visit_id)
    con.register("_att", pa.table({"pos": np.arange(len(ids)),
                                   "visit_id": pa.array(ids, type=pa.string())}))
    try:
        found = con.execute("SELECT a.pos, v.ingest_id FROM _att a JOIN visits v "
                            "USING (visit_id)").fetchnumpy()
    finally:
        con.unregister("_att")
    where = np.full(len(ids) + 1, np.nan)  # the last: codes of -1 (no id)
    where[found["pos"]] = found["ingest_id"]
    return where[codes]


def _n_blank(part: ExportPart) -> int:
    return sum(1 for _, _, kind in part.bad_rows if kind == "blank")


def _ragged(part: ExportPart) -> pd.DataFrame:
    rows = [(r, t) for r, t, kind in part.bad_rows if kind == "ragged"]
    return pd.DataFrame({"row_number": [r for r, _ in rows], "reason_code": "ragged_row",
                         "reason_text": "row has a different number of cells than the header",
                         "raw_text": [t for _, t in rows]})


def _quarantine_rows(part: ExportPart, q: pd.DataFrame) -> pd.DataFrame:
    """Quarantine table rows: the raw cells (or raw text, PHI redacted) with the file's name."""
    from outcomes.privacy import redact_phi

    raw_text = q["raw_text"] if "raw_text" in q else pd.Series(None, index=q.index)
    is_text = np.array([isinstance(t, str) for t in raw_text], dtype=bool)
    records = np.empty(len(q), dtype=object)
    lead = {"file": part.name}
    rows, index = q["row_number"].to_numpy()[~is_text], part.frame.index
    # the readers give every part as text, so the cells are written as their texts
    cells = part.frame.take(index.searchsorted(rows) if index.is_monotonic_increasing
                            else index.get_indexer(rows))  # no hash table of a big file's rows
    records[~is_text] = json_records(cells, lead)
    if is_text.any():  # ragged rows: their raw line, redacted
        texts = redact_phi(pd.Series(raw_text.to_numpy()[is_text], dtype=object))[0]
        records[is_text] = json_records(pd.DataFrame({"raw_text": texts.to_numpy()}), lead)
    return pd.DataFrame({"row_number": pd.array(q["row_number"], dtype="Int64"),
                         "visit_id": None, "reason_code": q["reason_code"].astype(object),
                         "reason_text": q["reason_text"].astype(object), "raw_row": records})


def _patients(part: ExportPart, visits: pd.DataFrame) -> dict:
    """Patients file -> covariates by patient_id, quarantine rows and the file's counts.

    One row per patient: exact repeats are duplicates; two different rows for one patient are
    both quarantined (``patient_conflict``: which is right?); a patient with no visit in the
    export is quarantined (``patient_no_visits``).
    """
    frame = part.frame
    text = pd.DataFrame({c: normalize_ids(frame[c]).fillna("") for c in frame.columns},
                        index=frame.index)
    blank = (text == "").all(axis=1)
    no_key = ~blank & (text["patient_id"] == "")
    keyed = text[~blank & ~no_key]
    dup = keyed.duplicated(keep="first")
    distinct = keyed[~dup]
    conflict = distinct["patient_id"].duplicated(keep=False)
    conflict = _isin(keyed["patient_id"], distinct.loc[conflict, "patient_id"]) & ~dup
    orphan = ~_isin(keyed["patient_id"], normalize_ids(visits["patient_id"])) & ~conflict & ~dup
    q = pd.concat([
        _reasons(text.index[no_key], "missing_key", "missing patient_id"),
        _reasons(keyed.index[conflict], "patient_conflict",
                 "patient_id appears on several rows with different values"),
        _reasons(keyed.index[orphan], "patient_no_visits", "no visit of this patient in the "
                 "visits file"),
        _ragged(part)], ignore_index=True)
    good = keyed[~dup & ~conflict & ~orphan]
    counts = {"role": part.role, "file": part.name, "rows_in": part.rows_in,
              "rows_loaded": len(good), "rows_quarantined": len(q),
              "rows_duplicate": int(dup.sum()), "rows_blank": int(blank.sum()) + _n_blank(part),
              "quarantine_by_reason": _by_reason(q)}
    return {"covariates": good.set_index("patient_id"), "counts": counts,
            "quarantine": _quarantine_rows(part, q)}


def _isin(values: pd.Series, among: pd.Series) -> pd.Series:
    """``values.isin(among)`` for text without missing values, by one Arrow hash lookup.

    pandas' ``isin`` on Arrow strings first turns ``among`` into a Python list: seconds for the
    patient ids of a million visits.
    """
    import pyarrow.compute as pc

    found = pc.is_in(_arrow(values), value_set=pc.unique(_arrow(among)))
    return pd.Series(np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool),
                     index=values.index)


def _reasons(index: pd.Index, code: str, text: str) -> pd.DataFrame:
    return pd.DataFrame({"row_number": np.asarray(index, dtype="int64"), "reason_code": code,
                         "reason_text": text})


def _add_covariates(visits: pd.DataFrame, covariates: pd.DataFrame) -> pd.DataFrame:
    """Patients' covariates onto their visit rows; a value on the visit row itself wins."""
    import pyarrow.compute as pc

    out = visits.copy(deep=False)  # whole columns are replaced, never written in place
    pid = normalize_ids(out["patient_id"])
    # one Arrow hash lookup for every covariate column (-1: a patient with no covariate row)
    pos = pc.index_in(_arrow(pid), value_set=_arrow(covariates.index.to_series()))
    pos = np.asarray(pc.fill_null(pos, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    for col in covariates.columns:
        value = pd.Series(covariates[col].array.take(pos, allow_fill=True),
                          index=out.index).fillna("").astype(_STR)
        if col in out:
            own = out[col].fillna("")
            value = own.where(normalize_ids(own) != "", value).astype(_STR)
        out[col] = value
    return out


def _folded(part: ExportPart) -> dict:
    """Counts and quarantine of a part folded into the visits (FHIR Procedure / Condition)."""
    q = _reasons(pd.Index(part.lost), "no_encounter",
                 "references no Encounter of this export")
    counts = {"role": part.role, "file": part.name, "rows_in": part.rows_in,
              "rows_loaded": len(part.frame) - len(part.lost), "rows_quarantined": len(q),
              "rows_duplicate": 0, "rows_blank": _n_blank(part),
              "quarantine_by_reason": _by_reason(q)}
    return {"counts": counts, "quarantine": _quarantine_rows(part, q)}
