"""Read an EMR export (CSV, XLSX, Parquet) through a profile and load it into the store.

Flow: hash the file and check its encoding (one streaming pass) -> read it as text into the
canonical columns (whole-file problems raise :class:`~outcomes.errors.InputError` before the
store is touched) -> redact PHI in notes -> :func:`outcomes.ingest.clean.clean_visits` -> compare with
the store -> map techniques -> write everything in one transaction -> rebuild episodes.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from outcomes.ingest.codes import normalize_codes
from outcomes.ingest.profile import Profile, load_profile
from outcomes.ingest.readers import (
    detect_delimiter,
    file_kind,
    read_csv_text,
    read_parquet_text,
    read_scanned,
    read_xlsx_text,
    reject,
    scan_file,
)
from outcomes.schema import REQUIRED_COLUMNS, VISIT_COLUMNS

__all__ = ["Profile", "load_profile", "RawExport", "read_export", "IngestResult", "ingest_file",
           "check_conservation", "detect_delimiter", "scan_file"]

_STR = pd.StringDtype("pyarrow")
#: Files at least this big get a progress bar on stderr (when progress is asked for).
PROGRESS_MIN_BYTES = 20 * (1 << 20)


@dataclass
class RawExport:
    """An export read as text: canonical columns, index = spreadsheet row numbers.

    ``bad_rows`` are records the reader could not place in columns:
    ``(row_number, raw_text, kind)`` with kind ``ragged`` or ``blank``.
    """

    path: Path
    frame: pd.DataFrame
    file_sha256: str
    file_format: str
    bad_rows: list[tuple[int | None, str, str]] = field(default_factory=list)
    delimiter: str | None = None
    delimiter_detected: bool = False
    ignored_columns: list[str] = field(default_factory=list)
    #: Data records read (after the header), however they end up.
    rows_in: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows_in = len(self.frame) + len(self.bad_rows)


def read_export(path: str | os.PathLike, profile: Profile | str | None = None, *,
                sha256: str | None = None) -> RawExport:
    """Read an export as text into canonical columns; reject whole-file problems.

    Parameters
    ----------
    path : path
        ``.csv`` / ``.tsv`` / ``.txt``, ``.xlsx`` or ``.parquet``.
    profile : Profile or path, optional
        The EMR profile (default: canonical names, ISO dates, UTF-8, comma or detected).
    sha256 : str, optional
        The file hash when already computed by :func:`scan_file`.

    Returns
    -------
    RawExport

    Raises
    ------
    InputError
        Unreadable, empty or header-only file, bad bytes for the encoding, corrupt or
        password-protected workbook, duplicate or missing columns, direct-identifier columns.
        Messages name the file and column, never a cell value.
    """
    path, prof = Path(path), load_profile(profile)
    kind = _kind(path)
    if sha256 is not None:  # the caller scanned the file already
        return _read(path, prof, kind, sha256)
    digest, raw = read_scanned(path, _text_encoding(prof, kind), lambda: _read(path, prof, kind))
    raw.file_sha256 = digest
    return raw


def _kind(path: Path) -> str:
    """The file's kind (``csv``, ``xlsx``, ``parquet``); a missing or empty file is rejected."""
    if not path.is_file():
        raise reject(path, "file not found")
    if path.stat().st_size == 0:
        raise reject(path, "file is empty")
    return file_kind(path)


def _text_encoding(prof: Profile, kind: str) -> str | None:
    """The encoding :func:`scan_file` checks: the profile's for text files, none otherwise."""
    return prof.encoding if kind == "csv" else None


def _read(path: Path, prof: Profile, kind: str, sha256: str = "") -> RawExport:
    """The file read as text (its hash, from :func:`scan_file`, is the caller's to give)."""
    reader = {"csv": read_csv_text, "xlsx": read_xlsx_text, "parquet": read_parquet_text}[kind]
    frame, bad, delim, detected = reader(path, prof)
    frame, ignored = _map_columns(path, frame, prof)
    frame = normalize_codes(frame)
    if len(frame) + len(bad) == 0:
        raise reject(path, "has a header but no data rows")
    return RawExport(path, frame, sha256, kind, bad, delim, detected, ignored)


