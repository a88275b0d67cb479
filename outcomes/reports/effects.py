"""The comparative report's answer: headline, effect modification and sensitivity sections.

Every number here comes from :func:`outcomes.models.primary_analysis` and its friends (the
estimator whose coverage ``benchmarks/recovery.py`` measures); these functions only word it,
withhold it (diagnostics gate, cells of 1-10) and lay it out. Re-exported by
:mod:`outcomes.reports`; the comparative notebook calls them as ``rp.<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from outcomes.errors import ReportError
from outcomes.privacy import SUPPRESSED
from outcomes.reports.data import MIN_CELL, is_small

__all__ = [
    "parse_modifiers", "headline_question", "headline", "primary_table",
    "modification_hypothesis", "modification_results", "modification_table", "forest_rows",
    "negative_control_table", "explain_away", "evalue_display", "dose_cohort", "dose_display",
    "dose_table",
]


def parse_modifiers(modifiers: str) -> list[str]:
    """``"failed_conservative_care,prior_pt"`` -> names checked against ``models.MODIFIERS``."""
    from outcomes.models import MODIFIERS

    names = [m.strip() for m in str(modifiers).split(",") if m.strip()]
    unknown = [m for m in names if m not in MODIFIERS]
    if unknown:
        raise ReportError(f"modifiers: {unknown[0]!r} is not a pre-specified modifier; use "
                          f"{', '.join(MODIFIERS)} (comma-separated) or ''")
    return names


def headline_question(outcome: str) -> str:
    """The question the report answers, in a director's words."""
    from outcomes.instruments import INSTRUMENTS

    return (f"Did patients given PRI-style care improve more in {INSTRUMENTS[outcome].name} "
            "than comparable patients given traditional PT?")


def _primary_row(result: Any) -> pd.Series:
    """The ``primary`` row of a :class:`PrimaryResult` (or of its ``.effects`` frame)."""
    effects = result.effects if hasattr(result, "effects") else result
    if "method" in effects.columns:
        effects = effects[effects["method"] == "primary"]
    return effects.iloc[0]


def _points(x: float) -> str:
    return f"{abs(x):.1f} point{'' if round(abs(x), 1) == 1 else 's'}"


def _more_less(x: float) -> str:
    return "more" if x > 0 else "less"


def _interval_words(lo: float, hi: float) -> str:
    """A 95 % interval of the improvement (positive = PRI-style better) in words."""
    if lo > 0 or hi < 0:
        a, b = sorted([abs(lo), abs(hi)])
        return f"95 % CI {a:.1f} to {b:.1f} points {_more_less(hi)}"
    return (f"95 % CI from {_points(lo)} less to {_points(hi)} more: compatible with no "
            "difference")


def headline(result: Any, gate: Any, outcome: str) -> list[str]:
    """The answer in sentences: estimate with interval in points, against the MCID, the gate.

    Parameters
    ----------
    result : PrimaryResult
        :func:`outcomes.models.primary_analysis` on the analysis cohort.
    gate : GateResult
        :func:`outcomes.models.diagnostics_gate` of ``result.iptw``.
    outcome : str
        Instrument code (its name, direction and MCID come from :mod:`outcomes.instruments`).

    Returns
    -------
    list of str
        ``Answer: ...`` (the estimate, or "not interpretable" when the gate failed: then no
        number at all), the MCID comparison, the gate verdict, the estimator and the number
        of episodes (``<11`` for 1-10). No p-value: the interval carries the uncertainty.
    """
    from outcomes.instruments import INSTRUMENTS

    inst = INSTRUMENTS[outcome]
    row = _primary_row(result)
    verdict = (f"Diagnostics gate: {'passed' if gate.interpretable else 'failed'} ("
               f"{gate.label}; covariate balance with standardized differences, equipoise, "
               "effective sample size).")
    n = int(row["n"])
    method = ("therapists resampled (cluster bootstrap, weights refitted)"
              if getattr(result, "se_method", "jackknife") == "bootstrap"
              else "leave-one-therapist-out jackknife")
    how = (f"Estimator: inverse probability of treatment x completion weights, adjusted for the "
           f"baseline confounders with therapist fixed effects; 95 % CI by {method}; "
           f"{SUPPRESSED if is_small(n) else n} episodes with a discharge score analysed.")
    if not gate.interpretable:
        return ["Answer: not interpretable. The two groups of patients could not be made "
                "comparable on these data, so no effect is estimated; this is a result, not a "
                "missing one.", verdict, how]
    sign = 1.0 if inst.higher_is_better else -1.0
    est, lo, hi = (sign * float(row[c]) for c in ("estimate", "ci_low", "ci_high"))
    lo, hi = sorted((lo, hi))
    verb = "reduced" if not inst.higher_is_better else "improved"
    answer = (f"Answer: PRI-style care {verb} {inst.name} by {_points(est)} {_more_less(est)} "
              f"than traditional PT ({_interval_words(lo, hi)}).")
    mcid = (f"The MCID, the smallest change patients notice as important, is {inst.mcid:g} "
            f"points: the estimated difference is {'at least' if abs(est) >= inst.mcid else 'below'}"
            f" it, and the interval reaches {max(abs(lo), abs(hi)):.1f} points.")
    return [answer, mcid, verdict, how]


