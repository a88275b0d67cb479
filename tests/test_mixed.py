"""fit_mixed: the fast engine against published lme4 numbers and against statsmodels MixedLM.

References: Bates, Maechler, Bolker & Walker (2015), "Fitting linear mixed-effects models using
lme4", J Stat Softw 67(1) (sleepstudy, printed to 2 decimals), and statsmodels 0.15 MixedLM fitted
on the same data in the same test. Tolerances (from the issue): fixed effects and log-likelihood
1e-5 relative; variance components and standard errors 1e-3 relative. The fast engine follows
lme4's conventions; statsmodels' standard errors come from its Hessian (VALIDATION.md: they differ
from lme4's by well under 1 %), so SEs are compared at 1e-3 and each engine is also checked
against its own reference (fast: tests/test_mixed_r.py with real lme4).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from outcomes.errors import ConvergenceError, ModelError
from outcomes.models import MixedResult, _lmm, fit_mixed

SLEEP = Path(__file__).parent / "data" / "sleepstudy.csv"


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return pd.read_csv(SLEEP)


def make_visits(
    n_episodes: int = 150, *, seed: int = 7, visits: int = 6, unbalanced: bool = False,
    missing: float = 0.0, single: float = 0.0, slope_sd: float = 1.5, quad_sd: float = 0.2,
) -> pd.DataFrame:
    """Repeated measures: weekly visits, two arms, random intercept and slopes per episode.

    ``unbalanced`` draws 2-10 visits per episode; ``missing`` blanks that share of outcomes
    (NaN, dropped by the fit); ``single`` keeps only the first visit of that share of episodes.
    """
    rng = np.random.default_rng(seed)
    n_vis = rng.integers(2, 11, n_episodes) if unbalanced else np.full(n_episodes, visits)
    n_vis[rng.random(n_episodes) < single] = 1
    episode = np.repeat(np.arange(n_episodes), n_vis)
    week = np.concatenate([np.arange(k) for k in n_vis]).astype(float)
    arm = rng.choice(["pri", "trad"], n_episodes)[episode]
    age = rng.normal(50, 12, n_episodes)[episode]
    b = rng.multivariate_normal([0, 0, 0], np.diag([49.0, slope_sd**2, quad_sd**2]), n_episodes)
    score = (40 - 2 * week - 0.7 * week * (arm == "pri") + 0.1 * (age - 50)
             + b[episode, 0] + b[episode, 1] * week + b[episode, 2] * week**2
             + rng.normal(0, 5, len(week)))
    score[rng.random(len(score)) < missing] = np.nan
    return pd.DataFrame({"episode": [f"e{e:04d}" for e in episode], "week": week,
                         "week2": week**2, "arm": arm, "age": age, "score": score})


def small_slope_visits(
    n_episodes: int, slope_sd: float, rho: float, *, seed: int = 14
) -> pd.DataFrame:
    """Issue #14's clinic-like design: visits at weeks 0, 2, ..., 10, about 8 % of them missing.

    Random intercept SD 1.2 and slope SD ``slope_sd`` (correlation ``rho``), slope mean -0.35,
    arm effect on the slope -0.1 (``pri`` = 1 in the arm), residual SD 1. Small slope SDs put
    the optimum near the boundary of the relative covariance factor.
    """
    rng = np.random.default_rng(seed)
    cov = np.array([[1.44, rho * 1.2 * slope_sd], [rho * 1.2 * slope_sd, slope_sd**2]])
    b = rng.multivariate_normal([0.0, 0.0], cov, n_episodes)
    pri = rng.integers(0, 2, n_episodes).astype(float)
    pid = np.repeat(np.arange(n_episodes), 6)
    week = np.tile(np.arange(0.0, 12.0, 2.0), n_episodes)
    pain = (6.0 + b[pid, 0] + (-0.35 - 0.1 * pri[pid] + b[pid, 1]) * week
            + rng.normal(0.0, 1.0, len(week)))
    data = pd.DataFrame({"pid": pid, "week": week, "pri": pri[pid], "pain": pain})
    return data[rng.random(len(data)) >= 0.08].reset_index(drop=True)


def assert_same_fit(fast: MixedResult, ref: MixedResult, se_rtol: float = 2e-2) -> None:
    """Fixed effects and loglik 1e-5 relative, variance components 1e-3 relative, SEs ``se_rtol``.

    Terms estimated near zero are compared in units of their SE (1e-5 SE), and covariances near
    zero in units of the variances (1e-3 x the largest variance). SEs: the fast engine uses
    lme4's ``sigma^2 (RX'RX)^-1`` (checked against lme4 at 1e-3 in test_mixed_r.py); statsmodels
    inverts its full observed Hessian, which differs by up to ~1.3 % in the two-slope design
    here, so fast-vs-statsmodels SEs are compared at 2e-2 and same-convention SEs at 1e-3.
    """
    assert list(fast.coef.index) == list(ref.coef.index)
    est, ref_est = fast.coef["estimate"], ref.coef["estimate"]
    bound = 1e-5 * np.maximum(np.abs(ref_est), ref.coef["se"])
    assert (np.abs(est - ref_est) <= bound).all(), (est - ref_est) / bound
    assert fast.loglik == pytest.approx(ref.loglik, rel=1e-5)
    np.testing.assert_allclose(fast.coef["se"], ref.coef["se"], rtol=se_rtol)
    big = np.abs(np.diag(ref.cov_re.to_numpy())).max()
    np.testing.assert_allclose(fast.cov_re, ref.cov_re, rtol=1e-3, atol=1e-3 * big)
    assert fast.scale == pytest.approx(ref.scale, rel=1e-3)
    assert list(fast.cov_re.index) == list(ref.cov_re.index)


def fit_statsmodels_tight(*args, **kwargs) -> MixedResult:
    """statsmodels MixedLM with BFGS at gradient tolerance 1e-8 (1e-7 if that loses precision).

    statsmodels' default stopping rule leaves variance components ~1e-3 and fixed effects ~1e-4
    SE from the optimum (its log-likelihood is then lower than the fast engine's), which would
    blur a 1e-5 comparison; with a tight tolerance both engines agree to ~1e-8.
    """
    try:
        return fit_mixed(*args, engine="statsmodels", optimizers=("bfgs",),
                         fit_kwargs={"gtol": 1e-8}, **kwargs)
    except ConvergenceError:
        return fit_mixed(*args, engine="statsmodels", optimizers=("bfgs",),
                         fit_kwargs={"gtol": 1e-7}, **kwargs)


@pytest.mark.parametrize("engine", ["fast", "statsmodels"])
def test_sleepstudy_matches_bates_2015(sleep, engine):
    """Bates et al. (2015), J Stat Softw 67(1): REML Reaction ~ Days + (Days | Subject).

    Published: fixed 251.41 (SE 6.82) and 10.47 (1.55); variances 612.10 (Subject),
    35.07 (Days), covariance 9.60, residual 654.94; REML criterion 1743.6. Fixed effects, SEs,
    the covariance and the criterion are compared to their printed precision (half a unit of the
    last digit).
    The variances are compared at 1e-4 relative (5 significant digits): lme4's bobyqa stops at a
    theta whose 5th digit differs from the optimum on this flat surface (lme4 1.1-31 itself
    prints 612.1002 with gradient ~3e-4; the fast engine reaches 612.0899 with gradient ~1e-6
    and a REML criterion lower by 1.5e-9; statsmodels 612.0886).
    """
    fit = fit_mixed(sleep, "Reaction ~ Days", "Subject", re_formula="~Days", engine=engine)
    assert fit.engine == engine and fit.converged and fit.reml
    assert fit.n_obs == 180 and fit.n_groups == 18
    np.testing.assert_allclose(fit.coef["estimate"], [251.41, 10.47], atol=0.005)
    np.testing.assert_allclose(fit.coef["se"], [6.82, 1.55], atol=0.005)
    cov = fit.cov_re
    assert cov.loc["Intercept", "Intercept"] == pytest.approx(612.10, rel=1e-4)
    assert cov.loc["Days", "Days"] == pytest.approx(35.07, rel=1e-4)
    assert cov.loc["Intercept", "Days"] == pytest.approx(9.60, abs=0.005)
    assert fit.scale == pytest.approx(654.94, rel=1e-4)
    assert fit.reml_criterion == pytest.approx(1743.6, abs=0.05)
    assert fit.reml_criterion == pytest.approx(-2 * fit.loglik)


def test_sleepstudy_engines_agree(sleep):
    """Fast engine vs statsmodels MixedLM on sleepstudy, REML, at the issue's tolerances."""
    args = (sleep, "Reaction ~ Days", "Subject", "~Days")
    fast = fit_mixed(*args, engine="fast")
    assert_same_fit(fast, fit_mixed(*args, engine="statsmodels"), se_rtol=1e-3)
    assert_same_fit(fast, fit_statsmodels_tight(*args), se_rtol=1e-3)


DESIGNS = {
    "balanced": ({}, "score ~ week * C(arm)", "~week"),
    "unbalanced": ({"unbalanced": True}, "score ~ week * C(arm)", "~week"),
    "missing_visits": ({"unbalanced": True, "missing": 0.15}, "score ~ week + C(arm)", "~week"),
    "single_visit_groups": ({"unbalanced": True, "single": 0.2}, "score ~ week * C(arm)",
                            "~week"),
    "intercept_only": ({"unbalanced": True}, "score ~ week + C(arm) + age", None),
    "two_slopes": ({"n_episodes": 250, "visits": 8}, "score ~ week + week2 + C(arm)",
                   "~week + week2"),
}


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
@pytest.mark.parametrize("name", list(DESIGNS))
def test_fast_matches_statsmodels(name, reml):
    """Fast engine vs statsmodels 0.15 MixedLM (same data, same criterion) on varied designs.

    The statsmodels reference is fitted with a tight tolerance (:func:`fit_statsmodels_tight`).
    """
    options, formula, re_formula = DESIGNS[name]
    data = make_visits(**options)
    fast = fit_mixed(data, formula, "episode", re_formula, reml=reml, engine="fast")
    ref = fit_statsmodels_tight(data, formula, "episode", re_formula, reml=reml)
    assert fast.engine == "fast" and ref.engine == "statsmodels" and ref.converged
    assert fast.n_obs == ref.n_obs == data["score"].notna().sum()
    assert fast.n_groups == ref.n_groups
    assert_same_fit(fast, ref)


def test_term_names_follow_patsy():
    """Term names are patsy's, as statsmodels writes them (C(arm)[T.trad], interactions)."""
    fit = fit_mixed(make_visits(), "score ~ week * C(arm)", "episode", "~week")
    assert list(fit.coef.index) == ["Intercept", "C(arm)[T.trad]", "week", "week:C(arm)[T.trad]"]
    assert list(fit.coef.columns) == ["estimate", "se", "ci_low", "ci_high", "p"]
    full = fit.summary()
    assert {"term", "n", "converged", "warnings"} <= set(full.columns)
    assert (full["n"] == fit.n_obs).all() and full["converged"].all()


@pytest.mark.parametrize("reml", [True, False])
def test_gradient_is_exact(reml):
    """The analytic gradient of the profiled deviance equals central finite differences."""
    data = make_visits(60, unbalanced=True)
    X = np.column_stack([np.ones(len(data)), data["week"], data["arm"] == "pri"])
    Z = np.column_stack([np.ones(len(data)), data["week"], data["week2"]])
    codes = pd.factorize(data["episode"])[0]
    keep = data["score"].notna().to_numpy()
    cp = _lmm.compute_crossproducts(X[keep], data["score"].to_numpy()[keep], Z[keep],
                                    codes[keep], codes.max() + 1)
    theta = np.array([0.9, 0.1, -0.05, 0.3, 0.02, 0.05])
    _, grad = _lmm.deviance(theta, cp, reml)
    h = 1e-6
    numeric = [(_lmm.deviance(theta + h * e, cp, reml)[0]
                - _lmm.deviance(theta - h * e, cp, reml)[0]) / (2 * h) for e in np.eye(6)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-4)


def test_blocks_of_groups_change_nothing(monkeypatch):
    """Processing groups in blocks (for cache) gives the same deviance and gradient as one block.

    Blocks of 7 groups, with a last partial block, against a single block of all 300.
    """
    data = make_visits(300, unbalanced=True)
    X = np.column_stack([np.ones(len(data)), data["week"]])
    cp = _lmm.compute_crossproducts(X, data["score"].to_numpy(), X,
                                    pd.factorize(data["episode"])[0], 300)
    theta = np.array([1.1, -0.2, 0.4])
    whole = [_lmm.deviance(theta, cp, reml) for reml in (True, False)]
    monkeypatch.setattr(_lmm, "CHUNK", 7)
    for reml, (dev, grad) in zip((True, False), whole, strict=True):
        dev7, grad7 = _lmm.deviance(theta, cp, reml)
        assert dev7 == pytest.approx(dev, rel=1e-12)
        np.testing.assert_allclose(grad7, grad, rtol=1e-9)


def test_singular_fit_is_reported():
    """Every episode has exactly the same slope: a boundary fit, warned about as lme4 does.

    The residuals are made orthogonal to week within each episode, so the episode slopes do not
    vary at all and the slope variance is estimated at 0 (lme4's isSingular). statsmodels
    stops with a non-positive-definite Hessian with every optimizer here, so its path raises
    ConvergenceError; marked non-converged, its log-likelihood is no better than the fast fit's.
    """
    data = make_visits(60, slope_sd=0.0, quad_sd=0.0, seed=3)
    noise = np.random.default_rng(3).normal(0, 5, len(data))
    week_c = data["week"] - data.groupby("episode")["week"].transform("mean")
    slope = (pd.Series(noise * week_c).groupby(data["episode"]).transform("sum")
             / (week_c**2).groupby(data["episode"]).transform("sum"))
    intercepts = np.random.default_rng(4).normal(0, 7, 60)[pd.factorize(data["episode"])[0]]
    data["score"] = 40 - 2 * data["week"] + intercepts + noise - slope * week_c
    with pytest.warns(RuntimeWarning, match="singular"):
        fit = fit_mixed(data, "score ~ week", "episode", "~week", engine="fast")
    assert any("singular" in w for w in fit.warnings) and fit.converged
    assert fit.cov_re.loc["week", "week"] < 1e-6 * fit.cov_re.loc["Intercept", "Intercept"]
    with pytest.warns(RuntimeWarning, match="NOT CONVERGED"):
        ref = fit_mixed(data, "score ~ week", "episode", "~week", engine="statsmodels",
                        allow_nonconverged=True)
    with pytest.raises(ConvergenceError):
        fit_mixed(data, "score ~ week", "episode", "~week", engine="statsmodels",
                  optimizers=("lbfgs", "powell"))
    assert fit.loglik >= ref.loglik - 1e-9 * abs(ref.loglik)
    assert fit.loglik == pytest.approx(ref.loglik, rel=1e-5)


def test_predict_population_level(sleep):
    """predict(): X beta with SE sqrt(x' V x); equals statsmodels' fixed-effects prediction."""
    fit = fit_mixed(sleep, "Reaction ~ Days", "Subject", "~Days")
    new = pd.DataFrame({"Days": [0.0, 4.5, 9.0]}, index=[10, 11, 12])
    pred = fit.predict(new)
    assert list(pred.index) == [10, 11, 12]
    beta, V = fit.coef["estimate"].to_numpy(), fit.vcov.to_numpy()
    x = np.array([1.0, 4.5])
    assert pred.loc[11, "estimate"] == pytest.approx(x @ beta, rel=1e-12)
    assert pred.loc[11, "se"] == pytest.approx(np.sqrt(x @ V @ x), rel=1e-12)
    assert pred.loc[10, "se"] == pytest.approx(fit.coef.loc["Intercept", "se"], rel=1e-12)
    from statsmodels.regression.mixed_linear_model import MixedLM

    sm = MixedLM.from_formula("Reaction ~ Days", sleep, groups=sleep["Subject"],
                              re_formula="~Days").fit()
    np.testing.assert_allclose(pred["estimate"], sm.predict(new), rtol=1e-5)
    assert (pred["ci_low"] < pred["estimate"]).all() and (pred["estimate"] < pred["ci_high"]).all()


def test_predict_with_categorical_newdata():
    """A categorical newdata column is coded against the fitted levels, not its own."""
    fit = fit_mixed(make_visits(), "score ~ week * C(arm)", "episode", "~week")
    new = pd.DataFrame({"week": [2.0], "arm": pd.Categorical(["trad"])})
    b = fit.coef["estimate"]
    expected = b["Intercept"] + b["C(arm)[T.trad]"] + 2 * (b["week"] + b["week:C(arm)[T.trad]"])
    assert fit.predict(new)["estimate"].iloc[0] == pytest.approx(expected, rel=1e-12)


def test_missing_rows_dropped_and_input_untouched():
    data = make_visits(unbalanced=True, missing=0.1)
    before = data.copy()
    fit = fit_mixed(data, "score ~ week", "episode", "~week")
    pd.testing.assert_frame_equal(data, before)
    n_missing = int(data["score"].isna().sum())
    assert n_missing > 0 and fit.n_obs == len(data) - n_missing
    assert f"{n_missing} rows with missing values dropped" in fit.warnings


def test_level_only_in_dropped_rows_is_not_a_column():
    """A category present only in rows with a missing outcome does not become a zero column."""
    data = make_visits()
    data.loc[data.index[:3], "arm"] = "other"
    data.loc[data.index[:3], "score"] = np.nan
    fit = fit_mixed(data, "score ~ week + C(arm)", "episode", "~week")
    assert "C(arm)[T.other]" not in fit.coef.index


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"groups": "patient"}, "groups column 'patient'"),
    ({"formula": "score ~ nosuchcolumn"}, "formula"),
    ({"formula": "score ~ week + I(2 * week)"}, "rank deficient"),
    ({"engine": "lme4"}, "engine"),
])
def test_bad_input_raises_model_error(kwargs, message):
    args = {"data": make_visits(40), "formula": "score ~ week", "groups": "episode", **kwargs}
    with pytest.raises(ModelError, match=message):
        fit_mixed(**args)