def _check_regime(path: Path, frame: pd.DataFrame, prof: Profile) -> None:
    """Reject a file that does not fit the data regime its profile declares."""
    from outcomes.privacy import check_regime

    problems = check_regime(frame, prof.regime)
    if problems:
        raise reject(path, f"does not fit the {prof.regime} regime: {problems[0]}")


def _map_columns(path: Path, frame: pd.DataFrame, prof: Profile) -> tuple[pd.DataFrame, list]:
    """Rename by the profile, keep canonical columns, require the required ones.

    ``frame`` is the reader's own object: it is renamed in place and only copied when columns
    must be dropped or reordered (a 1M-row export is not duplicated for nothing).
    """
    original = [str(c) for c in frame.columns]
    names = pd.Index([prof.columns.get(c, c) for c in original])
    if names.duplicated().any():
        dup = names[names.duplicated()][0]
        raise reject(path, f"two columns map to {dup!r}; fix the profile's columns table")
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        hint = (" (the header has a single column: is the delimiter right?)"
                if len(original) == 1 else "")
        raise reject(path, f"missing required column(s) {', '.join(missing)}{hint}")
    frame.columns = names
    _check_regime(path, frame, prof)  # before dropping columns: a ZIP column counts too
    keep = [c for c in VISIT_COLUMNS if c in names]
    ignored = [c for c, n in zip(original, names, strict=True) if n not in VISIT_COLUMNS]
    return (frame if keep == list(names) else frame[keep]), ignored


# --- orchestration ---------------------------------------------------------------------------


@dataclass
class IngestResult:
    """The intake summary of one file (see :meth:`to_dict` for the JSON keys)."""

    file: str
    file_sha256: str
    already_ingested: bool
    ingest_id: int | None
    rows_in: int
    rows_loaded: int
    rows_quarantined: int
    rows_duplicate: int
    rows_blank: int
    rows_withdrawn: int = 0
    file_format: str = "csv"
    delimiter: str | None = None
    delimiter_detected: bool = False
    regime: str = "limited_data_set"
    quarantine_by_reason: dict[str, int] = field(default_factory=dict)
    unmapped_techniques: dict[str, int] = field(default_factory=dict)
    phi_counts: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, Any] = field(default_factory=dict)
    episodes: int | None = None
    #: Multi-file exports: per file ``{file, role, rows_in, rows_loaded, ...}`` (conserved).
    files: list[dict[str, Any]] = field(default_factory=list)
    unmapped_measures: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict."""
        return asdict(self)

    def summary(self) -> str:
        """A short human summary (counts and reason codes only, never cell values)."""
        if self.already_ingested:
            return (f"{self.file}: already ingested (ingest {self.ingest_id}); nothing changed")
        lines = [
            f"{self.file}: {self.rows_in} rows read -> {self.rows_loaded} loaded, "
            f"{self.rows_quarantined} quarantined, {self.rows_duplicate} duplicates, "
            f"{self.rows_blank} blank",
        ]
        if self.dry_run:
            lines.insert(0, "dry run: nothing was written; this is what would load")
        lines += [_file_line(f) for f in self.files]
        if self.unmapped_measures:
            top = sorted(self.unmapped_measures.items(), key=lambda kv: (-kv[1], kv[0]))
            lines.append(f"unknown measure names ({len(top)} distinct, "
                         f"{sum(self.unmapped_measures.values())} rows, quarantined): "
                         + "; ".join(f"{k!r} {v}" for k, v in top[:10]))
        if self.delimiter_detected:
            lines.append(f"delimiter detected: {self.delimiter!r}")
        if self.quarantine_by_reason:
            lines.append("quarantined: " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.quarantine_by_reason.items())))
        if self.rows_withdrawn:
            lines.append(f"withdrawn from the store (conflicting values): {self.rows_withdrawn}")
        if self.unmapped_techniques:
            n = sum(self.unmapped_techniques.values())
            top = sorted(self.unmapped_techniques.items(), key=lambda kv: (-kv[1], kv[0]))
            shown = "; ".join(f"{text!r} {count}" for text, count in top[:10])
            more = f"; ... {len(top) - 10} more (--json lists all)" if len(top) > 10 else ""
            lines.append(f"unmapped technique texts ({len(top)} distinct, {n} mentions; "
                         f"PHI already redacted): {shown}{more}")
        if self.phi_counts:
            lines.append("PHI redacted in notes: " + ", ".join(
                f"{k} {v}" for k, v in sorted(self.phi_counts.items())))
        for key, value in self.warnings.items():
            lines.append(f"warning: {key}: {value}")
        if self.episodes is not None:
            lines.append(f"episodes in store: {self.episodes}")
        return "\n".join(lines)


def _file_line(f: dict[str, Any]) -> str:
    """One line of a multi-file summary: a file's own conservation."""
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(f["quarantine_by_reason"].items()))
    return (f"  {f['role']} {f['file']}: {f['rows_in']} rows read -> {f['rows_loaded']} loaded, "
            f"{f['rows_quarantined']} quarantined, {f['rows_duplicate']} duplicates, "
            f"{f['rows_blank']} blank" + (f" ({reasons})" if reasons else ""))


