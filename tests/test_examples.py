"""The three example exports in ``data/examples/``: they load with their profiles, their counts
are what the script planted, and the quarterly report renders from each.

``data/examples/make_examples.py`` makes them (fixed seed); each ``profile.toml`` is the profile
``outcomes profile draft`` proposes with the README's edits, which a test below re-derives.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from outcomes.cli import cli
from outcomes.ingest import draft_profile, expand_inputs, ingest_export
from outcomes.store import load_visits, open_store

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "examples"
TODAY = "2026-12-31"
#: Per example and file: (rows in, loaded, quarantined, duplicate, blank) and quarantine reasons.
EXPECTED = {
    "webpt": {
        "visits": ((743, 743, 0, 0, 0), {}),
        "measures": ((696, 691, 3, 1, 1), {"measure_conflict": 2, "measure_no_visit": 1}),
        "patients": ((121, 120, 1, 0, 0), {"patient_no_visits": 1}),
    },
    "workbook": {"visits": ((744, 743, 1, 0, 0), {"totals_row": 1})},
    "fhir": {
        "visits": ((743, 743, 0, 0, 0), {}),
        "measures": ((691, 690, 1, 0, 0), {"missing_score": 1}),
        "patients": ((120, 120, 0, 0, 0), {}),
        "procedures": ((1606, 1606, 0, 0, 0), {}),
        "conditions": ((743, 743, 0, 0, 0), {}),
    },
}


def example_input(name: str) -> Path:
    return EXAMPLES / name / "export.xlsx" if name == "workbook" else EXAMPLES / name


def per_file(result) -> dict[str, tuple]:
    if not result.files:  # a single-file export
        r = result
        return {"visits": ((r.rows_in, r.rows_loaded, r.rows_quarantined, r.rows_duplicate,
                            r.rows_blank), r.quarantine_by_reason)}
    return {f["role"]: ((f["rows_in"], f["rows_loaded"], f["rows_quarantined"],
                         f["rows_duplicate"], f["rows_blank"]), f["quarantine_by_reason"])
            for f in result.files}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_loads_with_its_profile_and_counts_conserve_per_file(name, tmp_path):
    db = tmp_path / "s.duckdb"
    result = ingest_export(example_input(name), db=db, profile=EXAMPLES / name / "profile.toml",
                           today=TODAY)
    got = per_file(result)
    assert got == EXPECTED[name]
    for (rows_in, *parts), _ in got.values():
        assert rows_in == sum(parts)
    visits = load_visits(db)
    assert len(visits) == 743 and visits["patient_id"].nunique() == 120
    assert visits["icd10"].str.fullmatch(r"M\d\d\.\d+").all()  # dots restored
    assert visits["nprs"].notna().sum() >= 300
    with open_store(db) as con:
        episodes = con.execute("SELECT count(*) FROM episodes").fetchone()[0]
    assert episodes == 120


def test_profile_added_instrument_stores_its_scores(tmp_path):
    db = tmp_path / "s.duckdb"
    ingest_export(EXAMPLES / "webpt", db=db, profile=EXAMPLES / "webpt" / "profile.toml",
                  today=TODAY)
    with open_store(db) as con:
        rows = con.execute("SELECT instrument, count(*) FROM visit_measures GROUP BY 1 "
                           "ORDER BY 1").fetchall()
    assert dict(rows)["berg"] == 1 and dict(rows)["odi"] > 50


def load_script():
    spec = importlib.util.spec_from_file_location("make_examples",
                                                  EXAMPLES / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_examples_are_what_the_script_makes(tmp_path, monkeypatch):
    """Re-run the script into a copy: same bytes (the profiles are the draft + README edits)."""
    module = load_script()
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy)
    monkeypatch.setattr(module, "HERE", copy)
    module.main()
    for path in sorted(EXAMPLES.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            made = copy / path.relative_to(EXAMPLES)
            if path.suffix == ".xlsx":  # zip entries carry the time they were written
                assert sheet_values(made) == sheet_values(path)
            else:
                assert made.read_bytes() == path.read_bytes(), path


def sheet_values(path: Path) -> list[tuple]:
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        return list(wb.worksheets[0].iter_rows(values_only=True))
    finally:
        wb.close()


@pytest.mark.parametrize("name", ["workbook", "fhir"])
def test_drafted_profile_is_committed_unedited(name):
    with expand_inputs([EXAMPLES / name]) as files:
        assert draft_profile(files) == (EXAMPLES / name / "profile.toml").read_text()


def test_cli_draft_dry_run_ingest_walkthrough(tmp_path):
    """The README's "Bring your own export" steps, for the workbook."""
    runner = CliRunner()
    prof, db = tmp_path / "emr.toml", tmp_path / "s.duckdb"
    res = runner.invoke(cli, ["profile", "draft", str(EXAMPLES / "workbook" / "export.xlsx"),
                              "--out", str(prof)])
    assert res.exit_code == 0 and "header_row = 4" in prof.read_text()
    again = runner.invoke(cli, ["profile", "draft", str(EXAMPLES / "workbook"), "--out",
                                str(prof)])
    assert again.exit_code == 2 and "exists" in again.output
    dry = runner.invoke(cli, ["ingest", str(EXAMPLES / "workbook" / "export.xlsx"), "--profile",
                              str(prof), "--db", str(db), "--dry-run"])
    assert dry.exit_code == 0 and "dry run: nothing was written" in dry.output
    assert "744 rows read -> 743 loaded, 1 quarantined" in dry.output and not db.exists()
    real = runner.invoke(cli, ["ingest", str(EXAMPLES / "workbook" / "export.xlsx"),
                               "--profile", str(prof), "--db", str(db)])
    assert real.exit_code == 0 and "totals_row 1" in real.output


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_quarterly_report_renders_from_each_example(name, tmp_path):
    from outcomes.reports import plan_quarterly, render_reports

    db = tmp_path / "s.duckdb"
    ingest_export(example_input(name), db=db, profile=EXAMPLES / name / "profile.toml",
                  today=TODAY)
    result = render_reports(plan_quarterly("2026Q3", db), "2026Q3", db, tmp_path / "out",
                            progress=False)
    html = (tmp_path / "out" / "2026Q3" / "quarterly_outcomes.html").read_text(encoding="utf-8")
    assert result.manifest.exists() and "2026Q3" in html and "Traceback" not in html
