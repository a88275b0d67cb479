"""outcomes.store: schema version, atomic ingests under SIGKILL, locking, read API, exports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from conftest import TODAY, make_visit_rows, store_snapshot, write_rows

from outcomes.errors import StoreBusyError, StoreError
from outcomes.ingest import ingest_file
from outcomes.store import (
    SCHEMA_VERSION,
    export_episodes,
    load_episodes,
    load_quarantine_summary,
    load_unmapped,
    load_visits,
    open_store,
    store_status,
)


def ingest_cmd(path: Path, db: Path) -> list[str]:
    return [sys.executable, "-m", "outcomes.cli", "ingest", str(path), "--db", str(db), "--json"]


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("OUTCOMES_")}
    return {**out, **extra}


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 60) -> None:
    """Read the child's stderr until ``text`` appears (the child is then paused in place)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if text in line:
            return
        if line == "" and proc.poll() is not None:
            break
    raise AssertionError(f"child never printed {text!r}: {''.join(seen)[-2000:]}")


def kill_before_commit(cmd: list[str]) -> None:
    """Run an ingest that pauses after writing every row, before COMMIT, and SIGKILL it there."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, stdout=subprocess.DEVNULL,
                            env=env(OUTCOMES_HOLD_BEFORE_COMMIT="60"))
    try:
        wait_for_line(proc, "holding before commit")  # everything written, not committed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.fixture
def seeded(tmp_path, db_path):
    """A store holding one export, and a second export not yet ingested."""
    ingest_file(write_rows(tmp_path / "a.csv", make_visit_rows(3)), db=db_path, today=TODAY)
    second = write_rows(tmp_path / "b.csv", make_visit_rows(4, "2024-03-04", prefix="B"))
    return db_path, second


def test_schema_version_is_stored_and_checked(seeded):
    db, _ = seeded
    with open_store(db) as con:
        assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchall() == [
            (str(SCHEMA_VERSION),)]
    con = duckdb.connect(str(db))
    con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="schema version 999"):
        store_status(db)


def test_missing_and_foreign_stores_are_refused(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        store_status(tmp_path / "nope.duckdb")
    assert not (tmp_path / "nope.duckdb").exists()
    foreign = tmp_path / "other.duckdb"
    duckdb.connect(str(foreign)).close()
    with pytest.raises(StoreError, match="not an outcomes store"):
        load_visits(foreign)


def test_memory_limit_variable_is_checked_before_it_reaches_sql(tmp_path, monkeypatch):
    """$OUTCOMES_DUCKDB_MEMORY is pasted into a SET statement: only a size may pass."""
    db = tmp_path / "m.duckdb"
    monkeypatch.setenv("OUTCOMES_DUCKDB_MEMORY", "1GB")
    with open_store(db, read_only=False) as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone() == ("953.6 MiB",)
    monkeypatch.setenv("OUTCOMES_DUCKDB_MEMORY", "1GB'; DROP TABLE visits; --")
    with pytest.raises(StoreError, match="OUTCOMES_DUCKDB_MEMORY"):
        with open_store(db, read_only=False):
            pass
    monkeypatch.delenv("OUTCOMES_DUCKDB_MEMORY")
    with open_store(db) as con:
        assert con.execute("SELECT count(*) FROM visits").fetchone() == (0,)


def test_read_api(seeded, tmp_path):
    db, second = seeded
    rows = make_visit_rows(1, prefix="Q")
    rows[2]["nprs"] = "12"
    rows[3]["technique_notes"] = "zorbing"
    ingest_file(write_rows(tmp_path / "q.csv", rows), db=db, today=TODAY)
    visits = load_visits(db)
    assert len(visits) == 19 and str(visits["visit_date"].dtype) == "datetime64[ns]"
    assert set(load_visits(db, therapist_id="T1")["patient_id"]) == {"P001"}
    assert len(load_episodes(db)) == 4
    assert set(load_episodes(db, clinic_id="C1")["patient_id"]) == {"P000", "P001", "P002",
                                                                   "QP000"}
    assert load_quarantine_summary(db).to_dict("records") == [
        {"reason_code": "score_out_of_range", "n": 1}]
    assert load_unmapped(db).to_dict("records") == [{"text": "zorbing", "n": 1}]
    status = store_status(db)
    assert status["files_ingested"] == 2 and status["visits"] == 19
    assert status["quarantine_by_reason"] == {"score_out_of_range": 1}
    assert status["last_visit"] is not None and status["unmapped_technique_texts"] == 1


def test_export_episodes_csv_neutralises_formulas(tmp_path, db_path):
    rows = make_visit_rows(1)
    for r in rows:
        r["patient_id"] = "=HYPERLINK(\"http://x\")"
        r["therapist_id"] = "@T1"
    ingest_file(write_rows(tmp_path / "f.csv", rows), db=db_path, today=TODAY)
    out = tmp_path / "ep.csv"
    assert export_episodes(db_path, out) == 1
    data = pd.read_csv(out, dtype=str)
    assert data.loc[0, "patient_id"] == "'=HYPERLINK(\"http://x\")"
    assert data.loc[0, "therapist_id"] == "'@T1"
    pq = tmp_path / "ep.parquet"
    assert export_episodes(db_path, pq) == 1
    assert pd.read_parquet(pq).loc[0, "patient_id"] == "=HYPERLINK(\"http://x\")"
    xlsx = tmp_path / "ep.xlsx"
    assert export_episodes(db_path, xlsx) == 1
    assert pd.read_excel(xlsx, dtype=str).loc[0, "patient_id"] == "'=HYPERLINK(\"http://x\")"
    with pytest.raises(StoreError, match=".xlsx or .parquet"):
        export_episodes(db_path, tmp_path / "ep.json")
    with pytest.raises(StoreError, match="does not exist"):
        export_episodes(db_path, tmp_path / "no" / "ep.csv")


@pytest.mark.slow
def test_sigkill_before_commit_leaves_the_store_unchanged(seeded):
    db, second = seeded
    before = store_snapshot(db)
    kill_before_commit(ingest_cmd(second, db))
    assert store_snapshot(db) == before
    result = ingest_file(second, db=db, today=TODAY)  # the next run completes
    assert result.rows_loaded == 20 and not result.already_ingested
    assert store_status(db)["visits"] == 35


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.15, 0.4])
def test_sigkill_at_any_moment_is_all_or_nothing(tmp_path, seeded, delay):
    db, _ = seeded
    big = write_rows(tmp_path / "big.csv", make_visit_rows(3000, prefix="K"))  # 15,000 rows
    before = store_snapshot(db)
    proc = subprocess.Popen(ingest_cmd(big, db), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env())
    # wait until the child holds the store's write lock, then kill it part-way
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            duckdb.connect(str(db), read_only=True).close()
        except duckdb.IOException:
            break
        time.sleep(0.02)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    after = store_snapshot(db)
    if after != before:  # the kill came after COMMIT: then the load must be complete
        assert len(after["ingest_log"]) == 2 and len(after["visits"]) == 15 + 15000
    result = ingest_file(big, db=db, today=TODAY)
    assert result.already_ingested or result.rows_loaded == 15000
    assert store_status(db)["visits"] == 15015


@pytest.mark.slow
def test_two_ingests_at_once_wait_or_are_refused(tmp_path, seeded):
    db, second = seeded
    third = write_rows(tmp_path / "c.csv", make_visit_rows(2, "2024-05-06", prefix="C"))
    holder = subprocess.Popen(ingest_cmd(second, db), stderr=subprocess.PIPE, text=True,
                              stdout=subprocess.PIPE, env=env(OUTCOMES_HOLD_BEFORE_COMMIT="4"))
    try:
        wait_for_line(holder, "holding before commit")
        refused = subprocess.run(ingest_cmd(third, db), capture_output=True, text=True,
                                 env=env(OUTCOMES_LOCK_TIMEOUT="0.5"), timeout=120)
        assert refused.returncode == 2
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: store") and "busy" in lines[0]
        with pytest.raises(StoreBusyError, match="busy"):  # readers too: never a half view
            with open_store(db, read_only=True, timeout=0.3):
                pass
        waiter = subprocess.run(ingest_cmd(third, db), capture_output=True, text=True,
                                env=env(OUTCOMES_LOCK_TIMEOUT="120"), timeout=180)
        assert waiter.returncode == 0, waiter.stderr
    finally:
        holder.wait(timeout=120)
    assert holder.returncode == 0
    status = store_status(db)
    assert status["files_ingested"] == 3 and status["visits"] == 15 + 20 + 10


def test_partitioned_episode_rebuild_equals_one_build(tmp_path, db_path):
    """Building per partition of patients (with one as_of) gives the same table as one call of
    build_episodes over all visits (the reference, run directly here)."""
    from outcomes.episode_table import rebuild_episodes
    from outcomes.episodes import build_episodes
    from outcomes.store import load_techniques

    rows = make_visit_rows(12) + make_visit_rows(5, "2024-02-05", prefix="X")
    rows[7]["technique_notes"] = "hiking poles"
    ingest_file(write_rows(tmp_path / "e.csv", rows), db=db_path, today=TODAY)
    reference = build_episodes(load_visits(db_path), load_techniques(db_path))
    reference = reference.sort_values("episode_id", ignore_index=True)
    con = duckdb.connect(str(db_path))
    try:
        assert rebuild_episodes(con, partition_rows=7) == len(reference) == 17
    finally:
        con.close()
    partitioned = load_episodes(db_path)
    pd.testing.assert_frame_equal(partitioned, reference, check_dtype=False)


@pytest.mark.slow
def test_same_input_same_store_whatever_the_time_zone_and_locale(tmp_path):
    """QUALITY.md faults table: re-runs with identical inputs, and a changed machine time zone
    or locale, give identical tables (ingest times aside)."""
    rows = make_visit_rows(4)
    rows[2]["nprs"] = "refused"
    rows[5]["technique_notes"] = "zorbing; call 555-867-5309"
    path = write_rows(tmp_path / "e.csv", rows)
    snapshots = []
    for i, (tz, lang) in enumerate([("UTC", "C"), ("Pacific/Kiritimati", "de_DE.UTF-8"),
                                    ("America/Adak", "C.UTF-8")]):
        db = tmp_path / f"s{i}.duckdb"
        proc = subprocess.run(ingest_cmd(path, db), capture_output=True, text=True, timeout=120,
                              env=env(TZ=tz, LC_ALL=lang, LANG=lang))
        assert proc.returncode == 0, proc.stderr
        snap = store_snapshot(db)
        snap.pop("ingest_log")  # holds the ingest time
        snapshots.append(snap)
    assert snapshots[0] == snapshots[1] == snapshots[2]
    assert len(snapshots[0]["visits"]) == 19 and len(snapshots[0]["episodes"]) == 4


def test_episode_table_is_the_same_for_any_partition_count(tmp_path, db_path):
    """Partitions are built unvalidated and the whole table is validated once: column types,
    values and row order (by episode_id) do not depend on the number of partitions."""
    from outcomes.episode_table import rebuild_episodes

    rows = make_visit_rows(12) + make_visit_rows(5, "2024-02-05", prefix="X")
    ingest_file(write_rows(tmp_path / "e.csv", rows), db=db_path, today=TODAY)
    con = duckdb.connect(str(db_path))
    try:
        tables = []
        for partition_rows in (7, 10**9):
            assert rebuild_episodes(con, partition_rows=partition_rows) == 17
            tables.append((con.sql("DESCRIBE episodes").fetchall(),
                           con.sql("SELECT * FROM episodes").df()))
    finally:
        con.close()
    assert tables[0][0] == tables[1][0]
    pd.testing.assert_frame_equal(tables[0][1], tables[1][1])
    assert tables[0][1]["episode_id"].is_monotonic_increasing


def _episodes_then_full_rebuild(db: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The stored episode table, and the one a full rebuild of the same store gives."""
    from outcomes.episode_table import rebuild_episodes

    kept = load_episodes(db)
    con = duckdb.connect(str(db))
    try:
        rebuild_episodes(con)
    finally:
        con.close()
    return kept, load_episodes(db)