def primary_table(result: Any) -> pd.DataFrame:
    """``naive`` and ``primary`` rows of ``result.effects`` (tidy; format with ``format_tidy``)."""
    return result.effects.copy()


def modification_hypothesis(modifiers: Sequence[str]) -> list[str]:
    """The pre-specified hypothesis, the modifiers' definitions, and the multiplicity caveat."""
    from outcomes.models import MODIFIERS

    out = ["Pre-specified hypothesis, stated before any result: PRI-style care helps patients "
           "whom earlier care did not help more than it helps other patients, so its effect is "
           "larger in the first stratum of each modifier below. The test is the difference "
           "between the strata (the interaction), not whether one stratum alone is significant."]
    out += [f"{m}: {MODIFIERS[m]}." for m in modifiers]
    if len(modifiers) > 1:
        out.append(f"{len(modifiers)} modifiers are shown: with each one the chance that some "
                   "interaction looks convincing by luck alone grows (about "
                   f"{100 * (1 - 0.95 ** len(modifiers)):.0f} % at 5 % each if none is real). "
                   f"The first ({modifiers[0]}) is the pre-specified one; read the others as "
                   "exploratory.")
    return out


def modification_results(cohort: pd.DataFrame, visits: pd.DataFrame, outcome: str,
                         modifiers: Sequence[str], estimand: str = "ATE") -> dict:
    """:func:`outcomes.models.primary_analysis` with each ``modifier``: name -> PrimaryResult."""
    from outcomes.models import primary_analysis

    return {m: primary_analysis(cohort, visits, outcome, estimand=estimand.upper(), modifier=m)
            for m in modifiers}


def _stratum_counts(result: Any) -> dict[str, tuple[int, int]]:
    """Analysed episodes per arm in each stratum (``_modifier`` 1 = yes), for the cell rule."""
    d = result.data
    used = d[d["_w_modifier"].notna() & d[f"{result.outcome}_change"].notna()]
    out = {}
    for value, word in ((1.0, "yes"), (0.0, "no")):
        s = used[used["_modifier"] == value]
        out[word] = (int((s["_t"] == 1).sum()), int((s["_t"] == 0).sum()))
    return out


def modification_table(results: Mapping[str, Any], gate: Any) -> pd.DataFrame:
    """Stratum effects and their difference per modifier, withheld where they may not be read.

    Parameters
    ----------
    results : mapping
        Modifier -> :class:`PrimaryResult` with ``.modification`` and ``.gates``
        (:func:`modification_results`).
    gate : GateResult
        The overall diagnostics gate: when it fails every row is withheld.

    Returns
    -------
    DataFrame
        Indexed by ``row`` (``"<modifier>: yes"``, ``"<modifier>: no"``, ``"<modifier>:
        difference"``); ``estimate, ci_low, ci_high`` (NaN when withheld), ``p`` (difference
        rows only: the p for interaction, never without its estimate), ``n`` (``<11`` for 1-10, and both strata's when one is),
        ``shown`` ("yes" or the reason it is withheld). A stratum is withheld when either arm
        in it has 1-10 analysed episodes or its own gate fails; the difference when a stratum is.
    """
    rows = []
    for modifier, res in results.items():
        rows += _modifier_rows(modifier, res, gate)
    return pd.DataFrame(rows).set_index("row")


