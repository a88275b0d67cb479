"""Effect modification: does PRI-style care help the patients traditional PT did not?

The clinic's claim is about a subgroup (prior failed PT, injections, a surgery recommendation,
chronic symptoms), so the primary analysis is repeated within each stratum of a pre-specified
baseline modifier and the strata are compared: the difference between the stratum effects, its
interval and the p for interaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from outcomes.errors import ModelError
from outcomes.models._estimator import _design, _wls_coef
from outcomes.models._results import tidy
from outcomes.models.diagnostics import diagnostics_gate
from outcomes.models.weighting import iptw

__all__ = ["MODIFIERS", "modifier_indicator", "effect_modification"]

#: Pre-specified effect modifiers (name -> definition). All are baseline (intake) facts.
MODIFIERS: dict[str, str] = {
    "prior_pt": "prior physical therapy for this problem (prior_pt = 1)",
    "prior_injection": "prior injection for this problem (prior_injection = 1)",
    "surgery_recommended": "surgery recommended before this episode (surgery_recommended = 1)",
    "chronic": "symptoms for more than 12 weeks at intake (symptom_duration_weeks > 12)",
    "failed_conservative_care": (
        "failed conservative care, the clinic's target group: prior_pt = 1 or "
        "prior_injection = 1 or surgery_recommended = 1 (yes when any is 1, no when all three "
        "are 0, missing otherwise)"),
}

_COMPOSITE = ("prior_pt", "prior_injection", "surgery_recommended")


def modifier_indicator(data: pd.DataFrame, modifier: str) -> pd.Series:
    """1.0 (yes), 0.0 (no) or NaN (unknown) per row for a modifier name or 0/1 column.

    Parameters
    ----------
    data : DataFrame
        Episode rows with the baseline columns.
    modifier : str
        A key of :data:`MODIFIERS` or a column holding only 0/1 (or True/False) values.
    """
    if modifier == "chronic":
        weeks = _column(data, "symptom_duration_weeks", modifier).astype(float)
        return (weeks > 12).astype(float).where(weeks.notna())
    if modifier == "failed_conservative_care":
        x = pd.concat([_column(data, c, modifier).astype(float) for c in _COMPOSITE], axis=1)
        return pd.Series(np.where(x.eq(1).any(axis=1), 1.0,
                                  np.where(x.eq(0).all(axis=1), 0.0, np.nan)), index=data.index)
    col = _column(data, modifier, modifier).astype(float)
    if not set(col.dropna().unique()) <= {0.0, 1.0}:
        raise ModelError(f"modifier={modifier!r} is not binary: give a 0/1 baseline column or "
                         f"one of {', '.join(MODIFIERS)}")
    return col


def _column(data: pd.DataFrame, column: str, modifier: str) -> pd.Series:
    if column not in data.columns:
        raise ModelError(f"modifier={modifier!r} needs column {column!r}, which the episode "
                         f"table lacks; use one of {', '.join(MODIFIERS)} or a 0/1 column")
    return data[column]


@dataclass
class _Stratum:
    """One stratum's weighted design: X, y, weights, therapist labels, column of ``_t``."""

    label: str
    weights: pd.Series
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    groups: np.ndarray
    col: int
    gate: object = None


def _strata(data, wc, spec, indicator) -> list[_Stratum]:
    """Refit the propensity model within each stratum and build its outcome design."""
    out = []
    for value, word in ((1.0, "yes"), (0.0, "no")):
        d = data[indicator.reindex(data.index) == value]
        terms = stratum_terms(d, spec)
        ps = iptw(d, spec.treatment, terms, estimand=spec.estimand, treated=spec.arms[0])
        d = d.assign(_t=ps.treated, _w=ps.weights * wc.reindex(d.index))
        x, y, w, groups, col = _design(d, spec.change, spec.adjustment(terms), "_w", spec.cluster)
        out.append(_Stratum(f"{indicator.name} = {word}", d["_w"], x, y, w, groups, col,
                            diagnostics_gate(ps)))
    return out


