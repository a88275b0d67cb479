"""Missing-data sensitivity analyses (outcomes.models.missing).

References: Rubin (1987), Multiple Imputation for Nonresponse in Surveys (pooling rules and the
normal-model imputation draw); Barnard & Rubin (1999), Biometrika 86:948 (small-sample df, as
R ``mice::pool``); Robins, Rotnitzky & Zhao (1995) (inverse probability of completion weights).
"""

import numpy as np
import pandas as pd
import pytest

from outcomes.episodes import build_episodes
from outcomes.errors import ModelError
from outcomes.models.missing import (
    completion_weights,
    dropout_hazard_data,
    missing_data_sensitivity,
    pool_rubin,
)
from outcomes.models.regression import fit_ancova

EFFECT = -1.0


def simulate_visits(n=1500, seed=7, mar_on_pain=True):
    """Evaluation, 5 treatment visits, discharge; dropout after visit k depends on arm and on
    the pain just measured (MAR given the observed history) when ``mar_on_pain``."""
    rng = np.random.default_rng(seed)
    pri = rng.uniform(size=n) < 0.5
    nprs0 = rng.integers(3, 10, n).astype(float)
    change = -3 - 0.4 * (nprs0 - 6) + EFFECT * pri + rng.normal(0, 1.5, n)
    k = np.arange(7)
    scores = nprs0[:, None] + (k / 6)[None, :] * change[:, None]
    scores[:, 1:6] += rng.normal(0, 0.5, (n, 5))
    scores = np.clip(scores, 0, 10)
    # pri patients drop out less, and everyone drops out more when pain has not improved:
    # the completers of the two arms are selected differently (completers-only is biased)
    slope = 1.2 if mar_on_pain else 0.0
    logit = -2.4 + slope * (scores - nprs0[:, None]) - 1.0 * pri[:, None]
    stop = rng.uniform(size=(n, 7)) < 1 / (1 + np.exp(-logit))
    stop[:, 6] = True
    last = stop.argmax(axis=1)
    rows = []
    start = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300, n), "D")
    for i in range(n):
        for j in range(last[i] + 1):
            rows.append((f"v{i}-{j}", f"p{i}", "c1", f"t{i % 20}", start[i] + pd.Timedelta(days=3 * j),
                         "evaluation" if j == 0 else ("discharge" if j == 6 else "treatment"),
                         "M76.31", scores[i, j], "pri" if pri[i] else "traditional"))
    v = pd.DataFrame(rows, columns=["visit_id", "patient_id", "clinic_id", "therapist_id",
                                    "visit_date", "visit_type", "icd10", "nprs", "family"])
    v["lefs"] = np.nan
    v["psfs"] = np.nan
    tech = v.loc[v["visit_type"] == "treatment", ["visit_id", "family"]]
    return v.drop(columns="family"), tech


def two_arms(ep):
    """Episodes that stopped after the evaluation have no treatment visit: arm 'none'."""
    assert set(ep["arm"]) <= {"pri", "traditional", "none"}
    return ep[ep["arm"].isin(["pri", "traditional"])]


@pytest.fixture(scope="module")
def mar_data():
    visits, tech = simulate_visits()
    ep = build_episodes(visits, tech, as_of="2026-01-01")
    return two_arms(ep), visits


def test_pool_rubin_by_hand():
    """Rubin's rules: T = W + (1 + 1/m) B; Barnard-Rubin df from lambda = (1 + 1/m) B / T."""
    est, se, dof = pool_rubin([1.0, 2.0, 3.0], [0.5, 0.5, 0.5], df_complete=100)
    w, b, m = 0.5, 1.0, 3
    t = w + (1 + 1 / m) * b
    lam = (1 + 1 / m) * b / t
    df_old = (m - 1) / lam**2
    df_obs = 101 / 103 * 100 * (1 - lam)
    assert est == 2.0
    assert se == pytest.approx(np.sqrt(t))
    assert dof == pytest.approx(1 / (1 / df_old + 1 / df_obs))


def test_four_methods_reported(mar_data):
    ep, _ = mar_data
    res = missing_data_sensitivity(ep, "nprs_discharge", "arm", "nprs_intake")
    assert res["method"].tolist() == ["completers", "locf", "ipw_dropout", "multiple_imputation"]
    assert (res["term"] == "C(arm)[T.pri]").all()
    n_missing = int(ep["nprs_discharge"].isna().sum())
    assert res["n_missing"].eq(n_missing).all()
    assert res.set_index("method").loc["completers", "n"] == len(ep) - n_missing
    assert res.set_index("method").loc["locf", "n"] == len(ep)
    assert res.set_index("method").loc["multiple_imputation", "n"] == len(ep)
    assert (res["ci_low"] < res["estimate"]).all() and (res["estimate"] < res["ci_high"]).all()


def test_locf_equals_ancova_on_filled_scores(mar_data):
    ep, _ = mar_data
    res = missing_data_sensitivity(ep, "nprs_discharge", "arm", "nprs_intake")
    filled = ep.assign(nprs_discharge=ep["nprs_discharge"].fillna(ep["nprs_last"]))
    ref = fit_ancova(filled, "nprs_discharge", "arm", "nprs_intake").set_index("term")
    row = res.set_index("method").loc["locf"]
    assert row["estimate"] == pytest.approx(ref.loc["C(arm)[T.pri]", "estimate"])
    assert row["se"] == pytest.approx(ref.loc["C(arm)[T.pri]", "se"])


