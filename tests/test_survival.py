"""Kaplan-Meier medians, log-rank test and Cox model (outcomes.models.survival).

Published reference: Fox & Weisberg, "Cox Proportional-Hazards Regression for Survival Data in R",
appendix to An R Companion to Applied Regression (2nd ed., 2011), Rossi recidivism data.
Comparisons with real R are in tests/test_survival_r.py.
"""

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_lung, load_rossi

from outcomes.errors import ModelError
from outcomes.models.survival import fit_cox, km_curve, km_table, logrank_test

ROSSI_TERMS = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


@pytest.fixture(scope="module")
def rossi_fit():
    return fit_cox(load_rossi(), "week", "arrest", ROSSI_TERMS)


def test_rossi_cox_matches_fox_weisberg(rossi_fit):
    """Fox & Weisberg (2011), coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro +
    prio, data = Rossi): fin -0.37942 (SE 0.19138), HR 0.684 (0.470-0.996), age -0.05744,
    prio 0.09150. Tolerance: 1e-4 relative on 5-digit coefficients, 5e-4 absolute on 3-digit HRs.
    """
    c = rossi_fit.coef.set_index("term")
    assert c.loc["fin", "estimate"] == pytest.approx(-0.37942, rel=1e-4)
    assert c.loc["fin", "se"] == pytest.approx(0.19138, rel=1e-4)
    assert c.loc["age", "estimate"] == pytest.approx(-0.05744, rel=1e-4)
    assert c.loc["prio", "estimate"] == pytest.approx(0.09150, rel=1e-4)
    assert c.loc["fin", "hr"] == pytest.approx(0.684, abs=5e-4)
    assert c.loc["fin", "hr_ci_low"] == pytest.approx(0.470, abs=5e-4)
    assert c.loc["fin", "hr_ci_high"] == pytest.approx(0.996, abs=5e-4)
    assert bool(c["converged"].all())


def test_rossi_likelihood_ratio_test(rossi_fit):
    """Fox & Weisberg (2011): likelihood ratio test = 33.27 on 7 df (printed to 2 decimals)."""
    assert rossi_fit.lr_test["chi2"] == pytest.approx(33.27, abs=0.005)
    assert rossi_fit.lr_test["df"] == 7
    assert rossi_fit.n == 432 and rossi_fit.events == 114


def test_ph_test_names_its_method(rossi_fit):
    ph = rossi_fit.ph_test
    assert list(ph["term"]) == [*ROSSI_TERMS, "GLOBAL"]
    assert ph["method"].str.contains("cox.zph").all()
    assert ph.loc[ph["term"] == "GLOBAL", "df"].item() == 7


def test_breslow_ties_differ_from_efron():
    """Rossi has many tied weeks, so the tie rule must change the estimate slightly."""
    br = fit_cox(load_rossi(), "week", "arrest", ROSSI_TERMS, ties="breslow").coef
    ef = fit_cox(load_rossi(), "week", "arrest", ROSSI_TERMS).coef
    diff = abs(br.loc[0, "estimate"] - ef.loc[0, "estimate"])
    assert 1e-5 < diff < 0.01


def test_km_curve_hand_computed():
    """Times 1, 2, 2+, 3, 4 (+ = censored): S = 4/5, 3/5 at 2, then 3/5 * 1/2 at 3, 0 at 4."""
    curve = km_curve(np.array([1, 2, 2, 3, 4]), np.array([1, 1, 0, 1, 1]))
    assert curve["time"].tolist() == [1, 2, 3, 4]
    assert curve["n_risk"].tolist() == [5, 4, 2, 1]
    np.testing.assert_allclose(curve["surv"], [0.8, 0.6, 0.3, 0.0])
    greenwood = np.sqrt(1 / (5 * 4) + 1 / (4 * 3))
    assert curve.loc[1, "std_err"] == pytest.approx(greenwood)
    assert curve.loc[1, "lower"] == pytest.approx(0.6 * np.exp(-1.959963985 * greenwood))
    assert np.isnan(curve.loc[3, "lower"]) and np.isnan(curve.loc[3, "upper"])