def test_refreshed_episodes_equal_a_full_rebuild(tmp_path):
    """Ingest rebuilds only the touched patients (and open episodes when as_of moves); the
    table equals a full rebuild after each step: later visits of stored patients, a later
    as_of that ends open episodes, a withdrawal that moves as_of earlier, an old store
    without a recorded as_of."""
    db = tmp_path / "s.duckdb"
    first = make_visit_rows(6)
    for row in first[-5:]:  # the last patient's episode stays open (no discharge yet)
        row["visit_type"] = "treatment" if row["visit_type"] == "discharge" else row["visit_type"]
    later = [dict(r, visit_id="L" + r["visit_id"]) for r in make_visit_rows(2, "2025-03-03")]
    late = dict(later[-1], visit_id="LATE", visit_date="2025-06-20")
    steps = [first, later, [late], [dict(late, nprs="0")]]  # the last one withdraws LATE
    status = []
    for i, rows in enumerate(steps):
        ingest_file(write_rows(tmp_path / f"f{i}.csv", rows), db=db, today=TODAY)
        kept, full = _episodes_then_full_rebuild(db)
        pd.testing.assert_frame_equal(kept, full)
        status.append(sorted(kept["status"]))
    assert status[0] != status[1] and "open" in status[0]  # as_of moved: open -> ended
    with open_store(db, read_only=False) as con:  # a store written before as_of was recorded
        con.execute("DELETE FROM meta WHERE key = 'episodes_as_of'")
        con.execute("DELETE FROM episodes")
    ingest_file(write_rows(tmp_path / "g.csv", make_visit_rows(1, prefix="G")), db=db, today=TODAY)
    kept, full = _episodes_then_full_rebuild(db)
    pd.testing.assert_frame_equal(kept, full)
    assert len(kept) == 6 + 2 + 1  # first file, the later episodes of P000 and P001, G