def test_visit_level_ipw_removes_dropout_bias(mar_data):
    """Dropout depends on the pain just measured: completers are a selected group and
    baseline-only methods are biased; the visit-level completion weights recover the effect."""
    ep, visits = mar_data
    res = missing_data_sensitivity(ep, "nprs_discharge", "arm", "nprs_intake",
                                   visits=visits).set_index("method")
    ipw = res.loc["ipw_dropout"]
    assert ipw["ci_low"] < EFFECT < ipw["ci_high"]
    assert "visit-level" in ipw["warnings"]
    comp = res.loc["completers"]
    assert abs(comp["estimate"] - EFFECT) > 2 * comp["se"]  # the bias the weights correct
    assert abs(ipw["estimate"] - EFFECT) < abs(comp["estimate"] - EFFECT) / 2


def test_all_methods_agree_when_dropout_ignores_pain():
    """Dropout depending on the arm only (MAR on baseline): every method is unbiased except
    LOCF, which carries early (less improved) scores forward; traditional patients drop out
    more, so LOCF makes traditional look worse and exaggerates the PRI effect."""
    visits, tech = simulate_visits(n=1200, seed=11, mar_on_pain=False)
    ep = two_arms(build_episodes(visits, tech, as_of="2026-01-01"))
    res = missing_data_sensitivity(ep, "nprs_discharge", "arm", "nprs_intake", seed=3)
    res = res.set_index("method")
    for method in ("completers", "ipw_dropout", "multiple_imputation"):
        assert res.loc[method, "ci_low"] < EFFECT < res.loc[method, "ci_high"], method
    assert res.loc["locf", "estimate"] < res.loc["completers", "estimate"]


def test_completion_weights_by_hand(mar_data):
    """w = 1 / prod_k (1 - h_k) over the visits a completer was at risk after."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    ep, visits = mar_data
    w = completion_weights(ep, visits, "arm")
    assert w[ep["status"] != "completed"].isna().all()
    assert (w[ep["status"] == "completed"] >= 1).all()
    long = dropout_hazard_data(ep, visits)
    assert long.groupby("episode_id")["stop"].sum().max() == 1
    fit = smf.glm("stop ~ arm + score_now + I(score_now <= 1) + score_intake + first_visit",
                  long, family=sm.families.Binomial()).fit()
    one = ep.index[ep["status"] == "completed"][0]
    rows = long["episode_id"] == ep.loc[one, "episode_id"]
    assert rows.sum() == 6  # evaluation + 5 treatment visits at risk; not the discharge
    expected = 1 / np.prod(1 - fit.fittedvalues[rows])
    assert w[one] == pytest.approx(expected)


def test_multiple_imputation_is_seeded(mar_data):
    ep, _ = mar_data
    a = missing_data_sensitivity(ep, "nprs_discharge", "arm", "nprs_intake", seed=1,
                                 n_imputations=5)
    b = missing_data_sensitivity(ep, "nprs_discharge", "arm", "nprs_intake", seed=1,
                                 n_imputations=5)
    c = missing_data_sensitivity(ep, "nprs_discharge", "arm", "nprs_intake", seed=2,
                                 n_imputations=5)
    pd.testing.assert_frame_equal(a, b)
    assert a["estimate"].iloc[3] != c["estimate"].iloc[3]


def test_input_not_mutated_and_errors(mar_data):
    ep, _ = mar_data
    before = ep.copy()
    missing_data_sensitivity(ep, "nprs_discharge", "arm", "nprs_intake", n_imputations=2)
    pd.testing.assert_frame_equal(ep, before)
    with pytest.raises(ModelError, match="'nope'"):
        missing_data_sensitivity(ep, "nprs_discharge", "arm", "nprs_intake", last="nope")


def test_imputation_drops_predictors_constant_or_collinear_among_completers(mar_data):
    """A covariate constant among the episodes with an observed outcome made X'X singular
    (LinAlgError in the comparative report of a 150-episode clinic); as mice's remove.lindep,
    such predictors are left out of the imputation model."""
    from outcomes.models.missing import _impute_normal, _normal_model

    ep, _ = mar_data
    ep = ep.assign(surg=0.0)
    dropped = ep.index[ep["nprs_discharge"].isna()][:5]
    ep.loc[dropped, "surg"] = 1.0  # recommended surgery only among those without a score
    res = missing_data_sensitivity(ep, "nprs_discharge", "arm", "nprs_intake", ["surg"],
                                   n_imputations=5)
    assert np.isfinite(res.set_index("method").loc["multiple_imputation", "estimate"])
    # a duplicated (collinear) column changes nothing: the same draw as without it
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(50), rng.normal(size=50)])
    y, x_mis = rng.normal(size=50), x[:7] + 0.5
    plain = _impute_normal(np.random.default_rng(3), _normal_model(x, y), x_mis)
    doubled = _impute_normal(np.random.default_rng(3),
                             _normal_model(np.column_stack([x, x[:, 1]]), y),
                             np.column_stack([x_mis, x_mis[:, 1]]))
    np.testing.assert_allclose(doubled, plain)


def test_imputation_complete_data_df_uses_the_rank(mar_data):
    """A covariate constant in every episode adds a column but no rank: the complete-data
    degrees of freedom of the Barnard-Rubin df are n - rank (mice: df.residual), so the pooled
    interval is the one without the covariate."""
    ep, _ = mar_data
    plain = missing_data_sensitivity(ep, "nprs_discharge", "arm", "nprs_intake",
                                     n_imputations=5).set_index("method")
    const = missing_data_sensitivity(ep.assign(surg=0.0), "nprs_discharge", "arm",
                                     "nprs_intake", ["surg"], n_imputations=5).set_index("method")
    cols = ["estimate", "se", "ci_low", "ci_high", "p", "warnings"]
    a, b = plain.loc["multiple_imputation", cols], const.loc["multiple_imputation", cols]
    assert a["warnings"] == b["warnings"]
    np.testing.assert_allclose(a.drop("warnings").to_numpy(float),
                               b.drop("warnings").to_numpy(float), rtol=1e-9)