def stratum_terms(d: pd.DataFrame, spec) -> list[str]:
    """Intake score and confounders, without those constant in the stratum (the modifier's
    own columns: every ``no`` of the composite has prior_pt = prior_injection = 0)."""
    return [t for t in (spec.baseline, *spec.confounders)
            if not (t in d.columns and d[t].nunique(dropna=True) <= 1)]


def _loo(s: _Stratum) -> dict:
    """Leave-one-therapist-out coefficients of one stratum."""
    return {g: _wls_coef(s.x[s.groups != g], s.y[s.groups != g], s.w[s.groups != g], s.col)
            for g in pd.unique(s.groups)}


def _jackknife(full: float, loo: dict) -> float:
    g = len(loo)
    if g < 2:
        raise ModelError("a stratum has patients of one therapist only: the jackknife SE needs "
                         "at least two; choose another modifier or pool therapists")
    return float(np.sqrt((g - 1) / g * sum((b - full) ** 2 for b in loo.values())))


def effect_modification(data: pd.DataFrame, wc: pd.Series, spec, modifier: str):
    """Stratum effects and their difference, with per-stratum diagnostics gates.

    Called by :func:`outcomes.models.primary_analysis` with ``modifier=``.

    Returns
    -------
    table : DataFrame
        ``term, estimate, se, ci_low, ci_high, p, n, stratum``: rows ``"<modifier> = yes"``,
        ``"<modifier> = no"`` and ``"difference"`` (yes minus no; its ``p`` is the p for
        interaction).
    gates : dict
        Stratum label -> GateResult of the stratum's propensity model.
    indicator, weights : Series
        The modifier (1/0/NaN) and each episode's stratum weight (stratum propensity weight x
        completion weight; NaN outside the analysis), stored by ``primary_analysis`` as
        ``data["_modifier"]`` and ``data["_w_modifier"]``.

    Notes
    -----
    Within each stratum the whole primary model is refitted: a propensity model on the
    confounders that vary in the stratum (so balance, the per-stratum gate, holds where the
    effect is estimated), weights times the completion weights of the primary dropout model,
    and the weighted outcome regression with therapist fixed effects. The difference equals
    the coefficient of ``arm x modifier`` in one fully interacted weighted regression (every
    term, therapist effects included, interacted with the modifier): checked against
    statsmodels WLS and R ``lm(..., weights =)`` in the tests. Its SE is the
    leave-one-therapist-out jackknife of the difference (therapists span both strata, so the
    two stratum estimates are correlated), t on (therapists - 1) df; a stratum's own SE is its
    CV3 jackknife on (its therapists - 1) df. Episodes whose modifier is unknown are in
    neither stratum. Strata of a few dozen patients give wide
    intervals and often fail their gate (effective sample size): report that, not the
    estimate.
    """
    indicator = modifier_indicator(data, modifier).rename(modifier)
    strata = _strata(data, wc, spec, indicator)
    full = [_wls_coef(s.x, s.y, s.w, s.col) for s in strata]
    loo = [_loo(s) for s in strata]
    labels = pd.unique(np.concatenate([s.groups for s in strata]))
    diff = full[0] - full[1]
    loo_diff = {g: loo[0].get(g, full[0]) - loo[1].get(g, full[1]) for g in labels}
    term = f"{spec.arms[0]} vs {spec.arms[1]}"
    rows = [tidy([term], [b], [_jackknife(b, lo)], n=len(s.y), df=len(lo) - 1)
            .assign(stratum=s.label) for s, b, lo in zip(strata, full, loo, strict=True)]
    rows.append(tidy([term], [diff], [_jackknife(diff, loo_diff)],
                     n=sum(len(s.y) for s in strata), df=len(labels) - 1)
                .assign(stratum="difference"))
    cols = ["term", "estimate", "se", "ci_low", "ci_high", "p", "n", "stratum"]
    table = pd.concat(rows, ignore_index=True)[cols]
    table.attrs["df"] = [len(lo) - 1 for lo in loo] + [len(labels) - 1]  # for the bootstrap
    weights = pd.concat([s.weights for s in strata]).reindex(data.index)
    return table, {s.label: s.gate for s in strata}, indicator, weights
