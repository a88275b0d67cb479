"""outcomes.ingest: reading exports through profiles, whole-file rejects, the intake summary."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import TODAY, make_visit_rows, store_snapshot, write_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outcomes.cli import cli
from outcomes.errors import InputError, ProfileError
from outcomes.ingest import (
    Profile,
    check_conservation,
    detect_delimiter,
    ingest_file,
    load_profile,
    read_export,
)
from outcomes.schema import VISIT_COLUMNS
from outcomes.store import (
    load_episodes,
    load_unmapped,
    load_visits,
    open_store,
    store_status,
)


def assert_conserved(result) -> None:
    """rows read = loaded + quarantined + duplicates + blank."""
    assert result.rows_in == (result.rows_loaded + result.rows_quarantined
                              + result.rows_duplicate + result.rows_blank)


def ingest(path, **kw):
    """ingest_file, asserting the conservation invariant on the summary and in the store."""
    result = ingest_file(path, **kw)
    assert_conserved(result)
    if not result.already_ingested:
        with open_store(kw["db"]) as con:
            (n_q,) = con.execute("SELECT count(*) FROM quarantine WHERE ingest_id = ? AND "
                                 "row_number IS NOT NULL", [result.ingest_id]).fetchall()[0]
            (n_v,) = con.execute("SELECT count(*) FROM visits WHERE ingest_id = ?",
                                 [result.ingest_id]).fetchall()[0]
        assert (n_q, n_v) == (result.rows_quarantined, result.rows_loaded)
    return result


def test_clean_csv_end_to_end(clean_csv, db_path):
    result = ingest(clean_csv, db=db_path, today=TODAY)
    assert (result.rows_in, result.rows_loaded, result.rows_quarantined) == (15, 15, 0)
    assert result.already_ingested is False
    assert_conserved(result)
    status = store_status(db_path)
    assert status["visits"] == 15 and status["patients"] == 3 and status["files_ingested"] == 1
    assert status["first_visit"] == "2024-01-08"
    assert status["episodes"] == 3
    visits = load_visits(db_path)
    assert visits["visit_id"].tolist()[:2] == ["V0000", "V0001"]
    assert visits["nprs"].tolist()[:5] == [7.0, 6.0, 5.0, 4.0, 3.0]


def test_reingest_is_a_noop(clean_csv, db_path):
    first = ingest(clean_csv, db=db_path, today=TODAY)
    again = ingest(clean_csv, db=db_path, today=TODAY)
    assert again.already_ingested and again.ingest_id == first.ingest_id
    assert store_status(db_path)["visits"] == 15
    assert store_status(db_path)["files_ingested"] == 1


def test_profile_defaults_and_errors(tmp_path):
    assert load_profile(None) == Profile()
    bad = tmp_path / "p.toml"
    bad.write_text('regime = "open_data"\n')
    with pytest.raises(ProfileError, match="regime"):
        load_profile(bad)
    bad.write_text('delimiterr = ";"\n')
    with pytest.raises(ProfileError, match="unknown key"):
        load_profile(bad)


def test_conservation_check_raises_on_a_leak(clean_csv, db_path):
    result = ingest(clean_csv, db=db_path, today=TODAY)
    result.rows_loaded -= 1
    with pytest.raises(AssertionError, match="accounted"):
        check_conservation(result)


def test_detect_delimiter():
    assert detect_delimiter("a;b;c") == ";"
    assert detect_delimiter("a\tb\tc") == "\t"
    assert detect_delimiter("a,b,c") == ","


def test_read_export_row_numbers_are_spreadsheet_rows(tmp_path):
    rows = make_visit_rows(1)
    path = write_rows(tmp_path / "e.csv", rows)
    raw = read_export(path)
    assert list(raw.frame.index) == [2, 3, 4, 5, 6]
    assert raw.rows_in == 5
    assert isinstance(raw.frame, pd.DataFrame)


def test_missing_file_is_input_error(tmp_path, db_path):
    with pytest.raises(InputError, match="not found"):
        ingest_file(tmp_path / "nope.csv", db=db_path)
    assert not db_path.exists()


# --- the bad-input table of QUALITY.md, one file per row -----------------------------------


def write_xlsx(path, rows, header=None, title_rows=()):
    """An .xlsx with optional title rows above the header (cells as given)."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for title in title_rows:
        ws.append(title)
    ws.append(list(VISIT_COLUMNS) if header is None else header)
    for row in rows:
        ws.append([row.get(c, "") for c in (header or VISIT_COLUMNS)]
                  if isinstance(row, dict) else row)
    wb.save(path)
    return path


