"""This quarter at a glance: the few headline figures a clinic director reads first.

Each figure is shown next to last quarter's value; an arrow marks a change only when it is beyond
chance (:data:`CHANGE_RULE`), and one line per item needs action: a therapist outside the
funnel's 99.8 % limits, a run-chart signal ending this quarter, a jump in the share of episodes
ended without a discharge score. This quarter's figures are read from the very tables the report
publishes (the ``All episodes`` rows of *By arm*, *By diagnosis* and the missing-discharge table),
so the box can never show a number those tables withhold.

Re-exported by :mod:`outcomes.reports`; DataFrame in, new DataFrame out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from outcomes.reports.data import ended_in, is_small, previous_quarters
from outcomes.reports.quarterly import (
    instrument_row,
    missing_discharge,
    outcome_summary,
    suppress_summary,
    therapist_comparison,
    wilson_ci,
)

__all__ = [
    "CHANGE_RULE", "diff_means_ci", "diff_proportions_ci", "count_change_p", "glance_figures",
    "glance_actions", "therapist_glance_figures", "therapist_glance_actions",
]

#: How the box judges "beyond chance"; printed under the box.
CHANGE_RULE = (
    "An arrow marks a change beyond chance: the 95% confidence interval of the difference "
    "between the two quarters excludes 0 (Welch t interval for a mean change, Newcombe's "
    "score interval for a share) or, for the number of episodes, an exact test of an even "
    "split between the quarters gives p < 0.05. Without an arrow the two quarters are not "
    "shown to differ.")

#: Funnel flags that call for action (the 99.8 % limits, about 3 standard errors).
FUNNEL_ACTION = {"high_99.8": "above", "low_99.8": "below"}


# --------------------------------------------------------------------------------------------
# Beyond chance
# --------------------------------------------------------------------------------------------
def diff_means_ci(a: pd.Series, b: pd.Series, level: float = 0.95
                  ) -> tuple[float, float, float]:
    """``mean(a) - mean(b)`` with its Welch t interval (NaN when a side has fewer than 2 values).

    Notes
    -----
    ``se = sqrt(s_a^2/n_a + s_b^2/n_b)``, Welch-Satterthwaite degrees of freedom; checked
    against ``scipy.stats.ttest_ind(equal_var=False).confidence_interval``.
    """
    from scipy import stats

    x, y = (pd.to_numeric(v, errors="coerce").dropna().to_numpy(float) for v in (a, b))
    if len(x) < 2 or len(y) < 2:
        return float("nan"), float("nan"), float("nan")
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    d, se = float(x.mean() - y.mean()), float(np.sqrt(va + vb))
    if se == 0:
        return d, d, d
    df = (va + vb) ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1))
    half = float(stats.t.ppf((1 + level) / 2, df)) * se
    return d, d - half, d + half


def diff_proportions_ci(k1: int, n1: int, k2: int, n2: int, level: float = 0.95
                        ) -> tuple[float, float, float]:
    """``k1/n1 - k2/n2`` with Newcombe's hybrid score interval (NaN when a side is empty).

    Notes
    -----
    Newcombe (1998) method 10, from the Wilson intervals ``(l_i, u_i)`` of each share:
    ``d - sqrt((p1 - l1)^2 + (u2 - p2)^2)`` to ``d + sqrt((u1 - p1)^2 + (p2 - l2)^2)``;
    checked against ``statsmodels.stats.proportion.confint_proportions_2indep(method=
    "newcomb")``.
    """
    if n1 == 0 or n2 == 0:
        return float("nan"), float("nan"), float("nan")
    p1, p2 = k1 / n1, k2 / n2
    (l1, u1), (l2, u2) = wilson_ci(k1, n1, level), wilson_ci(k2, n2, level)
    d = p1 - p2
    return (d, d - float(np.hypot(p1 - l1, u2 - p2)), d + float(np.hypot(u1 - p1, p2 - l2)))


def count_change_p(this: int, last: int) -> float:
    """Two-sided exact p of ``this`` vs ``last`` episodes under an even split (conditional
    binomial test of two Poisson counts over equal periods); 1 when both are 0."""
    from scipy import stats

    if this + last == 0:
        return 1.0
    return float(stats.binomtest(int(this), int(this + last), 0.5).pvalue)


# --------------------------------------------------------------------------------------------
# The figures
# --------------------------------------------------------------------------------------------
def _markers(ended: pd.DataFrame, suppress: bool) -> dict[str, str | None]:
    """What the report shows instead of each figure of one quarter (``<11``, ``*`` or a band),
    None where it shows the number: the ``all`` cells of the suppressed *By arm* and *By
    diagnosis* summaries (hidden in either is hidden) and of the missing-discharge table."""
    from outcomes.privacy import is_suppressed

    keys = ("nprs_change", "lefs_change", "nprs_pct_mcid")
    out: dict[str, str | None] = dict.fromkeys((*keys, "missing"))
    if not suppress:
        return out
    for by in ("arm", "condition"):
        row = suppress_summary(outcome_summary(ended, by)).loc["all"]
        for key in keys:
            if is_suppressed(row[key]) and out[key] is None:
                out[key] = row[key]
    cell = missing_discharge(ended, "arm").iloc[-1]["% without discharge score (95% CI)"]
    out["missing"] = cell if is_suppressed(cell) else None
    return out


def _row(name: str, values: tuple[float, float], markers: tuple[Any, Any],
         interval: tuple[float, float, float], better_when: str, unit: str) -> dict[str, Any]:
    return {"measure": name, "this": values[0], "last": values[1],
            "this_text": markers[0] if markers[0] is not None else values[0],
            "last_text": markers[1] if markers[1] is not None else values[1],
            "difference": interval[0], "ci_low": interval[1], "ci_high": interval[2],
            "better_when": better_when, "unit": unit}


def _mean_row(code: str, quarters: tuple[pd.DataFrame, pd.DataFrame],
              marks: list[dict[str, Any]]) -> dict[str, Any]:
    from outcomes.instruments import INSTRUMENTS

    inst = INSTRUMENTS[code]
    col = f"{code}_change"
    values = tuple(float(instrument_row(q, code)[col]) for q in quarters)  # as the tables
    hint = "positive = better" if inst.higher_is_better else "negative = better"
    return _row(f"{inst.name}: mean change ({hint})", values, (marks[0][col], marks[1][col]),
                diff_means_ci(quarters[0][col], quarters[1][col]),
                "higher" if inst.higher_is_better else "lower", "points")


def _share_row(name: str, key: str, counts: list[tuple[int, int]],
               marks: list[dict[str, Any]], better_when: str) -> dict[str, Any]:
    (k1, n1), (k2, n2) = counts
    values = tuple(100 * k / n if n else float("nan") for k, n in counts)
    d, lo, hi = diff_proportions_ci(k1, n1, k2, n2)
    return _row(name, values, (marks[0][key], marks[1][key]), (100 * d, 100 * lo, 100 * hi),
                better_when, "% points")


def _count_row(this: int, last: int, suppress: bool) -> dict[str, Any]:
    marks = tuple("<11" if suppress and is_small(n) else None for n in (this, last))
    row = _row("episodes ended", (this, last), marks, (this - last, float("nan"),
                                                       float("nan")), "neither", "episodes")
    return {**row, "p": count_change_p(this, last)}


def _responders(ended: pd.DataFrame) -> tuple[int, int]:
    row = instrument_row(ended, "nprs")  # the same count the tables' "% reaching MCID" rests on
    return row["nprs_responders"], row["nprs_eligible"]


def _missing(ended: pd.DataFrame) -> tuple[int, int]:
    return int((ended["status"] == "no_discharge_score").sum()), len(ended)


def glance_figures(episodes: pd.DataFrame, quarter: str, suppress: bool = True) -> pd.DataFrame:
    """Headline figures of ``quarter`` against the quarter before, with the change judged.

    Parameters
    ----------
    episodes : DataFrame
        Episodes of the clinic (or of one therapist, with ``suppress=False``).
    quarter : str
        Reporting quarter; last quarter is the one before it.
    suppress : bool, default True
        Read this and last quarter's values through the report's suppression (the ``All
        episodes`` cells of *By arm*, *By diagnosis* and the missing-discharge table). A
        therapist's own figures are shown unsuppressed, as in the rest of their report.

    Returns
    -------
    DataFrame
        One row per figure (episodes ended, NPRS and LEFS mean change, % reaching the NPRS
        MCID, % ended without a discharge score): ``measure, this, last`` (raw), ``this_text,
        last_text`` (what the report shows: a number, ``<11``, ``*`` or a band), ``difference,
        ci_low, ci_high`` (this minus last; ``p`` for the count), ``better_when``, ``unit``,
        ``beyond_chance`` (the interval excludes 0, or p < 0.05) and ``direction`` (``better``,
        ``worse``, ``up``, ``down`` or empty). A change is judged only where both quarters are
        shown as numbers.
    """
    last_q = previous_quarters(quarter, 2)[0]
    quarters = (ended_in(episodes, quarter), ended_in(episodes, last_q))
    marks = [_markers(q, suppress) for q in quarters]
    rows = [_count_row(len(quarters[0]), len(quarters[1]), suppress),
            _mean_row("nprs", quarters, marks), _mean_row("lefs", quarters, marks),
            _share_row("% reaching the NPRS MCID", "nprs_pct_mcid",
                       [_responders(q) for q in quarters], marks, "higher"),
            _share_row("% ended without a discharge score", "missing",
                       [_missing(q) for q in quarters], marks, "lower")]
    return _judge(pd.DataFrame(rows))


def _judge(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    shown = out["this_text"].map(_is_number) & out["last_text"].map(_is_number)
    by_ci = (out["ci_low"] > 0) | (out["ci_high"] < 0)
    by_p = out["p"] < 0.05
    out["beyond_chance"] = shown & (by_ci | by_p)
    up = out["difference"] > 0
    good = np.where(out["better_when"] == "higher", up, ~up)
    direction = np.where(out["better_when"] == "neither", np.where(up, "up", "down"),
                         np.where(good, "better", "worse"))
    out["direction"] = np.where(out["beyond_chance"], direction, "")
    for col in ("difference", "ci_low", "ci_high"):
        out[col] = out[col].where(shown)
    return out


def _is_number(value: Any) -> bool:
    return not isinstance(value, str) and not pd.isna(value)


# --------------------------------------------------------------------------------------------
# Items needing action
# --------------------------------------------------------------------------------------------
def glance_actions(episodes: pd.DataFrame, quarter: str, figures: pd.DataFrame, *,
                   therapists: pd.DataFrame | None = None,
                   trend: pd.DataFrame | None = None) -> list[str]:
    """One sentence per item needing action this quarter, or one saying there is none.

    Items: a therapist whose mean NPRS change over the last four quarters lies outside the
    99.8 % funnel limits (only therapists the report publishes); a run-chart signal (shift of
    6 or trend of 5, :func:`outcomes.plots.detect_run_signals`) on the mean NPRS change that
    includes this quarter; the share ended without a discharge score worse than last quarter
    beyond chance (``figures`` from :func:`glance_figures`).

    ``therapists`` (:func:`therapist_comparison` of the last four quarters' NPRS change) and
    ``trend`` (:func:`quarter_trend` over 8 quarters) are computed here unless the report
    already has them (the quarterly notebook passes its own, so each model is fitted once).
    """
    from outcomes.reports.quarterly import quarter_trend

    if therapists is None:
        window = ended_in(episodes, previous_quarters(quarter, 4))
        therapists = therapist_comparison(window, "nprs_change")
    if trend is None:
        trend = quarter_trend(episodes, quarter, 8)
    items = _funnel_items(therapists, you=None)
    items += _run_items(trend["change"], trend["quarter"], quarter, "the clinic's mean NPRS "
                        "change", "see Trend")
    items += _missing_items(figures, "see Data quality")
    return items or ["Nothing needs action this quarter: no therapist outside the 99.8% "
                     "funnel limits, no run-chart signal, no jump in missing discharge scores."]


def _funnel_items(estimates: pd.DataFrame, you: str | None) -> list[str]:
    """One line per side of the funnel (so a long list cannot push the box off page one)."""
    out = []
    for flag, side in FUNNEL_ACTION.items():
        ids = [str(t) for t in estimates.loc[estimates["funnel_flag"].astype(str) == flag,
                                             "therapist_id"]]
        if you is not None:
            ids = [t for t in ids if t == you]
        if not ids:
            continue
        verdict = "less pain relief" if side == "above" else "more pain relief"
        who = ("Your mean NPRS change is" if you is not None else
               f"Therapist{'s' if len(ids) > 1 else ''} {', '.join(ids)}: mean NPRS change")
        out.append(f"{who} {side} the 99.8% funnel limits over the last four quarters "
                   f"({verdict} than the clinic, beyond chance): worth a conversation "
                   f"({'see You and the rest of your clinic' if you else 'see Therapists'}).")
    return out


def _run_items(values: pd.Series, quarters: pd.Series, quarter: str, what: str,
               where: str) -> list[str]:
    from outcomes.plots import detect_run_signals

    if values.notna().sum() < 5:
        return []
    signals = detect_run_signals(values.to_numpy(dtype=float))
    last = signals.index[quarters.to_numpy() == quarter]
    if not len(last):
        return []
    row = signals.loc[last[0]]
    kinds = [k for k in ("shift", "trend") if bool(row[k])]
    if not kinds:
        return []
    return [f"Run chart: {what} shows a {' and a '.join(kinds)} that includes this quarter "
            f"(not a single noisy point; {where})."]


def _missing_items(figures: pd.DataFrame, where: str) -> list[str]:
    row = figures.set_index("measure").loc["% ended without a discharge score"]
    if row["direction"] != "worse":
        return []
    this, last = (f"{v:.0f}%" for v in (row["this_text"], row["last_text"]))  # both shown
    return [f"Data quality: {this} of episodes ended without a discharge score, up from {last} "
            f"last quarter, beyond chance ({where})."]


# --------------------------------------------------------------------------------------------
# The therapist's own box
# --------------------------------------------------------------------------------------------
def therapist_glance_figures(episodes: pd.DataFrame, quarter: str, therapist: str
                             ) -> pd.DataFrame:
    """:func:`glance_figures` of the therapist's own episodes (unsuppressed: their own)."""
    from outcomes.reports.therapist import own_episodes

    return glance_figures(own_episodes(episodes, therapist), quarter, suppress=False)


def therapist_glance_actions(episodes: pd.DataFrame, quarter: str, therapist: str,
                             figures: pd.DataFrame, *,
                             trend: pd.DataFrame | None = None) -> list[str]:
    """The therapist's items needing action: episodes of theirs awaiting a discharge score,
    their own funnel position (against their clinic, last four quarters), a run-chart signal
    in their share reaching the MCID, a jump in their missing discharge scores. ``trend``
    (:func:`therapist_trend` over 8 quarters) is computed here unless the report passes its own.
    """
    from outcomes.reports.therapist import colleagues, own_episodes, therapist_trend

    own = own_episodes(episodes, therapist)
    waiting = ended_in(own, quarter)
    n_missing = int((waiting["status"] == "no_discharge_score").sum())
    items = [f"{n_missing} of your episodes ended this quarter without a discharge score: "
             "see the list below."] if n_missing else []
    clinic = pd.concat([own, colleagues(episodes, therapist)])
    window = ended_in(clinic, previous_quarters(quarter, 4))
    items += _funnel_items(therapist_comparison(window, "nprs_change"), you=therapist)
    if trend is None:
        trend = therapist_trend(episodes, quarter, therapist, 8)
    items += _run_items(trend["you_pct_mcid"], trend["quarter"], quarter,
                        "your % reaching the MCID", "see Your trend")
    items += _missing_items(figures, "see Episodes missing a discharge score")
    return items or ["Nothing needs action this quarter."]