class _Stages:
    """A stage progress bar on stderr (tqdm), shown only for big files when asked for.

    Also records seconds per stage (``IngestResult.timings``) for the benchmark.
    """

    def __init__(self, enabled: bool, total: int = 7) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, file=sys.stderr, disable=not enabled, unit="stage",
                        desc="ingest", leave=False)
        self.timings: dict[str, float] = {}
        self._last = time.perf_counter()

    def step(self, name: str) -> None:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()  # hand freed Arrow memory back between stages
        now = time.perf_counter()
        self.timings[name] = round(now - self._last, 3)
        self._last = now
        self.bar.set_postfix_str(name)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def ingest_file(path: str | os.PathLike, *, db: str | os.PathLike | None = None,
                profile: Profile | str | os.PathLike | None = None, progress: bool = False,
                today: pd.Timestamp | str | None = None, dry_run: bool = False) -> IngestResult:
    """Validate an export, quarantine bad rows and load the rest into the store, atomically.

    Parameters
    ----------
    path : path
        The export (CSV, XLSX or Parquet).
    db : path, optional
        The store (default ``$OUTCOMES_DB`` or ``./outcomes.duckdb``); created on first use.
    profile : Profile or path, optional
        EMR profile (YAML/TOML); default: canonical names, ISO dates, UTF-8.
    progress : bool
        Show a stage progress bar on stderr for big files.
    today : date, optional
        Ingest date for the future-visit check (default: today, UTC).
    dry_run : bool
        Do everything, report what would load and be quarantined, then roll back: the store
        is unchanged (and not created when it does not exist).

    Returns
    -------
    IngestResult
        Counts (``rows_in = rows_loaded + rows_quarantined + rows_duplicate + rows_blank``),
        quarantine by reason, unmapped technique texts, PHI counts by kind.

    Raises
    ------
    InputError
        The whole file is rejected; nothing is written.
    StoreBusyError
        Another process kept the store locked past the timeout.

    Notes
    -----
    Everything is written in one DuckDB transaction (visits, techniques, quarantine, withdrawn
    visits, the rebuilt episode table and the ingest log): a killed process leaves the store as
    it was. A file whose sha256 is already in the log is not loaded again.
    """
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    path, prof = Path(path), load_profile(profile)
    kind = _kind(path)
    stages = _Stages(progress and path.stat().st_size >= PROGRESS_MIN_BYTES)
    try:
        # the read runs on a worker thread while this one hashes the file and checks its
        # encoding (both mostly outside the GIL); a file already ingested is not read any
        # further, and the scan's verdict comes before anything the read found
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outcomes-read") as pool:
            reading = pool.submit(_read, path, prof, kind)
            sha = scan_file(path, _text_encoding(prof, kind))
            previous = _peek_previous(db, sha)
            if previous is not None:
                reading.cancel()
                return _already(path, previous)
            raw = reading.result()
            raw.file_sha256 = sha
        stages.step("read")
        with dry_run_store(db, dry_run) as target:
            result = _load_in_transaction(raw, prof, target, today, stages, dry_run=dry_run)
    finally:
        stages.close()
    result.seconds = round(time.perf_counter() - started, 3)
    result.timings = stages.timings
    return result


