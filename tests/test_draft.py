"""outcomes.ingest.draft: a commented profile guessed from headers and a sample."""

from __future__ import annotations

import tomllib

import pytest

from outcomes.errors import InputError
from outcomes.ingest import draft_profile, ingest_export, load_profile

HEADER = "Encounter ID;Patient Key;Site;Provider;DOS;Visit Type;CPT;Dx;Interventions;Pain (0-10)"


def write(path, lines, encoding="utf-8"):
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


def rows(dates: list[str]) -> list[str]:
    return [f"V{i};P{i % 3};C1;T1;{d};Initial Eval;97162, 97110;M7631;hip stretching;{i % 10}"
            for i, d in enumerate(dates)]


def test_draft_of_a_semicolon_export_with_a_title_block(tmp_path):
    path = write(tmp_path / "e.csv", ["Clinic export;;", "run 2026-10-01;;", HEADER,
                                      *rows(["13/01/2024", "28/02/2024", "05/03/2024"])])
    text = draft_profile([path])
    prof = tomllib.loads(text)
    assert prof["delimiter"] == ";" and prof["header_row"] == 3
    assert prof["date_format"] == "%d/%m/%Y"  # 13 and 28 cannot be months
    assert prof["columns"]["DOS"] == "visit_date" and prof["columns"]["Dx"] == "icd10"
    assert prof["columns"]["Pain (0-10)"] == "nprs" and prof["columns"]["CPT"] == "cpt_codes"
    assert prof["values"]["visit_type"] == {"Initial Eval": "evaluation"}
    assert all("REVIEW" in line for line in text.splitlines()
               if "=" in line and not line.startswith(("#", '"Initial')))
    (tmp_path / "p.toml").write_text(text)
    load_profile(tmp_path / "p.toml")  # a valid profile as drafted


def test_ambiguous_dates_are_asked_never_guessed(tmp_path):
    path = write(tmp_path / "e.csv", [HEADER, *rows(["01/02/2024", "03/04/2024"])])
    text = draft_profile([path])
    assert "date_format" not in tomllib.loads(text)
    assert "QUESTION: the sampled dates fit %m/%d/%Y, %d/%m/%Y" in text


def test_encoding_guess_and_identifier_columns_are_flagged(tmp_path):
    path = write(tmp_path / "e.csv", [HEADER.replace(";", ",") + ",Patient Name,Note",
                                      "V1,P1,C1,T1,2024-01-08,IE,97162,M76.31,x,5,Zoë Q,café"],
                 encoding="cp1252")
    text = draft_profile([path])
    assert 'encoding = "cp1252"' in text and "cp1252 is a guess" in text
    assert '# "Patient Name": a direct identifier; remove this column' in text
    assert "Zoë" not in text  # values of an identifier column are never echoed
    assert '# "Note" = "technique_notes"   # REVIEW: technique_notes is already mapped' in text
    assert tomllib.loads(text)["values"]["visit_type"] == {"IE": "evaluation"}


def test_multi_file_roles_and_measure_names(tmp_path):
    v = write(tmp_path / "billing.csv", [HEADER.replace(";", ","),
                                         "V1,P1,C1,T1,2024-01-08,IE,97162,M76.31,x,"])
    m = write(tmp_path / "scores.csv", ["Patient,Date,Measure,Value",
                                        "P1,2024-01-08,LEFS Total,40",
                                        "P1,2024-01-08,Numeric Pain Rating Scale,6",
                                        "P1,2024-01-08,Berg Balance,40"])
    p = write(tmp_path / "people.csv", ["Patient Key,Gender,Age", "P1,Female,40"])
    prof = tomllib.loads(text := draft_profile([v, m, p]))
    assert prof["files"] == {"visits": "billing.csv", "measures": "scores.csv",
                             "patients": "people.csv"}
    assert prof["measures"] | {"tolerance_days": 0} == {
        "patient": "Patient", "date": "Date", "name": "Measure", "score": "Value",
        "tolerance_days": 0, "names": {}}
    assert '# "Berg Balance" = ""   # REVIEW: unknown' in text
    (tmp_path / "p.toml").write_text(text)
    result = ingest_export([v, m, p], db=tmp_path / "s.duckdb", profile=tmp_path / "p.toml",
                           today="2025-01-01", dry_run=True)
    assert result.unmapped_measures == {"Berg Balance": 1}


def test_fhir_draft_maps_unknown_codes_by_their_text(tmp_path):
    (tmp_path / "Encounter.ndjson").write_text(
        '{"resourceType":"Encounter","id":"e1","type":[{"text":"PT Re-Eval"}]}\n')
    (tmp_path / "Observation.ndjson").write_text(
        '{"resourceType":"Observation","code":{"coding":[{"code":"X-1"}],"text":"QuickDASH"}}\n'
        '{"resourceType":"Observation","code":{"coding":[{"code":"72514-3"}]}}\n')
    prof = tomllib.loads(draft_profile(sorted(tmp_path.glob("*.ndjson"))))
    assert prof["values"]["visit_type"] == {"PT Re-Eval": "re-evaluation"}
    assert prof["measures"]["names"] == {"X-1": "quickdash"}  # LOINC 72514-3 is known


def test_unreadable_inputs_are_rejected(tmp_path):
    bad = tmp_path / "x.xlsx"
    bad.write_bytes(b"not a workbook")
    with pytest.raises(InputError, match="x.xlsx: workbook is corrupt"):
        draft_profile([bad])
    nd = tmp_path / "Encounter.ndjson"
    nd.write_text("{nope\n")
    with pytest.raises(InputError, match="line 1 is not valid JSON"):
        draft_profile([nd])


@pytest.mark.parametrize("name, message", [
    ("export.pdf", r"export\.pdf: unsupported file type \.pdf"),
    ("export.parquet", r"a draft reads \.csv, \.xlsx or FHIR \.ndjson files"),
])
def test_draft_of_an_unsupported_file_type_is_a_one_line_error(tmp_path, name, message):
    path = tmp_path / name
    path.write_bytes(b"%PDF-1.4 not a table")
    with pytest.raises(InputError, match=message):
        draft_profile([path])