def cli_reject(path, db, *args):
    """Run `outcomes ingest` expecting a whole-file reject: exit 2, one `error:` line."""
    before = store_snapshot(db)
    res = CliRunner().invoke(cli, ["ingest", str(path), "--db", str(db), *args])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert res.stdout == ""
    assert store_snapshot(db) == before, "a rejected file must not change the store"
    return lines[0]


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory):
    """A store holding one clean export, built once per module."""
    base = tmp_path_factory.mktemp("seed")
    other = write_rows(base / "seed.csv", make_visit_rows(2, "2023-03-06", prefix="S"))
    ingest_file(other, db=base / "seed.duckdb", today=TODAY)
    return base / "seed.duckdb"


@pytest.fixture
def seeded_db(seeded_template, db_path):
    """A copy of a store that already holds one export (so 'unchanged' is a real check)."""
    import shutil

    shutil.copy(seeded_template, db_path)
    return db_path


def test_utf8_bom_loads_with_a_clean_first_column(tmp_path, db_path, visit_rows):
    path = write_rows(tmp_path / "bom.csv", visit_rows, encoding="utf-8-sig")
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert list(read_export(path).frame.columns)[0] == "visit_id"
    result = ingest(path, db=db_path, today=TODAY)
    assert result.rows_loaded == 15
    assert_conserved(result)


def test_bad_bytes_for_the_encoding_reject_with_the_offset(tmp_path, seeded_db, visit_rows):
    path = write_rows(tmp_path / "cp.csv", visit_rows)
    data = path.read_bytes()
    at = data.index(b"foam")
    path.write_bytes(data[:at] + b"caf\xe9 " + data[at:])  # cp1252 e-acute in a UTF-8 file
    line = cli_reject(path, seeded_db)
    assert f"byte offset {at + 3}" in line and "utf-8" in line
    # declared as cp1252 it loads, the character decoded, not replaced
    result = ingest(path, db=seeded_db, profile={"encoding": "cp1252"}, today=TODAY)
    assert result.rows_loaded == 15
    notes = load_visits(seeded_db)["technique_notes"]
    assert notes.str.contains("café", regex=False).any()


@pytest.mark.parametrize("delim", [";", "\t"])
def test_semicolon_and_tab_are_detected_and_recorded(tmp_path, db_path, visit_rows, delim):
    path = write_rows(tmp_path / "d.csv", visit_rows, delimiter=delim)
    result = ingest(path, db=db_path, today=TODAY)
    assert result.delimiter == delim and result.delimiter_detected
    assert result.rows_loaded == 15 and result.rows_quarantined == 0
    assert "delimiter detected" in result.summary()


def test_declared_delimiter_is_used_not_detected(tmp_path, db_path, visit_rows):
    path = write_rows(tmp_path / "d.csv", visit_rows, delimiter=";")
    result = ingest(path, db=db_path, profile={"delimiter": ";"}, today=TODAY)
    assert result.delimiter == ";" and not result.delimiter_detected
    line = cli_reject(path, tmp_path / "other.duckdb", "--profile",
                      str(_profile(tmp_path, 'delimiter = ","\n')))
    assert "missing required column" in line and "delimiter" in line


