"""outcomes.ingest.codes: CPT lists and ICD-10 codes in their canonical spelling."""

from __future__ import annotations

import pandas as pd

from outcomes.ingest.codes import normalize_codes, normalize_cpt, normalize_icd10

S = "string[pyarrow]"


def test_cpt_lists_become_semicolon_separated_and_other_text_is_left_alone():
    got = normalize_cpt(pd.Series(["97162, 97110", "97110/97140-59", "97110 97530", "97110",
                                   "97110;97140", "manual therapy", "", None], dtype=S))
    assert got.tolist() == ["97162;97110", "97110;97140-59", "97110;97530", "97110",
                            "97110;97140", "manual therapy", "", pd.NA]


def test_icd10_dots_are_restored_and_case_normalised():
    got = normalize_icd10(pd.Series(["M7631", "m76.31", " M545 ", "M25551", "M54", "", None],
                                    dtype=S))
    assert got.tolist() == ["M76.31", "M76.31", "M54.5", "M25.551", "M54", "", pd.NA]


def test_normalize_codes_keeps_the_index_and_other_columns():
    frame = pd.DataFrame({"cpt_codes": ["97162, 97110", None], "icd10": ["m7631", "M76.31"],
                          "nprs": ["5", "6"]}, index=[7, 9]).astype(S)
    out = normalize_codes(frame)
    assert out.index.tolist() == [7, 9] and out["nprs"].tolist() == ["5", "6"]
    assert out["cpt_codes"].tolist() == ["97162;97110", pd.NA]
    assert out["icd10"].tolist() == ["M76.31", "M76.31"]
    assert frame["icd10"].tolist() == ["m7631", "M76.31"]  # not modified


def test_codes_already_canonical_are_kept_as_arrow_text():
    frame = pd.DataFrame({"cpt_codes": ["97110", None], "icd10": ["M76.31", "M54.5"]},
                         dtype=object)
    out = normalize_codes(frame)
    assert (out.dtypes == S).all()
    assert out["cpt_codes"].tolist() == ["97110", pd.NA]
    assert out["icd10"].tolist() == ["M76.31", "M54.5"]
