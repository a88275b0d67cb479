"""Sensitivity to unmeasured confounding: E-values and a negative-control outcome.

The E-value (:mod:`outcomes.models.evalues`) says how strong an unmeasured confounder would have
to be to explain the estimate away; the negative control runs the same estimator on an outcome
the treatment cannot have changed, so a clearly non-zero "effect" there reveals bias the weights
did not remove.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from outcomes.errors import ModelError
from outcomes.models._results import renamed_keywords
from outcomes.models.evalues import EValueResult, evalue, evalue_sentence
from outcomes.models.primary import primary_analysis
from outcomes.models.weighting import PRIMARY_CONFOUNDERS

__all__ = ["evalue", "EValueResult", "evalue_sentence", "negative_control"]


@renamed_keywords(confounders="covariates")
def negative_control(
    episodes: pd.DataFrame,
    visits: pd.DataFrame,
    outcome: str = "nprs",
    *,
    control: str | None = None,
    covariates: Sequence[str] = PRIMARY_CONFOUNDERS,
    **kwargs,
) -> pd.DataFrame:
    """The primary estimator's "effect" on an outcome the treatment cannot have changed.

    Parameters
    ----------
    episodes, visits, outcome
        As :func:`outcomes.models.primary_analysis`; ``outcome`` fixes the propensity,
        dropout and outcome models exactly as in the primary analysis.
    control : str, optional
        Episode column measured before treatment and not adjusted for: default the intake
        score of another instrument (``lefs_intake``; ``nprs_intake`` when ``outcome`` is
        ``lefs``). Its true effect is 0.
    covariates : sequence of str
        The primary analysis's confounders (the control must not be one of them).
    **kwargs
        Any keyword of :func:`~outcomes.models.primary_analysis` (``se="bootstrap"``,
        ``modifier``, ``therapist_effects`` ...).

    Returns
    -------
    DataFrame
        The ``effects`` rows (``naive``, ``primary``) of the same estimator with ``control`` as
        the outcome, plus ``outcome`` (the control's name) and ``expected`` (0).

    Notes
    -----
    The control replaces ``<outcome>_change`` on the same episodes (those with an observed
    change; episodes missing the control drop out, see ``n``), so the rows, propensity weights, completion weights, adjustment set, therapist
    effects and standard error are the primary analysis's. An interval far from 0 shows the
    weighted arms still differ at intake in something the measured confounders did not
    capture (e.g. severity seen in function but not in pain): residual confounding by
    whatever drives both the control and the choice of care. It cannot detect confounders
    unrelated to the control, bias arising after baseline (dropout not at random given the
    visit history, co-interventions), or an outcome model wrong for the change score; a null
    control does not prove the absence of confounding (Lipsitch, Tchetgen Tchetgen & Cohen
    2010, Epidemiology 21:383). The synthetic exports have no true post-treatment
    negative-control outcome, hence this pre-treatment (placebo) quantity.
    """
    change = f"{outcome}_change"
    control = control or ("nprs_intake" if outcome == "lefs" else "lefs_intake")
    if control == f"{outcome}_intake" or control in covariates:
        raise ModelError(f"control={control!r} is adjusted for in the primary models, so its "
                         "estimate is 0 by construction; choose a baseline column they omit")
    for col in (control, change):
        if col not in episodes.columns:
            raise ModelError(f"control: the episode table lacks column {col!r}")
    placebo = episodes.assign(**{change: episodes[control].astype(float)
                                 .where(episodes[change].notna())})
    res = primary_analysis(placebo, visits, outcome, covariates=covariates, **kwargs)
    return res.effects.assign(outcome=control, expected=0.0)
