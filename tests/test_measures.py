"""outcomes.ingest.measures: the measure vocabulary and attaching long-format scores to visits."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outcomes.errors import ProfileError
from outcomes.ingest.measures import (
    load_measure_vocabulary,
    match_measures,
    normalize_measure_name,
)
from outcomes.instruments import INSTRUMENTS, instrument_registry

S = "string[pyarrow]"
TODAY = "2025-06-30"


def visits() -> pd.DataFrame:
    rows = [("V1", "P1", "2024-01-08"), ("V2", "P1", "2024-01-15"), ("V3", "P2", "2024-01-08"),
            ("V4", "P2", "2024-01-10")]
    return pd.DataFrame(rows, columns=["visit_id", "patient_id", "visit_date"],
                        index=range(2, 6)).astype(S)


def measures(rows) -> pd.DataFrame:
    cols = ["patient_id", "measure_date", "measure_name", "score"]
    return pd.DataFrame(rows, columns=cols, index=range(2, 2 + len(rows))).astype(S)


def match(rows, **kw):
    kw.setdefault("vocabulary", load_measure_vocabulary())
    kw.setdefault("instruments", INSTRUMENTS)
    out = match_measures(measures(rows), visits(), today=TODAY, **kw)
    assert len(rows) == len(out.attached) + len(out.quarantine) + out.n_duplicate + out.n_blank
    return out


def reasons(out) -> dict[int, str]:
    return dict(zip(out.quarantine["row_number"], out.quarantine["reason_code"], strict=True))


def test_vocabulary_maps_emr_names_case_and_punctuation_insensitively():
    vocab = load_measure_vocabulary()
    for name, code in [("Numeric Pain Rating Scale", "nprs"), ("LEFS Total", "lefs"),
                       ("lefs-total ", "lefs"), ("Oswestry", "odi"), ("QuickDASH", "quickdash"),
                       ("KOOS JR", "koos_jr"), ("Functional Status", "functional_status")]:
        assert vocab[f"name:{normalize_measure_name(name)}"] == code, name
    assert vocab["code:72514-3"] == "nprs"  # LOINC pain severity 0-10


def test_profile_names_extend_the_vocabulary_and_must_name_known_instruments():
    vocab = load_measure_vocabulary(extra={"Pain Today": "nprs"})
    assert vocab["name:pain today"] == "nprs"
    with pytest.raises(ProfileError, match="unknown instrument.*womac"):
        load_measure_vocabulary(extra={"WOMAC": "womac"})


def test_scores_attach_to_the_visit_of_the_same_patient_and_day():
    out = match([("P1", "2024-01-08", "Numeric Pain Rating Scale", "7"),
                 ("P1", "2024-01-15", "LEFS Total", "40"),
                 ("P2", "2024-01-08", "NPRS", "5")])
    assert out.attached[["visit_id", "instrument", "score"]].values.tolist() == [
        ["V1", "nprs", 7.0], ["V2", "lefs", 40.0], ["V3", "nprs", 5.0]]
    assert out.attached["visit_row"].tolist() == [2, 3, 4]


def test_unmatched_scores_are_quarantined_never_attached_elsewhere():
    out = match([("P1", "2024-01-09", "NPRS", "7"),   # no visit that day
                 ("P3", "2024-01-08", "NPRS", "7"),   # unknown patient
                 ("P2", "2024-01-09", "NPRS", "4")])  # between V3 and V4
    assert out.attached.empty
    assert set(reasons(out).values()) == {"measure_no_visit"}
    tol = match([("P1", "2024-01-09", "NPRS", "7"), ("P2", "2024-01-09", "NPRS", "4")],
                tolerance_days=1)
    assert tol.attached["visit_id"].tolist() == ["V1"]
    assert reasons(tol) == {3: "measure_ambiguous_visit"}  # V3 and V4 both one day away


def test_unknown_names_are_counted_and_listed():
    out = match([("P1", "2024-01-08", "Mystery Scale", "4"),
                 ("P1", "2024-01-08", "Mystery Scale", "5"), ("P1", "2024-01-08", "NPRS", "3")])
    assert out.unmapped == {"Mystery Scale": 2}
    assert reasons(out) == {2: "unknown_measure", 3: "unknown_measure"}


def test_bad_scores_are_quarantined_with_the_instrument_range():
    out = match([("P1", "2024-01-08", "NPRS", "11"), ("P1", "2024-01-08", "LEFS", "40.5"),
                 ("P1", "2024-01-15", "NPRS", "refused"), ("P1", "2024-01-15", "LEFS", "N/A"),
                 ("P2", "2024-01-08", "NPRS", "7,5"), ("", "2024-01-08", "NPRS", "2"),
                 ("P2", "02/30/2024", "NPRS", "2")])
    r = reasons(out)
    assert r == {2: "score_out_of_range", 3: "score_not_integer", 4: "score_not_numeric",
                 5: "missing_score", 6: "score_not_numeric", 7: "missing_key", 8: "bad_date"}
    text = dict(zip(out.quarantine["row_number"], out.quarantine["reason_text"], strict=True))
    assert "0-10" in text[2] and "decimal comma" in text[6]


def test_repeats_are_duplicates_and_differences_conflicts_unless_keep():
    rows = [("P1", "2024-01-08", "NPRS", "6"), ("P1", "2024-01-08", "Pain NRS", "6"),
            ("P1", "2024-01-15", "NPRS", "5"), ("P1", "2024-01-15", "NPRS", "8"),
            ("P1", "2024-01-15", "NPRS", "3")]
    out = match(rows)
    assert out.n_duplicate == 1 and out.attached["visit_id"].tolist() == ["V1"]
    assert set(reasons(out)) == {4, 5, 6} and set(reasons(out).values()) == {"measure_conflict"}
    for keep, kept in [("first", 5.0), ("last", 3.0), ("max", 8.0), ("min", 3.0)]:
        out = match(rows, keep=keep)
        got = out.attached.loc[out.attached["visit_id"] == "V2", "score"].tolist()
        assert got == [kept], keep
        assert list(reasons(out).values()) == ["measure_not_kept"] * 2


def test_profile_added_instrument_is_validated_against_its_own_range():
    registry = instrument_registry({"womac": {
        "name": "WOMAC", "low": 0, "high": 96, "higher_is_better": False, "mcid": 12,
        "source": "Angst et al. 2001"}})
    vocab = load_measure_vocabulary(extra={"WOMAC Total": "womac"}, instruments=registry)
    out = match([("P1", "2024-01-08", "WOMAC Total", "50"), ("P1", "2024-01-15", "WOMAC Total",
                                                            "97")],
                vocabulary=vocab, instruments=registry)
    assert out.attached["instrument"].tolist() == ["womac"]
    assert "0-96" in out.quarantine["reason_text"].iloc[0]


CELL = st.sampled_from(["", "P1", "P2", "P3", "2024-01-08", "2024-01-15", "2024-01-10",
                        "NPRS", "LEFS", "Oswestry", "Mystery", "5", "40", "11", "N/A", "x"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(CELL, CELL, CELL, CELL), max_size=25),
       st.sampled_from([None, "first", "max"]), st.integers(0, 2))
def test_every_measure_row_is_attached_quarantined_duplicate_or_blank(rows, keep, tol):
    out = match(rows, keep=keep, tolerance_days=tol)  # match() asserts conservation
    attached = out.attached.merge(visits(), on="visit_id")
    src = measures(rows).loc[attached["row_number"]]
    assert (src["patient_id"].to_numpy() == attached["patient_id"].to_numpy()).all()
    assert not out.attached.duplicated(["visit_id", "instrument"]).any()