@pytest.mark.parametrize("column, value, check", [
    ("nprs", 11.0, "nprs: less_than_or_equal_to"), ("groc", -8.0, "groc: greater_than_or_equal_to"),
    ("visit_type", "consult", "visit_type: isin"), ("prior_pt", 0.5, "prior_pt: isin"),
    ("patient_id", None, "patient_id: not null"), ("visit_id", None, "visit_id: unique"),
])
def test_check_visits_in_sql_rejects_what_pandera_rejects(tmp_path, db_path, column, value,
                                                          check):
    """store.check_visits (SQL, used by ingest) and VisitSchema.validate (pandera) agree: a clean
    ingest passes both; one bad stored row fails both, named by column and check."""
    import pandera.errors

    from outcomes.schema import VisitSchema
    from outcomes.store import check_visits

    ingest_file(write_rows(tmp_path / "e.csv", make_visit_rows(2)), db=db_path, today=TODAY)
    with open_store(db_path, read_only=False) as con:
        check_visits(con, 1)
        con.execute("INSERT INTO visits SELECT * REPLACE (2 AS ingest_id) FROM visits "
                    "WHERE visit_id = 'V0001'")
        if column != "visit_id":  # else the copy itself is the duplicate
            con.execute(f"UPDATE visits SET {column} = ?, visit_id = 'NEW' "
                        "WHERE ingest_id = 2", [value])
            check_visits(con, 1)  # the other ingest's rows are not this one's problem
        with pytest.raises(AssertionError, match=check):
            check_visits(con, 2)
    bad = load_visits(db_path)
    with pytest.raises(pandera.errors.SchemaError):
        VisitSchema.validate(bad)