def test_km_median_midpoint_of_flat_stretch():
    """Four events at 1, 2, 3, 4: S = 0.5 exactly on [2, 3), so survfit's median is 2.5."""
    d = pd.DataFrame({"t": [1, 2, 3, 4], "e": [1, 1, 1, 1]})
    assert km_table(d, "t", "e").loc["all", "median"] == 2.5


def test_km_median_first_time_below_half():
    d = pd.DataFrame({"t": [1, 2, 3, 4, 5], "e": [1, 1, 1, 1, 1]})
    assert km_table(d, "t", "e").loc["all", "median"] == 3


def test_km_median_not_reached_is_nan():
    d = pd.DataFrame({"t": [1, 2, 3, 4, 5], "e": [1, 0, 0, 0, 0]})
    row = km_table(d, "t", "e").loc["all"]
    assert np.isnan(row["median"]) and np.isnan(row["ci_high"])


def test_km_table_groups_and_counts():
    lung = load_lung()
    tab = km_table(lung, "time", "status", "sex")
    assert tab.index.tolist() == [1, 2]
    assert tab["n"].tolist() == [138, 90]
    assert tab["events"].tolist() == [112, 53]
    assert (tab["ci_low"] <= tab["median"]).all() and (tab["median"] <= tab["ci_high"]).all()
    assert tab.attrs["logrank"]["df"] == 1


def test_logrank_two_groups_equals_squared_z():
    """Two groups: the statistic is (O1 - E1)^2 / V11 (Mantel 1966), computed here by hand."""
    d = pd.DataFrame({"t": [1, 2, 3, 4, 5, 6], "e": [1, 1, 1, 1, 0, 1],
                      "g": ["a", "b", "a", "b", "a", "b"]})
    res = logrank_test(d, "t", "e", "g")
    # risk sets at event times 1, 2, 3, 4, 6: (n_a, n_b) = (3,3) (2,3) (2,2) (1,2) (0,1)
    o_e, v = 0.0, 0.0
    for (na, nb), da in zip([(3, 3), (2, 3), (2, 2), (1, 2), (0, 1)], [1, 0, 1, 0, 0],
                            strict=True):
        n = na + nb
        o_e += da - na / n
        v += na * nb / n**2 if n > 1 else 0.0
    assert res["chi2"] == pytest.approx(o_e**2 / v)


def test_logrank_three_groups_df():
    lung = load_lung().dropna(subset=["ph.ecog"])
    lung = lung[lung["ph.ecog"] < 3]
    res = logrank_test(lung, "time", "status", "ph.ecog")
    assert res["df"] == 2 and res["chi2"] > 0 and 0 <= res["p"] <= 1


def test_inputs_are_not_mutated():
    lung = load_lung()
    before = lung.copy()
    km_table(lung, "time", "status", "sex")
    fit_cox(lung, "time", "status", ["age", "C(sex)"])
    pd.testing.assert_frame_equal(lung, before)


def test_bad_event_column_raises():
    d = pd.DataFrame({"t": [1, 2, 3], "e": [1, 2, 2]})
    with pytest.raises(ModelError, match="'e'"):
        km_table(d, "t", "e")
    with pytest.raises(ModelError, match="ties"):
        fit_cox(load_rossi(), "week", "arrest", ["fin"], ties="exact")


def test_cox_complete_cases_only_on_columns_the_terms_name():
    """A column named ``log`` (all missing) is not used by ``I(np.log(age))`` and must not
    drop rows: all 432 Rossi subjects stay, as in R ``coxph``. Same term parsing as
    ``regression.model_frame``."""
    d = load_rossi().assign(log=np.nan)
    res = fit_cox(d, "week", "arrest", ["fin", "I(np.log(age))"])
    assert res.n == 432
