"""QUALITY.md rows that the per-module test files did not cover on their own.

Each test names its QUALITY.md row (see the map in tests/README.md). Input rows are checked on
both CSV and XLSX, through the public ingest API or the ``outcomes`` CLI, and every load asserts
the conservation invariant (rows read = loaded + quarantined + duplicates + blank), in the intake
summary and in the store, via ``test_ingest.ingest``.
"""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import TODAY, make_visit_rows, store_snapshot, write_rows
from test_ingest import cli_reject, ingest, write_xlsx
from test_report import rendered, store  # noqa: F401 - shared session fixtures

from outcomes.cli import cli
from outcomes.ingest import ingest_file
from outcomes.schema import VISIT_COLUMNS
from outcomes.store import load_episodes, load_unmapped, load_visits, open_store, store_status

FORMATS = ["csv", "xlsx"]


def write_export(path_stem, rows, fmt: str, header=None):
    """``rows`` (dicts or lists) as ``<stem>.csv`` or ``<stem>.xlsx``."""
    if fmt == "csv":
        return write_rows(path_stem.with_suffix(".csv"), rows, header=header)
    return write_xlsx(path_stem.with_suffix(".xlsx"), rows, header=header)


def quarantine_rows(db) -> list[tuple]:
    with open_store(db) as con:
        return con.execute("SELECT row_number, reason_code, reason_text FROM quarantine "
                           "ORDER BY row_number NULLS LAST").fetchall()


# --- bad input: one bad cell, CSV and XLSX -----------------------------------------------------