def _profile(tmp_path, text, name="p.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_quoted_fields_with_delimiters_and_newlines(tmp_path, db_path, visit_rows):
    visit_rows[1]["technique_notes"] = 'hiking poles, "quoted"\nline two; glute med re-ed'
    path = write_rows(tmp_path / "q.csv", visit_rows)
    result = ingest(path, db=db_path, today=TODAY)
    assert result.rows_loaded == 15 and result.rows_quarantined == 0
    notes = load_visits(db_path).set_index("visit_id")["technique_notes"]
    assert notes["V0001"] == 'hiking poles, "quoted"\nline two; glute med re-ed'


def test_ragged_rows_are_quarantined_with_their_row_numbers(tmp_path, db_path, visit_rows):
    rows = [[r[c] for c in VISIT_COLUMNS] for r in visit_rows]
    rows[2] = rows[2] + ["EXTRA"]
    rows[5] = rows[5][:8]
    rows[7][8] = "note with\nnewline"  # record numbers, not line numbers
    rows[9] = rows[9] + ["x", "y"]
    path = write_rows(tmp_path / "r.csv", rows)
    result = ingest(path, db=db_path, today=TODAY)
    assert result.quarantine_by_reason == {"ragged_row": 3}
    assert result.rows_loaded == 12
    assert_conserved(result)
    with open_store(db_path) as con:
        q = con.execute("SELECT row_number FROM quarantine ORDER BY 1").fetchall()
        loaded = con.execute("SELECT count(*) FROM visits WHERE visit_id = 'V0012'").fetchall()
    assert [r[0] for r in q] == [4, 7, 11]
    assert loaded == [(1,)]  # the row after the embedded newline still lines up


def test_ragged_rows_keep_their_own_text_when_blocks_parse_in_parallel(tmp_path, monkeypatch):
    """Arrow's skipped-row callbacks arrive out of file order across parallel blocks (found on
    a 45 MB export): each quarantined row number must still carry its own text. The order is
    up to the thread scheduler, so the file is read several times (positional pairing failed
    in about half of the reads of this file)."""
    import outcomes.ingest.readers

    monkeypatch.setattr(outcomes.ingest.readers, "CSV_BLOCK_BYTES", 64 << 10)  # ~16 blocks
    rows = [[r[c] for c in VISIT_COLUMNS] for r in make_visit_rows(n_patients=2000)]
    marked = {}
    for k, i in enumerate(range(25, len(rows), 97)):
        rows[i] = [f"RAGGED{k}", "x"] if k % 3 else [f"RAGGED{k}", "two\nlines", "y"]
        marked[f"RAGGED{k}"] = i + 2  # the header is row 1
    path = write_rows(tmp_path / "big.csv", rows)
    for _ in range(8):
        raw = read_export(path)
        assert {text.split(",")[0]: row for row, text, _ in raw.bad_rows} == marked
        assert all(kind == "ragged" for _, _, kind in raw.bad_rows)


def test_ragged_rows_in_xlsx(tmp_path, db_path, visit_rows):
    rows = [[r[c] for c in VISIT_COLUMNS] for r in visit_rows]
    rows[2] = rows[2] + ["EXTRA"]
    path = write_xlsx(tmp_path / "r.xlsx", rows)
    result = ingest(path, db=db_path, today=TODAY)
    assert result.quarantine_by_reason == {"ragged_row": 1} and result.rows_loaded == 14


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_missing_required_column_is_rejected_naming_it(tmp_path, seeded_db, visit_rows, fmt):
    header = [c for c in VISIT_COLUMNS if c != "visit_date"]
    path = (write_rows(tmp_path / "m.csv", visit_rows, header=header) if fmt == "csv"
            else write_xlsx(tmp_path / "m.xlsx", visit_rows, header=header))
    line = cli_reject(path, seeded_db)
    assert "missing required column(s) visit_date" in line


IDENTIFIERS = [("Patient Name", "Jane Doe"), ("DOB", "1961-02-03"), ("SSN", "123-45-6789"),
               ("phone", "555-867-5309"), ("Email", "jd@example.com"),
               ("Street Address", "12 Elm St"), ("MRN", "00912345")]


@pytest.mark.parametrize("fmt,column,value", [("csv", c, v) for c, v in IDENTIFIERS]
                         + [("xlsx", *IDENTIFIERS[0]), ("parquet", *IDENTIFIERS[1])])
def test_identifier_columns_reject_without_echoing_values(tmp_path, db_path, visit_rows, fmt,
                                                          column, value):
    header = [*VISIT_COLUMNS, column]
    for r in visit_rows:
        r[column] = value
    if fmt == "csv":
        path = write_rows(tmp_path / "i.csv", visit_rows, header=header)
    elif fmt == "xlsx":
        path = write_xlsx(tmp_path / "i.xlsx", visit_rows, header=header)
    else:
        path = tmp_path / "i.parquet"
        pd.DataFrame(visit_rows)[header].to_parquet(path)
    line = cli_reject(path, db_path)
    assert not db_path.exists()  # nothing written: the store is not even created
    assert repr(column) in line and "direct identifier" in line
    assert value not in line


def test_duplicate_header_is_rejected(tmp_path, seeded_db, visit_rows):
    header = [*VISIT_COLUMNS, "nprs"]
    line = cli_reject(write_rows(tmp_path / "h.csv", visit_rows, header=header), seeded_db)
    assert "duplicate column name 'nprs'" in line


def test_wrong_header_row_never_echoes_a_data_cell(tmp_path, db_path, visit_rows):
    """header_row pointing at a data row: its repeated cells are values, not names."""
    rows = [dict(r) for r in visit_rows]
    rows[0].update(clinic_id="Harriet Quill", therapist_id="Harriet Quill")
    path = write_rows(tmp_path / "w.csv", rows)
    line = cli_reject(path, db_path, "--profile",
                      str(_profile(tmp_path, "header_row = 2\n")))
    assert "duplicate column name (columns 3 and 4)" in line and "header_row" in line
    assert "Harriet" not in line


def test_title_rows_need_the_header_row_option(tmp_path, db_path, visit_rows):
    path = tmp_path / "t.csv"
    write_rows(path, visit_rows)
    path.write_text("Clinic visit export\nRun 2025-01-02,,\n" + path.read_text())
    prof = _profile(tmp_path, "header_row = 3\n")
    result = ingest(path, db=db_path, profile=prof, today=TODAY)
    assert result.rows_loaded == 15
    with open_store(db_path) as con:  # row numbers count the title rows, like a spreadsheet
        assert con.execute("SELECT count(*) FROM quarantine").fetchall() == [(0,)]
    xlsx = write_xlsx(tmp_path / "t.xlsx", visit_rows, title_rows=[["Clinic export"], []])
    result = ingest(xlsx, db=db_path, profile=prof, today=TODAY)
    assert result.rows_duplicate == 15  # same visits as the CSV: no double count


def test_totals_row_at_the_bottom_is_quarantined(tmp_path, db_path, visit_rows):
    visit_rows.append({"visit_id": "Total", "nprs": "75", "lefs": "900"})
    result = ingest(write_rows(tmp_path / "t.csv", visit_rows), db=db_path, today=TODAY)
    assert result.quarantine_by_reason == {"totals_row": 1} and result.rows_loaded == 15


def test_blank_rows_are_skipped_and_counted(tmp_path, db_path, visit_rows):
    path = write_rows(tmp_path / "b.csv", visit_rows)
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(3, "\n")
    lines.insert(6, "," * (len(VISIT_COLUMNS) - 1) + "\n")
    lines.insert(8, "   \n")
    path.write_text("".join(lines))
    result = ingest(path, db=db_path, today=TODAY)
    assert (result.rows_in, result.rows_blank, result.rows_loaded) == (18, 3, 15)
    assert result.rows_quarantined == 0


def test_duplicates_reingest_and_overlap(tmp_path, db_path):
    rows = make_visit_rows(4)
    first = write_rows(tmp_path / "q1.csv", rows[:12] + [rows[3]])
    r1 = ingest(first, db=db_path, today=TODAY)
    assert (r1.rows_loaded, r1.rows_duplicate) == (12, 1)
    assert ingest_file(first, db=db_path, today=TODAY).already_ingested
    second = write_rows(tmp_path / "q2.csv", rows[6:])  # overlaps rows 6..11
    r2 = ingest(second, db=db_path, today=TODAY)
    assert (r2.rows_loaded, r2.rows_duplicate, r2.rows_quarantined) == (8, 6, 0)
    assert store_status(db_path)["visits"] == 20
    assert store_status(db_path)["episodes"] == 4


def test_conflict_with_the_store_quarantines_both_copies(tmp_path, db_path):
    rows = make_visit_rows(2)
    ingest_file(write_rows(tmp_path / "a.csv", rows), db=db_path, today=TODAY)
    changed = [dict(r) for r in rows[:3]]
    changed[1]["nprs"] = "2"  # was 6
    result = ingest(write_rows(tmp_path / "b.csv", changed), db=db_path, today=TODAY)
    assert result.quarantine_by_reason == {"conflicting_duplicate": 1}
    assert (result.rows_duplicate, result.rows_withdrawn) == (2, 1)
    visits = load_visits(db_path)
    assert "V0001" not in set(visits["visit_id"]) and len(visits) == 9
    with open_store(db_path) as con:
        q = con.execute("SELECT row_number, raw_row FROM quarantine WHERE visit_id = 'V0001' "
                        "ORDER BY row_number NULLS LAST").fetchall()
    assert q[0][0] == 3 and q[1][0] is None  # the new row, then the withdrawn stored copy
    assert '"nprs": 6.0' in q[1][1]
    # a third copy (even equal to one of them) joins the quarantine
    third = ingest(write_rows(tmp_path / "c.csv", rows[1:2]), db=db_path, today=TODAY)
    assert third.quarantine_by_reason == {"conflicting_duplicate": 1}


def test_unknown_technique_text_is_counted(tmp_path, db_path, visit_rows):
    visit_rows[2]["technique_notes"] = "foam rolling; zorbing therapy"
    result = ingest(write_rows(tmp_path / "u.csv", visit_rows), db=db_path, today=TODAY)
    assert result.unmapped_techniques == {"zorbing therapy": 1}
    assert result.rows_loaded == 15
    assert load_unmapped(db_path).to_dict("records") == [{"text": "zorbing therapy", "n": 1}]


def test_whitespace_ids_still_join(tmp_path, db_path, visit_rows):
    visit_rows[4]["patient_id"] = "P000\u00a0"
    visit_rows[3]["patient_id"] = "\u200bP000"
    result = ingest(write_rows(tmp_path / "w.csv", visit_rows), db=db_path, today=TODAY)
    assert result.rows_loaded == 15
    episodes = load_episodes(db_path)
    assert len(episodes) == 3 and set(episodes["patient_id"]) == {"P000", "P001", "P002"}


def test_phi_in_notes_is_redacted_and_counted(tmp_path, db_path, visit_rows):
    visit_rows[1]["technique_notes"] = "hiking poles; call pt at 555-867-5309"
    result = ingest(write_rows(tmp_path / "p.csv", visit_rows), db=db_path, today=TODAY)
    assert result.phi_counts == {"phone": 1}
    assert "555-867-5309" not in json.dumps(result.to_dict()) + result.summary()
    stored = store_snapshot(db_path)
    assert "555-867-5309" not in repr(stored)


@pytest.mark.parametrize("content,message", [
    (b"", "file is empty"),
    (",".join(VISIT_COLUMNS).encode() + b"\n", "header but no data rows"),
    (b"\n\n", "header row) is empty"),
])
def test_empty_and_header_only_files_are_rejected(tmp_path, seeded_db, content, message):
    path = tmp_path / "e.csv"
    path.write_bytes(content)
    assert message in cli_reject(path, seeded_db)


def test_header_only_xlsx_and_parquet_are_rejected(tmp_path, seeded_db):
    assert "no data rows" in cli_reject(write_xlsx(tmp_path / "h.xlsx", []), seeded_db)
    path = tmp_path / "h.parquet"
    pd.DataFrame(columns=list(VISIT_COLUMNS), dtype=str).to_parquet(path)
    assert "no data rows" in cli_reject(path, seeded_db)


def test_corrupt_and_password_protected_xlsx_are_rejected(tmp_path, seeded_db, visit_rows):
    good = write_xlsx(tmp_path / "g.xlsx", visit_rows)
    corrupt = tmp_path / "c.xlsx"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    assert "corrupt" in cli_reject(corrupt, seeded_db)
    from msoffcrypto.format.ooxml import OOXMLFile

    locked = tmp_path / "l.xlsx"
    with good.open("rb") as src, locked.open("wb") as out:
        OOXMLFile(src).encrypt("s3cret", out)
    assert "password-protected" in cli_reject(locked, seeded_db)
    notxlsx = tmp_path / "n.xlsx"
    notxlsx.write_text("visit_id,patient_id\n1,2\n")
    assert "corrupt" in cli_reject(notxlsx, seeded_db)


def test_unreadable_file_is_rejected(clean_csv, db_path, monkeypatch):
    """Permission bits do not stop root, so the OS error is simulated."""
    import pathlib

    real_open = pathlib.Path.open

    def deny(self, *a, **kw):
        if self == clean_csv:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *a, **kw)

    monkeypatch.setattr(pathlib.Path, "open", deny)
    with pytest.raises(InputError, match="cannot be read .Permission denied"):
        ingest_file(clean_csv, db=db_path)
    assert not db_path.exists()