@contextmanager
def dry_run_store(db, dry_run: bool):
    """The store to load into: ``db``, or for a dry run of a store that does not exist yet a
    throw-away store in a temporary folder (a rolled-back transaction leaves an existing
    store's rows as they were, but would still create a missing file)."""
    from outcomes.store import resolve_db

    if not dry_run or resolve_db(db).exists():
        yield db
        return
    with tempfile.TemporaryDirectory(prefix="outcomes-dry-run-") as tmp:
        yield Path(tmp) / "dry_run.duckdb"


def _peek_previous(db, sha: str) -> dict | None:
    """The log row of an earlier ingest of this file, when the store can be read right now."""
    from outcomes.errors import StoreError
    from outcomes.store import find_ingest, open_store, resolve_db

    if not resolve_db(db).exists():
        return None
    try:
        with open_store(db, read_only=True, timeout=0) as con:
            return find_ingest(con, sha)
    except StoreError:
        return None


def _already(path: Path, log: dict) -> IngestResult:
    import json

    summary = json.loads(log.get("summary") or "{}")
    return IngestResult(
        file=path.name, file_sha256=log["file_sha256"], already_ingested=True,
        ingest_id=int(log["ingest_id"]),
        **{k: int(log[k]) for k in ("rows_in", "rows_loaded", "rows_quarantined",
                                    "rows_duplicate", "rows_blank", "rows_withdrawn")},
        file_format=log["file_format"], regime=log["regime"],
        **{k: summary.get(k, {}) for k in ("quarantine_by_reason", "unmapped_techniques",
                                           "phi_counts", "unmapped_measures")},
        files=summary.get("files", []),
    )


def _load_in_transaction(raw: RawExport, prof: Profile, db, today, stages, *,
                         after_load=None, dry_run: bool = False) -> IngestResult:
    from outcomes.store import find_ingest, open_store

    phi = _redact(raw)
    stages.step("redact")
    with open_store(db, read_only=False) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            previous = find_ingest(con, raw.file_sha256)
            if previous is not None:  # another process loaded it while we waited
                con.execute("ROLLBACK")
                return _already(raw.path, previous)
            result = _load(con, raw, prof, today, stages)
            result.phi_counts = phi
            if after_load is not None:  # multi-file exports: measures and patients files
                after_load(con, result)
            _log(con, result, raw, prof)
            _hold_for_fault_tests()
            result.dry_run = dry_run
            con.execute("ROLLBACK" if dry_run else "COMMIT")
            stages.step("commit")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return result


def _hold_for_fault_tests() -> None:
    """Pause before COMMIT when ``$OUTCOMES_HOLD_BEFORE_COMMIT`` is set (kill/lock tests).

    The kill and lock tests run ingest in a child process, so a monkeypatch cannot reach it. A
    value that is not a number of seconds is ignored, and the pause is capped at 60 s.
    """
    try:
        hold = min(float(os.environ.get("OUTCOMES_HOLD_BEFORE_COMMIT", "0")), 60.0)
    except ValueError:
        return
    if hold > 0:
        print("outcomes: holding before commit", file=sys.stderr, flush=True)
        time.sleep(hold)