def _modifier_rows(modifier: str, res: Any, gate: Any) -> list[dict]:
    table = res.modification
    counts = _stratum_counts(res)
    small_n = any(is_small(int(n)) for n in table.loc[table["stratum"] != "difference", "n"])
    reasons = {}
    for label, word in _stratum_labels(table):
        g = res.gates.get(label)
        reasons[label] = ("diagnostics gate failed" if not gate.interpretable
                          else "an arm has fewer than 11 episodes" if is_small(*counts[word])
                          else f"stratum gate failed ({g.label})" if g is not None
                          and not g.interpretable else "yes")
    blocked = [r for r in reasons.values() if r != "yes"]
    out = []
    for r in table.itertuples():
        reason = reasons.get(r.stratum, "yes" if not blocked else
                             ("diagnostics gate failed" if not gate.interpretable
                              else "a stratum is withheld"))
        show = reason == "yes"
        word = "difference" if r.stratum == "difference" else r.stratum.rsplit("= ", 1)[-1]
        out.append({"row": f"{modifier}: {word}",
                    "estimate": r.estimate if show else np.nan,
                    "ci_low": r.ci_low if show else np.nan,
                    "ci_high": r.ci_high if show else np.nan,
                    "p": r.p if show and r.stratum == "difference" else np.nan,
                    "n": SUPPRESSED if small_n else int(r.n), "shown": reason})
    return out


def _stratum_labels(table: pd.DataFrame) -> list[tuple[str, str]]:
    labels = [s for s in table["stratum"] if s != "difference"]
    return [(s, "yes" if s.endswith("yes") else "no") for s in labels]


