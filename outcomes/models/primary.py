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

import pandas as pd

from outcomes.errors import ModelError
from outcomes.models._estimator import _effect_rows, _fit_weights, _primary_frame, _Spec
from outcomes.models._results import pooled_sd
from outcomes.models.bootstrap import apply_bootstrap
from outcomes.models.missing import dropout_hazard_data
from outcomes.models.modification import effect_modification
from outcomes.models.weighting import PRIMARY_CONFOUNDERS, IPTWResult

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
        from outcomes.models.evalue import evalue

        row = self.effects.set_index("method").loc["primary"]
        if sd is None:
            used = self.data[self.data["_w"].notna() & self.data[f"{self.outcome}_change"]
                             .notna()]
            y, t = used[f"{self.outcome}_change"], used["_t"]
            sd = pooled_sd(y[t == 1], y[t == 0])
        return evalue(row["estimate"], row["ci_low"], row["ci_high"], sd=sd, measure="MD")


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
        res.modification, res.gates, ind, w = effect_modification(data, wc, spec, modifier)
        res.data = data.assign(_modifier=ind, _w_modifier=w)
    if se == "bootstrap":
        apply_bootstrap(res, long, spec, modifier, n_boot=n_boot, seed=seed, progress=progress)
    return res


