"""The stored episode table: brought up to date inside each ingest's transaction.

An ingest rebuilds the episodes of the patients it touched, from the visits it loaded (still in
memory) and their stored ones, in three steps: :func:`plan_refresh` reads what it needs from the
store before the ingest writes, :func:`build_refreshed` builds the rows while the ingest's inserts
run, :func:`write_refreshed` stores them.
:func:`rebuild_episodes` rebuilds the whole table from the store, partition by partition. Both
write through :mod:`outcomes.store`'s connection helpers; readers use
:func:`outcomes.store.load_episodes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from outcomes.schema import VISIT_COLUMNS
from outcomes.store import _frame, _is_empty, _one, _with_keys

__all__ = ["EPISODE_PARTITION_ROWS", "EpisodeRefresh", "plan_refresh", "build_refreshed",
           "write_refreshed", "rebuild_episodes"]

#: What episodes are built from: free-text notes are the widest column and are not read.
_EPISODE_VISIT_COLUMNS = tuple(c for c in VISIT_COLUMNS if c != "technique_notes")
#: Visits per call of build_episodes when rebuilding: bounds memory on big stores.
EPISODE_PARTITION_ROWS = 250_000
#: ``meta`` key holding the ``as_of`` date the stored episode table was built with.
_AS_OF_KEY = "episodes_as_of"


@dataclass
class EpisodeRefresh:
    """How an ingest updates ``episodes``, read from the store before its rows are written.

    Made by :func:`plan_refresh`; :func:`build_refreshed` builds the new rows (no store
    access, so it can run while the ingest's inserts are under way) and :func:`write_refreshed`
    stores them.

    Attributes
    ----------
    as_of : Timestamp or None
        The last visit date of the store once the ingest is written (None: no visit at all).
    rebuild : bool
        The stored table cannot be updated in place (no recorded ``as_of``, or it moved
        earlier): :func:`write_refreshed` rebuilds it from the store with
        :func:`rebuild_episodes`, and :func:`build_refreshed` builds nothing.
    patients : Series or None
        Patients whose episodes are replaced; None when nothing was stored before (the table is
        replaced whole).
    old_visits, old_techniques : DataFrame or None
        Those patients' stored visits and arm-deciding technique rows.
    """

    as_of: pd.Timestamp | None
    rebuild: bool = False
    patients: pd.Series | None = None
    old_visits: pd.DataFrame | None = None
    old_techniques: pd.DataFrame | None = None


def plan_refresh(con: Any, visits: pd.DataFrame,
                 withdrawn: pd.Series | None = None) -> EpisodeRefresh:
    """Read what the episode update of an ingest needs, before the ingest writes its rows.

    Parameters
    ----------
    con : duckdb connection
        Inside the ingest's transaction, after withdrawn visits were deleted and before the
        loaded visits are inserted.
    visits : DataFrame
        The visits this ingest loads (in memory; ``visit_date`` datetime64).
    withdrawn : Series, optional
        Patient ids of stored visits this ingest withdrew.

    Returns
    -------
    EpisodeRefresh

    Notes
    -----
    Episodes never span patients and depend only on the patient's own visits and technique
    rows, and on ``as_of`` (the last stored visit date) through ``status`` alone. So the
    patients rebuilt are those with a loaded or withdrawn visit, plus, when ``as_of`` moved
    later, those with an ``open`` episode (the only status a later ``as_of`` can change). Their
    episodes are built by :func:`outcomes.episodes.build_episodes` from the loaded visits and
    their stored ones, and replace their old rows. The table equals a full rebuild (tested in
    ``tests/test_ingest_equivalence.py`` against the implementation that rebuilt everything);
    a store without a recorded ``as_of``, or whose ``as_of`` moved earlier, is rebuilt in full.
    Everything read here was stored by earlier ingests, so none of it waits for this ingest's
    inserts.
    """
    last, before = _one(con, "SELECT max(visit_date), (SELECT max(value) FROM meta "
                             f"WHERE key = '{_AS_OF_KEY}') FROM visits")
    dates = [pd.Timestamp(d) for d in (last, visits["visit_date"].max()) if pd.notna(d)]
    as_of = max(dates) if dates else None
    if last is None:  # nothing stored: the loaded visits are all there is
        return EpisodeRefresh(as_of)
    if before is None or (before != "" and as_of is not None and as_of < pd.Timestamp(before)):
        return EpisodeRefresh(as_of, rebuild=True)
    patients = _touched(con, visits["patient_id"], withdrawn, before, as_of)
    old_visits, old_techniques = _stored_visits(con, patients)
    return EpisodeRefresh(as_of, patients=patients, old_visits=old_visits,
                          old_techniques=old_techniques)


def build_refreshed(plan: EpisodeRefresh, visits: pd.DataFrame, techniques: pd.DataFrame,
                    technique_visits: np.ndarray | None = None) -> pd.DataFrame | None:
    """The new episode rows of ``plan``'s patients, checked (None when the plan rebuilds).

    ``visits`` and ``techniques`` (``visit_id, family``; ``family`` alone with
    ``technique_visits``) are the ingest's loaded visits and their technique rows;
    ``technique_visits``, when given, is each technique row's position in ``visits`` (see
    :func:`outcomes.episodes.build_episodes`). The store is not touched.
    """
    from outcomes.episodes import build_episodes, check_episodes

    if plan.rebuild:
        return None
    if plan.old_visits is not None:
        old_v, old_t = plan.old_visits, plan.old_techniques
        if technique_visits is not None:  # the stored rows' visits come first
            old_pos = pd.Index(old_v["visit_id"]).get_indexer(old_t["visit_id"])
            technique_visits = np.concatenate([old_pos, technique_visits + len(old_v)])
        visits = pd.concat([old_v, visits[old_v.columns]], ignore_index=True)
        columns = ["family"] if technique_visits is not None else list(old_t.columns)
        techniques = pd.concat([old_t[columns], techniques[columns]], ignore_index=True)
    return check_episodes(build_episodes(visits, techniques, as_of=plan.as_of, validate=False,
                                         technique_visits=technique_visits))


def write_refreshed(con: Any, plan: EpisodeRefresh, episodes: pd.DataFrame | None) -> int:
    """Store :func:`build_refreshed`'s rows (or rebuild the table); return the episode count.

    Runs after the ingest's visit and technique rows were inserted (a rebuild reads them).
    """
    if plan.rebuild:
        return rebuild_episodes(con)
    _write_episodes(con, episodes, plan.patients)
    _record_as_of(con, plan.as_of)
    return int(_one(con, "SELECT count(*) FROM episodes")[0])


def _touched(con: Any, loaded: pd.Series, withdrawn: pd.Series | None, before: str | None,
             as_of: pd.Timestamp | None) -> pd.Series:
    """Patients whose episodes may change: loaded or withdrawn visits, open ones if as_of moved."""
    parts = [loaded, *([] if withdrawn is None else [withdrawn])]
    moved = before is not None and as_of is not None and (before == ""
                                                          or as_of != pd.Timestamp(before))
    if moved and "status" in _columns(con, "episodes"):
        parts.append(_frame(con, "SELECT DISTINCT patient_id FROM episodes "
                                 "WHERE status = 'open'")["patient_id"])
    return pd.concat([p.astype(pd.StringDtype("pyarrow")) for p in parts], ignore_index=True)


def _columns(con: Any, table: str) -> set[str]:
    return {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}


def _stored_visits(con: Any, patients: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stored visits of ``patients`` and their arm-deciding technique rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = patients.array.__arrow_array__()
    con.register("_pids", pa.table({"k": pc.unique(pc.drop_null(arr))}))
    try:
        cols = ", ".join(f"v.{c}" for c in _EPISODE_VISIT_COLUMNS)
        cols = cols.replace("v.visit_date", "v.visit_date::TIMESTAMP AS visit_date")
        con.execute("CREATE TEMP TABLE _old AS SELECT v.* FROM visits v JOIN _pids "
                    "ON v.patient_id = _pids.k")
        visits = _frame(con, f"SELECT {cols} FROM _old v")
        techniques = _frame(con, "SELECT t.visit_id, t.family FROM visit_techniques t "
                                 "JOIN _old USING (visit_id) "
                                 "WHERE t.family IN ('pri', 'traditional')")
    finally:
        con.execute("DROP TABLE IF EXISTS _old")
        con.unregister("_pids")
    visits["visit_date"] = visits["visit_date"].astype("datetime64[ns]")
    return visits, techniques


def _write_episodes(con: Any, episodes: pd.DataFrame, patients: pd.Series | None) -> None:
    """Replace the episodes of ``patients`` (all episodes when None) with ``episodes``."""
    import pyarrow as pa

    if not episodes["episode_id"].is_monotonic_increasing:
        episodes = episodes.sort_values("episode_id", kind="stable", ignore_index=True)
    episodes.attrs = {}  # build metadata (as_of...) is not table data
    con.register("_episodes", pa.Table.from_pandas(episodes, preserve_index=False))
    try:
        if (patients is None or "status" not in _columns(con, "episodes")
            or _is_empty(con, "episodes")):  # an empty table may hold other column types
            con.execute("DROP TABLE IF EXISTS episodes")
            con.execute("CREATE TABLE episodes AS SELECT * FROM _episodes")
            return
        _with_keys(con, "_pids", patients,
                   "DELETE FROM episodes WHERE patient_id IN (SELECT k FROM _pids)")
        con.execute("INSERT INTO episodes BY NAME SELECT * FROM _episodes")
    finally:
        con.unregister("_episodes")


def _record_as_of(con: Any, as_of: pd.Timestamp | None) -> None:
    value = "" if as_of is None else as_of.strftime("%Y-%m-%d")
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [_AS_OF_KEY, value])


def rebuild_episodes(con: Any, partition_rows: int = EPISODE_PARTITION_ROWS) -> int:
    """Replace ``episodes`` with :func:`outcomes.episodes.build_episodes` of all stored visits.

    Returns the number of episodes.

    Notes
    -----
    Episodes never span patients and their ids depend only on the patient's own visits
    (``"<patient_id>-<evaluation date>"``), so the build runs per partition of patients (a hash
    of ``patient_id``) with one ``as_of`` for all, the last stored visit date. The table is the
    same as one call over all visits (tested in ``tests/test_store.py``), with memory bounded by
    the partition size instead of the store size (plus the arm-deciding technique rows: visit
    id and family, read once). Partitions are built without the schema check and the whole
    table, sorted by ``episode_id``, is validated once with
    :class:`outcomes.schema.EpisodeSchema` (pandera costs per call as well as per value).
    Ingest updates the table with :func:`plan_refresh` / :func:`write_refreshed`, which
    fall back to this when the table cannot be updated in place.
    """
    from outcomes.episodes import check_episodes

    n_visits, last = _one(con, "SELECT count(*), max(visit_date) FROM visits")
    k = max(1, -(-int(n_visits) // partition_rows))
    as_of = None if last is None else pd.Timestamp(last)
    parts = _build_partitions(con, k, as_of)
    parts = [p for p in parts if len(p)] or parts[:1]  # empty parts would blur the dtypes
    episodes = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    episodes.attrs = {}
    _write_episodes(con, check_episodes(episodes), None)  # validated once (cost per call)
    _record_as_of(con, as_of)
    return len(episodes)


def _build_partitions(con: Any, k: int, as_of: pd.Timestamp | None) -> list[pd.DataFrame]:
    """build_episodes per partition; the next partition is read while this one is built.

    DuckDB releases the GIL while it runs a query, so reading overlaps the pandas work on a
    second core. Only the worker thread uses the connection while a read is pending; the
    ``with`` block waits for it before an error propagates (and the caller rolls back).
    """
    from concurrent.futures import ThreadPoolExecutor

    from outcomes.episodes import build_episodes

    parts = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        techniques = pool.submit(_read_techniques, con, k)
        pending = pool.submit(_read_partition, con, 0, k, techniques)
        for i in range(k):
            visits, mine = pending.result()
            if i + 1 < k:
                pending = pool.submit(_read_partition, con, i + 1, k, techniques)
            parts.append(build_episodes(visits, mine, as_of=as_of, validate=False))
            del visits, mine
    return parts


def _read_techniques(con: Any, k: int) -> tuple[pd.DataFrame, list[Any]]:
    """The technique rows that decide an arm, and their row positions per partition of patients.

    Only ``pri`` and ``traditional`` (build_episodes ignores "other" and unmapped text); one
    join labels each row with its visit's partition (a join per partition cost more).
    """
    import numpy as np

    if k == 1:
        return _frame(con, "SELECT visit_id, family FROM visit_techniques "
                           "WHERE family IN ('pri', 'traditional')"), []
    rows = _frame(con, f"SELECT t.visit_id, t.family, hash(v.patient_id) % {k} AS _part "
                       "FROM visit_techniques t JOIN visits v USING (visit_id) "
                       "WHERE t.family IN ('pri', 'traditional')")
    part = rows.pop("_part").to_numpy()
    return rows, [np.flatnonzero(part == i) for i in range(k)]


def _read_partition(con: Any, i: int, k: int, techniques: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Visits and arm-deciding technique rows of the patients with ``hash(patient_id) % k == i``.

    ``techniques`` is the future of :func:`_read_techniques` (done: the pool has one worker).
    """
    where = f"WHERE hash(patient_id) % {k} = {i}" if k > 1 else ""
    # dates as timestamps: Arrow date32 would reach pandas as Python date objects (slow)
    cols = ", ".join("visit_date::TIMESTAMP AS visit_date" if c == "visit_date" else c
                     for c in _EPISODE_VISIT_COLUMNS)
    # unordered: build_episodes sorts the visits itself, and an ORDER BY here took longer
    # than the whole episode build
    visits = _frame(con, f"SELECT {cols} FROM visits {where}")
    visits["visit_date"] = visits["visit_date"].astype("datetime64[ns]")
    rows, positions = techniques.result()
    return visits, rows if k == 1 else rows.take(positions[i])
