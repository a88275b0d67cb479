"""The embedded DuckDB store: schema, locking, one-transaction writes, status and exports.

Only this module (with :mod:`outcomes.ingest` and the report renderer) touches the database file.
Report and analysis code read the store through :func:`open_store`, :func:`load_visits`,
:func:`load_episodes`, :func:`load_quarantine_summary` and :func:`load_unmapped`.

Tables
------
``meta``             key/value: ``schema_version``, ``created_at``.
``ingest_log``       one row per ingested file: sha256, counts, time, package version, summary JSON.
``visits``           clean visit rows (canonical columns of :data:`outcomes.schema.VISIT_COLUMNS`)
                     plus ``ingest_id``.
``visit_techniques`` visit_id, technique_code (NULL when the note was not mapped), family,
                     source_text (redacted), ingest_id.
``quarantine``       ingest_id, row_number, visit_id, raw_row (JSON), reason_code, reason_text.
``episodes``         the table :func:`outcomes.episodes.build_episodes` returns, kept up to date
                     by every ingest (:mod:`outcomes.episode_table`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from outcomes.errors import StoreBusyError, StoreError
from outcomes.schema import SCORE_COLUMNS, VISIT_COLUMNS

__all__ = [
    "SCHEMA_VERSION",
    "open_store",
    "init_store",
    "load_visits",
    "load_episodes",
    "load_quarantine_summary",
    "load_unmapped",
    "load_instrument_counts",
    "store_status",
    "export_episodes",
]

#: Version of the table layout below; a store of another version is refused.
SCHEMA_VERSION = 1
#: Seconds a writer waits for another process to release the store (``$OUTCOMES_LOCK_TIMEOUT``).
DEFAULT_LOCK_TIMEOUT = 120.0

_TEXT = "VARCHAR"
_NUM = "DOUBLE"
VISIT_SQL_TYPES: dict[str, str] = {
    "visit_id": _TEXT, "patient_id": _TEXT, "clinic_id": _TEXT, "therapist_id": _TEXT,
    "visit_date": "DATE", "visit_type": _TEXT, "cpt_codes": _TEXT, "icd10": _TEXT,
    "technique_notes": _TEXT, "nprs": _NUM, "lefs": _NUM, "psfs": _NUM, "groc": _NUM,
    "age": _NUM, "sex": _TEXT, "payer": _TEXT, "symptom_duration_weeks": _NUM,
    "prior_pt": _NUM, "prior_injection": _NUM, "surgery_recommended": _NUM,
}
assert tuple(VISIT_SQL_TYPES) == VISIT_COLUMNS  # one definition of the columns: outcomes.schema

_DDL = [
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    """CREATE TABLE IF NOT EXISTS ingest_log (
        ingest_id INTEGER PRIMARY KEY, file_name VARCHAR, file_sha256 VARCHAR UNIQUE,
        file_format VARCHAR, ingested_at TIMESTAMP, package_version VARCHAR, regime VARCHAR,
        rows_in BIGINT, rows_loaded BIGINT, rows_quarantined BIGINT, rows_duplicate BIGINT,
        rows_blank BIGINT, rows_withdrawn BIGINT, summary VARCHAR)""",
    "CREATE TABLE IF NOT EXISTS visits ("
    + ", ".join(f"{c} {t}" for c, t in VISIT_SQL_TYPES.items())
    + ", ingest_id INTEGER)",
    """CREATE TABLE IF NOT EXISTS visit_techniques (
        visit_id VARCHAR, technique_code VARCHAR, family VARCHAR, source_text VARCHAR,
        ingest_id INTEGER)""",
    """CREATE TABLE IF NOT EXISTS quarantine (
        ingest_id INTEGER, row_number BIGINT, visit_id VARCHAR, raw_row VARCHAR,
        reason_code VARCHAR, reason_text VARCHAR)""",
    "CREATE TABLE IF NOT EXISTS episodes (episode_id VARCHAR)",
    # scores of instruments without a visits column (ODI, NDI, profile-added ...), long format
    """CREATE TABLE IF NOT EXISTS visit_measures (
        visit_id VARCHAR, instrument VARCHAR, score DOUBLE, ingest_id INTEGER)""",
]


def lock_timeout() -> float:
    """Seconds to wait for the store lock: ``$OUTCOMES_LOCK_TIMEOUT`` or 120."""
    try:
        return float(os.environ.get("OUTCOMES_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT))
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT


def _memory_limit() -> str:
    """DuckDB's memory cap for writers: ``$OUTCOMES_DUCKDB_MEMORY`` (e.g. ``2GB``) or ``512MB``.

    The value goes into a SQL ``SET`` statement, so only a number and a size unit pass;
    anything else raises :class:`StoreError` naming the variable.
    """
    import re

    value = os.environ.get("OUTCOMES_DUCKDB_MEMORY", "512MB").strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*([KMGT]i?B|B)", value, flags=re.IGNORECASE):
        raise StoreError("$OUTCOMES_DUCKDB_MEMORY: expected a size such as 512MB or 2GB")
    return value


def resolve_db(db: str | os.PathLike | None) -> Path:
    """The store path: ``db``, else ``$OUTCOMES_DB``, else ``./outcomes.duckdb``."""
    return Path(db if db is not None else os.environ.get("OUTCOMES_DB", "outcomes.duckdb"))


def _connect(path: Path, read_only: bool, timeout: float):
    """Open ``path``, retrying while another process holds DuckDB's file lock."""
    import duckdb

    deadline = time.monotonic() + timeout
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise StoreError(f"store {path} could not be opened: {_first_line(exc)}") from None
            if time.monotonic() >= deadline:
                raise StoreBusyError(
                    f"store {path} is busy: another outcomes process is using it "
                    f"(waited {timeout:g} s); try again when it finishes"
                ) from None
            time.sleep(0.1)
        except duckdb.Error as exc:
            raise StoreError(f"store {path} could not be opened: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


@contextmanager
def open_store(db: str | os.PathLike | None = None, read_only: bool = True,
               timeout: float | None = None) -> Iterator[Any]:
    """Open the DuckDB store as a context manager and yield the connection.

    Parameters
    ----------
    db : path, optional
        The store file (default ``$OUTCOMES_DB`` or ``./outcomes.duckdb``).
    read_only : bool
        Read-only connections never create the file; a missing store raises :class:`StoreError`.
        A writable connection creates the tables on first use.
    timeout : float, optional
        Seconds to wait while another process holds the store (default
        ``$OUTCOMES_LOCK_TIMEOUT`` or 120); then :class:`StoreBusyError`.

    Returns
    -------
    duckdb.DuckDBPyConnection
        Closed when the block exits.

    Notes
    -----
    DuckDB lets one process write a database file at a time and takes an OS file lock; this
    function turns "lock held" into waiting, then a clear :class:`StoreBusyError`.
    """
    path = resolve_db(db)
    if read_only and not path.exists():
        raise StoreError(f"store {path} does not exist; run `outcomes ingest FILE --db {path}` first")
    con = _connect(path, read_only, lock_timeout() if timeout is None else timeout)
    try:
        if read_only:
            check_version(con, path)
        else:
            # DuckDB caches up to 80 % of RAM by default; an ingest shares the process with
            # pandas, so cap it (it spills to a temp file beside the store instead)
            con.execute(f"SET memory_limit = '{_memory_limit()}'")
            init_store(con, path)
        yield con
    finally:
        con.close()


def init_store(con: Any, path: Path | str = "store") -> None:
    """Create the tables if needed and record the schema version; refuse other versions."""
    for statement in _DDL:
        con.execute(statement)
    row = _one(con, "SELECT value FROM meta WHERE key = 'schema_version'")
    if row is None:
        con.execute("INSERT INTO meta VALUES ('schema_version', ?), ('created_at', ?)",
                    [str(SCHEMA_VERSION), pd.Timestamp.now(tz="UTC").isoformat()])
    else:
        check_version(con, path)


def check_version(con: Any, path: Path | str = "store") -> None:
    """Raise :class:`StoreError` unless the store carries :data:`SCHEMA_VERSION`."""
    import duckdb

    try:
        row = _one(con, "SELECT value FROM meta WHERE key = 'schema_version'")
    except duckdb.Error:
        raise StoreError(f"{path} is not an outcomes store (no meta table)") from None
    if row is None or row[0] != str(SCHEMA_VERSION):
        found = row[0] if row else "none"
        raise StoreError(f"{path} has store schema version {found}; this outcomes expects "
                         f"{SCHEMA_VERSION}: re-ingest the exports into a new store")


def _one(con: Any, sql: str, params: list | None = None) -> tuple | None:
    """The first row of a query (all rows fetched, so the connection is free again)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def _frame(con: Any, sql: str, params: list | None = None) -> pd.DataFrame:
    """Query -> DataFrame through Arrow; text columns come back as ``string[pyarrow]``."""
    import pyarrow as pa

    # streamed in batches, so DuckDB never materialises a second full copy of the result
    table = con.sql(sql, params=params or None).to_arrow_reader(1 << 17).read_all()
    strings = pd.StringDtype("pyarrow")
    return table.to_pandas(types_mapper={pa.string(): strings, pa.large_string(): strings}.get)


def load_visits(db: str | os.PathLike | None = None, *, clinic_id: str | None = None,
                therapist_id: str | None = None) -> pd.DataFrame:
    """Return the clean visit table (columns of :data:`outcomes.schema.VISIT_COLUMNS`).

    Parameters
    ----------
    db : path, optional
        The store.
    clinic_id, therapist_id : str, optional
        Keep only that clinic's / therapist's visits.

    Returns
    -------
    DataFrame
        One row per visit, ``visit_date`` as ``datetime64[ns]``, sorted by patient and date.
    """
    where, params = _filters(clinic_id=clinic_id, therapist_id=therapist_id)
    cols = ", ".join(VISIT_COLUMNS)
    with open_store(db) as con:
        out = _frame(con, f"SELECT {cols} FROM visits{where} "
                          "ORDER BY patient_id, visit_date, visit_id", params)
    out["visit_date"] = pd.to_datetime(out["visit_date"]).astype("datetime64[ns]")
    return out


def load_techniques(db: str | os.PathLike | None = None) -> pd.DataFrame:
    """Return ``visit_techniques`` rows that mapped to a code (visit_id, technique_code, family)."""
    with open_store(db) as con:
        return _techniques(con)


def _techniques(con: Any) -> pd.DataFrame:
    # rows are stored in any order (ingest inserts them in parallel): sort for the same output
    return _frame(con, "SELECT visit_id, technique_code, family FROM visit_techniques "
                       "WHERE technique_code IS NOT NULL ORDER BY visit_id, technique_code")


def load_episodes(db: str | os.PathLike | None = None, *, clinic_id: str | None = None,
                  therapist_id: str | None = None) -> pd.DataFrame:
    """Return the episode table built at the last ingest (see :class:`outcomes.schema.EpisodeSchema`).

    Parameters
    ----------
    db : path, optional
        The store.
    clinic_id, therapist_id : str, optional
        Keep only that clinic's / therapist's episodes.
    """
    where, params = _filters(clinic_id=clinic_id, therapist_id=therapist_id)
    with open_store(db) as con:
        cols = {r[0] for r in con.execute("DESCRIBE episodes").fetchall()}
        if where and not {"clinic_id", "therapist_id"} <= cols:
            return _frame(con, "SELECT * FROM episodes WHERE false")
        return _frame(con, f"SELECT * FROM episodes{where} ORDER BY episode_id", params)


def _filters(**eq: str | None) -> tuple[str, list]:
    items = [(k, v) for k, v in eq.items() if v is not None]
    if not items:
        return "", []
    return " WHERE " + " AND ".join(f"{k} = ?" for k, _ in items), [v for _, v in items]


def load_quarantine_summary(db: str | os.PathLike | None = None) -> pd.DataFrame:
    """Quarantined rows by reason: columns ``reason_code, n`` (most frequent first)."""
    with open_store(db) as con:
        return _quarantine_counts(con)


def _quarantine_counts(con: Any) -> pd.DataFrame:
    return _frame(con, "SELECT reason_code, count(*)::BIGINT AS n FROM quarantine "
                       "GROUP BY reason_code ORDER BY n DESC, reason_code")


def load_unmapped(db: str | os.PathLike | None = None) -> pd.DataFrame:
    """Technique texts no vocabulary entry matched, over stored visits: columns ``text, n``."""
    with open_store(db) as con:
        return _frame(con, "SELECT source_text AS text, count(*)::BIGINT AS n "
                           "FROM visit_techniques WHERE technique_code IS NULL "
                           "GROUP BY source_text ORDER BY n DESC, text")


def load_instrument_counts(db: str | os.PathLike | None = None) -> pd.DataFrame:
    """Instruments the store has scores for (visit columns and ``visit_measures``).

    Returns
    -------
    DataFrame
        ``instrument, scores, patients, spec``: stored scores and distinct patients with one;
        ``spec`` is the JSON definition of an instrument a profile added (else None), from the
        ingest log. Instruments without a score are left out.
    """
    per_column = " UNION ALL ".join(
        f"SELECT '{c}' AS instrument, count({c}) AS scores, "
        f"count(DISTINCT CASE WHEN {c} IS NOT NULL THEN patient_id END) AS patients FROM visits"
        for c in SCORE_COLUMNS)
    long = ("SELECT m.instrument, count(*), count(DISTINCT v.patient_id) "
            "FROM visit_measures m JOIN visits v USING (visit_id) GROUP BY 1")
    with open_store(db) as con:
        # a store written before visit_measures existed gets the table on its next write
        has_long = _one(con, "SELECT count(*) FROM information_schema.tables "
                             "WHERE table_name = 'visit_measures'")[0]
        counts = _frame(con, f"SELECT * FROM ({per_column})"
                             + (f" UNION ALL {long}" if has_long else ""))
        logs = _frame(con, "SELECT summary FROM ingest_log ORDER BY ingest_id")
    specs: dict[str, str] = {}
    for text in logs["summary"].dropna():
        added = json.loads(text).get("profile", {}).get("instruments") or {}
        specs.update({k: json.dumps(v, sort_keys=True) for k, v in added.items()})
    counts = counts[counts["scores"] > 0].astype({"scores": "int64", "patients": "int64"})
    return counts.assign(spec=counts["instrument"].map(specs)).reset_index(drop=True)


def store_status(db: str | os.PathLike | None = None) -> dict[str, Any]:
    """Summarise the store: files ingested, visits, patients, episodes, dates, quarantine.

    Returns
    -------
    dict
        ``store, schema_version, files_ingested, visits, patients, episodes, first_visit,
        last_visit, quarantined, quarantine_by_reason, unmapped_technique_texts, last_ingest``.
    """
    path = resolve_db(db)
    with open_store(path) as con:
        one = _one(con,
            "SELECT count(*), count(DISTINCT patient_id), min(visit_date), max(visit_date) "
            "FROM visits")
        files, last = _one(con, "SELECT count(*), max(ingested_at) FROM ingest_log")
        n_episodes = _one(con, "SELECT count(*) FROM episodes")[0]
        reasons = _quarantine_counts(con)
        unmapped = _one(con, "SELECT count(DISTINCT source_text) FROM visit_techniques "
                               "WHERE technique_code IS NULL")[0]
    return {
        "store": str(path),
        "schema_version": SCHEMA_VERSION,
        "files_ingested": int(files),
        "visits": int(one[0]),
        "patients": int(one[1]),
        "episodes": int(n_episodes),
        "first_visit": None if one[2] is None else str(one[2]),
        "last_visit": None if one[3] is None else str(one[3]),
        "quarantined": int(reasons["n"].sum()) if len(reasons) else 0,
        "quarantine_by_reason": {r: int(n) for r, n in zip(reasons["reason_code"], reasons["n"],
                                                           strict=True)},
        "unmapped_technique_texts": int(unmapped),
        "last_ingest": None if last is None else str(last),
    }


def export_episodes(db: str | os.PathLike | None, out: Path) -> int:
    """Write the episode table to ``out`` (``.csv``, ``.xlsx`` or ``.parquet``); return the row count.

    CSV and XLSX cells starting with ``=``, ``+``, ``-`` or ``@`` are neutralised with
    :func:`outcomes.privacy.neutralize_formulas` so spreadsheets do not run them as formulas.
    The file is written beside ``out`` and renamed into place, so a crash leaves no half file.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".xlsx", ".parquet"):
        raise StoreError(f"--out {out}: use a .csv, .xlsx or .parquet file name")
    if not out.parent.is_dir():
        raise StoreError(f"--out {out}: folder {out.parent} does not exist; create it first")
    data = load_episodes(db)
    tmp = out.with_name(f".{out.stem}.tmp{suffix}")
    try:
        _write_table(data, tmp, suffix)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"--out {out}: cannot write ({exc.strerror})") from None
    return len(data)


