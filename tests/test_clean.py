"""outcomes.ingest.clean: row checks, reason codes, duplicates, and the conservation invariant."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import TODAY, make_visit_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outcomes.ingest.clean import clean_visits, json_records, normalize_ids, reconcile_visits
from outcomes.schema import VISIT_COLUMNS

STR = pd.StringDtype("pyarrow")


def frame(rows: list[dict[str, str]]) -> pd.DataFrame:
    """Rows as the text frame the reader produces (index = spreadsheet row numbers)."""
    data = pd.DataFrame(rows, columns=list(VISIT_COLUMNS)).astype(STR)
    data.index = pd.RangeIndex(2, 2 + len(rows))
    return data


def run(rows, **kw):
    kw.setdefault("today", TODAY)
    result = clean_visits(frame(rows), **kw)
    n_in = len(rows)
    assert n_in == (len(result.visits) + len(result.quarantine) + result.n_duplicate
                    + result.n_blank), "conservation invariant"
    return result


def reasons(result) -> dict[int, str]:
    return dict(zip(result.quarantine["row_number"], result.quarantine["reason_code"],
                    strict=True))


def with_cell(col: str, value: str, row: int = 1) -> list[dict[str, str]]:
    rows = make_visit_rows(1)
    rows[row][col] = value
    return rows


def test_valid_rows_are_typed_and_validated():
    result = run(make_visit_rows(2))
    v = result.visits
    assert len(v) == 10 and result.quarantine.empty
    assert str(v["visit_date"].dtype) == "datetime64[ns]"
    assert v["nprs"].dtype == "float64" and v.loc[2, "nprs"] == 7.0
    assert v.loc[2, "prior_pt"] == 1.0 and v.loc[2, "visit_type"] == "evaluation"
    assert list(v.columns) == list(VISIT_COLUMNS)


@pytest.mark.parametrize("col,value,code,text", [
    ("nprs", "11", "score_out_of_range", "range 0-10"),
    ("nprs", "-1", "score_out_of_range", "range 0-10"),
    ("lefs", "81", "score_out_of_range", "range 0-80"),
    ("groc", "8", "score_out_of_range", "range -7-7"),
    ("nprs", "refused", "score_not_numeric", "not a number"),
    ("nprs", "7/10", "score_not_numeric", "not a number"),
    ("nprs", "7,5", "score_not_numeric", "decimal comma"),
    ("nprs", "6.5", "score_not_integer", "whole number"),
    ("visit_date", "2024-02-30", "impossible_date", "not a real calendar date"),
    ("visit_date", "2024-04-31", "impossible_date", "not a real calendar date"),
    ("visit_date", "1950-01-01", "impossible_date", "before 1970"),
    ("visit_date", "2062-01-01", "future_date", "after the ingest date 2025-06-30"),
    ("visit_date", "01/15/2024", "bad_date", "declared format %Y-%m-%d"),
    ("visit_date", "2024/1/15", "bad_date", "declared format"),
    ("visit_date", "", "bad_date", "missing visit_date"),
    ("visit_id", "", "missing_key", "missing visit_id"),
    ("therapist_id", "  ", "missing_key", "missing therapist_id"),
    ("icd10", "", "missing_value", "missing icd10"),
    ("visit_type", "phone call", "bad_visit_type", "visit_type is not one of"),
    ("age", "forty", "bad_value", "age"),
    ("sex", "unknown", "bad_value", "sex"),
    ("prior_pt", "maybe", "bad_value", "prior_pt"),
])
def test_each_bad_cell_is_quarantined_with_its_reason(col, value, code, text):
    result = run(with_cell(col, value))
    assert reasons(result) == {3: code}
    assert text in result.quarantine["reason_text"].iloc[0]
    assert len(result.visits) == 4
    raw = json.loads(result.quarantine["raw_row"].iloc[0])
    assert raw[col] == value  # the raw row is kept as read


@pytest.mark.parametrize("value", ["N/A", "NA", "n/a", ""])
def test_explicit_missing_values_map_to_missing(value):
    result = run(with_cell("nprs", value))
    assert result.quarantine.empty
    assert pd.isna(result.visits.loc[3, "nprs"])


def test_profile_missing_values_and_decimal_comma():
    rows = with_cell("psfs", "6,5")
    rows[2]["nprs"] = "not done"
    result = run(rows, decimal=",", missing_values=["", "not done"])
    assert result.quarantine.empty
    assert result.visits.loc[3, "psfs"] == 6.5 and pd.isna(result.visits.loc[4, "nprs"])
    # with decimal ",", a point is not a decimal mark: never guessed
    result = run(with_cell("psfs", "6.5"), decimal=",")
    assert reasons(result) == {3: "score_not_numeric"}


def test_dates_only_in_the_declared_format():
    rows = make_visit_rows(1)
    for r in rows:
        y, m, d = r["visit_date"].split("-")
        r["visit_date"] = f"{d}/{m}/{y}"
    rows[1]["visit_date"] = "2024-01-15"  # ISO is not the declared format here
    result = run(rows, date_format="%d/%m/%Y")
    assert reasons(result) == {3: "bad_date"}
    assert result.visits.loc[2, "visit_date"] == pd.Timestamp("2024-01-08")


def test_two_digit_years_only_when_declared():
    rows = with_cell("visit_date", "24-01-15")
    assert reasons(run(rows)) == {3: "bad_date"}
    rows = make_visit_rows(1)
    for r in rows:
        r["visit_date"] = r["visit_date"][2:]
    result = run(rows, date_format="%y-%m-%d")
    assert result.quarantine.empty and result.visits["visit_date"].min().year == 2024


def test_excel_serial_dates_1900_and_1904():
    """Excel 1900 system: serial 45299 is 2024-01-08; 1904 system: 43837 is 2024-01-08
    (Microsoft, "Date systems in Excel": the systems differ by 1462 days)."""
    rows = make_visit_rows(1)
    for k, r in enumerate(rows):
        r["visit_date"] = str(45299 + 7 * k)
    result = run(rows, date_format="excel_serial")
    assert result.quarantine.empty
    assert result.visits.loc[2, "visit_date"] == pd.Timestamp("2024-01-08")
    for k, r in enumerate(rows):
        r["visit_date"] = str(45299 - 1462 + 7 * k)
    result = run(rows, date_format="excel_1904")
    assert result.visits.loc[2, "visit_date"] == pd.Timestamp("2024-01-08")
    rows[0]["visit_date"] = "2024-01-08"
    assert reasons(run(rows, date_format="excel_serial")) == {2: "bad_date"}


def test_invisible_characters_and_whitespace_in_ids_are_normalised():
    rows = make_visit_rows(1)
    rows[1]["patient_id"] = "\u200bP000"
    rows[2]["patient_id"] = "P000\u00a0"
    rows[3]["therapist_id"] = "  T0 "
    rows[4]["visit_id"] = "\ufeffV0004\u2009"
    result = run(rows)
    assert result.quarantine.empty
    assert set(result.visits["patient_id"]) == {"P000"}
    assert set(result.visits["therapist_id"]) == {"T0"}
    assert "V0004" in set(result.visits["visit_id"])


def test_text_columns_are_the_same_whether_cleaning_rewrites_them_or_keeps_them():
    """Text already clean is kept as the input's; trimmed, re-cased, mapped or empty text is
    rebuilt row by row. Both give the same visits."""
    tidy = make_visit_rows(2)
    tidy[1]["payer"] = tidy[2]["technique_notes"] = None
    messy = [{**r, "clinic_id": f" {r['clinic_id']}\u200b", "visit_type": r["visit_type"].upper(),
              "sex": r["sex"].lower(), "payer": "Comm", "technique_notes": f"{r['technique_notes']} "}
             for r in tidy]
    messy[1]["payer"] = messy[2]["technique_notes"] = ""
    kept = run(tidy)
    rebuilt = run(messy, value_map={"payer": {"Comm": "commercial"}})
    assert kept.quarantine.empty and rebuilt.quarantine.empty
    pd.testing.assert_frame_equal(kept.visits, rebuilt.visits)


def test_normalize_ids_keeps_inner_spaces():
    out = normalize_ids(pd.Series(["\u00a0a b\u200b ", None, ""], dtype=STR))
    assert out.tolist()[0] == "a b" and pd.isna(out.iloc[1]) and out.iloc[2] == ""


def test_value_map_from_profile():
    rows = make_visit_rows(1)
    rows[0]["visit_type"] = "Initial Eval"
    result = run(rows, value_map={"visit_type": {"Initial Eval": "evaluation"}})
    assert result.quarantine.empty and result.visits.loc[2, "visit_type"] == "evaluation"


def test_age_over_90_is_top_coded_and_counted():
    result = run(with_cell("age", "95"))
    assert result.visits.loc[3, "age"] == 90.0
    assert result.warnings["age_top_coded"] == 1


def test_blank_rows_are_counted_not_quarantined():
    rows = make_visit_rows(1)
    rows.insert(2, dict.fromkeys(VISIT_COLUMNS, ""))
    rows.insert(3, dict.fromkeys(VISIT_COLUMNS, " \u00a0"))
    result = run(rows)
    assert result.n_blank == 2 and result.quarantine.empty and len(result.visits) == 5


def test_totals_row_is_quarantined():
    rows = make_visit_rows(1)
    rows.append({**dict.fromkeys(VISIT_COLUMNS, ""), "visit_id": "Total", "nprs": "25"})
    rows.append({**dict.fromkeys(VISIT_COLUMNS, ""), "visit_id": "", "patient_id": "Grand total"})
    assert reasons(run(rows)) == {7: "totals_row", 8: "totals_row"}


def test_exact_duplicates_keep_one_copy():
    rows = make_visit_rows(1)
    rows.append(dict(rows[2]))
    rows.append({**rows[3], "nprs": "4.0"})  # same value written differently: still a duplicate
    result = run(rows)
    assert result.n_duplicate == 2 and result.quarantine.empty and len(result.visits) == 5


def test_conflicting_duplicates_quarantine_every_copy():
    rows = make_visit_rows(1)
    rows.append({**rows[2], "nprs": "2"})
    result = run(rows)
    assert reasons(result) == {4: "conflicting_duplicate", 7: "conflicting_duplicate"}
    assert len(result.visits) == 4


def test_repeated_ids_are_found_in_any_row_order():
    """Ids in increasing order are settled without hashing; any other order is hashed."""
    rows = make_visit_rows(1)
    rows += [dict(rows[2]), {**rows[3], "nprs": "2"}]  # an exact copy, a conflicting copy
    for order in (rows, sorted(rows, key=lambda r: r["visit_id"]), rows[::-1]):
        result = run(order)
        assert result.n_duplicate == 1 and len(result.visits) == 4
        assert result.quarantine["visit_id"].tolist() == ["V0003", "V0003"]
    assert run(make_visit_rows(1)[::-1]).n_duplicate == 0


def test_a_copy_with_a_bad_cell_quarantines_its_twin():
    rows = make_visit_rows(1)
    rows.append({**rows[2], "nprs": "refused"})
    assert reasons(run(rows)) == {4: "conflicting_duplicate", 7: "score_not_numeric"}


def test_visit_before_intake():
    rows = make_visit_rows(1)
    rows[1]["visit_date"] = "2024-01-01"  # a treatment a week before the evaluation
    assert reasons(run(rows)) == {3: "before_intake"}
    known = pd.Series([pd.Timestamp("2024-01-05")], index=["P000"])
    rows = make_visit_rows(1)[1:]  # evaluation stored earlier (on the 5th) -> nothing flagged
    assert run(rows, known_evaluations=known).quarantine.empty


def test_reconcile_with_store():
    new = run(make_visit_rows(1)).visits
    stored = new.iloc[:3].copy()
    stored.loc[stored.index[1], "nprs"] = 0.0  # conflicts with the new copy
    rec = reconcile_visits(new, stored, conflicted={"V0004"})
    assert rec.duplicate.tolist() == [True, False, True, False, False]
    assert rec.conflict.tolist() == [False, True, False, False, True]
    assert rec.load.tolist() == [False, False, False, True, False]
    assert rec.withdraw["visit_id"].tolist() == ["V0001"]


def test_input_frame_is_not_modified():
    data = frame(with_cell("patient_id", " P000 "))
    before = data.copy()
    clean_visits(data, today=TODAY)
    pd.testing.assert_frame_equal(data, before)


# --- property: conservation over random small exports with random defects -------------------

DEFECTS = {
    "nprs": ["11", "-1", "refused", "7/10", "7,5", "N/A", "", "6.5"],
    "lefs": ["81", "NA", "abc"],
    "visit_date": ["2024-02-30", "01/02/2024", "", "2099-01-01", "1900-01-01"],
    "visit_id": ["", " V0000", "Total"],
    "patient_id": ["", "\u200bP001", "P002\u00a0"],
    "visit_type": ["eval", "", "TREATMENT"],
    "age": ["-3", "120", "x"],
    "prior_pt": ["yes", "maybe", ""],
}
defect = st.sampled_from([(c, v) for c, vals in DEFECTS.items() for v in vals])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), edits=st.lists(st.tuples(st.integers(0, 14), defect), max_size=8),
       dups=st.lists(st.integers(0, 14), max_size=3), blanks=st.integers(0, 2))
def test_conservation_over_random_defects(n, edits, dups, blanks):
    """Every row is loaded, quarantined, counted as duplicate or counted as blank."""
    rows = make_visit_rows(n)
    for r, (col, value) in edits:
        rows[r % len(rows)][col] = value
    rows += [dict(rows[d % len(rows)]) for d in dups]
    rows += [dict.fromkeys(VISIT_COLUMNS, "")] * blanks
    result = run(rows)  # asserts the invariant
    assert result.n_blank >= blanks
    assert result.visits["visit_id"].is_unique
    loaded_or_q = set(result.visits.index) | set(result.quarantine["row_number"])
    assert len(loaded_or_q) == len(result.visits) + len(result.quarantine)  # no row twice


_CELL = st.one_of(st.none(), st.text(st.characters(codec="utf-8"), max_size=8),
                  st.sampled_from(['"', "\\", "\n", "\x7f", "é", "💡", "\u2028", "a\tb"]))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(_CELL, _CELL), max_size=12), ensure_ascii=st.booleans(),
       lead=st.sampled_from([None, {"file": "flow sheet é.csv"}]))
def test_json_records_is_json_dumps_of_each_row(rows, ensure_ascii, lead):
    text = pd.DataFrame(rows, columns=["a", 'b "quoted"'], dtype=object)
    frame = text.assign(a=text["a"].astype("string[pyarrow]"),
                        n=pd.Series([1.5, None, -0.0, 2.0, 1e20, 3.0] * 2)[:len(text)]
                        .to_numpy(),
                        mixed=pd.Series([1, 1.0, True, "1", None, float("nan")] * 2)[:len(text)]
                        .to_numpy(dtype=object))
    got = json_records(frame, lead, ensure_ascii=ensure_ascii)
    plain = frame.astype(object).where(frame.notna(), None).to_dict("records")
    want = [json.dumps({**(lead or {}), **r}, ensure_ascii=ensure_ascii, default=str)
            for r in plain]
    assert list(got) == want
    assert [json.loads(g) for g in got] == [json.loads(w) for w in want]


def test_json_records_of_no_rows_or_no_columns():
    assert len(json_records(pd.DataFrame({"a": pd.array([], dtype="string")}))) == 0
    assert list(json_records(pd.DataFrame(index=range(2)))) == ["{}", "{}"]
    assert list(json_records(pd.DataFrame(index=range(1)), {"file": "x"})) == ['{"file": "x"}']
