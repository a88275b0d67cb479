"""outcomes.ingest.multifile / sources: visits + long measures + patients as one export.

The hand-written export in ``tests/data/multifile/`` is a small WebPT-like export: US dates,
comma CPT lists, a dotless ICD-10 code, a long flowsheet with a conflict, a repeat, an unknown
measure, an out-of-range score, a score with no visit and a blank line, and a patient with no
visit.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TODAY, store_snapshot

from outcomes.cli import cli
from outcomes.errors import InputError, ProfileError
from outcomes.ingest import ingest_export, load_profile
from outcomes.store import load_visits, open_store

DATA = Path(__file__).parent / "data" / "multifile"
FILES = ("visits.csv", "flowsheet.csv", "patients.csv")


@pytest.fixture
def export(tmp_path) -> Path:
    folder = tmp_path / "export"
    shutil.copytree(DATA, folder)
    return folder


def files(folder: Path) -> list[Path]:
    return [folder / f for f in FILES]


def by_role(result) -> dict[str, dict]:
    return {f["role"]: f for f in result.files}


def counts(f: dict) -> tuple[int, ...]:
    return (f["rows_in"], f["rows_loaded"], f["rows_quarantined"], f["rows_duplicate"],
            f["rows_blank"])


def test_three_files_load_as_one_export_with_conservation_per_file(export, db_path):
    result = ingest_export(files(export), db=db_path, profile=export / "profile.toml",
                           today=TODAY)
    f = by_role(result)
    assert counts(f["visits"]) == (5, 5, 0, 0, 0)
    assert counts(f["measures"]) == (14, 7, 5, 1, 1)
    assert f["measures"]["quarantine_by_reason"] == {
        "measure_conflict": 2, "measure_no_visit": 1, "score_out_of_range": 1,
        "unknown_measure": 1}
    assert counts(f["patients"]) == (3, 2, 1, 0, 0)
    assert result.unmapped_measures == {"Mystery Scale": 1}
    v = load_visits(db_path).set_index("visit_id")
    assert v.loc["E1", ["nprs", "lefs", "age"]].tolist() == [7.0, 40.0, 34.0]
    assert v.loc["E1", "cpt_codes"] == "97162;97110" and v.loc["E4", "icd10"] == "M22.22"
    assert v.loc["E1", "sex"] == "F" and v["nprs"].isna().tolist() == [False] * 3 + [True, False]
    with open_store(db_path) as con:
        assert con.execute("SELECT visit_id, instrument, score FROM visit_measures").fetchall() \
            == [("E3", "odi", 20.0)]
        rows = con.execute("SELECT reason_code, raw_row FROM quarantine ORDER BY 1").fetchall()
    assert {json.loads(raw)["file"] for _, raw in rows} == {"flowsheet.csv", "patients.csv"}
    summary = result.summary()
    assert "measures flowsheet.csv: 14 rows read -> 7 loaded" in summary
    assert "'Mystery Scale' 1" in summary


def test_folder_zip_and_file_list_are_the_same_export(export, tmp_path):
    zipped = tmp_path / "export.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for name in FILES:
            zf.write(export / name, f"nested/{name}")
    prof = export / "profile.toml"
    a = ingest_export(export, db=tmp_path / "a.duckdb", profile=prof, today=TODAY)
    b = ingest_export(zipped, db=tmp_path / "b.duckdb", profile=prof, today=TODAY)
    assert a.files == b.files and a.file_sha256 == b.file_sha256
    again = ingest_export(files(export), db=tmp_path / "a.duckdb", profile=prof, today=TODAY)
    assert again.already_ingested and again.files == a.files


def test_dry_run_writes_nothing(export, db_path, tmp_path):
    prof = export / "profile.toml"
    dry = ingest_export(files(export), db=db_path, profile=prof, today=TODAY, dry_run=True)
    assert dry.dry_run and counts(by_role(dry)["measures"]) == (14, 7, 5, 1, 1)
    assert not db_path.exists()  # a dry run does not even create the store
    assert "dry run: nothing was written" in dry.summary()
    ingest_export(export / "visits.csv", db=db_path, profile=prof, today=TODAY)
    before = store_snapshot(db_path)
    dry = ingest_export(files(export), db=db_path, profile=prof, today=TODAY, dry_run=True)
    # compared with the store: visits stored without scores or age now come with them
    assert by_role(dry)["visits"]["quarantine_by_reason"] == {"conflicting_duplicate": 5}
    assert by_role(dry)["visits"]["rows_loaded"] == 0
    assert store_snapshot(db_path) == before


def test_keep_and_tolerance_come_from_the_profile(export, db_path):
    text = (export / "profile.toml").read_text()
    text = text.replace('score = "Score"', 'score = "Score"\nkeep = "max"\ntolerance_days = 14')
    (export / "profile.toml").write_text(text)
    result = ingest_export(files(export), db=db_path, profile=export / "profile.toml",
                           today=TODAY)
    m = by_role(result)["measures"]
    assert m["quarantine_by_reason"] == {"measure_not_kept": 2, "score_out_of_range": 1,
                                         "unknown_measure": 1}
    v = load_visits(db_path).set_index("visit_id")
    assert v.loc["E4", "nprs"] == 8.0  # max of 6 and 8
    # the 01/30 score (2) is 14 days from E5 (its nearest visit), which has a 3: max keeps 3
    assert v.loc["E5", "nprs"] == 3.0


def test_score_of_a_quarantined_visit_is_quarantined_too(export, db_path):
    visits = (export / "visits.csv").read_text().replace("E2,P1,C1,T1,01/15/2024",
                                                         "E2,P1,C1,T1,02/30/2024")
    (export / "visits.csv").write_text(visits)
    result = ingest_export(files(export), db=db_path, profile=export / "profile.toml",
                           today=TODAY)
    f = by_role(result)
    assert f["visits"]["quarantine_by_reason"] == {"impossible_date": 1}
    # the 01/15 NPRS no longer finds a visit on its day
    assert f["measures"]["quarantine_by_reason"]["measure_no_visit"] == 2


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("change, message", [
    (lambda d: (d / "patients.csv").write_text("Patient ID,Patient Name\nP1,x\n"),
     "'Patient Name' is a direct identifier"),
    (lambda d: (d / "notes.csv").write_text("a,b\n1,2\n"), "matches no file pattern"),
    (lambda d: (d / "flowsheet.csv").write_text("Patient ID,Date,Score\nP1,01/08/2024,3\n"),
     "missing required column(s) measure_name"),
    (lambda d: (d / "visits.csv").unlink(), "no visits file"),
    (lambda d: (d / "flowsheet.csv").write_bytes(b"Patient ID,Date,Measure,Score\n\xff\n"),
     "byte offset 30 is not valid utf-8"),
])
def test_bad_exports_are_rejected_with_one_line_and_the_store_unchanged(export, db_path,
                                                                         change, message):
    run_cli("ingest", export / "visits.csv", "--db", db_path, "--profile",
            export / "profile.toml")  # a store with something in it
    before = store_snapshot(db_path)
    change(export)
    res = run_cli("ingest", export, "--db", db_path, "--profile", export / "profile.toml")
    assert res.exit_code == 2, res.output
    assert message in res.output and res.output.startswith("error: ")
    assert len(res.output.strip().splitlines()) == 1
    assert store_snapshot(db_path) == before


def test_several_files_need_a_files_table_and_zip_must_be_readable(export, tmp_path):
    res = run_cli("ingest", *files(export), "--db", tmp_path / "s.duckdb")
    assert res.exit_code == 2 and "no [files] table" in res.output
    bad = tmp_path / "x.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    res = run_cli("ingest", bad, "--db", tmp_path / "s.duckdb", "--profile",
                  export / "profile.toml")
    assert res.exit_code == 2 and "not a readable zip" in res.output


@pytest.mark.parametrize("extra, message", [
    ('[files]\nvisits = "v*"\nnotes = "n*"\n', "files must name a visits file"),
    ('[measures]\nkeep = "newest"\n', "measures.keep must be one of"),
    ('[measures]\ntolerance_days = -1\n', "tolerance_days must be a whole number"),
    ('[files]\nvisits = "v*"\nmeasures = "m*"\n', "missing column key(s) patient"),
    ('[instruments.nprs]\nname = "x"\n', "'nprs' is a registered instrument"),
    ('[instruments.womac]\nname = "WOMAC"\nlow = 0\nhigh = 96\n',
     "missing key(s) higher_is_better, mcid, source"),
])
def test_profile_errors_name_the_key(tmp_path, extra, message):
    path = tmp_path / "p.toml"
    path.write_text(extra)
    with pytest.raises(ProfileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_profile(path)


def test_missing_export_path_is_rejected(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        ingest_export(tmp_path / "nope.csv", db=tmp_path / "s.duckdb")


# --------------------------------------------------------------------- QUALITY.md rows, multi-file
def test_bom_invisible_characters_and_ragged_rows_in_the_other_files(export, db_path):
    flow = (export / "flowsheet.csv").read_text()
    flow = flow.replace("P1,01/15/2024", "\u200bP1 ,01/15/2024")  # invisible + space in an ID
    flow = flow.replace("P2,01/16/2024,Mystery Scale,4",
                        "P2,01/16/2024,Mystery Scale,4,call 555-867-5309")
    (export / "flowsheet.csv").write_bytes(b"\xef\xbb\xbf" + flow.encode())  # byte-order mark
    result = ingest_export(files(export), db=db_path, profile=export / "profile.toml",
                           today=TODAY)
    m = by_role(result)["measures"]
    assert m["quarantine_by_reason"]["ragged_row"] == 1 and "unknown_measure" not in \
        m["quarantine_by_reason"]
    assert counts(m) == (14, 7, 5, 1, 1)
    assert load_visits(db_path).set_index("visit_id").loc["E2", "nprs"] == 5.0  # joined
    with open_store(db_path) as con:
        raw = dict(con.execute("SELECT reason_code, raw_row FROM quarantine WHERE reason_code "
                               "IN ('ragged_row', 'score_out_of_range')").fetchall())
    # the raw line of a ragged row (PHI redacted), the mapped cells of any other row
    assert raw == {
        "ragged_row": '{"file": "flowsheet.csv", "raw_text": "P2,01/16/2024,Mystery Scale,4,'
                      'call [PHONE]"}',
        "score_out_of_range": '{"file": "flowsheet.csv", "patient_id": "P2", "measure_date": '
                              '"01/16/2024", "measure_name": "LEFS Total", "score": "81"}'}


@pytest.mark.slow
def test_killed_multi_file_ingest_leaves_the_store_unchanged(export, db_path):
    import sys

    from test_store import kill_before_commit

    kill_before_commit([sys.executable, "-m", "outcomes.cli", "ingest", *map(str, files(export)),
                        "--db", str(db_path), "--profile", str(export / "profile.toml")])
    snap = store_snapshot(db_path)
    assert snap is None or not any(snap.values())
    again = ingest_export(files(export), db=db_path, profile=export / "profile.toml",
                          today=TODAY)
    assert not again.already_ingested and by_role(again)["measures"]["rows_loaded"] == 7


def test_patient_conflicts_missing_keys_and_scores_of_quarantined_visits(export, db_path):
    (export / "patients.csv").write_text("Patient ID,Age,Sex,Payer\nP1,34,Female,commercial\n"
                                         "P1,35,Female,commercial\n,50,Male,medicare\n"
                                         "P2,51,Male,medicare\nP2,51,Male,medicare\n")
    visits = (export / "visits.csv").read_text().replace("01/22/2024,Discharge Summary",
                                                         "01/22/2024,Phone call")
    (export / "visits.csv").write_text(visits)
    result = ingest_export(files(export), db=db_path, profile=export / "profile.toml",
                           today=TODAY)
    f = by_role(result)
    assert counts(f["patients"]) == (5, 1, 3, 1, 0)
    assert f["patients"]["quarantine_by_reason"] == {"missing_key": 1, "patient_conflict": 2}
    assert f["visits"]["quarantine_by_reason"] == {"bad_visit_type": 1}
    # E3's three scores (NPRS, LEFS, ODI) go with their visit into quarantine
    assert f["measures"]["quarantine_by_reason"]["visit_quarantined"] == 3
    assert counts(f["measures"]) == (14, 4, 8, 1, 1)
    v = load_visits(db_path).set_index("visit_id")
    assert v.loc["E1", "age"] != v.loc["E1", "age"]  # P1's age: which row is right? neither
    assert v.loc["E4", "age"] == 51.0
    with open_store(db_path) as con:
        assert con.execute("SELECT count(*) FROM visit_measures").fetchone()[0] == 0


def _zip_with_two_visits(d: Path) -> None:
    with zipfile.ZipFile(d / "x.zip", "w") as zf:
        zf.write(d / "visits.csv", "a/visits.csv")
        zf.write(d / "visits.csv", "b/visits.csv")


@pytest.mark.parametrize("setup, target, message", [
    (lambda d: (d / "visits_and_patients.csv").write_text("a\n1\n"), None,
     "matches more than one file pattern"),
    (lambda d: shutil.copy(d / "visits.csv", d / "visits2.csv"), None, "is a second visits file"),
    (lambda d: (d / "patients.csv").rename(d / "patients.parquet"), None,
     "multi-file exports are read from .csv or .xlsx files"),
    (lambda d: (d / "empty").mkdir(), "empty", "no export files in empty"),
    (_zip_with_two_visits, "x.zip", "two files with the same name"),
])
def test_ambiguous_or_unsupported_file_sets_are_rejected(export, db_path, setup, target, message):
    text = (export / "profile.toml").read_text().replace('patients = "patients*.csv"',
                                                         'patients = "*patients*"')
    (export / "profile.toml").write_text(text)
    setup(export)
    res = run_cli("ingest", export / target if target else export, "--db", db_path, "--profile",
                  export / "profile.toml")
    assert res.exit_code == 2 and res.output.startswith("error: ") and message in res.output
    assert not db_path.exists()


def test_zip_that_expands_past_the_cap_or_repeats_a_name_is_rejected(export, tmp_path,
                                                                     monkeypatch):
    """A zip bomb is refused before anything is extracted; two members of one base name (from
    different folders) would overwrite each other, so that zip is refused too."""
    import outcomes.ingest.sources as sources

    db = tmp_path / "z.duckdb"
    zipped = tmp_path / "export.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for f in files(export):
            zf.write(f, f.name)
    monkeypatch.setattr(sources, "MAX_UNZIPPED_BYTES", 100)
    with pytest.raises(InputError, match="expands to more than 8 GiB"):
        ingest_export(zipped, db=db, profile=export / "profile.toml", today=TODAY)
    assert not db.exists()
    monkeypatch.undo()
    twice = tmp_path / "twice.zip"
    with zipfile.ZipFile(twice, "w") as zf:
        for f in files(export):
            zf.write(f, f"a/{f.name}")
        zf.write(files(export)[0], f"b/{files(export)[0].name}")
    res = run_cli("ingest", twice, "--db", db, "--profile", export / "profile.toml")
    assert res.exit_code == 2 and "two files with the same name" in res.output
    assert res.output.startswith("error: ") and len(res.output.strip().splitlines()) == 1


def test_scores_and_covariates_fill_only_the_cells_they_belong_to():
    import pandas as pd

    from outcomes.ingest.multifile import _add_covariates, _add_scores

    text = pd.StringDtype("pyarrow")
    visits = pd.DataFrame({"patient_id": pd.array(["\u200bP1 ", "P2", "P9", "P1"], dtype=text),
                           "nprs": pd.array(["5", None, "", None], dtype=text),
                           "age": pd.array(["", "60", "", None], dtype=text)},
                          index=[10, 11, 12, 13])
    attached = pd.DataFrame({"visit_row": [11, 12, 10], "instrument": ["nprs", "lefs", "lefs"],
                             "score": [3.0, 41.5, 0.1 + 0.2]})
    scored = _add_scores(visits, attached)
    assert scored["nprs"].tolist() == ["5", "3", "", pd.NA]  # own text kept where no score
    assert scored["lefs"].tolist() == ["0.3", "", "41.5", ""]  # 15 significant digits
    assert str(scored["lefs"].dtype) == "string" and list(scored.index) == [10, 11, 12, 13]
    assert visits["nprs"].tolist() == ["5", pd.NA, "", pd.NA]  # the input is not written to
    covariates = pd.DataFrame({"age": pd.array(["34", "51"], dtype=text),
                               "sex": pd.array(["Female", "Male"], dtype=text)},
                              index=pd.Index(["P1", "P2"], name="patient_id"))
    out = _add_covariates(visits, covariates)
    assert out["age"].tolist() == ["34", "60", "", "34"]  # the visit row's own value wins
    assert out["sex"].tolist() == ["Female", "Male", "", "Female"]  # no patient row: empty