def forest_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The stratum rows of :func:`modification_table` for :func:`outcomes.plots.plot_forest`."""
    strata = table[~table.index.str.endswith(": difference")]
    return strata.reset_index().rename(columns={"row": "label"})[
        ["label", "estimate", "ci_low", "ci_high"]]


def _control_name(control: Any) -> str:
    effects = control.effects if hasattr(control, "effects") else control
    name = str(effects["outcome"].iloc[0]) if "outcome" in effects else "the control outcome"
    return f"{name} (measured before treatment)" if name.endswith("_intake") else name


def negative_control_table(result: Any, control: Any, outcome: str) -> pd.DataFrame:
    """The primary estimate beside the same estimator on a negative-control outcome.

    Parameters
    ----------
    result : PrimaryResult
        The primary analysis.
    control : DataFrame
        :func:`outcomes.models.negative_control` (``naive``/``primary`` rows, ``outcome``).
    outcome : str
        Instrument code of the primary analysis.

    Returns
    -------
    DataFrame
        Indexed by ``analysis``: ``estimate, ci_low, ci_high, n`` for the primary outcome and
        the control (whose true effect is 0), ``n`` as ``<11`` for 1-10.
    """
    rows = {f"primary: {outcome} change": _primary_row(result),
            f"negative control: {_control_name(control)}": _primary_row(control)}
    cols = ["estimate", "ci_low", "ci_high", "n"]
    out = pd.DataFrame({k: v[cols] for k, v in rows.items()}).T.rename_axis("analysis")
    out[cols[:3]] = out[cols[:3]].astype(float).round(2)
    out["n"] = [SUPPRESSED if is_small(int(n)) else int(n) for n in out["n"]]
    return out


def explain_away(evalue: Any, outcome: str, control: Any = None) -> list[str]:
    """Plain-language paragraph: what would have to be true for the result to be explained away.

    Parameters
    ----------
    evalue : EValueResult
        ``PrimaryResult.evalue()`` (:func:`outcomes.evalue`, VanderWeele & Ding 2017).
    outcome : str
        Instrument code of the primary outcome.
    control : PrimaryResult or DataFrame, optional
        The negative-control analysis (:func:`outcomes.models.negative_control`); its verdict
        is one of the sentences.
    """
    from outcomes.instruments import INSTRUMENTS
    from outcomes.models import evalue_sentence

    name = INSTRUMENTS[outcome].name if outcome in INSTRUMENTS else outcome
    out = [evalue_sentence(evalue, outcome=f"the change in {name}")]
    if control is not None:
        out.append(_control_sentence(_primary_row(control), _control_name(control)))
    out.append("For the result to be explained away, patients referred to PRI-style care would "
               "have to differ from the others in something not recorded here (motivation, "
               "expectations, activity) that also changes how much they improve, by at least "
               "that strength; the recorded confounders (prior care, chronicity, age, intake "
               "score, therapist) are already accounted for.")
    return out


def _control_sentence(row: pd.Series, control_outcome: str) -> str:
    lo, hi, est = float(row["ci_low"]), float(row["ci_high"]), float(row["estimate"])
    head = (f"The same analysis on {control_outcome}, which PRI-style care should not change, "
            f"gives {est:.2f} (95 % CI {lo:.2f} to {hi:.2f}): ")
    if lo <= 0 <= hi:
        return head + "compatible with no effect, so it shows no sign of bias left after weighting."
    return head + "not zero, so some bias survives the weighting and the primary estimate may share it."


def evalue_display(evalue: Any) -> pd.DataFrame:
    """E-values for reading: the estimate and the limit nearer the null, on the RR scale.

    Returns
    -------
    DataFrame
        Indexed by ``quantity`` (``point``, and ``ci_low`` or ``ci_high``: the limit nearer no
        effect, whose E-value is 1 when the interval includes no effect); ``risk ratio``
        (``exp(0.91 d)``) and ``E-value``, two decimals.
    """
    table = evalue.table.dropna(subset=["evalue"])
    out = table.set_index("quantity")[["rr", "evalue"]].round(2)
    return out.rename(columns={"rr": "risk ratio", "evalue": "E-value"})


def dose_cohort(episodes: pd.DataFrame, condition: str, period: str) -> pd.DataFrame:
    """Episodes of the condition and period in every arm, ``mixed`` included (dose table)."""
    from outcomes.reports.comparative import _cohort_steps

    return _cohort_steps(episodes, condition, period, "nprs")[2][1]


def dose_display(table: pd.DataFrame, cohort: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`outcomes.models.dose_response` for reading, under the cell-size rule.

    Parameters
    ----------
    table : DataFrame
        ``band, estimate, ci_low, ci_high, n, n_episodes, mean_pri_visits`` per band.
    cohort : DataFrame, optional
        The :func:`dose_cohort` the table was computed from: its finished episodes (published
        in the cohort flow) are the bands' total, used for complementary suppression.

    Returns
    -------
    DataFrame
        Indexed by ``band``; a band with 1-10 episodes (or 1-10 with a change score) shows
        ``<11`` and no mean; when 1-10 episodes of a band lack a change score (``n_episodes -
        n``), its ``n`` is hidden.
    """
    from outcomes.privacy import suppress_small_cells

    cols = ["band", "estimate", "ci_low", "ci_high", "n", "n_episodes", "mean_pri_visits"]
    t = table[cols].set_index("band").round({"estimate": 2, "ci_low": 2, "ci_high": 2,
                                             "mean_pri_visits": 1})
    total = None
    if cohort is not None:
        total = "all finished episodes"
        t.loc[total, "n_episodes"] = int((cohort["status"] != "open").sum())
    derived = {"n": ["estimate", "ci_low", "ci_high"],
               "n_episodes": ["estimate", "ci_low", "ci_high", "mean_pri_visits"]}
    out = suppress_small_cells(t, ["n", "n_episodes"], derived=derived, threshold=MIN_CELL,
                               total_row=total)
    gap = (t["n_episodes"] - t["n"]).fillna(0)
    out.loc[gap.between(1, MIN_CELL - 1).to_numpy(), "n"] = SUPPRESSED
    for col in ("n", "n_episodes"):  # counts read as counts (the total row made them float)
        out[col] = [int(v) if isinstance(v, float) and np.isfinite(v) else v for v in out[col]]
    return out


def dose_table(database: str, episodes: pd.DataFrame, condition: str, period: str,
               outcome: str) -> pd.DataFrame:
    """The descriptive dose table of the report: :func:`outcomes.models.dose_response` on the
    :func:`dose_cohort`, PRI-style visits counted from the store's mapped techniques, shown
    through :func:`dose_display`."""
    from outcomes.models import dose_response
    from outcomes.reports.data import load_report_data
    from outcomes.store import load_techniques

    cohort = dose_cohort(episodes, condition, period)
    table = dose_response(cohort, load_report_data(database)["visits"], outcome,
                          techniques=load_techniques(database))
    return dose_display(table, cohort)
