"""outcomes.ingest.fhir: a FHIR R4 Bulk Data export (NDJSON) into the canonical tables.

``tests/data/fhir/`` is a small hand-written export that follows the R4 spec (Bulk Data: one
resource type per file): Observations with ``valueQuantity``, ``valueInteger`` and a missing
value with ``dataAbsentReason``, a clinic flowsheet code the profile maps, Procedures with CPT
codes and notes (one referencing no Encounter), Conditions with ICD-10 (one without its dot).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TODAY, store_snapshot

from outcomes.cli import cli
from outcomes.errors import InputError
from outcomes.ingest import ingest_export
from outcomes.store import load_visits, open_store

DATA = Path(__file__).parent / "data" / "fhir"


@pytest.fixture
def bulk(tmp_path) -> Path:
    folder = tmp_path / "bulk"
    shutil.copytree(DATA, folder)
    return folder


def ingest(folder: Path, db: Path, **kw):
    return ingest_export(folder, db=db, profile=folder / "profile.toml", today=TODAY, **kw)


def test_bulk_export_loads_into_the_canonical_tables(bulk, db_path):
    result = ingest(bulk, db_path)
    files = {f["role"]: f for f in result.files}
    assert {r: (f["rows_in"], f["rows_loaded"], f["rows_quarantined"]) for r, f in files.items()} \
        == {"visits": (4, 4, 0), "measures": (7, 5, 2), "patients": (2, 2, 0),
            "procedures": (6, 5, 1), "conditions": (4, 4, 0)}
    assert files["measures"]["quarantine_by_reason"] == {"measure_no_visit": 1,
                                                         "missing_score": 1}
    assert files["procedures"]["quarantine_by_reason"] == {"no_encounter": 1}
    v = load_visits(db_path).set_index("visit_id")
    assert v.loc["e1", "nprs"] == 7.0  # valueQuantity
    assert v.loc["e2", "nprs"] == 5.0  # valueInteger
    assert v.loc["e1", "lefs"] == 38.0 and v.loc["e3", "lefs"] == 61.0  # profile-mapped code
    assert v.loc["e3", "nprs"] != v.loc["e3", "nprs"]  # dataAbsentReason: missing, not 0
    assert v.loc["e1", "cpt_codes"] == "97162;97110" and v.loc["e4", "icd10"] == "M22.22"
    assert v.loc["e1", "visit_type"] == "evaluation" and v.loc["e3", "visit_type"] == "discharge"
    assert (v.loc["e1", "patient_id"], v.loc["e1", "clinic_id"], v.loc["e1", "therapist_id"]) \
        == ("p1", "c1", "t1")
    assert v.loc["e1", "sex"] == "F" and str(v.loc["e1", "visit_date"])[:10] == "2024-01-08"
    with open_store(db_path) as con:
        codes = con.execute("SELECT technique_code FROM visit_techniques WHERE visit_id = 'e2'"
                            ).fetchall()
        n_episodes = con.execute("SELECT count(*) FROM episodes").fetchone()[0]
    assert codes == [("pri_hiking_stick_gait",)] and n_episodes == 2
    assert ingest(bulk, db_path).already_ingested


def test_visit_type_falls_back_to_evaluation_cpt(bulk, db_path):
    lines = (bulk / "Encounter.ndjson").read_text().splitlines()
    first = json.loads(lines[0])
    del first["type"]
    (bulk / "Encounter.ndjson").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    ingest(bulk, db_path)
    assert load_visits(db_path).set_index("visit_id").loc["e1", "visit_type"] == "evaluation"


def add_to_patient(bulk: Path, **fields) -> None:
    lines = (bulk / "Patient.ndjson").read_text().splitlines()
    res = json.loads(lines[1])
    res.update(fields)
    (bulk / "Patient.ndjson").write_text("\n".join([lines[0], json.dumps(res)]) + "\n")


@pytest.mark.parametrize("fields, element", [
    ({"name": [{"family": "Zyxwvut", "given": ["Qqqq"]}]}, "Patient.name"),
    ({"telecom": [{"system": "phone", "value": "555-867-5309"}]}, "Patient.telecom"),
    ({"address": [{"line": ["1 Main St"], "city": "Springfield"}]}, "Patient.address"),
])
def test_a_patient_with_a_direct_identifier_rejects_the_file_and_is_never_echoed(
        bulk, db_path, fields, element):
    CliRunner().invoke(cli, ["ingest", str(DATA), "--db", str(db_path), "--profile",
                             str(DATA / "profile.toml")])
    before = store_snapshot(db_path)
    add_to_patient(bulk, **fields)
    res = CliRunner().invoke(cli, ["ingest", str(bulk), "--db", str(db_path), "--profile",
                                   str(bulk / "profile.toml")])
    assert res.exit_code == 2 and res.output.startswith("error: Patient.ndjson: line 2: ")
    assert f"{element} is a direct identifier" in res.output
    for secret in ("Zyxwvut", "Qqqq", "867-5309", "Main St"):
        assert secret not in res.output
    assert store_snapshot(db_path) == before


@pytest.mark.parametrize("change, message", [
    (lambda b: (b / "Observation.ndjson").write_text('{"resourceType": "Observation",\n'),
     "Observation.ndjson: line 1 is not valid JSON"),
    (lambda b: (b / "Procedure.ndjson").write_text(
        '{"resourceType": "Procedure"}\n{"resourceType": "Condition"}\n'),
     "mixes resource types (Condition, Procedure)"),
    (lambda b: (b / "Encounter.ndjson").unlink(), "holds no Encounter NDJSON file"),
    (lambda b: (b / "Patient.ndjson").write_bytes(b'{"resourceType": "Patient", "id": "\xff"}\n'),
     "Patient.ndjson: is not valid UTF-8"),
])
def test_broken_bulk_files_are_rejected(bulk, db_path, change, message):
    change(bulk)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingest(bulk, db_path)
    assert not db_path.exists()


def test_safe_harbor_rejects_day_level_encounter_dates(bulk, db_path):
    (bulk / "profile.toml").write_text('regime = "safe_harbor"\n' +
                                       (bulk / "profile.toml").read_text())
    with pytest.raises(InputError, match="safe_harbor"):
        ingest(bulk, db_path)


def test_other_resource_types_are_ignored_and_named(bulk, db_path):
    (bulk / "Practitioner.ndjson").write_text('{"resourceType": "Practitioner", "id": "t1"}\n')
    result = ingest(bulk, db_path, dry_run=True)
    assert result.warnings["ignored_files"] == "Practitioner.ndjson"
    assert not db_path.exists()


def test_a_second_file_of_one_resource_type_is_rejected(bulk, db_path):
    shutil.copy(bulk / "Encounter.ndjson", bulk / "Encounter-2.ndjson")
    with pytest.raises(InputError, match="is a second Encounter file"):
        ingest(bulk, db_path)
