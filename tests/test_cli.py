"""The ingest / status / episodes commands (click's CliRunner; one real subprocess run)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
from click.testing import CliRunner
from conftest import make_visit_rows, store_snapshot, write_rows

from outcomes.cli import cli

JSON_KEYS = {"rows_in", "rows_loaded", "rows_quarantined", "rows_duplicate", "rows_blank",
             "file_sha256", "already_ingested", "quarantine_by_reason", "unmapped_techniques",
             "phi_counts", "delimiter"}


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def test_ingest_json_status_and_episodes(tmp_path):
    rows = make_visit_rows(3)
    rows[1]["nprs"] = "refused"
    rows[2]["technique_notes"] = "zorbing; call 555-867-5309"
    path = write_rows(tmp_path / "e.csv", rows)
    db = str(tmp_path / "s.duckdb")
    res = invoke("ingest", str(path), "--db", db, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert JSON_KEYS <= set(out)
    assert (out["rows_in"], out["rows_loaded"], out["rows_quarantined"]) == (15, 14, 1)
    assert out["quarantine_by_reason"] == {"score_not_numeric": 1}
    assert out["unmapped_techniques"] == {"zorbing": 1, "call [PHONE]": 1}  # redacted first
    assert out["phi_counts"] == {"phone": 1} and "555-867" not in res.stdout
    assert out["already_ingested"] is False and out["delimiter"] == ","
    again = json.loads(invoke("ingest", str(path), "--db", db, "--json").stdout)
    assert again["already_ingested"] is True

    status = invoke("status", "--db", db, "--json")
    info = json.loads(status.stdout)
    assert (info["visits"], info["episodes"], info["files_ingested"]) == (14, 3, 1)
    assert info["quarantine_by_reason"] == {"score_not_numeric": 1}
    text = invoke("status", "--db", db).stdout
    assert "visits: 14" in text and "episodes: 3" in text

    out_csv = tmp_path / "ep.csv"
    res = invoke("episodes", "--db", db, "--out", str(out_csv))
    assert res.exit_code == 0 and "wrote 3 episodes" in res.stdout
    assert len(pd.read_csv(out_csv)) == 3


def test_human_summary(tmp_path):
    rows = make_visit_rows(1)
    rows[3]["lefs"] = "81"
    path = write_rows(tmp_path / "e.csv", rows, delimiter=";")
    res = invoke("ingest", str(path), "--db", str(tmp_path / "s.duckdb"))
    assert res.exit_code == 0
    assert "5 rows read -> 4 loaded, 1 quarantined" in res.stdout
    assert "score_out_of_range 1" in res.stdout and "delimiter detected: ';'" in res.stdout


def test_default_db_from_environment(tmp_path, clean_csv):
    db = tmp_path / "env.duckdb"
    res = invoke("ingest", str(clean_csv), env={"OUTCOMES_DB": str(db)})
    assert res.exit_code == 0 and db.exists()
    assert json.loads(invoke("status", "--json", env={"OUTCOMES_DB": str(db)}).stdout)[
        "visits"] == 15


def test_status_of_a_missing_store_is_one_error_line(tmp_path):
    res = invoke("status", "--db", str(tmp_path / "none.duckdb"))
    assert res.exit_code == 2
    assert res.stderr.startswith("error: store") and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "none.duckdb").exists()


def test_reject_through_a_real_process(tmp_path):
    """The installed entry point: exit code 2, one `error:` line naming the column, no store."""
    header = ["visit_id", "patient_id", "Patient Name", "clinic_id"]
    path = write_rows(tmp_path / "x.csv", [["V1", "P1", "Jane Roe", "C1"]], header=header)
    db = tmp_path / "s.duckdb"
    proc = subprocess.run([sys.executable, "-m", "outcomes.cli", "ingest", str(path),
                           "--db", str(db)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: x.csv: column 'Patient Name' is a direct identifier; remove it from the export "
        "(records must arrive de-identified)"]
    assert "Jane" not in proc.stderr + proc.stdout
    assert store_snapshot(db) is None