def test_unreadable_and_unknown_files_are_rejected(tmp_path, seeded_db):
    assert "not found" in cli_reject(tmp_path / "missing.csv", seeded_db)
    (tmp_path / "x.json").write_text("{}")
    assert "unsupported file type" in cli_reject(tmp_path / "x.json", seeded_db)
    garbage = tmp_path / "g.parquet"
    garbage.write_bytes(b"PAR1 not really")
    assert "not a readable Parquet" in cli_reject(garbage, seeded_db)


def test_xlsx_typed_dates_and_numbers(tmp_path, db_path, visit_rows):
    import datetime as dt

    rows = []
    for r in visit_rows:
        cells = [r[c] for c in VISIT_COLUMNS]
        cells[4] = dt.datetime.fromisoformat(r["visit_date"])  # a real Excel date cell
        cells[9] = int(r["nprs"])
        cells[1] = r["patient_id"]
        rows.append(cells)
    path = write_xlsx(tmp_path / "x.xlsx", rows)
    result = ingest(path, db=db_path, today=TODAY)
    assert result.rows_loaded == 15 and result.rows_quarantined == 0
    assert load_visits(db_path)["nprs"].tolist()[:2] == [7.0, 6.0]


def test_parquet_with_typed_columns(tmp_path, db_path, visit_rows):
    data = pd.DataFrame(visit_rows)
    data["visit_date"] = pd.to_datetime(data["visit_date"])
    data["nprs"] = data["nprs"].astype(float)
    path = tmp_path / "x.parquet"
    data.to_parquet(path)
    result = ingest(path, db=db_path, today=TODAY)
    assert result.rows_loaded == 15 and result.rows_quarantined == 0
    assert load_visits(db_path)["visit_date"].min() == pd.Timestamp("2024-01-08")


