"""Time-to-event summaries: Kaplan-Meier medians, the log-rank test and the Cox model.

The conventions follow R's ``survival`` package (``survfit``, ``survdiff``, ``coxph``,
``cox.zph``), because that is what reviewers compare against; lifelines' defaults differ for the
median confidence interval, so nothing here passes lifelines' summaries through.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from outcomes.errors import ModelError
from outcomes.models._results import tidy
from outcomes.models.regression import _term_columns

__all__ = ["km_curve", "km_table", "logrank_test", "fit_cox", "cox_zph", "CoxResult"]

_TOL = np.sqrt(np.finfo(float).eps)  # R: .Machine$double.eps^0.5


def _survival_frame(data: pd.DataFrame, duration: str, event: str, extra: Sequence[str] = ()):
    """Copy the needed columns, check them, and drop rows with a missing value."""
    for col in (duration, event, *extra):
        if col not in data.columns:
            raise ModelError(f"column {col!r} is not in the data")
    df = data[[duration, event, *extra]].dropna().copy()
    if df.empty:
        raise ModelError(f"no complete rows for {duration!r} and {event!r}")
    df[event] = df[event].astype(float)
    if not df[event].isin([0.0, 1.0]).all():
        raise ModelError(f"column {event!r} must be 0/1 or boolean (1 = event)")
    if (df[duration] < 0).any():
        raise ModelError(f"column {duration!r} has negative durations")
    return df


def km_curve(time: np.ndarray, event: np.ndarray, conf_level: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier curve at every distinct time, with R ``survfit``'s log-transformed CI.

    Parameters
    ----------
    time, event : array
        Follow-up times and event indicators (1 = event, 0 = censored).
    conf_level : float
        Confidence level of the pointwise interval.

    Returns
    -------
    DataFrame
        Columns ``time, n_risk, n_event, n_censor, surv, std_err, lower, upper``.

    Notes
    -----
    ``std_err`` is Greenwood's standard error of ``log S(t)``,
    ``sqrt(sum d / (n (n - d)))``; the interval is ``exp(log S +/- z std_err)`` with the upper
    bound capped at 1 and both bounds missing where ``S = 0`` (``conf.type = "log"``, the
    ``survfit`` default).
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=float)
    ut, inv = np.unique(time, return_inverse=True)
    n_event = np.bincount(inv, weights=event, minlength=len(ut))
    n_all = np.bincount(inv, minlength=len(ut)).astype(float)
    n_risk = n_all[::-1].cumsum()[::-1]
    surv = np.cumprod(1.0 - n_event / n_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        inc = np.where(n_event > 0, n_event / (n_risk * (n_risk - n_event)), 0.0)
        std_err = np.sqrt(np.cumsum(inc))
        z = stats.norm.ppf(1 - (1 - conf_level) / 2)
        lower = np.where(surv > 0, np.exp(np.log(surv) - z * std_err), np.nan)
        upper = np.where(surv > 0, np.minimum(np.exp(np.log(surv) + z * std_err), 1.0), np.nan)
    return pd.DataFrame({
        "time": ut, "n_risk": n_risk, "n_event": n_event, "n_censor": n_all - n_event,
        "surv": surv, "std_err": std_err, "lower": lower, "upper": upper,
    })


def _survfit_median(y: np.ndarray, x: np.ndarray) -> float:
    """First time a curve is at or below 0.5, with ``survfit``'s midpoint rule for flat stretches.

    A transcription of ``minmin`` in R ``survival:::survmean`` (used by ``print.survfit``): if
    the curve sits at exactly 0.5 (within sqrt(machine eps)) and later drops below it, the median
    is the midpoint between the first time at 0.5 and the first time below 0.5.
    """
    keep = ~np.isnan(y) & (y < 0.5 + _TOL)
    if not keep.any():
        return float("nan")
    x, y = x[keep], y[keep]
    below = np.flatnonzero(y < y[0])
    if abs(y[0] - 0.5) < _TOL and below.size:
        return float((x[0] + x[below[0]]) / 2)
    return float(x[0])


def km_table(
    data: pd.DataFrame,
    duration: str,
    event: str,
    group: str | None = None,
    *,
    conf_level: float = 0.95,
) -> pd.DataFrame:
    """Kaplan-Meier median survival with its confidence interval, per group.

    Parameters
    ----------
    data : DataFrame
        One row per subject.
    duration : str
        Column of follow-up times.
    event : str
        Column of event indicators (1/True = event, 0/False = censored).
    group : str, optional
        Column defining groups; when None a single row indexed ``"all"``.
    conf_level : float
        Confidence level of the median's interval.

    Returns
    -------
    DataFrame
        Indexed by group value, columns ``n, events, median, ci_low, ci_high``. A median or bound
        the curve never reaches is NaN (R prints NA). The log-rank test is in
        ``result.attrs["logrank"]`` when ``group`` is given (see :func:`logrank_test`).

    Notes
    -----
    Matches R ``print(survfit(Surv(duration, event) ~ group))`` (``conf.type = "log"``): the
    median is the first time ``S(t) <= 0.5``, or the midpoint of the flat stretch where
    ``S(t) = 0.5`` exactly; the interval is the same rule applied to the lower and upper pointwise
    bounds (Brookmeyer-Crowley style). Checked against R survival 3.5 on lifelines' ``lung``
    and on a curve with an exact 0.5 stretch (tests/test_survival_r.py).
    """
    extra = () if group is None else (group,)
    df = _survival_frame(data, duration, event, extra)
    groups = [("all", df)] if group is None else list(df.groupby(group, sort=True, observed=True))
    rows = {}
    for key, sub in groups:
        curve = km_curve(sub[duration].to_numpy(), sub[event].to_numpy(), conf_level)
        t = curve["time"].to_numpy()
        rows[key] = {
            "n": len(sub),
            "events": int(sub[event].sum()),
            "median": _survfit_median(curve["surv"].to_numpy(), t),
            "ci_low": _survfit_median(curve["lower"].to_numpy(), t),
            "ci_high": _survfit_median(curve["upper"].to_numpy(), t),
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = group or "group"
    if group is not None and len(groups) > 1:
        out.attrs["logrank"] = logrank_test(data, duration, event, group)
    return out


def logrank_test(data: pd.DataFrame, duration: str, event: str, group: str) -> dict[str, float]:
    """Log-rank test of equal survival across groups (R ``survdiff``, ``rho = 0``).

    Returns
    -------
    dict
        ``chi2``, ``df`` (groups - 1) and ``p``, plus ``observed`` and ``expected`` per group.

    Notes
    -----
    At each distinct event time with ``d`` events among ``n`` at risk, ``E_g += n_g d / n`` and
    ``V_gh += d (n - d) / (n - 1) * n_g / n * (delta_gh - n_h / n)``; the statistic is
    ``(O - E)' V^- (O - E)`` over the first ``k - 1`` groups. Checked against R ``survdiff`` on
    ``lung`` by sex (chi-squared 10.3 on 1 df).
    """
    df = _survival_frame(data, duration, event, (group,))
    levels = np.sort(df[group].unique())
    if len(levels) < 2:
        raise ModelError(f"column {group!r} needs at least two groups for a log-rank test")
    g = np.searchsorted(levels, df[group].to_numpy())
    t, e = df[duration].to_numpy(float), df[event].to_numpy(float)
    obs = np.zeros(len(levels))
    exp = np.zeros(len(levels))
    var = np.zeros((len(levels), len(levels)))
    for tj in np.unique(t[e == 1]):
        at_risk = t >= tj
        n_g = np.bincount(g[at_risk], minlength=len(levels)).astype(float)
        d_g = np.bincount(g[(t == tj) & (e == 1)], minlength=len(levels)).astype(float)
        n, d = n_g.sum(), d_g.sum()
        obs += d_g
        exp += n_g * d / n
        if n > 1:
            share = n_g / n
            var += d * (n - d) / (n - 1) * (np.diag(share) - np.outer(share, share))
    diff = (obs - exp)[:-1]
    chi2 = float(diff @ np.linalg.solve(var[:-1, :-1], diff))
    dof = len(levels) - 1
    return {"chi2": chi2, "df": dof, "p": float(stats.chi2.sf(chi2, dof)),
            "observed": dict(zip(levels, obs, strict=True)),
            "expected": dict(zip(levels, exp, strict=True))}


@dataclass
class CoxResult:
    """A fitted Cox model.

    Attributes
    ----------
    coef : DataFrame
        Tidy frame (``term, estimate, se, ci_low, ci_high, p, n, converged, warnings``) plus
        ``hr, hr_ci_low, hr_ci_high``.
    lr_test : dict
        Likelihood-ratio test against the null model: ``chi2, df, p``.
    ph_test : DataFrame
        Proportional-hazards check per term and ``GLOBAL``: ``term, chi2, df, p, method``;
        ``method`` names the test (R ``cox.zph`` score test, KM time transform by default).
    loglik : float
        Maximized partial log-likelihood.
    n, events : int
        Subjects and events used.
    """

    coef: pd.DataFrame
    lr_test: dict
    ph_test: pd.DataFrame
    loglik: float
    n: int
    events: int
    linear_predictor: np.ndarray = field(repr=False)


def fit_cox(
    data: pd.DataFrame,
    duration: str,
    event: str,
    covariates: Sequence[str],
    *,
    ties: str = "efron",
    ph_transform: str = "km",
) -> CoxResult:
    """Fit a Cox proportional-hazards model and check proportional hazards.

    Parameters
    ----------
    data : DataFrame
        One row per subject; rows with a missing value in a used column are dropped.
    duration, event : str
        Follow-up time and event indicator (1 = event) columns.
    covariates : sequence of str
        Column names or formula terms (``"C(centre)"``, ``"I(age**2)"``).
    ties : {"efron", "breslow"}
        Handling of tied event times; Efron is R ``coxph``'s default.
    ph_transform : {"km", "rank", "identity", "log"}
        Time transform for the proportional-hazards test (``cox.zph``'s default is ``"km"``).

    Returns
    -------
    CoxResult
        ``.coef`` (log hazard ratios with Wald intervals and hazard ratios), ``.lr_test``,
        ``.ph_test`` (see :func:`cox_zph`), ``.loglik``.

    Notes
    -----
    Partial likelihood maximized by statsmodels ``PHReg``. Checked against Fox & Weisberg's
    Cox appendix on the Rossi recidivism data (fin -0.37942, SE 0.19138; LR 33.27 on 7 df) and
    against R ``coxph`` / ``cox.zph`` (survival 3.5) in tests/test_survival_r.py.
    """
    import statsmodels.formula.api as smf

    if ties not in ("efron", "breslow"):
        raise ModelError(f"ties={ties!r}: use 'efron' or 'breslow'")
    if not covariates:
        raise ModelError("fit_cox needs at least one covariate")
    df = _cox_frame(data, duration, event, covariates)
    formula = f"Q('{duration}') ~ " + " + ".join(covariates)
    model = smf.phreg(formula, df, status=df[event].to_numpy(), ties=ties)
    res = model.fit()
    # PHReg reports no convergence flag: check the score (gradient) at the solution instead
    grad = np.max(np.abs(model.score(res.params))) if len(res.params) else 0.0
    warn = [] if grad < 1e-4 * max(1.0, len(df)) else ["partial likelihood not maximized"]
    coef = tidy(model.exog_names, res.params, res.bse, n=len(df),
                converged=not warn, warnings=warn, exponentiate=True)
    coef = coef.rename(columns={"exp_estimate": "hr", "exp_ci_low": "hr_ci_low",
                                "exp_ci_high": "hr_ci_high"})
    chi2 = float(2 * (res.llf - model.loglike(np.zeros(len(res.params)))))
    k = len(res.params)
    lp = model.exog @ res.params
    slices = model.data.model_spec.term_name_slices
    ph = cox_zph(model.endog, df[event].to_numpy(float), model.exog, lp, slices,
                 efron=ties == "efron", transform=ph_transform)
    return CoxResult(coef=coef, lr_test={"chi2": chi2, "df": k, "p": float(stats.chi2.sf(chi2, k))},
                     ph_test=ph, loglik=float(res.llf), n=len(df),
                     events=int(df[event].sum()), linear_predictor=lp)


def _cox_frame(data: pd.DataFrame, duration: str, event: str, covariates: Sequence[str]):
    """Complete cases on the duration, event and the columns the covariate terms mention."""
    used = [c for c in _term_columns(data, covariates) if c not in (duration, event)]
    return _survival_frame(data, duration, event, used)


def _zph_transform(time: np.ndarray, status: np.ndarray, transform: str) -> np.ndarray:
    """Transformed times as in R ``cox.zph`` (``km`` is 1 - left-continuous KM at each time)."""
    if transform == "identity":
        return time.copy()
    if transform == "rank":
        return stats.rankdata(time)
    if transform == "log":
        return np.log(time)
    if transform == "km":
        curve = km_curve(time, status)
        idx = np.searchsorted(curve["time"].to_numpy(), time, side="left")
        return 1.0 - np.r_[1.0, curve["surv"].to_numpy()][idx]
    raise ModelError(f"ph_transform={transform!r}: use 'km', 'rank', 'identity' or 'log'")


def _zph_score(time, status, x, lp, gtime, efron):
    """Score vector and information of the model with covariates ``[x, x g(t)]`` at ``(b, 0)``."""
    p = x.shape[1]
    u = np.zeros(2 * p)
    imat = np.zeros((2 * p, 2 * p))
    risk = np.exp(lp - lp.max())
    for tj in np.unique(time[status == 1]):
        at = time >= tj
        dead = at & (time == tj) & (status == 1)
        g = gtime[dead][0]
        w_r, x_r = risk[at], x[at]
        s0, s1, s2 = w_r.sum(), w_r @ x_r, (x_r * w_r[:, None]).T @ x_r
        w_d, x_d = risk[dead], x[dead]
        d0, d1, d2 = w_d.sum(), w_d @ x_d, (x_d * w_d[:, None]).T @ x_d
        nd = int(dead.sum())
        fracs = np.arange(nd) / nd if efron else np.zeros(nd)
        xsum = x_d.sum(axis=0)
        for f in fracs:
            a0, a1, a2 = s0 - f * d0, s1 - f * d1, s2 - f * d2
            xbar = a1 / a0
            v = a2 / a0 - np.outer(xbar, xbar)
            imat[:p, :p] += v
            imat[:p, p:] += g * v
            imat[p:, p:] += g * g * v
        xbar_sum = sum((s1 - f * d1) / (s0 - f * d0) for f in fracs)
        u[:p] += xsum - xbar_sum
        u[p:] += g * (xsum - xbar_sum)
    imat[p:, :p] = imat[:p, p:].T
    return u, imat


def cox_zph(time, status, x, lp, term_slices, *, efron=True, transform="km") -> pd.DataFrame:
    """R ``cox.zph`` (survival >= 3.0): score test for a time-varying coefficient ``b + c g(t)``.

    Parameters
    ----------
    time, status : array
        Follow-up times and event indicators of the fitted rows.
    x : 2-D array
        Design matrix of the Cox model (no intercept); ``lp = x @ beta``.
    term_slices : mapping
        Term name -> column slice; multi-column terms get a joint test with several df.
    efron : bool
        Efron tie handling (as the model was fitted).
    transform : str
        ``"km"`` (R default), ``"rank"``, ``"identity"`` or ``"log"``.

    Returns
    -------
    DataFrame
        ``term, chi2, df, p, method``: one row per term and a ``GLOBAL`` row.

    Notes
    -----
    With ``g(t)`` the transformed time centred at its mean over events, the score ``u`` and
    information ``I`` of the extended model with covariates ``[x, x g(t)]`` are evaluated at
    ``(beta_hat, 0)``; the test for term ``j`` is ``u' I^{-1} u`` with ``u`` zero in the
    ``beta`` coordinates, restricted to ``beta`` and the term's extra coordinates. This is the
    test R 3.x prints, not the older Schoenfeld-residual approximation that lifelines'
    ``proportional_hazard_test`` implements. Checked against R ``cox.zph`` on Rossi.
    """
    time, status = np.asarray(time, float), np.asarray(status, float)
    x = np.asarray(x, float)
    tt = _zph_transform(time, status, transform)
    gtime = tt - tt[status == 1].mean()
    u, imat = _zph_score(time, status, x, np.asarray(lp, float), gtime, efron)
    p = x.shape[1]
    u[:p] = 0.0
    rows = []
    for name, sl in term_slices.items():
        kk = np.r_[np.arange(p), np.arange(sl.start, sl.stop) + p]
        rows.append((name, float(np.linalg.solve(imat[np.ix_(kk, kk)], u[kk]) @ u[kk]),
                     sl.stop - sl.start))
    rows.append(("GLOBAL", float(np.linalg.solve(imat, u) @ u), p))
    out = pd.DataFrame(rows, columns=["term", "chi2", "df"])
    out["p"] = stats.chi2.sf(out["chi2"], out["df"])
    out["method"] = f"cox.zph score test (R survival >= 3.0), transform={transform}"
    return out
