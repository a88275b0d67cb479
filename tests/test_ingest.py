"""outcomes.ingest: reading exports through profiles, whole-file rejects, the intake summary."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import TODAY, make_visit_rows, write_rows

from outcomes.errors import InputError, ProfileError
from outcomes.ingest import (
    Profile,
    check_conservation,
    detect_delimiter,
    ingest_file,
    load_profile,
    read_export,
)
from outcomes.store import load_visits, store_status


def assert_conserved(result) -> None:
    """rows read = loaded + quarantined + duplicates + blank."""
    assert result.rows_in == (result.rows_loaded + result.rows_quarantined
                              + result.rows_duplicate + result.rows_blank)


def test_clean_csv_end_to_end(clean_csv, db_path):
    result = ingest_file(clean_csv, db=db_path, today=TODAY)
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
    first = ingest_file(clean_csv, db=db_path, today=TODAY)
    again = ingest_file(clean_csv, db=db_path, today=TODAY)
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
    result = ingest_file(clean_csv, db=db_path, today=TODAY)
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
