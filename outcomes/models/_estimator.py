"""Building blocks of the primary estimator, shared by the analysis, its strata and bootstrap.

The choices of one analysis (:class:`_Spec`), the analysed episode frame, the propensity and
dropout weights, the weighted design of the outcome regression and its leave-one-therapist-out
(CV3) jackknife. :mod:`outcomes.models.primary` assembles them; :mod:`~outcomes.models.modification`
and :mod:`~outcomes.models.bootstrap` reuse them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from outcomes.errors import ModelError
from outcomes.models._results import tidy
from outcomes.models.regression import model_frame
from outcomes.models.weighting import iptw


@dataclass(frozen=True)
class _Spec:
    """The choices of one primary analysis, passed whole to the bootstrap and the strata."""

    treatment: str
    arms: tuple
    outcome: str
    confounders: tuple
    dropout_covariates: tuple
    dropout_score: str
    cluster: str
    therapist_effects: str
    estimand: str

    @property
    def baseline(self) -> str:
        return f"{self.outcome}_intake"

    @property
    def change(self) -> str:
        return f"{self.outcome}_change"

    def adjustment(self, terms: Sequence[str]) -> list[str]:
        """Outcome-model terms: ``terms`` plus therapist fixed effects when asked for."""
        return [*terms, f"C({self.cluster})"] if self.therapist_effects == "fixed" else [*terms]


def _fit_weights(data: pd.DataFrame, long: pd.DataFrame, spec: _Spec):
    """Propensity and dropout models: ``(IPTWResult, completion weights, data with _t, _w)``."""
    from outcomes.models.missing import completion_weights_from_hazard_data

    ps = iptw(data, spec.treatment, [spec.baseline, *spec.confounders], estimand=spec.estimand,
              treated=spec.arms[0])
    wc = completion_weights_from_hazard_data(
        long, data, spec.treatment, [*spec.confounders, *spec.dropout_covariates])
    return ps, wc, data.assign(_t=ps.treated, _w=ps.weights * wc)


def _effect_rows(data: pd.DataFrame, wc: pd.Series, spec: _Spec) -> pd.DataFrame:
    change, cluster = spec.change, spec.cluster
    n_clusters = data.loc[data["_w"].notna() & data[change].notna(), cluster].nunique()
    adjust = spec.adjustment([spec.baseline, *spec.confounders])
    rows = [
        _clustered_fit(data[data[change].notna() & wc.notna()], change, [], None, cluster,
                       n_clusters).assign(method="naive"),
        _clustered_fit(data, change, adjust, "_w", cluster, n_clusters).assign(method="primary"),
    ]
    return pd.concat(rows, ignore_index=True).assign(term=f"{spec.arms[0]} vs {spec.arms[1]}")


def _primary_frame(episodes, treatment, arms, outcome, confounders, cluster) -> pd.DataFrame:
    need = [treatment, "status", cluster, f"{outcome}_intake", f"{outcome}_change"]
    missing = [c for c in need if c not in episodes.columns]
    if missing:
        raise ModelError(f"episode table lacks column(s) {', '.join(map(repr, missing))}")
    data = episodes[episodes[treatment].isin(arms) & episodes["status"].ne("open")].copy()
    data[treatment] = data[treatment].astype(object)
    if "symptom_duration_weeks" in data:
        data["log_symptom_duration"] = np.log(data["symptom_duration_weeks"].astype(float)
                                              .clip(lower=1))
    return model_frame(data, [treatment, f"{outcome}_intake", cluster], confounders)


def _design(data, change, covariates, weights, cluster):
    """``(X, y, w, cluster labels, column of _t)`` of the (W)LS of ``change`` on ``_t``."""
    import statsmodels.formula.api as smf

    cols = [change, "_t", cluster, *([weights] if weights else [])]
    fit_df = model_frame(data, cols, covariates)
    formula = " + ".join([f"Q('{change}') ~ _t", *covariates])
    model = (smf.wls(formula, fit_df, weights=fit_df[weights]) if weights
             else smf.ols(formula, fit_df))
    w = fit_df[weights].to_numpy(float) if weights else np.ones(len(fit_df))
    return model.exog, model.endog, w, fit_df[cluster].to_numpy(), model.exog_names.index("_t")


def _clustered_fit(data, change, covariates, weights, cluster, n_clusters) -> pd.DataFrame:
    """(W)LS of ``change`` on ``_t`` (+ covariates); CV3 jackknife SE by cluster, t on G - 1 df."""
    x, y, w, labels, col = _design(data, change, covariates, weights, cluster)
    est, se = _cv3(x, y, w, pd.factorize(labels)[0], col)
    return tidy(["_t"], [est], [se], n=len(y), df=n_clusters - 1)


def _wls_coef(x: np.ndarray, y: np.ndarray, w: np.ndarray, col: int) -> float:
    if np.ptp(x[:, col]) == 0:  # else lstsq returns another column's or a min-norm value
        raise ModelError("the treatment takes one value in a leave-one-cluster-out fit: each arm "
                         "needs patients of at least two therapists for the CV3 standard error")
    keep = np.abs(x).sum(axis=0) > 0  # a left-out cluster's fixed-effect column is all zero
    sw = np.sqrt(w)
    beta, *_ = np.linalg.lstsq(x[:, keep] * sw[:, None], y * sw, rcond=None)
    return float(beta[int(keep[:col].sum())])


def _cv3(x, y, w, groups, col) -> tuple[float, float]:
    """Coefficient ``col`` and its CV3 (leave-one-cluster-out jackknife) standard error.

    ``V = (G - 1) / G * sum_g (b_(g) - b)^2`` (MacKinnon, Nielsen & Webb 2023, "Cluster-robust
    inference: a guide to empirical practice", J Econometrics
    232:272): reliable with few clusters, where CR1 is too small. Weights are held fixed.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    full = _wls_coef(x, y, w, col)
    labels = np.unique(groups)
    if len(labels) < 2:
        raise ModelError("a cluster-robust standard error needs at least two clusters")
    loo = np.array([_wls_coef(x[groups != g], y[groups != g], w[groups != g], col)
                    for g in labels])
    g = len(labels)
    return full, float(np.sqrt((g - 1) / g * np.sum((loo - full) ** 2)))
