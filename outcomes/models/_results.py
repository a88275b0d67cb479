"""The tidy result frame shared by every model in :mod:`outcomes.models`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

TIDY_COLUMNS = ("term", "estimate", "se", "ci_low", "ci_high", "p")


def tidy(
    terms: Sequence[str],
    estimate: Sequence[float],
    se: Sequence[float],
    *,
    n: int,
    converged: bool = True,
    warnings: Sequence[str] = (),
    df: float | None = None,
    alpha: float = 0.05,
    exponentiate: bool = False,
) -> pd.DataFrame:
    """Build the standard result frame from estimates and standard errors.

    Parameters
    ----------
    terms, estimate, se
        Term names, point estimates and standard errors, aligned.
    n : int
        Number of observations (or subjects) behind the fit.
    converged : bool
        Whether the fit converged; reported on every row.
    warnings : sequence of str
        Messages the reader needs (joined with ``"; "`` into the ``warnings`` column).
    df : float, optional
        Degrees of freedom for t-based intervals and p-values; normal (Wald z) when None.
    alpha : float
        1 - confidence level.
    exponentiate : bool
        Also add ``exp_estimate, exp_ci_low, exp_ci_high`` (odds or hazard ratios).

    Returns
    -------
    DataFrame
        Columns ``term, estimate, se, ci_low, ci_high, p, n, converged, warnings``; full
        precision.
    """
    est = np.asarray(estimate, dtype=float)
    se_ = np.asarray(se, dtype=float)
    dist = stats.norm if df is None else stats.t(df)
    ci_low, ci_high = wald_interval(est, se_, alpha=alpha, df=df)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = est / se_
    out = pd.DataFrame({
        "term": list(terms),
        "estimate": est,
        "se": se_,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "p": 2 * dist.sf(np.abs(stat)),
        "n": int(n),
        "converged": bool(converged),
        "warnings": "; ".join(warnings),
    })
    if exponentiate:
        out["exp_estimate"] = np.exp(out["estimate"])
        out["exp_ci_low"] = np.exp(out["ci_low"])
        out["exp_ci_high"] = np.exp(out["ci_high"])
    return out


def wald_interval(estimate, se, *, alpha: float = 0.05,
                  df: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``estimate -/+ crit * se`` with a normal (or, given ``df``, t) critical value.

    The one interval every model here uses; returns ``(ci_low, ci_high)`` as arrays.
    """
    est = np.asarray(estimate, dtype=float)
    se_ = np.asarray(se, dtype=float)
    crit = (stats.norm if df is None else stats.t(df)).ppf(1 - alpha / 2)
    return est - crit * se_, est + crit * se_


def pooled_sd(x1, x0) -> float:
    """``sqrt((s1^2 + s0^2) / 2)`` with sample variances (ddof 1): the SMD denominator.

    The convention of cobalt / WeightIt and of Austin (2009) for continuous covariates.
    """
    v1 = np.var(np.asarray(x1, dtype=float), ddof=1)
    v0 = np.var(np.asarray(x0, dtype=float), ddof=1)
    return float(np.sqrt((v1 + v0) / 2))


def renamed_keywords(**old_to_new: str):
    """Accept a keyword's old name for one deprecation cycle, with a ``FutureWarning``.

    The model functions share one vocabulary (``data, outcome, treatment, covariates,
    groups/cluster, estimand``); where a function used another word, the old keyword still works
    and says which to use (scikit-learn's deprecation habit).
    """
    import functools
    import warnings

    def wrap(func):
        @functools.wraps(func)
        def inner(*args, **kwargs):
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{func.__name__}: pass {new}= only ({old}= is its old "
                                        "name)")
                    warnings.warn(f"{func.__name__}: {old}= is now {new}=; the old name will be "
                                  "removed in a later release", FutureWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)
        return inner
    return wrap