def _redact(raw: RawExport) -> dict[str, int]:
    """Redact PHI in notes (and unparsed rows) in place with :func:`outcomes.privacy.redact_phi`.

    ``raw`` is this ingest's own object, so no copy of the export is made. Returns hit counts
    by kind over rows; kinds with no hit are left out.
    """
    from outcomes.privacy import redact_phi

    phi: dict[str, int] = {}
    if "technique_notes" in raw.frame:
        raw.frame["technique_notes"], phi = redact_phi(raw.frame["technique_notes"])
    if raw.bad_rows:
        texts, extra = redact_phi(pd.Series([t for _, t, _ in raw.bad_rows], dtype=object))
        raw.bad_rows = [(r, t, k) for (r, _, k), t in zip(raw.bad_rows, texts, strict=True)]
        phi = {k: phi.get(k, 0) + extra.get(k, 0) for k in {*phi, *extra}}
    return {k: int(v) for k, v in sorted(phi.items()) if v}


def _load(con, raw: RawExport, prof: Profile, today, stages: _Stages) -> IngestResult:
    """Clean, reconcile with the store and insert; runs inside the caller's transaction.

    Takes the export's frame out of ``raw`` and drops each intermediate as soon as it is used,
    so the rows are not held twice (memory target of the scale benchmark). Once the rows to
    load are known, the store writes run on a worker thread (:class:`_Writer`) while this
    thread maps techniques and builds episodes: DuckDB releases the GIL while it writes.
    """
    from outcomes import store
    from outcomes.episode_table import build_refreshed, plan_refresh, write_refreshed
    from outcomes.ingest.clean import clean_visits, normalize_ids, reconcile_visits

    frame, bad, raw.frame = raw.frame, raw.bad_rows, None
    ingest_id = store.next_ingest_id(con)
    known = store.first_evaluations(con, normalize_ids(frame["patient_id"]))
    cleaned = clean_visits(frame, date_format=prof.date_format, decimal=prof.decimal,
                           missing_values=prof.missing_values, value_map=prof.values,
                           today=today, known_evaluations=known,
                           validate=False)  # checked in SQL once stored (store.check_visits)
    stages.step("clean")
    visits = cleaned.visits
    rec = reconcile_visits(visits, store.existing_visits(con, visits["visit_id"]),
                           store.conflicted_ids(con, visits["visit_id"]))
    quarantine = _quarantine(frame, bad, cleaned.quarantine, visits, rec)
    del frame
    loaded = visits if rec.load.all() else visits[rec.load]
    cleaned.visits = visits = None
    store.withdraw_visits(con, rec.withdraw["visit_id"])
    plan = plan_refresh(con, loaded, rec.withdraw["patient_id"])  # reads before the writes
    with _Writer() as writes:
        writes.submit(store.insert_visits, con, loaded, ingest_id=ingest_id)
        techniques, families, unmapped, technique_visits = _techniques(loaded)
        stages.step("techniques")
        # any row order: only build_episodes reads these rows in bulk, and it does not
        # depend on it
        writes.submit(store.insert_frame, con, "visit_techniques", techniques, ordered=False,
                      ingest_id=ingest_id)
        writes.submit(store.insert_frame, con, "quarantine", quarantine, ingest_id=ingest_id)
        result = _summarise(raw, prof, ingest_id, len(loaded), quarantine, cleaned, rec, bad)
        result.unmapped_techniques = unmapped
        check_conservation(result)
        del cleaned, quarantine
        episodes = build_refreshed(plan, loaded, families, technique_visits)
        stages.step("episodes")
        count = writes.submit(write_refreshed, con, plan, episodes)
    result.episodes = count.result()
    stages.step("writes")
    return result