def test_statsmodels_nonconvergence_raises():
    """A statsmodels fit that stops early (maxiter=2) is never returned as an answer."""
    data = make_visits(80)
    with pytest.raises(ConvergenceError, match="did not converge"):
        fit_mixed(data, "score ~ week", "episode", "~week", engine="statsmodels",
                  optimizers=("nm", "powell"), fit_kwargs={"maxiter": 2})


def test_statsmodels_nonconvergence_marked_when_allowed():
    data = make_visits(80)
    with pytest.warns(RuntimeWarning, match="NOT CONVERGED"):
        fit = fit_mixed(data, "score ~ week", "episode", "~week", engine="statsmodels",
                        optimizers=("nm",), fit_kwargs={"maxiter": 2}, allow_nonconverged=True)
    assert not fit.converged and not fit.tidy["converged"].any()
    assert "NOT CONVERGED" in fit.tidy["warnings"].iloc[0]


def test_statsmodels_retries_other_optimizers(monkeypatch):
    """When the first optimizer fails, the others run and the best converged fit is kept."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    original = MixedLM.fit

    def flaky(self, *args, method=None, **kwargs):
        if method == "lbfgs":  # first in the list: made to stop after one iteration
            kwargs["maxiter"] = 1
        return original(self, *args, method=method, **kwargs)

    monkeypatch.setattr(MixedLM, "fit", flaky)
    data = make_visits(100)
    fit = fit_mixed(data, "score ~ week", "episode", "~week", engine="statsmodels")
    assert fit.converged and any("optimizers tried (lbfgs:" in w for w in fit.warnings)
    assert_same_fit(fit_mixed(data, "score ~ week", "episode", "~week", engine="fast"), fit)


def test_fast_nonconvergence_falls_back_or_raises(monkeypatch):
    """A fast fit failing its convergence check: auto -> statsmodels; engine='fast' -> error."""
    data = make_visits(80)
    real = _lmm.optimize_theta
    monkeypatch.setattr(_lmm, "optimize_theta", lambda cp, reml: (real(cp, reml)[0], False, "x"))
    fit = fit_mixed(data, "score ~ week", "episode", "~week")
    assert fit.engine == "statsmodels" and fit.converged
    assert any("fast engine failed" in w for w in fit.warnings)
    with pytest.raises(ConvergenceError):
        fit_mixed(data, "score ~ week", "episode", "~week", engine="fast")
    with pytest.warns(RuntimeWarning, match="NOT CONVERGED"):
        marked = fit_mixed(data, "score ~ week", "episode", "~week", engine="fast",
                           allow_nonconverged=True)
    assert not marked.converged


def test_vc_formula_uses_statsmodels():
    """Variance components (episodes nested in therapists) go to statsmodels and say so."""
    data = make_visits(120)
    data["therapist"] = "t" + (pd.factorize(data["episode"])[0] % 12).astype(str)
    fit = fit_mixed(data, "score ~ week", "therapist", re_formula="1",
                    vc_formula={"episode": "0 + C(episode)"})
    assert fit.engine == "statsmodels" and fit.converged
    assert list(fit.cov_re.index) == ["Intercept"]
    assert list(fit.variance_components.index) == ["episode"]
    assert fit.variance_components["episode"] > 0
    with pytest.raises(ModelError, match="vc_formula"):
        fit_mixed(data, "score ~ week", "therapist", engine="fast",
                  vc_formula={"episode": "0 + C(episode)"})


def nested_visits(n_episodes: int = 160, n_therapists: int = 12, seed: int = 5) -> pd.DataFrame:
    """make_visits plus a therapist per episode with its own random intercept (SD 3)."""
    data = make_visits(n_episodes, unbalanced=True, seed=seed)
    rng = np.random.default_rng(seed)
    therapist = rng.integers(0, n_therapists, n_episodes)[pd.factorize(data["episode"])[0]]
    data["therapist"] = [f"t{t:02d}" for t in therapist]
    data["score"] += rng.normal(0, 3, n_therapists)[therapist]
    return data


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_nested_fast_matches_statsmodels(reml):
    """Episodes in therapists, random intercepts at both levels: fast vs statsmodels
    variance components (``groups=therapist, vc_formula={"episode": "0 + C(episode)"}``)."""
    data = nested_visits()
    args = (data, "score ~ week + C(arm)", "episode")
    fast = fit_mixed(*args, nested_in="therapist", reml=reml, engine="fast")
    ref = fit_mixed(*args, nested_in="therapist", reml=reml, engine="statsmodels",
                    optimizers=("bfgs",), fit_kwargs={"gtol": 1e-8})
    assert fast.engine == "fast" and ref.engine == "statsmodels"
    assert fast.n_groups == ref.n_groups == data["episode"].nunique()
    assert fast.n_nested_groups == ref.n_nested_groups == 12
    assert_same_fit(fast, ref)
    np.testing.assert_allclose(fast.cov_re_nested, ref.cov_re_nested, rtol=1e-3)


def test_nested_inner_labels_are_within_outer():
    """As lme4's therapist/episode: episode labels reused in another therapist are different
    episodes, so relabelling episodes 1..k within each therapist changes nothing."""
    data = nested_visits()
    relabelled = data.assign(episode=data.groupby("therapist")["episode"].transform(
        lambda e: pd.factorize(e)[0].astype(str)))
    assert relabelled["episode"].nunique() < data["episode"].nunique()
    a = fit_mixed(data, "score ~ week", "episode", "~week", nested_in="therapist")
    b = fit_mixed(relabelled, "score ~ week", "episode", "~week", nested_in="therapist")
    assert a.n_groups == b.n_groups
    assert a.loglik == pytest.approx(b.loglik, rel=1e-12)
    np.testing.assert_allclose(a.coef["estimate"], b.coef["estimate"], rtol=1e-9)


def test_nested_input_errors():
    data = nested_visits(60, 6)
    with pytest.raises(ModelError, match="nested_in column 'clinic'"):
        fit_mixed(data, "score ~ week", "episode", nested_in="clinic")
    with pytest.raises(ModelError, match="either nested_in or vc_formula"):
        fit_mixed(data, "score ~ week", "episode", nested_in="therapist",
                  vc_formula={"x": "0 + C(episode)"})
    with pytest.raises(ModelError, match="correlated random slopes"):
        fit_mixed(data, "score ~ week", "episode", "~week", nested_in="therapist",
                  engine="statsmodels")


def test_nested_fast_nonconvergence(monkeypatch):
    """Nested fast fit failing its check: statsmodels variance components where an equivalent
    exists (inner random intercept); otherwise ConvergenceError, or a loudly marked fit."""
    data = nested_visits(60, 6)
    real = _lmm.minimize_deviance
    monkeypatch.setattr(_lmm, "minimize_deviance",
                        lambda fun, blocks: (real(fun, blocks)[0], False, "x"))
    fit = fit_mixed(data, "score ~ week", "episode", nested_in="therapist")
    assert fit.engine == "statsmodels" and fit.converged
    assert any("fast engine failed" in w for w in fit.warnings)
    with pytest.raises(ConvergenceError):
        fit_mixed(data, "score ~ week", "episode", "~week", nested_in="therapist")
    with pytest.warns(RuntimeWarning, match="NOT CONVERGED"):
        marked = fit_mixed(data, "score ~ week", "episode", "~week", nested_in="therapist",
                           allow_nonconverged=True)
    assert not marked.converged and marked.engine == "fast"