def test_safe_harbor_regime_rejects_day_level_dates(tmp_path, seeded_db, clean_csv):
    line = cli_reject(clean_csv, seeded_db, "--profile",
                      str(_profile(tmp_path, 'regime = "safe_harbor"\n')))
    assert "safe_harbor" in line


# --- messy synthetic export: every injected defect is accounted for --------------------------


@pytest.fixture(scope="module")
def messy_ingest(tmp_path_factory):
    from outcomes.synthetic import write_export

    base = tmp_path_factory.mktemp("messy")
    info = write_export(base / "messy.csv", n_episodes=150, seed=11, messy=True)
    truth = json.loads(Path(info["truth_path"]).read_text())["messy"]
    result = ingest(base / "messy.csv", db=base / "m.duckdb", today="2026-10-31")
    with open_store(base / "m.duckdb") as con:
        q = con.execute("SELECT row_number, reason_code FROM quarantine").fetchall()
    return result, truth, dict(q), base / "m.duckdb"


def test_messy_export_every_defect_accounted_for(messy_ingest):
    """Checked against the generator's own record of what it injected (<stem>.truth.json);
    truth rows are 0-based data records, our row numbers are spreadsheet rows (+2)."""
    result, truth, quarantined, db = messy_ingest
    assert_conserved(result)
    row = lambda r: r + 2  # noqa: E731
    expect = {"mixed_date_format": {"bad_date"}, "out_of_range_score": {"score_out_of_range"},
              "ragged_row": {"ragged_row"}, "totals_row": {"totals_row"},
              "impossible_date": {"impossible_date", "future_date"},
              "conflicting_duplicate": {"conflicting_duplicate"}}
    for kind, codes in expect.items():
        assert truth[kind]["count"] > 0
        for r in truth[kind]["rows"]:
            assert quarantined.get(row(r)) in codes, (kind, r)
    for r in truth["conflicting_duplicate"]["original_rows"]:  # both copies
        assert quarantined.get(row(r)) == "conflicting_duplicate"
    for entry in truth["text_score"]["details"]:
        if entry["maps_to_missing"]:
            assert row(entry["row"]) not in quarantined
        else:
            assert quarantined.get(row(entry["row"])) == "score_not_numeric"
    for entry in truth["impossible_date"]["details"]:
        code = "future_date" if entry["form"] == "future" else "impossible_date"
        assert quarantined[row(entry["row"])] == code
    assert result.rows_blank == truth["blank_row"]["count"]
    assert result.rows_duplicate == truth["exact_duplicate"]["count"]
    n_expected = (sum(truth[k]["count"] for k in expect) + truth["conflicting_duplicate"]["count"]
                  + sum(not e["maps_to_missing"] for e in truth["text_score"]["details"]))
    assert result.rows_quarantined == n_expected  # nothing else was quarantined