class _Writer:
    """Store writes on one worker thread, run in the order submitted, while Python work goes on.

    Only the worker uses the connection until the ``with`` block has ended. Leaving it waits for
    every write (after an error in the block, writes not yet started are cancelled) and raises
    the first write error; the caller then rolls the transaction back. A write error also
    surfaces at the next :meth:`submit`, so a failed ingest stops early.
    """

    def __enter__(self) -> _Writer:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outcomes-store")
        self._futures: list = []
        return self

    def submit(self, fn, *args, **kwargs):
        """Queue ``fn(*args, **kwargs)`` after the writes already queued; return its future."""
        self._raise_failed()
        future = self._pool.submit(fn, *args, **kwargs)
        self._futures.append(future)
        return future

    def _raise_failed(self) -> None:
        for future in self._futures:
            if future.done() and future.exception() is not None:
                raise future.exception()

    def __exit__(self, exc_type, exc, tb) -> None:
        self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)
        if exc_type is None:
            for future in self._futures:
                future.result()  # the first write error, in submission order


def _summarise(raw: RawExport, prof: Profile, ingest_id: int, n_loaded: int,
               quarantine: pd.DataFrame, cleaned, rec, bad: list) -> IngestResult:
    """The counts of one load (quarantined rows are those with a row number in this file)."""
    result = IngestResult(
        file=raw.path.name, file_sha256=raw.file_sha256, already_ingested=False,
        ingest_id=ingest_id, rows_in=raw.rows_in, rows_loaded=n_loaded,
        rows_quarantined=int(quarantine["row_number"].notna().sum()),
        rows_duplicate=cleaned.n_duplicate + int(rec.duplicate.sum()),
        rows_blank=cleaned.n_blank + sum(1 for _, _, kind in bad if kind == "blank"),
        rows_withdrawn=len(rec.withdraw), file_format=raw.file_format,
        delimiter=raw.delimiter, delimiter_detected=raw.delimiter_detected, regime=prof.regime,
        quarantine_by_reason=_by_reason(quarantine),
        warnings={k: v for k, v in cleaned.warnings.items() if v},
    )
    if raw.ignored_columns:
        result.warnings["ignored_columns"] = ", ".join(raw.ignored_columns)
    return result


def check_conservation(result: IngestResult) -> None:
    """Raise unless rows read = loaded + quarantined + duplicates + blank (nothing vanished)."""
    accounted = (result.rows_loaded + result.rows_quarantined + result.rows_duplicate
                 + result.rows_blank)
    if accounted != result.rows_in:
        raise AssertionError(f"{result.file}: {result.rows_in} rows read but {accounted} "
                             "accounted for; this is a bug in outcomes (nothing was written)")


def _by_reason(quarantine: pd.DataFrame) -> dict[str, int]:
    rows = quarantine[quarantine["row_number"].notna()]
    return {str(k): int(v) for k, v in rows["reason_code"].value_counts().sort_index().items()}


def _quarantine(frame, bad, from_clean, visits, rec) -> pd.DataFrame:
    """All quarantine rows of this ingest; withdrawn stored visits have no row number."""
    from outcomes.ingest.clean import json_records, quarantine_frame

    lines = pd.DataFrame({"raw_text": [t for _, t, k in bad if k == "ragged"]}, dtype=object)
    ragged = pd.DataFrame({
        "row_number": pd.array([r for r, _, k in bad if k == "ragged"], dtype="Int64"),
        "visit_id": None, "reason_code": "ragged_row",
        "reason_text": "row has a different number of cells than the header",
        "raw_row": json_records(lines),
    })
    conflict_idx = visits.index[rec.conflict.to_numpy()]
    against_store = quarantine_frame(
        frame, conflict_idx, "conflicting_duplicate",
        "visit_id already stored (or quarantined) with different values", visits["visit_id"])
    withdrawn = rec.withdraw.assign(visit_date=rec.withdraw["visit_date"].dt.strftime("%Y-%m-%d"))
    withdrawn = pd.DataFrame({
        "row_number": pd.array([pd.NA] * len(withdrawn), dtype="Int64"),
        "visit_id": withdrawn["visit_id"].to_numpy(), "reason_code": "conflicting_duplicate",
        "reason_text": "stored visit withdrawn: a later file has the same visit_id with "
                       "different values",
        "raw_row": json_records(withdrawn, ensure_ascii=True),
    })
    parts = [p for p in (ragged, from_clean, against_store, withdrawn) if len(p)]
    if not parts:
        return from_clean.astype({"row_number": "Int64"})
    return pd.concat([p.astype({"row_number": "Int64"}) for p in parts], ignore_index=True)