def _write_table(data: pd.DataFrame, path: Path, suffix: str) -> None:
    """Write ``data``; spreadsheet formats get formula-like cells neutralised first."""
    if suffix == ".parquet":
        data.to_parquet(path, index=False)
        return
    from outcomes.privacy import neutralize_formulas

    safe = neutralize_formulas(data)
    if suffix == ".csv":
        safe.to_csv(path, index=False)
    else:
        safe.to_excel(path, index=False)


# --- write side, used by outcomes.ingest inside one transaction ------------------------------


def find_ingest(con: Any, sha256: str) -> dict[str, Any] | None:
    """The ``ingest_log`` row of a file with this hash, or None."""
    rows = _frame(con, "SELECT * FROM ingest_log WHERE file_sha256 = ?", [sha256])
    return None if rows.empty else rows.iloc[0].to_dict()


def next_ingest_id(con: Any) -> int:
    """The id the next ingest gets (ids are dense, starting at 1)."""
    return int(_one(con, "SELECT coalesce(max(ingest_id), 0) + 1 FROM ingest_log")[0])


def _with_keys(con: Any, name: str, keys: pd.Series, sql: str) -> pd.DataFrame:
    """Run ``sql`` joined against a registered one-column key table ``name``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = keys.astype(pd.StringDtype("pyarrow")).array.__arrow_array__()
    table = pa.table({"k": pc.unique(pc.drop_null(arr))})
    con.register(name, table)
    try:
        return _frame(con, sql)
    finally:
        con.unregister(name)


def _is_empty(con: Any, table: str) -> bool:
    return _one(con, f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)")[0] == 0


def existing_visits(con: Any, visit_ids: pd.Series) -> pd.DataFrame:
    """Stored visits whose ``visit_id`` is in ``visit_ids`` (canonical columns)."""
    cols = ", ".join(f"v.{c}" for c in VISIT_COLUMNS)
    if _is_empty(con, "visits"):  # first load: nothing to compare (and no 1M-key join)
        return _frame(con, f"SELECT {cols} FROM visits v LIMIT 0").astype(
            {"visit_date": "datetime64[ns]"})
    out = _with_keys(con, "_ids", visit_ids,
                     f"SELECT {cols} FROM visits v JOIN _ids ON v.visit_id = _ids.k")
    out["visit_date"] = pd.to_datetime(out["visit_date"]).astype("datetime64[ns]")
    return out


def conflicted_ids(con: Any, visit_ids: pd.Series) -> set[str]:
    """Visit ids already quarantined as conflicting duplicates (a third copy must not load)."""
    if _is_empty(con, "quarantine"):
        return set()
    out = _with_keys(con, "_ids", visit_ids,
                     "SELECT DISTINCT q.visit_id FROM quarantine q JOIN _ids ON q.visit_id = _ids.k "
                     "WHERE q.reason_code = 'conflicting_duplicate'")
    return set(out["visit_id"])


def first_evaluations(con: Any, patient_ids: pd.Series) -> pd.Series:
    """Earliest stored evaluation date per patient (index patient_id)."""
    if _is_empty(con, "visits"):
        return pd.Series(dtype="datetime64[ns]")
    out = _with_keys(con, "_pids", patient_ids,
                     "SELECT v.patient_id, min(v.visit_date) AS first_eval FROM visits v "
                     "JOIN _pids ON v.patient_id = _pids.k WHERE v.visit_type = 'evaluation' "
                     "GROUP BY v.patient_id")
    return pd.to_datetime(out.set_index("patient_id")["first_eval"]).astype("datetime64[ns]")


def insert_frame(con: Any, table: str, data: pd.DataFrame | Any, *, ordered: bool = True,
                 **constants: Any) -> None:
    """Bulk-insert ``data`` (a DataFrame or an Arrow table) through Arrow (zero-copy for
    Arrow-backed columns).

    ``constants`` are columns with one value for every row (e.g. ``ingest_id=3``), added in SQL
    so the frame is not copied to hold them. ``ordered=False`` lets DuckDB store the rows in
    any order (``preserve_insertion_order = false``: it then writes with every thread, about
    twice as fast); use it only for a table that is always read with ``ORDER BY`` (``visits``,
    ``visit_techniques``).
    """
    if len(data) == 0:
        return
    con.register("_new_rows", data if hasattr(data, "schema") else _arrow_table(data))
    try:
        cols = ", ".join(data.column_names if hasattr(data, "schema") else data.columns)
        extra = "".join(f", {k}" for k in constants)
        params = "".join(", ?" for _ in constants)
        if not ordered:
            con.execute("SET preserve_insertion_order = false")
        con.execute(f"INSERT INTO {table} ({cols}{extra}) SELECT {cols}{params} FROM _new_rows",
                    list(constants.values()))
    finally:
        if not ordered:
            con.execute("RESET preserve_insertion_order")
        con.unregister("_new_rows")


def insert_visits(con: Any, visits: pd.DataFrame, *, ingest_id: int) -> None:
    """Insert clean visits (any row order) and check them with :func:`check_visits`."""
    insert_frame(con, "visits", visits, ordered=False, ingest_id=ingest_id)
    check_visits(con, ingest_id)


def check_visits(con: Any, ingest_id: int) -> None:
    """Check one ingest's stored visits against :class:`outcomes.schema.VisitSchema`, in SQL.

    The schema's checks (not null, unique, value sets, ranges) become one DuckDB query over the
    ingest's rows, plus, when earlier ingests stored visits, a join showing ``visit_id`` is
    unique across the store; column types are the table's. A
    failure means a row check of :func:`outcomes.ingest.clean.clean_visits` let a bad row
    through: a bug, raised as AssertionError (the caller rolls the ingest back).

    Notes
    -----
    Same checks as pandera's ``VisitSchema.validate`` on the clean frame, which cost more than
    the insert itself at 1M rows (pandas switches ``isin`` to numpy's sorting one there);
    tested against it in ``tests/test_store.py``.
    """
    from outcomes.schema import VisitSchema

    schema = VisitSchema.to_schema()
    checks = _sql_checks(schema)
    unique = [c for c, spec in schema.columns.items() if spec.unique]
    # one scan of the ingest's rows: every column check, and uniqueness among these rows
    mine = f"FROM visits WHERE ingest_id = {int(ingest_id)}"
    counts = _one(con, "SELECT " + ", ".join(
        [f"count(*) FILTER (WHERE {sql})" for _, sql in checks]
        + [f"count({c}) - count(DISTINCT {c})" for c in unique]) + f" {mine}")
    names = [name for name, _ in checks] + [f"{c}: unique" for c in unique]
    failed = [name for name, n in zip(names, counts, strict=True) if n]
    if not _is_empty(con, f"visits WHERE ingest_id <> {int(ingest_id)}"):
        for col in unique:  # and against the rows of earlier ingests (none on a first load)
            if f"{col}: unique" not in failed and _one(con, f"SELECT count(*) FROM visits JOIN (SELECT {col} {mine}) USING ({col}) "
                         f"WHERE ingest_id <> {int(ingest_id)}")[0]:
                failed.append(f"{col}: unique")
    if failed:
        raise AssertionError(f"clean rows fail VisitSchema: {failed[:5]}")


def _sql_checks(schema: Any) -> list[tuple[str, str]]:
    """(check name, SQL condition that is true on a failing row) per pandera column check."""
    out = []
    for col, spec in schema.columns.items():
        if not spec.nullable:
            out.append((f"{col}: not null", f"{col} IS NULL"))
        for check in spec.checks:
            stats = check.statistics
            if check.name == "greater_than_or_equal_to":
                sql = f"{col} < {float(stats['min_value'])!r}"
            elif check.name == "less_than_or_equal_to":
                sql = f"{col} > {float(stats['max_value'])!r}"
            elif check.name == "isin":
                sql = f"{col} NOT IN ({', '.join(map(_sql_literal, stats['allowed_values']))})"
            else:
                raise NotImplementedError(f"VisitSchema check {check.name} has no SQL form")
            out.append((f"{col}: {check.name}", sql))
    return out


def _sql_literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(float(value))


def _arrow_table(data: pd.DataFrame):
    """``data`` as an Arrow table for DuckDB to scan.

    A table, not a stream of batches converted on demand: DuckDB's scan threads would need the
    GIL for every batch and wait on Python work in other threads (ingest maps techniques and
    builds episodes while the visits are written). Arrow-backed text columns are shared, not
    copied, so the table costs only the numeric columns' copies.
    """
    import pyarrow as pa

    return pa.Table.from_pandas(data, preserve_index=False)


def withdraw_visits(con: Any, visit_ids: pd.Series) -> None:
    """Delete stored visits (and their techniques) that a later file contradicts."""
    if len(visit_ids) == 0:
        return
    for table in ("visits", "visit_techniques", "visit_measures"):
        _with_keys(con, "_wids", visit_ids,
                   f"DELETE FROM {table} WHERE visit_id IN (SELECT k FROM _wids)")


def log_ingest(con: Any, record: dict[str, Any]) -> None:
    """Append one row to ``ingest_log``."""
    cols = list(record)
    con.execute(f"INSERT INTO ingest_log ({', '.join(cols)}) VALUES "
                f"({', '.join('?' for _ in cols)})", [record[c] for c in cols])