def test_messy_export_notes_ids_and_phi(messy_ingest):
    result, truth, quarantined, db = messy_ingest
    visits = load_visits(db).set_index("visit_id")
    for entry in truth["whitespace_id"]["details"]:
        if entry["row"] + 2 in quarantined:
            continue
        vid = entry["visit_id"].strip("\u00a0\u200b ")
        value = vid if entry["column"] == "visit_id" else visits.loc[vid, entry["column"]]
        assert vid in visits.index and value == value.strip() and "\u200b" not in value
    unmapped = {k.lower() for k in result.unmapped_techniques}
    for value in truth["unmapped_technique"]["details"]:
        assert value["value"].lower() in unmapped
    planted = [e["phi_kind"] for e in truth["phi_in_note"]["details"]]
    assert sum(result.phi_counts.values()) >= len(planted)
    notes = " ".join(visits["technique_notes"].dropna())
    for e in truth["phi_in_note"]["details"]:
        if e["phi_kind"] != "provider_name":
            assert e["value"].split()[-1] not in notes, e["phi_kind"]


# --- fuzz: the loader raises only our own errors and never writes a partial load -------------


def _fuzz_once(data: bytes, suffix: str) -> None:
    import tempfile

    from outcomes.errors import OutcomesError

    with tempfile.TemporaryDirectory() as tmp:
        path, db = Path(tmp) / f"f{suffix}", Path(tmp) / "f.duckdb"
        path.write_bytes(data)
        try:
            result = ingest(path, db=db, today=TODAY)
        except OutcomesError:
            snap = store_snapshot(db)
            assert snap is None or not (snap["visits"] or snap["ingest_log"])
            return
        assert_conserved(result)
        snap = store_snapshot(db)
        assert len(snap["visits"]) == result.rows_loaded
        assert len(snap["ingest_log"]) == 1


