"""The primary comparison: doubly robust, dropout-corrected IPTW with therapist effects.

:func:`primary_analysis` is what the comparative report and the recovery benchmark run: a
propensity model (:func:`outcomes.models.weighting.iptw`), a visit-level dropout model
(:mod:`outcomes.models.missing`), a weighted outcome regression with therapist fixed effects,
and a standard error that respects the few therapists of a clinic (jackknife or bootstrap over
therapists). Effect modification, sensitivity and dose analyses build on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from outcomes.errors import ModelError
from outcomes.models._results import pooled_sd, tidy
from outcomes.models.regression import model_frame
from outcomes.models.weighting import PRIMARY_CONFOUNDERS, IPTWResult, iptw

__all__ = ["primary_analysis", "PrimaryResult"]


@dataclass
class PrimaryResult:
    """Result of :func:`primary_analysis`.

    Attributes
    ----------
    effects : DataFrame
        Tidy rows with a ``method`` column: ``naive`` (completers, unadjusted difference in
        change) and ``primary`` (the adjusted, weighted analysis).
    iptw : IPTWResult
        Propensity model, weights and balance (feed it to ``diagnostics_gate``).
    completion_weights : Series
        Inverse probability of completion per episode (NaN for non-completers).
    data : DataFrame
        The analysed episodes (two arms, not open), with ``log_symptom_duration``, ``_t`` (1 =
        ``arms[0]``), ``_w`` (propensity x completion weight) and, with a modifier,
        ``_modifier`` (1/0/NaN) and ``_w_modifier`` (the stratum's weight).
    modification : DataFrame or None
        With ``modifier=``: ``term, estimate, se, ci_low, ci_high, p, n, stratum``, one row per
        stratum (``"<modifier> = yes"``, ``"<modifier> = no"``) and ``stratum="difference"``
        (yes minus no; its ``p`` is the p for interaction). See
        :func:`outcomes.models.modification.effect_modification`.
    gates : dict
        Stratum -> :class:`~outcomes.models.diagnostics.GateResult` of the stratum's own
        propensity model (empty without a modifier).
    se_method : str
        ``"jackknife"`` (leave-one-therapist-out, CV3) or ``"bootstrap"`` (therapists
        resampled, whole pipeline refitted).
    bootstrap : DataFrame or None
        ``se="bootstrap"``: one row per successful replicate, one column per estimate
        (``naive``, ``primary`` and, with a modifier, each stratum and ``difference``).
    """

    effects: pd.DataFrame
    iptw: IPTWResult
    completion_weights: pd.Series
    data: pd.DataFrame = field(repr=False)
    modification: pd.DataFrame | None = None
    gates: dict = field(default_factory=dict, repr=False)
    se_method: str = "jackknife"
    bootstrap: pd.DataFrame | None = field(default=None, repr=False)
    outcome: str = "nprs"

    def __repr__(self) -> str:
        """The effect table and the diagnostics verdict: what a reader looks at first."""
        from outcomes.models.diagnostics import diagnostics_gate

        cols = ["method", "term", "estimate", "se", "ci_low", "ci_high", "p", "n"]
        table = self.effects[cols].to_string(index=False)
        text = f"{table}\ndiagnostics: {diagnostics_gate(self.iptw).label}"
        if self.modification is not None:
            cols = ["stratum", "estimate", "se", "ci_low", "ci_high", "p", "n"]
            text += "\n\n" + self.modification[cols].to_string(index=False)
        return text

    def evalue(self, sd: float | None = None):
        """E-value of the primary estimate and its interval (:func:`outcomes.evalue`).

        ``sd`` defaults to the pooled within-arm SD of the change among the analysed completers
        (``sqrt((s1^2 + s0^2) / 2)``), so ``d = estimate / sd`` as VanderWeele & Ding (2017).
        """
        from outcomes.models.sensitivity import evalue

        row = self.effects.set_index("method").loc["primary"]
        if sd is None:
            used = self.data[self.data["_w"].notna() & self.data[f"{self.outcome}_change"]
                             .notna()]
            y, t = used[f"{self.outcome}_change"], used["_t"]
            sd = pooled_sd(y[t == 1], y[t == 0])
        return evalue(row["estimate"], row["ci_low"], row["ci_high"], sd=sd, measure="MD")


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


def primary_analysis(
    episodes: pd.DataFrame,
    visits: pd.DataFrame,
    outcome: str = "nprs",
    *,
    treatment: str = "arm",
    arms: tuple[str, str] = ("pri", "traditional"),
    confounders: Sequence[str] = PRIMARY_CONFOUNDERS,
    dropout_covariates: Sequence[str] = ("C(payer)",),
    dropout_score: str = "nprs",
    cluster: str = "therapist_id",
    therapist_effects: str = "fixed",
    estimand: str = "ATE",
    modifier: str | None = None,
    se: str = "jackknife",
    n_boot: int = 200,
    seed: int = 2026,
    progress: bool = True,
) -> PrimaryResult:
    """The toolkit's primary comparison of two arms on the change in an outcome.

    Parameters
    ----------
    episodes : DataFrame
        Output of :func:`outcomes.episodes.build_episodes` (open episodes are dropped here).
    visits : DataFrame
        The clean visit table the episodes were built from (for the dropout model).
    outcome : str
        Instrument code; the analysis is of ``<outcome>_change`` adjusted for
        ``<outcome>_intake``.
    treatment, arms : str, (str, str)
        Arm column and the (treated, comparator) values compared; other arms (``mixed``) are
        excluded.
    confounders : sequence of str
        Baseline terms in the propensity, dropout and outcome models.
    dropout_covariates : sequence of str
        Extra terms of the dropout model only (payer: self-pay patients stop early).
    dropout_score : str
        Instrument whose value at each visit drives dropout (pain).
    cluster : str
        Therapist column: fixed effects in the outcome model and the resampling unit of both
        standard errors (therapists treat many patients, mostly in one style).
    therapist_effects : {"fixed", "cluster"}
        ``"fixed"``: therapist fixed effects in the outcome regression (default);
        ``"cluster"``: no fixed effects, only the clustered standard error.
    estimand : {"ATE", "ATT"}
        Weights of the propensity part.
    modifier : str, optional
        Effect modification (the clinic's claim: PRI-style care helps those traditional PT
        failed): a name of :data:`outcomes.models.modification.MODIFIERS` (``prior_pt``,
        ``prior_injection``, ``surgery_recommended``, ``chronic``,
        ``failed_conservative_care``) or a 0/1 baseline column. Fills ``.modification`` and
        ``.gates``; see :func:`outcomes.models.modification.effect_modification`.
    se : {"jackknife", "bootstrap"}
        ``"jackknife"``: leave-one-therapist-out (CV3), weights held fixed (default; the
        estimated weights are treated as known). ``"bootstrap"``: therapists resampled with
        replacement ``n_boot`` times, the propensity, dropout and outcome models (and the
        strata's) refitted each time, so the interval carries the uncertainty of the weights.
    n_boot : int
        Bootstrap replicates.
    seed : int
        Seed of the bootstrap draws (``numpy.random.default_rng``).
    progress : bool
        Bootstrap progress bar (tqdm, on stderr; silent when stderr is not a terminal).

    Returns
    -------
    PrimaryResult
        ``.effects`` (``naive`` and ``primary`` rows), ``.iptw`` (for the diagnostics gate),
        ``.modification``, ``.gates``, ``.se_method``.

    Notes
    -----
    Doubly robust and dropout-corrected:

    1. propensity score of ``arms[0]`` vs ``arms[1]`` on the intake score and confounders;
       ATE weights ``1/ps``, ``1/(1-ps)``;
    2. discrete-time dropout model (see :func:`outcomes.models.missing.completion_weights`):
       completers get ``1 / P(completing | arm, baseline, pain at each visit, payer)``;
    3. weighted least squares of the change on the arm, intake score and confounders among
       completers with weights (1) x (2) and therapist fixed effects (``therapist_effects=
       "fixed"``, like centre in a multicentre trial: absorbs therapist quality and any
       therapist-level confounding); the standard error is the leave-one-therapist-out
       jackknife (CV3) with t intervals on (therapists - 1) df, reliable with the few
       therapists of a clinic where the usual CR1 sandwich is too small.

    With ``se="bootstrap"`` the estimate is unchanged; the SE is the SD of the replicate
    estimates and the interval ``estimate +/- t(G - 1) SE`` (percentiles can be taken from
    ``.bootstrap``). Field & Welsh (2007) cluster bootstrap; the benchmark compares it with
    the jackknife.

    Unbiased when either the propensity or the outcome model is right and dropout is missing at
    random given the dropout model's terms. Checked by simulation in ``benchmarks/recovery.py``
    (bias, RMSE and 95 % coverage over seeded synthetic exports with a known effect).
    """
    from outcomes.models.missing import dropout_hazard_data

    if therapist_effects not in ("fixed", "cluster"):
        raise ModelError(f"therapist_effects={therapist_effects!r}: use 'fixed' or 'cluster'")
    if se not in ("jackknife", "bootstrap"):
        raise ModelError(f"se={se!r}: use 'jackknife' or 'bootstrap'")
    spec = _Spec(treatment, tuple(arms), outcome, tuple(confounders), tuple(dropout_covariates),
                 dropout_score, cluster, therapist_effects, estimand)
    data = _primary_frame(episodes, treatment, arms, outcome, confounders, cluster)
    long = dropout_hazard_data(data, visits, dropout_score)
    ps, wc, data = _fit_weights(data, long, spec)
    res = PrimaryResult(effects=_effect_rows(data, wc, spec), iptw=ps, completion_weights=wc,
                        data=data, se_method=se, outcome=outcome)
    if modifier is not None:
        from outcomes.models.modification import effect_modification

        res.modification, res.gates, ind, w = effect_modification(data, wc, spec, modifier)
        res.data = data.assign(_modifier=ind, _w_modifier=w)
    if se == "bootstrap":
        from outcomes.models.bootstrap import apply_bootstrap

        apply_bootstrap(res, long, spec, modifier, n_boot=n_boot, seed=seed, progress=progress)
    return res


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