BAD_CELLS = [
    # (QUALITY.md row, column, value, reason code, text the reason must carry)
    ("out-of-range", "nprs", "11", "score_out_of_range", "0-10"),
    ("out-of-range", "lefs", "81", "score_out_of_range", "0-80"),
    ("out-of-range", "nprs", "-1", "score_out_of_range", "0-10"),
    ("text score", "nprs", "refused", "score_not_numeric", "nprs"),
    ("text score", "nprs", "7/10", "score_not_numeric", "nprs"),
    ("decimal comma", "nprs", "7,5", "score_not_numeric", "decimal comma"),
    ("impossible date", "visit_date", "2024-02-30", "impossible_date", "calendar"),
    ("future visit", "visit_date", "2031-01-06", "future_date", "ingest date"),
    ("mixed day/month", "visit_date", "15/01/2024", "bad_date", "declared format"),
    ("two-digit year", "visit_date", "24-01-15", "bad_date", "declared format"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("row, column, value, code, text", BAD_CELLS,
                         ids=[f"{c}={v}" for _, c, v, _, _ in BAD_CELLS])
def test_bad_cell_is_quarantined_with_its_reason(tmp_path, db_path, fmt, row, column, value,
                                                 code, text):
    rows = make_visit_rows(3)
    rows[1][column] = value  # spreadsheet row 3
    result = ingest(write_export(tmp_path / "e", rows, fmt), db=db_path, today=TODAY)
    assert result.quarantine_by_reason == {code: 1} and result.rows_loaded == 14
    [(number, reason, reason_text)] = quarantine_rows(db_path)
    assert number == 3 and reason == code and text in reason_text
    assert value not in result.summary()


@pytest.mark.parametrize("fmt", FORMATS)
def test_visit_before_intake_is_quarantined(tmp_path, db_path, fmt):
    rows = make_visit_rows(3)
    rows[1]["visit_date"] = "2024-01-01"  # a treatment a week before the evaluation
    result = ingest(write_export(tmp_path / "e", rows, fmt), db=db_path, today=TODAY)
    assert result.quarantine_by_reason == {"before_intake": 1}


@pytest.mark.parametrize("fmt", FORMATS)
def test_n_a_maps_to_missing_and_loads(tmp_path, db_path, fmt):
    rows = make_visit_rows(3)
    rows[1]["nprs"] = "N/A"
    result = ingest(write_export(tmp_path / "e", rows, fmt), db=db_path, today=TODAY)
    assert result.rows_loaded == 15 and result.rows_quarantined == 0
    assert pd.isna(load_visits(db_path).set_index("visit_id").loc["V0001", "nprs"])


def test_typed_xlsx_numbers_out_of_range_are_quarantined(tmp_path, db_path):
    """A real numeric cell (not text) is checked against the instrument range too."""
    rows = [[r[c] for c in VISIT_COLUMNS] for r in make_visit_rows(3)]
    for r in rows:
        r[VISIT_COLUMNS.index("nprs")] = int(r[VISIT_COLUMNS.index("nprs")])
    rows[4][VISIT_COLUMNS.index("nprs")] = 11.5
    result = ingest(write_xlsx(tmp_path / "n.xlsx", rows), db=db_path, today=TODAY)
    assert result.quarantine_by_reason == {"score_out_of_range": 1}
    assert quarantine_rows(db_path)[0][0] == 6


# --- bad input: file-level rows on XLSX ---------------------------------------------------------


def test_duplicate_header_in_xlsx_is_rejected(tmp_path, db_path, visit_rows):
    header = [*VISIT_COLUMNS, "nprs"]
    line = cli_reject(write_xlsx(tmp_path / "h.xlsx", visit_rows, header=header), db_path)
    assert "duplicate column name 'nprs'" in line
    assert store_snapshot(db_path) is None


def test_blank_rows_and_totals_row_in_xlsx(tmp_path, db_path, visit_rows):
    rows = [[r[c] for c in VISIT_COLUMNS] for r in visit_rows]
    rows.insert(3, [None] * len(VISIT_COLUMNS))
    rows.insert(7, [""] * len(VISIT_COLUMNS))
    rows.append(["Total", "", "", "", "", "", "", "", "", 75])
    result = ingest(write_xlsx(tmp_path / "b.xlsx", rows), db=db_path, today=TODAY)
    assert (result.rows_in, result.rows_blank, result.rows_loaded) == (18, 2, 15)
    assert result.quarantine_by_reason == {"totals_row": 1}
    assert quarantine_rows(db_path)[0][:2] == (19, "totals_row")


def test_duplicates_conflicts_and_reingest_in_xlsx(tmp_path, db_path):
    rows = make_visit_rows(3)
    rows.append(dict(rows[2]))  # exact duplicate: one copy kept, counted
    rows.append({**rows[6], "nprs": "1"})  # same visit key, conflicting NPRS: both quarantined
    path = write_xlsx(tmp_path / "d.xlsx", rows)
    result = ingest(path, db=db_path, today=TODAY)
    assert result.rows_duplicate == 1
    assert result.quarantine_by_reason == {"conflicting_duplicate": 2}
    assert [r[0] for r in quarantine_rows(db_path)] == [8, 18]
    assert "V0011" not in set(load_visits(db_path)["visit_id"])
    before = store_snapshot(db_path)
    again = ingest_file(path, db=db_path, today=TODAY)
    assert again.already_ingested and store_snapshot(db_path) == before


def test_whitespace_and_invisible_ids_in_xlsx_still_join(tmp_path, db_path, visit_rows):
    visit_rows[1]["patient_id"] = "\u200bP000"
    visit_rows[2]["patient_id"] = " P000\u00a0"
    visit_rows[3]["therapist_id"] = "\ufeffT0 "
    result = ingest(write_xlsx(tmp_path / "w.xlsx", visit_rows), db=db_path, today=TODAY)
    assert result.rows_loaded == 15
    episodes = load_episodes(db_path)
    assert set(episodes["patient_id"]) == {"P000", "P001", "P002"} and len(episodes) == 3
    assert set(load_visits(db_path)["therapist_id"]) == {"T0", "T1"}


def _xlsx_1904(path, visit_rows, serial: bool):
    import openpyxl
    from openpyxl.utils.datetime import CALENDAR_MAC_1904, to_excel

    wb = openpyxl.Workbook()
    wb.epoch = CALENDAR_MAC_1904
    ws = wb.active
    ws.append(list(VISIT_COLUMNS))
    for r in visit_rows:
        cells = [r[c] for c in VISIT_COLUMNS]
        day = dt.datetime.fromisoformat(r["visit_date"])
        cells[VISIT_COLUMNS.index("visit_date")] = (
            int(to_excel(day, CALENDAR_MAC_1904)) if serial else day)
        ws.append(cells)
    wb.save(path)
    return path


def test_1904_workbook_dates(tmp_path, visit_rows):
    """1904 date system: typed date cells read as their dates; bare serials only when the
    profile declares ``excel_1904`` (Microsoft, "Date systems in Excel": 2024-01-08 is serial
    45299 in the 1900 system, 43837 in the 1904 one), never guessed."""
    typed = _xlsx_1904(tmp_path / "t.xlsx", visit_rows, serial=False)
    db = tmp_path / "typed.duckdb"
    assert ingest(typed, db=db, today=TODAY).rows_loaded == 15
    assert load_visits(db)["visit_date"].min() == pd.Timestamp("2024-01-08")
    serials = _xlsx_1904(tmp_path / "s.xlsx", visit_rows, serial=True)
    undeclared = ingest(serials, db=tmp_path / "u.duckdb", today=TODAY)
    assert undeclared.quarantine_by_reason == {"bad_date": 15}
    db = tmp_path / "declared.duckdb"
    declared = ingest(serials, db=db, profile={"date_format": "excel_1904"}, today=TODAY)
    assert declared.rows_loaded == 15
    assert load_visits(db)["visit_date"].min() == pd.Timestamp("2024-01-08")


# --- very large files: the streaming/chunk boundaries give the same answer ---------------------


def test_encoding_scan_across_chunk_boundaries(tmp_path, db_path, visit_rows, monkeypatch):
    """The file is hashed and decoded in chunks; a multi-byte character split by a chunk boundary
    is not a bad byte, and a bad byte in a later chunk is reported at its true offset."""
    import outcomes.ingest.readers as readers

    monkeypatch.setattr(readers, "_CHUNK", 7)
    for r in visit_rows:
        r["technique_notes"] = "caf\u00e9 \u2014 glute med re-ed"
    path = write_rows(tmp_path / "u.csv", visit_rows)
    assert ingest(path, db=db_path, today=TODAY).rows_loaded == 15
    data = path.read_bytes()
    at = data.rindex("\u2014".encode()) + 1  # break the last em dash in the middle
    bad = tmp_path / "bad.csv"
    bad.write_bytes(data[:at] + b"\xff" + data[at + 1:])
    line = cli_reject(bad, db_path)
    assert f"byte offset {at - 1} " in line  # the em dash's lead byte starts the bad sequence


def test_xlsx_rows_in_chunks_give_the_same_load(tmp_path, monkeypatch):
    """Workbook rows are converted in chunks; chunk boundaries must not shift row numbers."""
    import outcomes.ingest.readers as readers

    rows = [[r[c] for c in VISIT_COLUMNS] for r in make_visit_rows(4)]
    rows[9] = rows[9] + ["EXTRA"]  # a ragged row in the third chunk
    rows[13][VISIT_COLUMNS.index("lefs")] = "99"
    path = write_xlsx(tmp_path / "c.xlsx", rows)
    whole = ingest(path, db=tmp_path / "whole.duckdb", today=TODAY)
    monkeypatch.setattr(readers, "_XLSX_CHUNK", 4)
    chunked = ingest(path, db=tmp_path / "chunked.duckdb", today=TODAY)
    assert chunked.quarantine_by_reason == {"ragged_row": 1, "score_out_of_range": 1}
    assert quarantine_rows(tmp_path / "chunked.duckdb") == quarantine_rows(
        tmp_path / "whole.duckdb")
    assert [r[0] for r in quarantine_rows(tmp_path / "chunked.duckdb")] == [11, 15]
    pd.testing.assert_frame_equal(load_visits(tmp_path / "chunked.duckdb").drop(
        columns="ingest_id", errors="ignore"), load_visits(tmp_path / "whole.duckdb").drop(
        columns="ingest_id", errors="ignore"))
    assert whole.rows_loaded == chunked.rows_loaded == 18


# --- privacy: identifiers in notes, through ingest and the CLI ---------------------------------

PHI_NOTES = {  # kind -> (note, the identifying value that must never come back)
    "name": ("hiking poles; Pt John Smith tolerated well", "John Smith"),
    "phone": ("call 555-867-5309 to reschedule", "867-5309"),
    "email": ("HEP sent to jane.doe@example.com", "jane.doe@example.com"),
    "ssn": ("SSN 123-45-6789 on intake form", "123-45-6789"),
    "mrn": ("MRN 00912345 foam rolling", "00912345"),
    "dob": ("DOB 04/12/1961, IT band stretch", "04/12/1961"),
    "address": ("lives at 123 Main St, stairs to enter", "123 Main St"),
    "age": ("92 yo female, glute med re-ed", "92 yo"),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_phi_of_every_kind_is_redacted_counted_and_never_printed(tmp_path, fmt):
    rows = make_visit_rows(3)
    for k, (note, _) in enumerate(PHI_NOTES.values()):
        rows[k]["technique_notes"] = note
    path = write_export(tmp_path / "p", rows, fmt)
    db = tmp_path / "s.duckdb"
    res = CliRunner().invoke(cli, ["ingest", str(path), "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["phi_counts"] == dict.fromkeys(PHI_NOTES, 1)
    human = CliRunner().invoke(cli, ["ingest", str(path), "--db", str(tmp_path / "h.duckdb")])
    status = CliRunner().invoke(cli, ["status", "--db", str(db), "--json"])
    printed = res.output + human.output + status.output
    stored = repr(store_snapshot(db)) + load_unmapped(db).to_string()
    for kind, (_, value) in PHI_NOTES.items():
        assert value not in printed, kind
        assert value not in stored, kind
    notes = load_visits(db).set_index("visit_id")["technique_notes"]
    assert notes["V0001"] == "call [PHONE] to reschedule"


@pytest.mark.parametrize("fmt", FORMATS)
def test_phi_in_quarantined_rows_is_redacted_too(tmp_path, db_path, fmt):
    """Quarantine keeps the raw row; identifiers in it are redacted like loaded notes."""
    rows = [[r[c] for c in VISIT_COLUMNS] for r in make_visit_rows(3)]
    note, nprs = VISIT_COLUMNS.index("technique_notes"), VISIT_COLUMNS.index("nprs")
    rows[2][note] = "call 555-867-5309"
    rows[2] = rows[2] + ["EXTRA"]  # ragged
    rows[4][note], rows[4][nprs] = "SSN 123-45-6789", "11"  # out of range
    rows[6][note] = "Pt John Smith"
    rows[6][VISIT_COLUMNS.index("visit_date")] = "2024-02-30"
    result = ingest(write_export(tmp_path / "q", rows, fmt), db=db_path, today=TODAY)
    assert result.quarantine_by_reason == {"ragged_row": 1, "score_out_of_range": 1,
                                           "impossible_date": 1}
    assert result.phi_counts == {"phone": 1, "ssn": 1, "name": 1}
    stored = repr(store_snapshot(db_path))
    for value in ("867-5309", "123-45-6789", "John Smith"):
        assert value not in stored, value


def test_detected_delimiter_is_recorded_in_the_store(tmp_path, db_path, visit_rows):
    result = ingest(write_rows(tmp_path / "s.csv", visit_rows, delimiter=";"), db=db_path,
                    today=TODAY)
    with open_store(db_path) as con:
        [(summary,)] = con.execute("SELECT summary FROM ingest_log WHERE ingest_id = ?",
                                   [result.ingest_id]).fetchall()
    logged = json.loads(summary)
    assert (logged["delimiter"], logged["delimiter_detected"]) == (";", True)


def test_xlsx_formula_cell_in_a_score_is_not_silently_missing(tmp_path, db_path):
    """QUALITY.md: only explicit mappings make a score missing; anything else is quarantined."""
    rows = [[r[c] for c in VISIT_COLUMNS] for r in make_visit_rows(3)]
    rows[1][VISIT_COLUMNS.index("nprs")] = "=3+3"  # openpyxl stores a formula, no cached value
    result = ingest(write_xlsx(tmp_path / "f.xlsx", rows), db=db_path, today=TODAY)
    assert result.rows_quarantined == 1
    assert "V0001" not in set(load_visits(db_path)["visit_id"])


def test_clinical_text_is_not_flagged_at_ingest(tmp_path, db_path, visit_rows):
    lookalikes = ["L4-L5 disc bulge", "CPT 97110 x3 units", "dx M76.31", "NPRS 7/10 at eval",
                  "3x10 reps bridges", "Left AIC pattern noted", "LEFS 45/80", "T4-T8 mobility"]
    for row, note in zip(visit_rows, lookalikes, strict=False):
        row["technique_notes"] = note
    result = ingest(write_rows(tmp_path / "c.csv", visit_rows), db=db_path, today=TODAY)
    assert result.phi_counts == {}
    stored = load_visits(db_path)["technique_notes"].tolist()
    assert stored[:len(lookalikes)] == lookalikes


# --- privacy: direct-identifier columns under common EMR header spellings ---------------------

EMR_IDENTIFIER_HEADERS = [("Patient Phone", "555-867-5309"), ("Patient DOB", "1961-02-03"),
                          ("Patient SSN", "123-45-6789"), ("Patient MRN", "00912345"),
                          ("Patient Email", "jd@example.com"), ("Patient Address", "12 Elm St"),
                          ("Address Line 1", "12 Elm St"), ("Med Rec #", "00912345"),
                          ("Account Number", "998877")]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("column, value", EMR_IDENTIFIER_HEADERS,
                         ids=[c for c, _ in EMR_IDENTIFIER_HEADERS])
def test_identifier_columns_under_emr_spellings_reject(tmp_path, db_path, visit_rows, fmt,
                                                       column, value):
    for r in visit_rows:
        r[column] = value
    path = write_export(tmp_path / "i", visit_rows, fmt, header=[*VISIT_COLUMNS, column])
    line = cli_reject(path, db_path)
    assert repr(column) in line and "direct identifier" in line and value not in line


# --- privacy: safe_harbor regime enforced by ingest, end to end -------------------------------

SAFE_HARBOR = {"regime": "safe_harbor", "date_format": "%Y"}


def _year_rows(**extra) -> list[dict[str, str]]:
    rows = make_visit_rows(3)
    for r in rows:
        r["visit_date"] = r["visit_date"][:4]
        r.update(extra)
    return rows


@pytest.mark.parametrize("fmt", FORMATS)
def test_safe_harbor_rejects_day_level_dates(tmp_path, db_path, fmt, visit_rows):
    path = write_export(tmp_path / "d", visit_rows, fmt)
    prof = tmp_path / "sh.toml"
    prof.write_text('regime = "safe_harbor"\n')
    line = cli_reject(path, db_path, "--profile", str(prof))
    assert "safe_harbor" in line and "'visit_date'" in line and "2024-01" not in line
    assert store_snapshot(db_path) is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_safe_harbor_rejects_ages_over_89(tmp_path, db_path, fmt):
    rows = _year_rows(age="45")
    rows[4]["age"] = "93"
    prof = tmp_path / "sh.toml"
    prof.write_text('regime = "safe_harbor"\ndate_format = "%Y"\n')
    line = cli_reject(write_export(tmp_path / "a", rows, fmt), db_path, "--profile", str(prof))
    assert "'age'" in line and "93" not in line


def test_safe_harbor_year_only_export_loads(tmp_path, db_path):
    """The positive case, so the rejects above are about the values and not the regime."""
    result = ingest(write_rows(tmp_path / "y.csv", _year_rows(age="90")), db=db_path,
                    profile=SAFE_HARBOR, today=TODAY)
    assert result.rows_loaded == 15 and result.regime == "safe_harbor"
    assert set(load_visits(db_path)["visit_date"].dt.strftime("%m-%d")) == {"01-01"}


def test_safe_harbor_rejects_a_five_digit_zip_column(tmp_path, db_path):
    header = [*VISIT_COLUMNS, "zip"]
    path = write_rows(tmp_path / "z.csv", _year_rows(age="45", zip="10001"), header=header)
    line = cli_reject(path, db_path, "--profile", str(_toml(tmp_path, SAFE_HARBOR)))
    assert "'zip'" in line and "10001" not in line


def _toml(tmp_path, profile: dict):
    path = tmp_path / "profile.toml"
    path.write_text("".join(f'{k} = "{v}"\n' for k, v in profile.items()))
    return path


# --- privacy: spreadsheet formulas in exports --------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_episodes_export_from_the_cli_neutralises_every_formula_prefix(tmp_path, db_path, suffix):
    """OWASP "CSV Injection": cells starting with = + - @ get a leading apostrophe, in CSV and
    in XLSX (where openpyxl would otherwise store such a string as a live formula)."""
    prefixes = {"P000": "=1+1", "P001": "+SUM(A1)", "P002": "-2+3"}
    rows = make_visit_rows(3)
    for r in rows:
        r["patient_id"] = prefixes[r["patient_id"]]
        r["therapist_id"] = "@" + r["therapist_id"]
    ingest(write_rows(tmp_path / "f.csv", rows), db=db_path, today=TODAY)
    out = tmp_path / f"ep{suffix}"
    res = CliRunner().invoke(cli, ["episodes", "--db", str(db_path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    if suffix == ".csv":
        data = pd.read_csv(out, dtype=str, keep_default_na=False)
    else:
        data = pd.read_excel(out, dtype=str, keep_default_na=False)
    assert sorted(data["patient_id"]) == sorted("'" + v for v in prefixes.values())
    assert set(data["therapist_id"]) == {"'@T0", "'@T1"}
    for column in data.columns:  # plain numbers such as -4.0 are data, not formulas
        text = data[column][pd.to_numeric(data[column], errors="coerce").isna()]
        assert not text.str.match(r"[=+\-@\t\r]").any(), column
    assert not list(tmp_path.glob(".*tmp*"))  # written beside, renamed into place


def test_episodes_export_to_an_unknown_format_is_refused(tmp_path, db_path, clean_csv):
    """Only .csv, .xlsx and .parquet: anything else is one error line and writes nothing."""
    ingest(clean_csv, db=db_path, today=TODAY)
    out = tmp_path / "x.json"
    res = CliRunner().invoke(cli, ["episodes", "--db", str(db_path), "--out", str(out)])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and ".xlsx" in lines[0]
    assert not out.exists()
    assert store_status(db_path)["episodes"] == 3


# --- privacy: director reports are aggregate only (rendered once per session) ------------------


@pytest.mark.slow
def test_director_reports_hold_no_row_level_ids(rendered, store):  # noqa: F811
    """No patient, visit or episode id of the store appears in the quarterly or comparative
    report (page text, decoded images) or the manifest; the planted store does hold therapists
    with 1-10 episodes, so the small-cell rules were exercised."""
    import html

    from test_report import QUARTER, _all_bytes

    episodes = load_episodes(store)
    visits = load_visits(store)
    ids = set(visits["patient_id"]) | set(visits["visit_id"]) | set(episodes["episode_id"])
    caseload = episodes[episodes["end_quarter"] == QUARTER].groupby("therapist_id").size()
    assert caseload.between(1, 10).sum() >= 2, caseload  # adversarial: small caseloads exist
    pages = {name: _all_bytes((rendered.folder / name).read_bytes()).decode("latin-1")
             for name in ("quarterly_outcomes.html", "comparative_analysis.html")}
    pages["manifest.json"] = rendered.manifest.read_text()
    for name, text in pages.items():
        leaked = sorted(i for i in ids if i in text or html.escape(i) in text)
        assert not leaked, (name, leaked[:5])


# --- faults: two real report runs at once, and a failing notebook through the CLI -------------


def _report_cmd(db, out) -> list[str]:
    import sys

    return [sys.executable, "-m", "outcomes.cli", "report", "quarterly", "--quarter", "2026Q3",
            "--db", str(db), "--out", str(out), "--quiet", "--cell-timeout", "120"]


@pytest.mark.slow
def test_two_report_processes_at_once_and_a_failing_cell_through_the_cli(store, tmp_path):  # noqa: F811
    """Two `outcomes report` processes on one folder: the second is refused in one line (exit
    2) while the first publishes; then a notebook whose cell raises exits 2 naming the notebook
    and cell, and the published set is unchanged (no HTML for the failed report)."""
    import os
    import subprocess
    import time

    from test_report_safety import write_notebook

    nbs, out = tmp_path / "nbs", tmp_path / "out"
    env = {**os.environ, "OUTCOMES_NOTEBOOKS": str(nbs)}
    write_notebook(nbs, "quarterly_outcomes", "import time\ntime.sleep(6)\nprint('slow body')",
                   parameters="quarter: str = '2026Q3'  # quarter")
    first = subprocess.Popen(_report_cmd(store, out), env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / ".staging").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run(_report_cmd(store, out), env=env, capture_output=True, text=True,
                                timeout=120)
    finally:
        stdout, stderr = first.communicate(timeout=180)
    assert first.returncode == 0, stderr
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "another run" in lines[0]
    published = out / "2026Q3" / "quarterly_outcomes.html"
    assert "slow body" in published.read_text()
    before = published.read_bytes()

    write_notebook(nbs, "quarterly_outcomes", "raise RuntimeError('boom')",
                   parameters="quarter: str = '2026Q3'  # quarter")
    failed = subprocess.run(_report_cmd(store, out), env=env, capture_output=True, text=True,
                            timeout=180)
    assert failed.returncode == 2
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "quarterly_outcomes.ipynb: cell 4" in lines[0], failed.stderr
    assert published.read_bytes() == before
    assert not list((out / "2026Q3").rglob("*.ipynb")) and not (out / ".staging").exists()


# --- errors on the output side: one line, never a traceback -----------------------------------


def test_episodes_into_a_missing_folder_is_one_error_line(tmp_path, db_path, clean_csv):
    ingest(clean_csv, db=db_path, today=TODAY)
    out = tmp_path / "no" / "such" / "ep.csv"
    res = CliRunner().invoke(cli, ["episodes", "--db", str(db_path), "--out", str(out)])
    assert res.exit_code == 2 and res.stderr.startswith("error: ")
    assert len(res.stderr.strip().splitlines()) == 1


def test_report_into_an_unusable_folder_is_one_error_line(tmp_path, db_path, clean_csv):
    ingest(clean_csv, db=db_path, today=TODAY)
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where the report folder should go")
    res = CliRunner().invoke(cli, ["report", "quarterly", "--quarter", "2024Q1", "--db",
                                   str(db_path), "--out", str(blocker / "reports"), "--quiet"])
    assert res.exit_code == 2 and res.stderr.startswith("error: ")
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("fmt", ["xlsx", "parquet"])
def test_safe_harbor_rejects_typed_day_level_dates(tmp_path, db_path, fmt):
    rows = make_visit_rows(3)
    data = pd.DataFrame(rows)[list(VISIT_COLUMNS)]
    data["visit_date"] = pd.to_datetime(data["visit_date"])
    path = tmp_path / f"t.{fmt}"
    if fmt == "xlsx":
        data.to_excel(path, index=False)
    else:
        data.to_parquet(path)
    line = cli_reject(path, db_path, "--profile", str(_toml(tmp_path, SAFE_HARBOR)))
    assert "'visit_date'" in line


# --- faults: a real other locale (the image has only C / C.UTF-8 installed) ---------------------


def _german_locale(folder) -> dict[str, str]:
    """Compile de_DE.UTF-8 into ``folder`` with glibc's localedef; the env that selects it.

    Setting LC_ALL to a locale that is not installed silently falls back to C, so without this
    a "different locale" run is the same run twice.
    """
    import subprocess
    import sys
    from pathlib import Path

    if not Path("/usr/share/i18n/locales/de_DE").exists():
        pytest.fail("glibc locale sources missing: install Debian's `locales` package")
    done = subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8", str(folder / "de_DE.UTF-8")],
                          capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr  # 1: warnings only, locale written
    env = {"LOCPATH": str(folder), "LC_ALL": "de_DE.UTF-8", "LANG": "de_DE.UTF-8"}
    probe = subprocess.run([sys.executable, "-c", "import locale; locale.setlocale(locale.LC_ALL,"
                            " ''); print(locale.localeconv()['decimal_point'])"],
                           env={**_clean_env(), **env}, capture_output=True, text=True)
    assert probe.stdout.strip() == ",", ("de_DE.UTF-8 is not active", probe.stderr)
    return env


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items()
            if not k.startswith(("OUTCOMES_", "LC_", "LANG", "LOCPATH", "TZ"))}


@pytest.mark.slow
def test_same_store_and_report_under_a_real_german_locale(tmp_path, store):  # noqa: F811
    """Ingest and one therapist report under C/UTC and under a compiled de_DE.UTF-8 with
    Pacific/Kiritimati (UTC+14): identical store tables (ingest times aside), identical HTML."""
    import subprocess
    import sys

    german = _german_locale(tmp_path)
    rows = make_visit_rows(4)
    rows[2]["psfs"] = "6.5"
    rows[5]["technique_notes"] = "zorbing; caf\u00e9"
    export = write_rows(tmp_path / "e.csv", rows)
    snapshots, pages = [], []
    for k, extra in enumerate([{"TZ": "UTC", "LC_ALL": "C"},
                               {"TZ": "Pacific/Kiritimati", **german}]):
        env = {**_clean_env(), **extra}
        db = tmp_path / f"s{k}.duckdb"
        subprocess.run([sys.executable, "-m", "outcomes.cli", "ingest", str(export), "--db",
                        str(db), "--json"], env=env, check=True, capture_output=True)
        snap = store_snapshot(db)
        snap.pop("ingest_log")
        snapshots.append(snap)
        out = tmp_path / f"r{k}"
        subprocess.run([sys.executable, "-m", "outcomes.cli", "report", "therapist", "--quarter",
                        "2026Q3", "--therapist", "T001", "--db", str(store), "--out", str(out),
                        "--quiet"], env=env, check=True, capture_output=True)
        pages.append((out / "2026Q3" / "therapists" / "T001.html").read_bytes())
    assert snapshots[0] == snapshots[1] and len(snapshots[0]["visits"]) == 20
    assert pages[0] == pages[1]


@pytest.mark.slow
def test_killing_the_very_first_ingest_leaves_no_data_and_the_next_run_completes(tmp_path,
                                                                                 db_path):
    """The kill tests of test_store.py start from a seeded store; this one kills the ingest that
    creates the store, after every row is written and before COMMIT."""
    from test_store import ingest_cmd, kill_before_commit

    export = write_rows(tmp_path / "a.csv", make_visit_rows(3))
    kill_before_commit(ingest_cmd(export, db_path))
    snap = store_snapshot(db_path)
    assert snap is None or not any(snap.values()), {k: len(v) for k, v in snap.items()}
    result = ingest(export, db=db_path, today=TODAY)
    assert result.rows_loaded == 15 and not result.already_ingested
    assert store_status(db_path)["files_ingested"] == 1
