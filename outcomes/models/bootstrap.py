"""Cluster bootstrap of the whole primary pipeline: therapists resampled, every model refitted.

The jackknife of :func:`outcomes.models.primary_analysis` holds the estimated propensity and
dropout weights fixed, as if they were known. Resampling therapists (the clusters) with
replacement and refitting the propensity, dropout and outcome models (and each stratum's
propensity model) in every replicate carries the uncertainty of the weights into the interval
(Field & Welsh 2007; Austin 2016 for IPTW).

Replicates run on design matrices built once (the models are the primary analysis's, fitted by
Newton-Raphson and least squares in numpy instead of through formulas, about 50 times faster);
``tests/test_bootstrap.py`` checks that a replicate without resampling reproduces every
estimate of the formula pipeline.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from outcomes.errors import ModelError
from outcomes.models._estimator import _wls_coef
from outcomes.models.missing import DROPOUT_TERMS
from outcomes.models.weighting import _treatment_indicator, _weights

__all__ = ["apply_bootstrap", "Designs"]

#: Below this share of successful replicates the bootstrap SE is not reported.
MIN_SUCCESS = 0.9


@dataclass
class Designs:
    """Everything a replicate needs, as arrays aligned with the analysed episodes.

    ``x_ps`` propensity design (intercept first), ``x_cov`` outcome covariates (intercept
    first), ``t`` treated 0/1, ``y`` change, ``cluster`` therapist codes, ``modifier`` 1/0/NaN
    or None; person-visit rows: ``x_drop``, ``stop``, ``drop_episode`` (row of the episode).
    """

    x_ps: np.ndarray
    x_cov: np.ndarray
    t: np.ndarray
    y: np.ndarray
    completed: np.ndarray
    cluster: np.ndarray
    modifier: np.ndarray | None
    x_drop: np.ndarray
    stop: np.ndarray
    drop_episode: np.ndarray
    fixed_effects: bool
    estimand: str

    @classmethod
    def build(cls, data: pd.DataFrame, long: pd.DataFrame, spec, modifier=None) -> Designs:
        """Design matrices of the primary models on the analysed episodes ``data``."""
        import patsy

        mod = None if modifier is None else modifier.reindex(data.index).to_numpy(float)
        data = data.reset_index(drop=True)
        terms = " + ".join(["1", spec.baseline, *spec.confounders])
        x = np.asarray(patsy.dmatrix(terms, data, NA_action="raise"))
        drop_terms = [spec.treatment, *spec.confounders, *spec.dropout_covariates,
                      *DROPOUT_TERMS]
        y_drop, x_drop = patsy.dmatrices("stop ~ " + " + ".join(drop_terms), long,
                                         NA_action="drop", return_type="dataframe")
        episode_row = pd.Series(np.arange(len(data)), index=data["episode_id"])
        t, _ = _treatment_indicator(data, spec.treatment, spec.arms[0])
        return cls(
            x_ps=x, x_cov=x, t=t.to_numpy(float), y=data[spec.change].to_numpy(float),
            completed=data["status"].eq("completed").to_numpy(),
            cluster=pd.factorize(data[spec.cluster])[0],
            modifier=mod,
            x_drop=x_drop.to_numpy(), stop=y_drop.to_numpy().ravel(),
            drop_episode=long.loc[x_drop.index, "episode_id"].map(episode_row).to_numpy(int),
            fixed_effects=spec.therapist_effects == "fixed", estimand=spec.estimand)


def _logit_fitted(x: np.ndarray, y: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """Fitted probabilities of a logistic regression (Newton-Raphson; = the binomial GLM)."""
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        p = expit(x @ beta)
        step = np.linalg.lstsq((x * (p * (1 - p))[:, None]).T @ x, x.T @ (y - p), rcond=None)[0]
        beta += step
        if np.max(np.abs(step)) < tol:
            return expit(x @ beta)
    raise ModelError("a bootstrap propensity or dropout model did not converge (separation)")


def _varying(x: np.ndarray) -> np.ndarray:
    """Intercept plus the columns not constant in ``x`` (a stratum's constant confounders)."""
    keep = np.ptp(x, axis=0) > 0
    keep[0] = True
    return x[:, keep]


def _ate_weights(x, t, estimand) -> np.ndarray:
    return _weights(t, _logit_fitted(_varying(x), t), estimand, False)


def _completion(d: Designs, rows: np.ndarray, n: int) -> np.ndarray:
    """Inverse probability of completion per episode (NaN if not completed)."""
    log_stay = np.log1p(-_logit_fitted(d.x_drop[rows["drop"]], d.stop[rows["drop"]]))
    ep = rows["drop_episode"]
    total = np.bincount(ep, weights=log_stay, minlength=n)
    seen = np.bincount(ep, minlength=n) > 0
    w = np.where(seen, np.exp(-total), np.nan)
    return np.where(d.completed[rows["ep"]], w, np.nan)


def _effect(d: Designs, ep: np.ndarray, clusters: np.ndarray, w: np.ndarray,
            keep: np.ndarray) -> float:
    """Weighted LS coefficient of the arm with covariates and therapist fixed effects."""
    x = [_varying(d.x_cov[ep][keep]), d.t[ep][keep, None]]
    if d.fixed_effects:
        codes = pd.factorize(clusters[keep])[0]
        x.append(np.eye(codes.max() + 1)[codes][:, 1:])
    col = x[0].shape[1]
    return _wls_coef(np.hstack(x), d.y[ep][keep], w[keep], col)


def replicate(d: Designs, rows: dict) -> dict[str, float]:
    """Point estimates of the whole pipeline on the episodes ``rows["ep"]`` (with repeats)."""
    ep, cl = rows["ep"], rows["cluster"]
    n = len(ep)
    wc = _completion(d, rows, n)
    y, t = d.y[ep], d.t[ep]
    done = ~np.isnan(wc) & ~np.isnan(y)
    out = {"naive": _wls_coef(np.column_stack([np.ones(done.sum()), t[done]]), y[done],
                              np.ones(done.sum()), 1)}
    w = _ate_weights(d.x_ps[ep], t, d.estimand) * wc
    out["primary"] = _effect(d, ep, cl, w, done)
    if d.modifier is not None:
        m = d.modifier[ep]
        for value, name in ((1.0, "yes"), (0.0, "no")):
            s = m == value
            ws = np.full(n, np.nan)
            ws[s] = _ate_weights(d.x_ps[ep][s], t[s], d.estimand) * wc[s]
            out[name] = _effect(d, ep, cl, ws, done & s)
        out["difference"] = out["yes"] - out["no"]
    return out


def resample(d: Designs, rng: np.random.Generator) -> dict:
    """Episode and person-visit rows of one cluster-bootstrap sample.

    Therapists are drawn with replacement; the k-th draw is cluster ``k`` (a therapist drawn
    twice is two clusters with two fixed effects) and its episodes are new episodes.
    """
    labels = np.unique(d.cluster)
    draws = rng.choice(labels, size=len(labels), replace=True)
    ep_of = {g: np.flatnonzero(d.cluster == g) for g in labels}
    drop_cluster = d.cluster[d.drop_episode]
    ep, cl, drop, drop_ep = [], [], [], []
    for k, g in enumerate(draws):
        rows = np.flatnonzero(drop_cluster == g)
        new_id = np.full(len(d.cluster), -1)
        new_id[ep_of[g]] = sum(map(len, ep)) + np.arange(len(ep_of[g]))
        ep.append(ep_of[g])
        cl.append(np.full(len(ep_of[g]), k))
        drop.append(rows)
        drop_ep.append(new_id[d.drop_episode[rows]])
    return {"ep": np.concatenate(ep), "cluster": np.concatenate(cl),
            "drop": np.concatenate(drop), "drop_episode": np.concatenate(drop_ep)}


def identity_rows(d: Designs) -> dict:
    """The rows of the original sample (a replicate of these = the full-sample estimates)."""
    return {"ep": np.arange(len(d.y)), "cluster": d.cluster, "drop": np.arange(len(d.stop)),
            "drop_episode": d.drop_episode}


def cluster_bootstrap(d: Designs, *, n_boot: int = 200, seed: int = 2026,
                      progress: bool = True) -> tuple[pd.DataFrame, int]:
    """Replicate estimates over resampled therapists and the number of failed replicates.

    A replicate fails when a resample has one arm only (overall or in a stratum) or a model
    cannot be fitted; it is left out and counted.
    """
    from tqdm import tqdm

    if n_boot < 2:
        raise ModelError(f"n_boot={n_boot}: the bootstrap needs at least 2 replicates (use 200+)")
    rng = np.random.default_rng(seed)
    rows, failed = [], 0
    for _ in tqdm(range(n_boot), desc="bootstrap", file=sys.stderr, leave=False,
                  disable=None if progress else True):
        try:
            rows.append(replicate(d, resample(d, rng)))
        except (ModelError, np.linalg.LinAlgError, ValueError):
            failed += 1
    return pd.DataFrame(rows), failed


def _with_se(table: pd.DataFrame, se: np.ndarray, df: list[int], note: str) -> pd.DataFrame:
    """Replace ``se`` and recompute the t interval and p on the same df."""
    crit = stats.t.ppf(0.975, df)
    est = table["estimate"].to_numpy()
    out = table.assign(se=se, ci_low=est - crit * se, ci_high=est + crit * se,
                       p=2 * stats.t.sf(np.abs(est / se), df))
    if "warnings" in out:
        out["warnings"] = [f"{w}; {note}" if w else note for w in out["warnings"]]
    return out


def apply_bootstrap(res, long: pd.DataFrame, spec, modifier: str | None, *, n_boot: int,
                    seed: int, progress: bool) -> None:
    """Replace the jackknife SEs of ``res`` (a PrimaryResult) by cluster-bootstrap SEs."""
    indicator = None if modifier is None else res.data["_modifier"]
    d = Designs.build(res.data, long, spec, indicator)
    boot, failed = cluster_bootstrap(d, n_boot=n_boot, seed=seed, progress=progress)
    if len(boot) < MIN_SUCCESS * n_boot:
        raise ModelError(f"{failed} of {n_boot} bootstrap replicates failed (a resample without "
                         "both arms or with an unfittable model): use se='jackknife'")
    note = f"cluster bootstrap SE, {len(boot)} replicates" + (
        f" ({failed} failed, left out)" if failed else "")
    used = res.data["_w"].notna() & res.data[spec.change].notna()
    n_clusters = res.data.loc[used, spec.cluster].nunique()
    eff = res.effects
    res.effects = _with_se(eff, boot[eff["method"]].std(ddof=1).to_numpy(),
                           [n_clusters - 1] * len(eff), note)
    if res.modification is not None:
        tab = res.modification
        se = boot[["yes", "no", "difference"]].std(ddof=1).to_numpy()
        res.modification = _with_se(tab, se, tab.attrs["df"], note)
        res.modification.attrs = dict(tab.attrs)
    res.bootstrap = boot.rename(columns={"yes": f"{modifier} = yes", "no": f"{modifier} = no"})
