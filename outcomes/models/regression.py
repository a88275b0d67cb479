"""Regression models of discharge outcomes: ANCOVA of a score, logistic model of responding.

Both take the episode table (one row per episode) and name the treatment term the way formula
software does: ``C(arm)[T.pri]`` for a text column (reference level first), or the column name
itself for a numeric 0/1 or boolean column.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from outcomes.errors import ModelError
from outcomes.models._results import renamed_keywords, tidy, wald_interval

__all__ = ["fit_ancova", "fit_responder", "ResponderResult", "prepare_treatment", "model_frame"]


def _is_binary_numeric(s: pd.Series) -> bool:
    values = s.dropna()
    if s.dtype == object:  # e.g. True/False/None read back from a database
        return bool(values.map(lambda v: isinstance(v, (bool, np.bool_, int, float))).all()
                    and values.isin([0, 1]).all())
    return (pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s)) and bool(
        values.isin([0, 1]).all())


def prepare_treatment(
    data: pd.DataFrame, treatment: str, reference: str | None = None
) -> tuple[pd.DataFrame, str, str]:
    """Copy ``data`` with the treatment coded for a formula; return (frame, formula term, name).

    A numeric 0/1 or boolean column enters as itself (term = column name). Any other column
    becomes a categorical whose first level is the reference: ``reference`` when given, else
    ``"traditional"`` when present (the toolkit's comparator arm), else the first sorted level.
    The returned name is the coefficient's name, e.g. ``C(arm)[T.pri]`` (two levels only).
    """
    if treatment not in data.columns:
        raise ModelError(f"treatment column {treatment!r} is not in the data")
    df = data.copy()
    col = df[treatment]
    if _is_binary_numeric(col) and reference is None:
        df[treatment] = col.astype(float)
        return df, treatment, treatment
    levels = sorted(col.dropna().astype(str).unique())
    ref = reference if reference is not None else (
        "traditional" if "traditional" in levels else (levels[0] if levels else None))
    if ref not in levels:
        raise ModelError(f"reference level {ref!r} is not a value of column {treatment!r}")
    cats = [ref] + [lv for lv in levels if lv != ref]
    df[treatment] = pd.Categorical(col.astype("string").astype(object), categories=cats)
    other = cats[1] if len(cats) == 2 else None
    return df, f"C({treatment})", (f"C({treatment})[T.{other}]" if other else f"C({treatment})")


def model_frame(data: pd.DataFrame, columns: Sequence[str], terms: Sequence[str]) -> pd.DataFrame:
    """Complete cases on ``columns`` and every data column a formula term mentions."""
    used = list(dict.fromkeys([*columns, *_term_columns(data, terms)]))
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise ModelError(f"column(s) {', '.join(map(repr, missing))} not in the data")
    return data.dropna(subset=used)


def _term_columns(data: pd.DataFrame, terms: Sequence[str]) -> list[str]:
    """Data columns a formula term mentions as a whole name (``age`` in ``I(age**2)``, not
    ``log`` in ``np.log(x)`` nor ``age`` in ``age.group``)."""
    return [c for c in data.columns
            if any(re.search(rf"(?<![\w.]){re.escape(str(c))}(?![\w.])", t) for t in terms)]


def _formula(outcome: str, terms: Sequence[str]) -> str:
    return f"Q('{outcome}') ~ " + " + ".join(terms)


def _dropped_warning(n_in: int, n_used: int) -> list[str]:
    dropped = n_in - n_used
    return [f"{dropped} row(s) with a missing value dropped"] if dropped else []


def fit_ancova(
    data: pd.DataFrame,
    outcome: str,
    treatment: str,
    baseline: str,
    covariates: Sequence[str] = (),
    cluster: str | None = None,
    weights: str | pd.Series | None = None,
    *,
    reference: str | None = None,
) -> pd.DataFrame:
    """ANCOVA: discharge score on treatment, adjusted for the baseline score and covariates.

    Parameters
    ----------
    data : DataFrame
        Episode table, one row per episode.
    outcome : str
        Discharge score (or change) column.
    treatment : str
        Arm column; see :func:`prepare_treatment` for coding and the reference level.
    baseline : str
        Intake score column.
    covariates : sequence of str
        Column names or formula terms (``"C(payer)"``, ``"I(age**2)"``).
    cluster : str, optional
        Column of cluster labels (e.g. ``therapist_id``): cluster-robust (CR1, statsmodels)
        standard errors.
    weights : str or Series, optional
        Column name or Series aligned with ``data`` of analysis weights: weighted least squares
        with a robust HC0 standard error (or cluster-robust when ``cluster`` is given).
    reference : str, optional
        Reference level of a text treatment column.

    Returns
    -------
    DataFrame
        Tidy frame, one row per coefficient (``Intercept``, the treatment term e.g.
        ``C(arm)[T.pri]``, ``baseline`` ...): ``term, estimate, se, ci_low, ci_high, p, n,
        converged, warnings``. t-based intervals with residual df for plain OLS, normal
        intervals for robust standard errors.

    Notes
    -----
    ``outcome = b0 + b1 treatment + b2 baseline + covariates + e``, the analysis of covariance
    recommended for pre-post comparisons (Vickers & Altman 2001, BMJ 323:1123). Rows with any
    missing used value are dropped and counted in ``warnings``.
    """
    import statsmodels.formula.api as smf

    df, term, _ = prepare_treatment(data, treatment, reference)
    if isinstance(weights, str):
        df["_w"] = df[weights]
    elif weights is not None:
        df["_w"] = pd.Series(weights, index=data.index)
    extra = [c for c in ("_w", cluster) if c is not None and c in df.columns]
    terms = [term, baseline, *covariates]
    fit_df = model_frame(df, [outcome, treatment, baseline, *extra], terms)
    fit_df = _drop_unused_levels(fit_df, treatment)
    if cluster is not None and cluster not in fit_df.columns:
        raise ModelError(f"cluster column {cluster!r} is not in the data")
    if len(fit_df) <= len(terms) + 1:
        raise ModelError(f"too few complete rows ({len(fit_df)}) for fit_ancova on {outcome!r}")
    formula = _formula(outcome, terms)
    model = (smf.wls(formula, fit_df, weights=fit_df["_w"]) if "_w" in fit_df
             else smf.ols(formula, fit_df))
    res = _fit_ols(model, fit_df, cluster, weighted="_w" in fit_df)
    return tidy(res.params.index, res.params, res.bse, n=len(fit_df),
                warnings=_dropped_warning(len(data), len(fit_df)),
                df=res.df_resid if res.cov_type == "nonrobust" else None)


def _drop_unused_levels(fit_df: pd.DataFrame, treatment: str) -> pd.DataFrame:
    """Drop treatment levels without complete rows (they would make the design singular)."""
    col = fit_df[treatment]
    if isinstance(col.dtype, pd.CategoricalDtype):
        if col.dropna().nunique() < 2:
            raise ModelError(f"treatment column {treatment!r} has fewer than two levels with "
                             "complete rows")
        fit_df = fit_df.assign(**{treatment: col.cat.remove_unused_categories()})
    return fit_df


def _fit_ols(model, fit_df: pd.DataFrame, cluster: str | None, weighted: bool):
    if cluster is not None:
        groups = pd.factorize(fit_df[cluster])[0]
        return model.fit(cov_type="cluster", cov_kwds={"groups": groups})
    return model.fit(cov_type="HC0") if weighted else model.fit()


@dataclass
class ResponderResult:
    """Logistic responder model and risk-adjusted responder rates by therapist.

    Attributes
    ----------
    coef : DataFrame
        Tidy frame on the log-odds scale plus ``odds_ratio, or_ci_low, or_ci_high``.
    by_therapist : DataFrame or None
        ``therapist, n, observed, expected, o_minus_e, se, ci_low, ci_high`` (rates).
    deviance, df_resid : float
        Residual deviance and its degrees of freedom.
    fitted : Series
        Predicted probabilities for the rows used, indexed like ``data``.
    """

    coef: pd.DataFrame
    by_therapist: pd.DataFrame | None
    deviance: float
    df_resid: float
    fitted: pd.Series


@renamed_keywords(therapist="groups")
def fit_responder(
    data: pd.DataFrame,
    outcome: str,
    treatment: str,
    covariates: Sequence[str] = (),
    *,
    groups: str | None = None,
    reference: str | None = None,
    alpha: float = 0.05,
) -> ResponderResult:
    """Logistic model of reaching the MCID, and observed minus expected rates by therapist.

    Parameters
    ----------
    data : DataFrame
        Episode table.
    outcome : str
        Boolean (or 0/1) responder column, e.g. ``nprs_responder``; missing rows are dropped.
    treatment : str
        Arm column (see :func:`prepare_treatment`).
    covariates : sequence of str
        Column names or formula terms (e.g. ``nprs_intake``, ``"C(payer)"``).
    groups : str, optional
        Therapist (or other grouping) column: adds ``by_therapist``, observed minus expected
        responders per group. (Formerly ``therapist=``, still accepted with a FutureWarning.)
    reference : str, optional
        Reference level of a text treatment column.
    alpha : float
        1 - confidence level.

    Returns
    -------
    ResponderResult
        ``.coef`` (odds ratios in ``odds_ratio``), ``.by_therapist``, ``.deviance``.

    Notes
    -----
    Binomial GLM with logit link (IRLS, statsmodels). The model has no therapist terms, so
    ``expected = sum_i p_i`` over a therapist's episodes is the number of responders expected
    for that case mix; ``O - E`` as a rate is ``(sum y_i - sum p_i) / n`` with variance
    ``sum p_i (1 - p_i) / n^2`` (the usual indirect-standardization approximation, ignoring the
    uncertainty of the coefficients). Checked against Everitt & Hothorn (HSAUR, ch. 14)
    respiratory model: treatment 1.29922 (SE 0.23684), residual deviance 483.22 on 438 df.
    """
    df, term, _ = prepare_treatment(data, treatment, reference)
    df = df.assign(_y=_responder_values(df, outcome))
    terms = [term, *covariates]
    fit_df = model_frame(df, ["_y", treatment, *([groups] if groups else [])], terms)
    res = _fit_logit(_drop_unused_levels(fit_df, treatment), terms)
    coef = tidy(res.params.index, res.params, res.bse, n=len(fit_df), converged=res.converged,
                warnings=_dropped_warning(len(data), len(fit_df)) + _logit_warnings(res),
                alpha=alpha, exponentiate=True)
    coef = coef.rename(columns={"exp_estimate": "odds_ratio", "exp_ci_low": "or_ci_low",
                                "exp_ci_high": "or_ci_high"})
    fitted = pd.Series(np.asarray(res.fittedvalues), index=fit_df.index)
    by = _observed_minus_expected(fit_df, groups, fitted, alpha) if groups else None
    return ResponderResult(coef, by, float(res.deviance), float(res.df_resid), fitted)


def _responder_values(df: pd.DataFrame, outcome: str) -> pd.Series:
    if outcome not in df.columns:
        raise ModelError(f"outcome column {outcome!r} is not in the data")
    s = df[outcome]
    if not _is_binary_numeric(s):
        raise ModelError(f"outcome column {outcome!r} must be boolean or 0/1 (1 = responder)")
    return s.astype("Float64").astype(float)


def _fit_logit(fit_df: pd.DataFrame, terms: Sequence[str]):
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    if fit_df["_y"].nunique() < 2:
        raise ModelError("the responder outcome has a single value; a logistic model cannot be fit")
    return smf.glm(_formula("_y", terms), fit_df, family=sm.families.Binomial()).fit()


def _logit_warnings(res) -> list[str]:
    p = np.asarray(res.fittedvalues)
    if np.any((p < 1e-8) | (p > 1 - 1e-8)):
        return ["fitted probabilities of 0 or 1: (quasi-)separation, estimates unreliable"]
    return []


def _observed_minus_expected(fit_df: pd.DataFrame, therapist: str, fitted: pd.Series,
                             alpha: float) -> pd.DataFrame:

    g = pd.DataFrame({"t": fit_df[therapist], "y": fit_df["_y"], "p": fitted,
                      "v": fitted * (1 - fitted)})
    agg = g.groupby("t", sort=True, observed=True).agg(
        n=("y", "size"), obs=("y", "sum"), exp=("p", "sum"), var=("v", "sum"))
    out = pd.DataFrame({
        "therapist": agg.index, "n": agg["n"].to_numpy(),
        "observed": (agg["obs"] / agg["n"]).to_numpy(),
        "expected": (agg["exp"] / agg["n"]).to_numpy(),
    })
    out["o_minus_e"] = out["observed"] - out["expected"]
    out["se"] = np.sqrt(agg["var"].to_numpy()) / out["n"]
    out["ci_low"], out["ci_high"] = wald_interval(out["o_minus_e"], out["se"], alpha=alpha)
    return out