def _valid_bytes() -> bytes:
    import io

    buf = io.StringIO()
    import csv as _csv

    w = _csv.writer(buf, lineterminator="\n")
    w.writerow(VISIT_COLUMNS)
    for r in make_visit_rows(2):
        w.writerow([r[c] for c in VISIT_COLUMNS])
    return buf.getvalue().encode()


VALID = _valid_bytes()
mutation = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, len(VALID)), st.binary(min_size=1, max_size=6)),
    st.tuples(st.just("delete"), st.integers(0, len(VALID)), st.integers(1, 40)),
    st.tuples(st.just("token"), st.integers(0, len(VALID)),
              st.sampled_from([b",", b'"', b"\n", b"\r\n", b";", b"\xff", b"\x00", b"\xef\xbb\xbf",
                               b"Total", b",,,,", b'"a\nb"', b"\xe9", b"\t"])),
)


@pytest.mark.slow
@pytest.mark.timeout(300)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(muts=st.lists(mutation, min_size=1, max_size=5))
def test_fuzz_mutated_csv(muts):
    data = bytearray(VALID)
    for kind, at, arg in muts:
        at = min(at, len(data))
        if kind == "delete":
            del data[at:at + arg]
        else:
            data[at:at] = arg
    _fuzz_once(bytes(data), ".csv")


@pytest.mark.slow
@pytest.mark.timeout(300)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".xlsx", ".parquet"]))
def test_fuzz_random_bytes(data, suffix):
    _fuzz_once(data, suffix)


def _valid_binary(suffix: str) -> bytes:
    import io

    buf = io.BytesIO()
    data = pd.DataFrame(make_visit_rows(2))
    data.to_excel(buf, index=False) if suffix == ".xlsx" else data.to_parquet(buf)
    return buf.getvalue()


BINARY = {s: _valid_binary(s) for s in (".xlsx", ".parquet")}


@pytest.mark.slow
@pytest.mark.timeout(300)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(suffix=st.sampled_from([".xlsx", ".parquet"]),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=4))
def test_fuzz_flipped_bytes_in_xlsx_and_parquet(suffix, flips):
    data = bytearray(BINARY[suffix])
    for where, value in flips:
        data[int(where * len(data))] = value
    _fuzz_once(bytes(data), suffix)


def test_xlsx_whose_sheet_list_is_gone_is_rejected_in_one_line(tmp_path):
    """A flipped byte left a workbook that opens with no worksheets (IndexError before)."""
    import re
    import zipfile

    src, bad = tmp_path / "ok.xlsx", tmp_path / "nosheets.xlsx"
    src.write_bytes(BINARY[".xlsx"])
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            body = zin.read(item)
            if item.filename == "xl/workbook.xml":
                body = re.sub(rb"<sheets>.*</sheets>", b"<sheets/>", body, flags=re.S)
            zout.writestr(item, body)
    with pytest.raises(InputError, match="workbook has no worksheets"):
        read_export(bad)


def test_xlsx_serial_numbers_are_dates_only_when_declared(tmp_path, db_path, visit_rows):
    """Excel 1900 system: serial 45299 is 2024-01-08 (Microsoft, "Date systems in Excel")."""
    rows = []
    for r in visit_rows:
        cells = [r[c] for c in VISIT_COLUMNS]
        cells[4] = 45299 + (pd.Timestamp(r["visit_date"]) - pd.Timestamp("2024-01-08")).days
        rows.append(cells)
    path = write_xlsx(tmp_path / "s.xlsx", rows)
    undeclared = ingest(path, db=db_path, today=TODAY)
    assert undeclared.quarantine_by_reason == {"bad_date": 15}  # never guessed
    declared = ingest(path, db=tmp_path / "d.duckdb", profile={"date_format": "excel_serial"},
                           today=TODAY)
    assert declared.rows_loaded == 15
    assert load_visits(tmp_path / "d.duckdb")["visit_date"].min() == pd.Timestamp("2024-01-08")