def test_instrument_counts_list_only_instruments_with_scores(tmp_path):
    """Visit columns and visit_measures; a store from before visit_measures still reads."""
    from conftest import make_visit_rows, write_rows

    from outcomes.ingest import ingest_file
    from outcomes.store import load_instrument_counts

    db = tmp_path / "s.duckdb"
    rows = make_visit_rows(3)
    for row in rows:
        row["psfs"] = row["groc"] = ""  # never recorded: not listed
    ingest_file(write_rows(tmp_path / "e.csv", rows), db=db, today="2025-06-30")
    counts = load_instrument_counts(db).set_index("instrument")
    assert list(counts.index) == ["nprs", "lefs"] and counts.loc["nprs", "patients"] == 3
    assert counts.loc["nprs", "scores"] == sum(r["nprs"] != "" for r in rows)
    with duckdb.connect(str(db)) as con:
        con.execute("INSERT INTO visit_measures VALUES ('V0000', 'ndi', 20, 1), "
                    "('V0001', 'ndi', 18, 1)")
    counts = load_instrument_counts(db).set_index("instrument")
    assert counts.loc["ndi", "scores"] == 2 and counts.loc["ndi", "patients"] == 1
    with duckdb.connect(str(db)) as con:
        con.execute("DROP TABLE visit_measures")  # as a store written by an older outcomes
    assert list(load_instrument_counts(db)["instrument"]) == ["nprs", "lefs"]