def _techniques(visits: pd.DataFrame):
    """The technique rows of ``visits``: ``(rows, families, unmapped, positions)``.

    :func:`outcomes.ingest.techniques.map_note_array` dedupes and splits the notes in Arrow and
    maps each distinct fragment once, giving integer positions (each row's visit, and its row
    in a small table of fragments and codes). So no text is copied per row:

    * ``rows``: the ``visit_techniques`` rows (unmapped fragments with a NULL code) as an Arrow
      table of dictionary-encoded columns (the visits' ids, the small table's texts) indexed by
      those positions; DuckDB stores them as plain text;
    * ``families``: each row's ``family``, the one column
      :func:`outcomes.episodes.build_episodes` reads;
    * ``unmapped``: unmapped fragment text -> mentions;
    * ``positions``: each row's visit as a position in ``visits``, so episodes place the rows
      without matching ``visit_id`` text.
    """
    import pyarrow as pa

    from outcomes.ingest.techniques import map_note_array

    notes = visits["technique_notes"]
    if not isinstance(notes.array, pd.arrays.ArrowStringArray):
        notes = notes.astype(_STR)
    mapped = map_note_array(pa.array(notes.array, type=pa.large_string()))
    entry = pa.array(mapped.entry.astype(np.int32))
    ids = visits["visit_id"].astype(_STR).array.__arrow_array__()
    rows = pa.table({
        "visit_id": pa.DictionaryArray.from_arrays(pa.array(mapped.row.astype(np.int32)),
                                                   pa.chunked_array(ids).combine_chunks()),
        **{c: pa.DictionaryArray.from_arrays(entry, mapped.table.column(c))
           for c in ("technique_code", "family", "source_text")},
    })
    families = pd.DataFrame({"family": pd.arrays.ArrowStringArray(
        mapped.table.column("family").take(entry))})
    no_code = mapped.table.column("technique_code").is_null().to_numpy(zero_copy_only=False)
    texts = mapped.table.column("source_text").take(pa.array(mapped.entry[no_code[mapped.entry]]))
    unmapped = pd.Series(pd.arrays.ArrowStringArray(texts)).value_counts()
    return rows, families, {str(k): int(v) for k, v in unmapped.items()}, mapped.row


def _log(con, result: IngestResult, raw: RawExport, prof: Profile) -> None:
    import json
    from importlib.metadata import PackageNotFoundError, version

    from outcomes.store import log_ingest

    try:
        pkg = version("outcomes")
    except PackageNotFoundError:
        from outcomes import __version__ as pkg
    summary = {k: getattr(result, k) for k in (
        "quarantine_by_reason", "unmapped_techniques", "phi_counts", "warnings", "delimiter",
        "delimiter_detected", "files", "unmapped_measures")}
    summary["profile"] = asdict(prof)
    log_ingest(con, {
        "ingest_id": result.ingest_id, "file_name": raw.path.name,
        "file_sha256": raw.file_sha256, "file_format": raw.file_format,
        "ingested_at": pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime(),
        "package_version": pkg, "regime": prof.regime,
        **{k: getattr(result, k) for k in ("rows_in", "rows_loaded", "rows_quarantined",
                                           "rows_duplicate", "rows_blank", "rows_withdrawn")},
        "summary": json.dumps(summary, default=str),
    })
