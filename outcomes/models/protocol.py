"""The analysis protocol as a table: the pre-specified choices behind the comparative report."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from outcomes.errors import ModelError

__all__ = ["analysis_protocol"]


def analysis_protocol(
    *,
    outcome: str = "nprs",
    arms: tuple[str, str] = ("pri", "traditional"),
    confounders: Sequence[str] | None = None,
    estimand: str = "ATE",
    therapist_effects: str = "fixed",
    se: str = "jackknife",
    n_boot: int = 200,
    seed: int = 2026,
    modifier: str | None = None,
    baseline_visits: int = 3,
) -> pd.DataFrame:
    """Rows of ``(item, choice)`` stating how the primary comparison is done.

    Parameters
    ----------
    outcome, arms, confounders, estimand, therapist_effects, se, n_boot, seed, modifier
        As passed to :func:`outcomes.models.primary_analysis` (defaults are its defaults).
    baseline_visits : int
        The exposure window of :func:`outcomes.episodes.build_episodes`.

    Returns
    -------
    DataFrame
        ``item, choice``; one row per decision a reviewer asks about (arm rule, mixed
        episodes, population, estimand, models, SE method, diagnostics, modifiers,
        sensitivity analyses, dose).
    """
    from outcomes.models.modification import MODIFIERS
    from outcomes.models.weighting import PRIMARY_CONFOUNDERS

    if modifier is not None and modifier not in MODIFIERS:
        modifier_text = f"{modifier} (a 0/1 baseline column, not one of the pre-specified)"
    else:
        modifier_text = modifier or "none in this run"
    conf = ", ".join(confounders if confounders is not None else PRIMARY_CONFOUNDERS)
    se_text = {"jackknife": "leave-one-therapist-out jackknife (CV3), t on therapists - 1 df; "
                            "weights treated as known",
               "bootstrap": f"cluster bootstrap over therapists, {n_boot} replicates (seed "
                            f"{seed}), propensity and dropout models refitted each time; t on "
                            "therapists - 1 df"}
    if se not in se_text:
        raise ModelError(f"se={se!r}: use 'jackknife' or 'bootstrap'")
    rows = [
        ("question", f"{arms[0]} vs {arms[1]}: change in {outcome} from intake to discharge"),
        ("arm rule", f"techniques of the first {baseline_visits} treatment visits: PRI only = "
                     "pri, traditional only = traditional, both = mixed (later changes of plan "
                     "cannot leak into the exposure)"),
        ("mixed episodes", "excluded from the primary comparison; shown in the dose table"),
        ("population", "finished episodes (open ones excluded); those without a discharge "
                       "score enter through the dropout model"),
        ("estimand", f"{estimand}: "
                     + ("average effect in all patients of both arms" if estimand == "ATE"
                        else "average effect in the patients who received " + arms[0])),
        ("confounders", f"{outcome} intake score, {conf}"),
        ("propensity model", "logistic regression on the confounders; "
                             f"{'1/ps and 1/(1-ps)' if estimand == 'ATE' else '1 and ps/(1-ps)'}"
                             " weights"),
        ("dropout", "visit-level discrete-time model (pain at each visit, arm, confounders, "
                    "payer); completers weighted by 1 / P(completing)"),
        ("outcome model", "weighted least squares of the change on arm, intake score and "
                          "confounders" + (" with therapist fixed effects"
                                           if therapist_effects == "fixed" else "")),
        ("standard error", se_text[se]),
        ("diagnostics gate", "|SMD| <= 0.1 after weighting for every covariate (binary "
                             "standardized as OHDSI CohortMethod), equipoise >= 0.2, effective "
                             "sample size >= 30 per arm; estimates are withheld when it fails"),
        ("effect modifiers (pre-specified)", "; ".join(f"{k}: {v}" for k, v in MODIFIERS.items())),
        ("effect modifier in this run", modifier_text),
        ("sensitivity", "E-value for the estimate and its interval; negative-control "
                        "(pre-treatment) outcome under the same estimator; missing-data "
                        "sensitivity (completers, LOCF, IPW, multiple imputation)"),
        ("dose", "mean change by number of PRI-style visits: descriptive only (the count is "
                 "post-baseline)"),
    ]
    return pd.DataFrame(rows, columns=["item", "choice"])
