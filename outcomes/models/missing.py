"""Missing discharge scores: the primary comparison under several missing-data assumptions.

Registries report that most episodes lack a discharge score. The toolkit never hides that: it
shows how the treatment comparison moves under completers-only, last observation carried
forward, inverse probability of completion weighting, and multiple imputation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from outcomes.errors import ModelError
from outcomes.models._results import tidy
from outcomes.models.regression import fit_ancova, model_frame, prepare_treatment

__all__ = ["missing_data_sensitivity", "completion_weights", "dropout_hazard_data", "pool_rubin"]

#: Predictors of stopping after a visit, besides treatment and the caller's covariates: the pain
#: just measured (linearly and near the floor: patients who feel well stop coming), intake pain,
#: and whether it was the evaluation visit. Our choice, documented in completion_weights.
DROPOUT_TERMS = ("score_now", "I(score_now <= 1)", "score_intake", "first_visit")


def dropout_hazard_data(episodes: pd.DataFrame, visits: pd.DataFrame,
                        score: str = "nprs") -> pd.DataFrame:
    """Person-visit rows for a discrete-time model of stopping after each visit.

    One row per scored visit of each episode, except the final visit of a completed episode
    (after a discharge nobody is at risk of dropping out). ``stop`` is 1 on the last visit of an
    episode that is not ``completed``. Columns: ``episode_id, visit_number, first_visit,
    score_now, score_intake, stop`` plus the episode's columns.
    """
    from outcomes.episodes import visit_scores

    long = visit_scores(visits, episodes)[["episode_id", "visit_number", score]]
    long = long.dropna(subset=[score]).sort_values(["episode_id", "visit_number"])
    last = long.groupby("episode_id")["visit_number"].transform("max")
    ep = episodes.set_index("episode_id")
    completed = long["episode_id"].map(ep["status"].eq("completed"))
    long = long.assign(first_visit=(long["visit_number"] == 1).astype(float),
                       score_now=long[score],
                       stop=((long["visit_number"] == last) & ~completed).astype(float))
    long = long[~((long["visit_number"] == last) & completed)]
    extra = [c for c in episodes.columns if c not in long.columns]
    long = long.merge(episodes[["episode_id", *extra]], on="episode_id", how="left")
    return long.assign(score_intake=long[f"{score}_intake"])


def completion_weights(
    episodes: pd.DataFrame,
    visits: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str] = (),
    *,
    score: str = "nprs",
) -> pd.Series:
    """Inverse probability of completing the episode, from a visit-level dropout model.

    Parameters
    ----------
    episodes : DataFrame
        Episode table (``episode_id, status, <score>_intake`` ...); open episodes should be
        removed first.
    visits : DataFrame
        The clean visit table the episodes were built from.
    treatment : str
        Arm column (a predictor of dropout).
    covariates : sequence of str
        Baseline terms added to the dropout model.
    score : str
        Instrument measured at the visits whose current value may drive dropout.

    Returns
    -------
    Series
        Indexed like ``episodes``: ``1 / prod_k (1 - h_k)`` for completed episodes, NaN for
        the others.

    Notes
    -----
    Pooled logistic model of ``h_k = P(stop after visit k | still attending, history)`` on
    treatment, covariates and :data:`DROPOUT_TERMS`. Valid when dropout is missing at random
    given these observed quantities (Robins, Rotnitzky & Zhao 1995).
    """
    return completion_weights_from_hazard_data(
        dropout_hazard_data(episodes, visits, score), episodes, treatment, covariates)


def completion_weights_from_hazard_data(long: pd.DataFrame, episodes: pd.DataFrame,
                                        treatment: str,
                                        covariates: Sequence[str] = ()) -> pd.Series:
    """:func:`completion_weights` from precomputed :func:`dropout_hazard_data` rows.

    The cluster bootstrap refits the dropout model on resampled person-visit rows without
    rebuilding them from the visit table each time.
    """
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    terms = [treatment, *covariates, *DROPOUT_TERMS]
    long = model_frame(long, ["stop", treatment], terms)
    fit = smf.glm("stop ~ " + " + ".join(terms), long, family=sm.families.Binomial()).fit()
    log_stay = np.log1p(-np.asarray(fit.fittedvalues)).astype(float)
    p_complete = np.exp(pd.Series(log_stay, index=long.index).groupby(long["episode_id"]).sum())
    done = episodes["status"].eq("completed")
    w = 1.0 / episodes["episode_id"].map(p_complete)
    return w.where(done)


def pool_rubin(estimates, variances, df_complete: float) -> tuple[float, float, float]:
    """Rubin's rules with the Barnard-Rubin (1999) degrees of freedom (as R ``mice::pool``).

    Returns (estimate, se, df): ``T = W + (1 + 1/m) B``.
    """
    q, u = np.asarray(estimates, float), np.asarray(variances, float)
    m = len(q)
    qbar, w, b = q.mean(), u.mean(), q.var(ddof=1)
    t = w + (1 + 1 / m) * b
    lam = (1 + 1 / m) * b / t
    df_old = (m - 1) / lam**2 if lam > 0 else np.inf
    df_obs = (df_complete + 1) / (df_complete + 3) * df_complete * (1 - lam)
    return float(qbar), float(np.sqrt(t)), float(1 / (1 / df_old + 1 / df_obs))


def _independent_columns(x: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Positions of a maximal set of linearly independent columns of ``x`` (pivoted QR).

    As ``mice`` drops constant and collinear predictors before imputing (its
    ``remove.lindep``): among the episodes with an observed outcome a covariate may be
    constant (no completer had surgery recommended) or collinear, and X'X is then singular.
    """
    from scipy.linalg import qr

    _, r, piv = qr(x, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    rank = int((diag > tol * diag[0]).sum()) if diag.size and diag[0] > 0 else 0
    return np.sort(piv[:rank])


def _normal_model(x_obs, y_obs) -> tuple:
    """Least-squares fit of the imputation model, done once for all imputations.

    Predictors that are constant or collinear among the observed rows are left out
    (:func:`_independent_columns`). Returns ``(keep, beta, (X'X)^-1, residual SS, df)``.
    """
    keep = _independent_columns(x_obs)
    x_obs = x_obs[:, keep]
    xtx_inv = np.linalg.inv(x_obs.T @ x_obs)
    beta = xtx_inv @ x_obs.T @ y_obs
    resid = y_obs - x_obs @ beta
    return keep, beta, xtx_inv, resid @ resid, len(y_obs) - x_obs.shape[1]


def _impute_normal(rng, model: tuple, x_mis):
    """One proper draw from the Bayesian normal linear model (Rubin 1987, p. 167)."""
    keep, beta, xtx_inv, rss, dof = model
    sigma2 = rss / rng.chisquare(dof)
    beta_star = rng.multivariate_normal(beta, sigma2 * xtx_inv)
    return x_mis[:, keep] @ beta_star + rng.normal(0, np.sqrt(sigma2), len(x_mis))


def _multiple_imputation(df, outcome, treatment, baseline, covariates, term, cluster,
                         n_imputations, seed, reference):
    import patsy

    terms = [term, baseline, *covariates]
    x = np.asarray(patsy.dmatrix(" + ".join(terms), df, NA_action="raise"))
    obs = df[outcome].notna().to_numpy()
    observed = df[outcome].to_numpy(float)
    model = _normal_model(x[obs], observed[obs])
    rng = np.random.default_rng(seed)
    fits = []
    for _ in range(n_imputations):
        y = observed.copy()
        y[~obs] = _impute_normal(rng, model, x[~obs])
        fits.append(fit_ancova(df.assign(**{outcome: y}), outcome, treatment, baseline,
                               covariates, cluster=cluster, reference=reference))
    return fits, len(_independent_columns(x))  # rank: complete-data df n - rank, as mice


def missing_data_sensitivity(
    data: pd.DataFrame,
    outcome: str,
    treatment: str,
    baseline: str,
    covariates: Sequence[str] = (),
    *,
    last: str = "nprs_last",
    visits: pd.DataFrame | None = None,
    cluster: str | None = None,
    n_imputations: int = 20,
    seed: int = 0,
    reference: str | None = None,
) -> pd.DataFrame:
    """The treatment effect under four ways of handling missing discharge scores.

    Parameters
    ----------
    data : DataFrame
        Episode table (exclude ``open`` episodes: they are not finished, not missing).
    outcome : str
        Discharge score column, e.g. ``nprs_discharge`` (NaN when missing). ANCOVA on the
        discharge score with the baseline as covariate gives the same treatment effect as on
        the change score.
    treatment, baseline, covariates, reference
        As in :func:`outcomes.models.fit_ancova`.
    last : str
        Last observed score of the episode (``X_last`` from ``build_episodes``) for LOCF.
    visits : DataFrame, optional
        The clean visit table: when given, the dropout model is visit-level (stopping after a
        visit depends on the pain just measured, see :func:`completion_weights`); otherwise it
        uses baseline information only (one logistic model of completing).
    cluster : str, optional
        Cluster-robust standard errors by this column (e.g. ``therapist_id``) in every method.
    n_imputations : int
        Number of imputations.
    seed : int
        Seed of the imputation draws.

    Returns
    -------
    DataFrame
        One row per method (``method``: ``completers``, ``locf``, ``ipw_dropout``,
        ``multiple_imputation``): ``term, estimate, se, ci_low, ci_high, p, n, converged,
        warnings, method, n_missing``.

    Notes
    -----
    * completers: ANCOVA on episodes with a discharge score.
    * LOCF: missing discharge scores replaced by ``last`` (then by the baseline if no later
      score exists, i.e. baseline observation carried forward; counted in ``warnings``).
    * IPW: completers weighted by 1 / P(completed); WLS with a robust (HC0, or cluster) SE.
      With ``visits`` the probability comes from the visit-level dropout model (pain at each
      visit, :func:`completion_weights`); without, from a logistic model on treatment, baseline
      and covariates. ``last`` is deliberately not a predictor: for completers it *is* the
      discharge score, so the weights would depend on the outcome itself.
    * MI: ``n_imputations`` proper draws from a Bayesian normal linear model of the outcome on
      treatment, baseline and covariates (fitted on completers), each analysed by ANCOVA, pooled
      with Rubin's rules and Barnard-Rubin degrees of freedom. It assumes MAR given baseline
      information; like LOCF it does not use the visit-level history.
    """
    df, term, name = prepare_treatment(data, treatment, reference)
    if data[treatment].dropna().nunique() != 2:
        raise ModelError(f"treatment column {treatment!r} must have exactly two values; "
                         "filter the rows first (e.g. arms 'pri' and 'traditional')")
    df = model_frame(df, [treatment, baseline], covariates)
    if outcome not in df.columns or last not in df.columns:
        raise ModelError(f"columns {outcome!r} and {last!r} must both be in the data")
    n_missing = int(df[outcome].isna().sum())
    if df[outcome].notna().sum() < 10:
        raise ModelError(f"too few episodes with {outcome!r} observed for a comparison")
    rows = [_completers(df, outcome, treatment, baseline, covariates, cluster, reference),
            _locf(df, outcome, treatment, baseline, covariates, last, cluster, reference),
            _ipw(df, outcome, treatment, baseline, covariates, visits, cluster, reference),
            _mi(df, outcome, treatment, baseline, covariates, (term, name), cluster,
                n_imputations, seed, reference)]
    out = pd.concat([r[r["term"] == name].assign(method=m) for m, r in rows], ignore_index=True)
    return out.assign(n_missing=n_missing)


def _completers(df, outcome, treatment, baseline, covariates, cluster, reference):
    res = fit_ancova(df, outcome, treatment, baseline, covariates, cluster=cluster,
                     reference=reference)
    return "completers", res


def _locf(df, outcome, treatment, baseline, covariates, last, cluster, reference):
    filled = df[outcome].fillna(df[last])
    n_bocf = int(filled.isna().sum())
    res = fit_ancova(df.assign(**{outcome: filled.fillna(df[baseline])}), outcome, treatment,
                     baseline, covariates, cluster=cluster, reference=reference)
    if n_bocf:
        res["warnings"] = f"{n_bocf} episode(s) without a later score: baseline carried forward"
    return "locf", res


def _ipw(df, outcome, treatment, baseline, covariates, visits, cluster, reference):
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    if visits is not None:
        w = completion_weights(df, visits, treatment, covariates,
                               score=baseline.removesuffix("_intake"))
        w = w.where(df[outcome].notna())
        note = "visit-level dropout model"
    else:
        terms = [treatment, baseline, *covariates]
        d = df.assign(_obs=df[outcome].notna().astype(float))
        fit = smf.glm("_obs ~ " + " + ".join(terms), d, family=sm.families.Binomial()).fit()
        w = (1.0 / pd.Series(np.asarray(fit.fittedvalues), index=d.index)).where(d["_obs"] == 1)
        note = "dropout model on baseline information only (pass visits= for visit-level)"
    res = fit_ancova(df, outcome, treatment, baseline, covariates, cluster=cluster,
                     weights=w, reference=reference)
    res["warnings"] = note
    return "ipw_dropout", res


def _mi(df, outcome, treatment, baseline, covariates, terms, cluster, n_imputations, seed,
        reference):
    term, name = terms
    fits, k = _multiple_imputation(df, outcome, treatment, baseline, covariates, term, cluster,
                                   n_imputations, seed, reference)
    rows = [f.set_index("term").loc[name] for f in fits]
    est, se, dof = pool_rubin([r["estimate"] for r in rows], [r["se"] ** 2 for r in rows],
                              df_complete=len(df) - k)
    res = tidy([name], [est], [se], n=len(df), df=dof,
               warnings=[f"{n_imputations} imputations, Rubin's rules (df {dof:.1f})"])
    return "multiple_imputation", res

