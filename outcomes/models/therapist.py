"""Therapist-level estimates with partial pooling (empirical Bayes) and funnel-plot limits.

A therapist with 6 patients is not ranked as if 6 patients were proof: each therapist's mean or
proportion is pulled toward the clinic value by an amount that depends on their caseload and on
how much therapists really differ, and comes with an interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from outcomes.errors import ModelError
from outcomes.models._results import renamed_keywords, wald_interval

__all__ = ["therapist_estimates", "funnel_limits"]

_KINDS = ("mean", "proportion")


@renamed_keywords(therapist="groups")
def therapist_estimates(
    data: pd.DataFrame,
    outcome: str,
    *,
    groups: str = "therapist_id",
    kind: str = "mean",
    adjust: str | None = None,
    method: str = "reml",
    level: float = 0.95,
    funnel_levels: Sequence[float] = (0.95, 0.998),
) -> pd.DataFrame:
    """Raw and partially pooled (empirical Bayes) estimate per therapist.

    Parameters
    ----------
    data : DataFrame
        One row per patient episode; rows with a missing ``outcome`` are dropped.
    outcome : str
        Column to summarise: a score change (``kind="mean"``) or a 0/1 / boolean indicator such
        as ``nprs_responder`` (``kind="proportion"``).
    groups : str
        Grouping column (the therapist). Formerly ``therapist=``, still accepted with a
        FutureWarning.
    kind : {"mean", "proportion"}
        Normal-normal model for means, beta-binomial model for proportions.
    adjust : str, optional
        Column of risk-adjusted expected values of ``outcome`` (e.g. predicted change from a
        risk model). The analysis then uses ``outcome - adjust + mean(adjust)``: therapist
        differences net of case mix, on the outcome's scale. Means only.
    method : {"reml", "moments"}
        Estimator of the between-therapist variance for means.
    level : float
        Level of the intervals of the pooled estimates.
    funnel_levels : sequence of float
        Funnel-limit levels used for ``funnel_flag`` (see :func:`funnel_limits`).

    Returns
    -------
    DataFrame
        One row per therapist: the ``groups`` column (named as in ``data``), ``n``, ``raw``
        (own mean or proportion), ``estimate``
        (pooled), ``ci_low, ci_high``, ``reliability`` (weight on the therapist's own data,
        0-1), ``shrinkage`` (1 - reliability: share pulled toward the clinic value),
        ``target`` (clinic value), ``funnel_flag`` (``within``, or ``high_95``, ``low_95``,
        ``high_99.8``, ``low_99.8``: the raw value lies outside the widest such funnel limit at
        its n). ``attrs`` holds the fitted hyper-parameters, ``kind`` and ``sd`` (the clinic SD
        used for the mean funnel; None for proportions).

    Notes
    -----
    **Means** (normal-normal, the random-intercept model ``y_ij = mu + u_j + e_ij``,
    ``u_j ~ N(0, tau^2)``, ``e_ij ~ N(0, sigma^2)``): ``tau^2`` and ``sigma^2`` by REML (the
    profiled one-way REML likelihood, maximised over ``r = tau^2 / sigma^2``) or by the ANOVA
    method of moments ``tau^2 = max(0, (MSB - MSW) / n0)``, ``n0 = (N - sum n_j^2 / N) / (J -
    1)``. ``mu`` is the GLS mean. Reliability ``B_j = tau^2 / (tau^2 + sigma^2 / n_j)``,
    estimate ``mu + B_j (ybar_j - mu)``, prediction-error variance ``B_j sigma^2 / n_j +
    (1 - B_j)^2 / sum_k w_k`` with ``w_k = n_k / (sigma^2 + n_k tau^2)`` (Henderson; the
    uncertainty of ``tau^2`` itself is ignored, so intervals are slightly too narrow with few
    therapists). Checked against R lme4 1.1-31 on ``Dyestuff`` / ``Dyestuff2`` (variance
    components, REML criterion, BLUPs) and statsmodels MixedLM on unbalanced data.

    **Proportions** (beta-binomial): ``x_j ~ Binomial(n_j, p_j)``, ``p_j ~ Beta(a, b)``;
    ``a, b`` by maximum marginal (beta-binomial) likelihood. Posterior ``Beta(a + x_j, b + n_j -
    x_j)``: estimate = posterior mean, interval = equal-tailed posterior quantiles, reliability
    ``n_j / (a + b + n_j)``. Without over-dispersion ``a + b`` is capped at 1e7 (full pooling).
    As for means, the uncertainty of the fitted ``a, b`` is not propagated into the intervals.
    Checked by a hand computation and against an independent maximisation of
    ``scipy.stats.betabinom``'s likelihood.

    The funnel flag compares the *raw* value with limits around ``target`` (the pooled clinic
    mean or proportion): exact binomial for proportions, normal with the clinic SD for means
    (Spiegelhalter 2005).
    """
    if kind not in _KINDS:
        raise ModelError(f"parameter kind: {kind!r} is not one of {_KINDS}")
    y, labels = _outcome_values(data, outcome, groups, kind, adjust)
    if kind == "mean":
        out, attrs = _pool_means(y, labels, method, level)
        sd = float(np.std(y, ddof=1))
    else:
        out, attrs = _pool_proportions(y, labels, level)
        sd = None
    target = float(np.mean(y))
    out["target"] = target
    out["funnel_flag"] = _funnel_flags(out, target, kind, sd, funnel_levels)
    out.attrs.update(attrs, kind=kind, outcome=outcome, adjusted=adjust is not None, sd=sd,
                     funnel_levels=tuple(funnel_levels))
    return out.rename(columns={"_group": groups})


def funnel_limits(
    n: Sequence[int] | np.ndarray,
    target: float,
    *,
    kind: str = "proportion",
    sd: float | None = None,
    levels: Sequence[float] = (0.95, 0.998),
    method: str = "exact",
) -> pd.DataFrame:
    """Funnel-plot control limits around ``target`` for each sample size ``n``.

    Parameters
    ----------
    n : sequence of int
        Sample sizes (denominators).
    target : float
        The clinic value (a proportion in [0, 1], or a mean).
    kind : {"proportion", "mean"}
    sd : float, optional
        Patient-level standard deviation; required for means.
    levels : sequence of float
        Two-sided levels, e.g. 0.95 (about 2 SD) and 0.998 (about 3 SD).
    method : {"exact", "normal"}
        For proportions: exact binomial limits with Spiegelhalter's interpolation, or the
        normal approximation ``target +/- z sqrt(target (1 - target) / n)``. Means always use
        ``target +/- z sd / sqrt(n)``.

    Returns
    -------
    DataFrame
        Long format: ``n, level, target, lower, upper``.

    Notes
    -----
    Exact limits (Spiegelhalter 2005, Stat Med 24:1185-1202, appendix A.1.1): for tail
    probability ``p``, ``r_p`` is the smallest ``r`` with ``P(R <= r) >= p`` for ``R ~
    Binomial(n, target)``; ``alpha = (P(R <= r_p) - p) / (P(R <= r_p) - P(R <= r_p - 1))``;
    the limit is ``(r_p - alpha) / n``. Lower limits use ``p = (1 - level) / 2``, upper ``p =
    1 - (1 - level) / 2``; limits are clipped to [0, 1] (at ``r_p = 0`` the interpolation can
    fall below 0, i.e. there is no lower limit). Checked against values computed from that formula in the tests and
    against the normal approximation for large ``n``.
    """
    n_arr = np.asarray(n, dtype=float)
    if np.any(n_arr < 1):
        raise ModelError("parameter n: sample sizes must be >= 1")
    if kind not in _KINDS:
        raise ModelError(f"parameter kind: {kind!r} is not one of {_KINDS}")
    frames = []
    for level in levels:
        lo, hi = _limits(n_arr, target, kind, sd, float(level), method)
        frames.append(pd.DataFrame({"n": n_arr.astype(int), "level": float(level),
                                    "target": float(target), "lower": lo, "upper": hi}))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- helpers


def _outcome_values(data: pd.DataFrame, outcome: str, therapist: str, kind: str,
                    adjust: str | None) -> tuple[np.ndarray, pd.Series]:
    for col in (outcome, therapist, *([adjust] if adjust else [])):
        if col not in data.columns:
            raise ModelError(f"column {col!r} not found in data")
    if adjust is not None and kind != "mean":
        raise ModelError("parameter adjust: only supported for kind='mean'")
    keep = data[outcome].notna() & data[therapist].notna()
    if adjust is not None:
        keep &= data[adjust].notna()
    y = data.loc[keep, outcome].astype(float).to_numpy()
    if adjust is not None:
        e = data.loc[keep, adjust].astype(float).to_numpy()
        y = y - e + e.mean()
    if kind == "proportion" and not np.isin(y, (0.0, 1.0)).all():
        raise ModelError(f"column {outcome!r}: kind='proportion' needs 0/1 or boolean values")
    groups = data.loc[keep, therapist].astype(str).reset_index(drop=True)
    if groups.nunique() < 2:
        raise ModelError(f"column {therapist!r}: need at least 2 therapists with an outcome")
    return y, groups


def _group_stats(y: np.ndarray, groups: pd.Series) -> pd.DataFrame:
    g = pd.Series(y).groupby(groups.to_numpy(), sort=True)
    st = pd.DataFrame({"n": g.size(), "raw": g.mean(), "_sum": g.sum()})
    st["_ssw"] = g.var(ddof=0) * st["n"]
    return st.rename_axis("_group").reset_index()


def _pool_means(y: np.ndarray, groups: pd.Series, method: str, level: float
                ) -> tuple[pd.DataFrame, dict]:
    st = _group_stats(y, groups)
    n, ybar, ssw = st["n"].to_numpy(float), st["raw"].to_numpy(), float(st["_ssw"].sum())
    if n.sum() <= len(n):
        raise ModelError("kind='mean' needs a therapist with 2+ rows to separate within- from "
                         "between-therapist variance")
    if method == "reml":
        tau2, sigma2, crit = _reml_one_way(n, ybar, ssw)
    elif method == "moments":
        tau2, sigma2 = _moments_one_way(n, ybar, ssw)
        crit = np.nan
    else:
        raise ModelError(f"parameter method: {method!r} is not 'reml' or 'moments'")
    w = n / (sigma2 + n * tau2)
    mu = float(np.sum(w * ybar) / np.sum(w))
    rel = tau2 / (tau2 + sigma2 / n)
    est = mu + rel * (ybar - mu)
    pev = rel * sigma2 / n + (1 - rel) ** 2 / np.sum(w)
    ci_low, ci_high = wald_interval(est, np.sqrt(pev), alpha=1 - level)
    out = st[["_group", "n", "raw"]].assign(
        estimate=est, ci_low=ci_low, ci_high=ci_high,
        reliability=rel, shrinkage=1 - rel)
    out["n"] = out["n"].astype(int)
    return out, {"mu": mu, "tau2": tau2, "sigma2": sigma2, "method": method,
                 "reml_criterion": crit}


def _reml_one_way(n: np.ndarray, ybar: np.ndarray, ssw: float) -> tuple[float, float, float]:
    """REML (tau^2, sigma^2, -2 log L_R) of the one-way random-effects model, profiled on r."""
    big_n = n.sum()
    if big_n - 1 <= 0:
        raise ModelError("too few observations for REML")

    def crit(r: float) -> float:
        a = n / (1 + n * r)
        mu = np.sum(a * ybar) / np.sum(a)
        q = ssw + np.sum(a * (ybar - mu) ** 2)
        s2 = q / (big_n - 1)
        return float((big_n - 1) * (np.log(2 * np.pi * s2) + 1) + np.sum(np.log1p(n * r))
                     + np.log(np.sum(a)))

    res = optimize.minimize_scalar(lambda t: crit(np.exp(t)), bounds=(-25, 15), method="bounded",
                                   options={"xatol": 1e-10})
    r = float(np.exp(res.x)) if crit(np.exp(res.x)) < crit(0.0) else 0.0
    if r < 1e-9:
        r = 0.0
    a = n / (1 + n * r)
    mu = np.sum(a * ybar) / np.sum(a)
    sigma2 = float((ssw + np.sum(a * (ybar - mu) ** 2)) / (big_n - 1))
    return r * sigma2, sigma2, crit(r)


def _moments_one_way(n: np.ndarray, ybar: np.ndarray, ssw: float) -> tuple[float, float]:
    """ANOVA (method-of-moments) estimates of (tau^2, sigma^2)."""
    big_n, j = n.sum(), len(n)
    grand = np.sum(n * ybar) / big_n
    msb = np.sum(n * (ybar - grand) ** 2) / (j - 1)
    msw = ssw / (big_n - j) if big_n > j else np.nan
    n0 = (big_n - np.sum(n**2) / big_n) / (j - 1)
    return float(max(0.0, (msb - msw) / n0)), float(msw)


def _count_weights(x: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, ...]:
    """``c[k]`` = number of therapists with ``k < count``, for successes, failures, totals."""
    size = int(n.max())

    def above(counts: np.ndarray) -> np.ndarray:
        return np.bincount(counts.astype(int), minlength=size + 1)[::-1].cumsum()[::-1][1:]

    return above(x), above(n - x), above(n)


def _betabinom_loglik(params: np.ndarray, weights: tuple[np.ndarray, ...]) -> float:
    """Beta-binomial log-likelihood without binomial coefficients, as exact sums of logs:
    ``log B(x + a, n - x + b) - log B(a, b) = sum_{k<x} log(a + k) + sum_{k<n-x} log(b + k)
    - sum_{k<n} log(a + b + k)`` (stable where ``betaln`` differences lose precision)."""
    mean, size = special.expit(params[0]), np.exp(params[1])
    a, b = mean * size, (1 - mean) * size
    ca, cb, cn = weights
    k = np.arange(len(cn))
    return float(ca @ np.log(a + k) + cb @ np.log(b + k) - cn @ np.log(a + b + k))


def _fit_beta_binomial(x: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """Marginal maximum likelihood (a, b) over (logit mean, log(a + b))."""
    p = x.sum() / n.sum()
    if p in (0.0, 1.0):
        raise ModelError("proportion outcome is all 0 or all 1: nothing to compare")
    weights = _count_weights(x, n)
    start = np.array([special.logit(p), np.log(10.0)])
    res = optimize.minimize(lambda t: -_betabinom_loglik(t, weights), start, method="L-BFGS-B",
                            bounds=[(-20, 20), (np.log(1e-3), np.log(1e7))],
                            options={"ftol": 1e-14, "gtol": 1e-9})
    mean, size = special.expit(res.x[0]), float(np.exp(res.x[1]))
    return float(mean * size), float((1 - mean) * size)


def _pool_proportions(y: np.ndarray, groups: pd.Series, level: float
                      ) -> tuple[pd.DataFrame, dict]:
    st = _group_stats(y, groups)
    x, n = st["_sum"].to_numpy(float), st["n"].to_numpy(float)
    a, b = _fit_beta_binomial(x, n)
    post_a, post_b = a + x, b + n - x
    tail = (1 - level) / 2
    out = st[["_group", "n", "raw"]].assign(
        estimate=post_a / (post_a + post_b),
        ci_low=stats.beta.ppf(tail, post_a, post_b),
        ci_high=stats.beta.ppf(1 - tail, post_a, post_b),
        reliability=n / (a + b + n), shrinkage=(a + b) / (a + b + n))
    out["n"] = out["n"].astype(int)
    return out, {"alpha": a, "beta": b, "prior_mean": a / (a + b)}


def _limits(n: np.ndarray, target: float, kind: str, sd: float | None, level: float,
            method: str) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < level < 1:
        raise ModelError("parameter levels: each level must be in (0, 1)")
    z = stats.norm.ppf(0.5 + level / 2)
    if kind == "mean":
        if sd is None or not sd > 0:
            raise ModelError("parameter sd: a positive standard deviation is needed for means")
        half = z * sd / np.sqrt(n)
        return target - half, target + half
    if not 0 <= target <= 1:
        raise ModelError("parameter target: a proportion must be in [0, 1]")
    if method == "normal":
        half = z * np.sqrt(target * (1 - target) / n)
        return target - half, target + half
    if method != "exact":
        raise ModelError(f"parameter method: {method!r} is not 'exact' or 'normal'")
    tail = (1 - level) / 2
    return _exact_limit(n, target, tail), _exact_limit(n, target, 1 - tail)


def _exact_limit(n: np.ndarray, target: float, p: float) -> np.ndarray:
    """Spiegelhalter's interpolated binomial quantile, as a proportion."""
    r = stats.binom.ppf(p, n, target)
    cdf_r = stats.binom.cdf(r, n, target)
    cdf_below = stats.binom.cdf(r - 1, n, target)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.where(cdf_r > cdf_below, (cdf_r - p) / (cdf_r - cdf_below), 0.0)
    return np.clip((r - alpha) / n, 0.0, 1.0)


def _funnel_flags(out: pd.DataFrame, target: float, kind: str, sd: float | None,
                  levels: Sequence[float]) -> pd.Series:
    flag = pd.Series("within", index=out.index, dtype="string")
    for level in sorted(levels):
        lim = funnel_limits(out["n"], target, kind=kind, sd=sd, levels=[level])
        label = f"{100 * level:g}"
        flag = flag.mask(out["raw"].to_numpy() > lim["upper"].to_numpy(), f"high_{label}")
        flag = flag.mask(out["raw"].to_numpy() < lim["lower"].to_numpy(), f"low_{label}")
    return flag