def test_progress_bar_goes_to_stderr_for_big_files(clean_csv, db_path, monkeypatch, capsys):
    import outcomes.ingest.pipeline as ingest_module

    monkeypatch.setattr(ingest_module, "PROGRESS_MIN_BYTES", 0)
    ingest_file(clean_csv, db=db_path, progress=True, today=TODAY)
    captured = capsys.readouterr()
    assert "ingest" in captured.err and captured.out == ""
    ingest_file(write_rows(clean_csv.with_name("b.csv"), make_visit_rows(1, prefix="B")),
                db=db_path, progress=False, today=TODAY)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("example", ["profile_example.toml", "profile_example.yaml"])
def test_packaged_profile_examples_work(tmp_path, db_path, example):
    """Each shipped example profile reads an export written the way it describes."""
    from importlib import resources

    prof_path = Path(str(resources.files("outcomes") / "data" / example))
    prof = load_profile(prof_path)
    inverse = {canonical: emr for emr, canonical in prof.columns.items()}
    kinds = {canonical: emr for emr, canonical in prof.values.get("visit_type", {}).items()}
    rows = make_visit_rows(2)
    rows[3]["psfs"] = "6.5"
    header = [inverse.get(c, c) for c in VISIT_COLUMNS]
    out = []
    for r in rows:
        r = dict(r)
        r["visit_date"] = pd.Timestamp(r["visit_date"]).strftime(prof.date_format)
        r["visit_type"] = kinds.get(r["visit_type"], r["visit_type"])
        if prof.decimal == ",":
            r["psfs"] = r["psfs"].replace(".", ",")
        out.append([r[c] for c in VISIT_COLUMNS])
    path = tmp_path / "emr.csv"
    write_rows(path, out, header=header, delimiter=prof.delimiter, encoding=prof.encoding)
    if prof.header_row > 1:
        path.write_bytes(b"Clinic export\r\n" * (prof.header_row - 1) + path.read_bytes())
    result = ingest(path, db=db_path, profile=prof_path, today=TODAY)
    assert (result.rows_loaded, result.rows_quarantined) == (10, 0)
    visits = load_visits(db_path).set_index("visit_id")
    assert visits.loc["V0003", "psfs"] == 6.5
    assert visits.loc["V0000", "visit_type"] == "evaluation"
    assert visits.loc["V0000", "visit_date"] == pd.Timestamp("2024-01-08")


def test_dry_run_of_a_single_file_shows_counts_and_writes_nothing(clean_csv, db_path, tmp_path):
    rows = make_visit_rows(2, prefix="N")
    rows[0]["nprs"] = "11"
    other = write_rows(tmp_path / "other.csv", rows)
    ingest(clean_csv, db=db_path, today=TODAY)
    before = store_snapshot(db_path)
    dry = ingest_file(other, db=db_path, today=TODAY, dry_run=True)
    assert dry.dry_run and (dry.rows_loaded, dry.rows_quarantined) == (9, 1)
    assert dry.quarantine_by_reason == {"score_out_of_range": 1}
    assert store_snapshot(db_path) == before
    res = CliRunner().invoke(cli, ["ingest", str(other), "--db", str(tmp_path / "new.duckdb"),
                                   "--dry-run"])
    assert res.exit_code == 0 and res.output.startswith("dry run: nothing was written")
    assert not (tmp_path / "new.duckdb").exists()


@pytest.mark.parametrize("where", ["write", "main"])
def test_a_failure_while_writes_overlap_python_work_leaves_the_store_as_it_was(
        tmp_path, db_path, monkeypatch, where):
    """Ingest writes on a worker thread while the main thread maps techniques and builds
    episodes. A failing write (here the visits' SQL schema check) or a failure on the main
    thread (here the episode build) rolls everything back, and the store stays usable."""
    import outcomes.episode_table
    import outcomes.store

    first = write_rows(tmp_path / "a.csv", make_visit_rows(3))
    ingest_file(first, db=db_path, today=TODAY)
    before = store_snapshot(db_path)

    def broken(*args, **kwargs):
        raise RuntimeError(f"deliberate failure on the {where} thread")

    target = ((outcomes.store, "check_visits") if where == "write"
              else (outcomes.episode_table, "build_refreshed"))
    with monkeypatch.context() as m:
        m.setattr(*target, broken)
        with pytest.raises(RuntimeError, match=f"deliberate failure on the {where} thread"):
            ingest_file(write_rows(tmp_path / "b.csv", make_visit_rows(2, prefix="B")),
                        db=db_path, today=TODAY)
    assert store_snapshot(db_path) == before
    again = ingest_file(tmp_path / "b.csv", db=db_path, today=TODAY)  # nothing was left locked
    assert not again.already_ingested and again.rows_loaded > 0
