"""Figures for reports and notebooks.

Every function takes ``ax=None`` (a new figure is made when None), draws on it and returns the
Axes; none calls ``show()``. matplotlib and lifelines are imported inside the functions so that
``import outcomes`` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from outcomes.errors import InputError
from outcomes.instruments import INSTRUMENTS

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "plot_trajectories",
    "plot_change_distribution",
    "plot_km",
    "plot_ps_overlap",
    "plot_love",
    "plot_funnel",
    "plot_run_chart",
    "detect_run_signals",
    "summarize_trajectories",
]


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5))[1]


def _need(data: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    missing = [c for c in columns if c not in data.columns]
    if missing:
        raise InputError(f"{where}: missing column(s) {', '.join(missing)}")


def _colors(n: int) -> list:
    import matplotlib.pyplot as plt

    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    return [cycle[i % len(cycle)] for i in range(n)]


# --------------------------------------------------------------------------- trajectories


def summarize_trajectories(data: pd.DataFrame, outcome: str, *, time: str = "week",
                           group: str = "arm", level: float = 0.95) -> pd.DataFrame:
    """Mean of ``outcome`` per (group, time) with a t-based confidence interval.

    Returns
    -------
    DataFrame
        ``group, time, n, estimate, ci_low, ci_high`` (columns named after ``group`` and
        ``time``). The interval treats the scores at one time point as independent (at most one
        visit per patient per week is typical); a model-based band should come from a mixed
        model's predictions instead.
    """
    _need(data, [outcome, time, group], "summarize_trajectories")
    g = data.dropna(subset=[outcome]).groupby([group, time], observed=True)[outcome]
    out = g.agg(n="count", estimate="mean", sd="std").reset_index()
    crit = stats.t.ppf(0.5 + level / 2, np.maximum(out["n"] - 1, 1))
    half = crit * out["sd"] / np.sqrt(out["n"])
    return out.assign(ci_low=out["estimate"] - half, ci_high=out["estimate"] + half).drop(
        columns="sd")


def plot_trajectories(
    data: pd.DataFrame,
    outcome: str,
    *,
    time: str = "week",
    group: str = "arm",
    predictions: pd.DataFrame | None = None,
    min_n: int = 1,
    ax: Axes | None = None,
) -> Axes:
    """Mean score over time by group, with a band.

    Parameters
    ----------
    data : DataFrame
        Long visit-score table (:func:`outcomes.visit_scores`); used when ``predictions`` is
        None.
    outcome : str
        Score column, e.g. ``nprs``.
    time, group : str
        Time and grouping columns.
    predictions : DataFrame, optional
        Model-based curve with columns ``time``, ``group``, ``estimate``, ``ci_low``,
        ``ci_high`` (e.g. mixed-model predictions); drawn instead of raw means.
    min_n : int
        Hide raw means of time points with fewer scores than this.

    Returns
    -------
    Axes
        One line (``label`` = group) and one band per group.
    """
    ax = _axes(ax)
    if predictions is None:
        curve = summarize_trajectories(data, outcome, time=time, group=group)
        curve = curve[curve["n"] >= min_n]
    else:
        _need(predictions, [time, group, "estimate", "ci_low", "ci_high"], "predictions")
        curve = predictions
    for (key, sub), color in zip(curve.groupby(group, sort=True, observed=True),
                                 _colors(curve[group].nunique()), strict=True):
        sub = sub.sort_values(time)
        ax.plot(sub[time], sub["estimate"], marker="o", ms=3, color=color, label=str(key))
        ax.fill_between(sub[time], sub["ci_low"], sub["ci_high"], color=color, alpha=0.2,
                        linewidth=0)
    ax.set_xlabel(time)
    ax.set_ylabel(_instrument_label(outcome))
    ax.legend(title=group)
    return ax


def _instrument_label(column: str) -> str:
    code = column.split("_")[0]
    inst = INSTRUMENTS.get(code)
    if inst is None:
        return column
    return column.replace(code, inst.name, 1).replace("_", " ")


# --------------------------------------------------------------------------- change


def plot_change_distribution(
    data: pd.DataFrame,
    outcome: str,
    *,
    group: str = "arm",
    instrument: str | None = None,
    bins: int | Sequence[float] = 20,
    ax: Axes | None = None,
) -> Axes:
    """Distribution of change scores by group, with lines at 0 and at the MCID.

    Parameters
    ----------
    outcome : str
        Change column, e.g. ``nprs_change``.
    instrument : str, optional
        Instrument whose MCID is drawn (in the good direction); default from the prefix of
        ``outcome`` when it is a registered instrument.

    Returns
    -------
    Axes
        One step histogram (density) per group; vertical lines ``no change`` and ``MCID``.
    """
    _need(data, [outcome, group], "plot_change_distribution")
    ax = _axes(ax)
    df = data.dropna(subset=[outcome, group])
    edges = np.histogram_bin_edges(df[outcome], bins=bins) if len(df) else bins
    groups = list(df.groupby(group, sort=True, observed=True))
    for (key, sub), color in zip(groups, _colors(len(groups)), strict=True):
        ax.hist(sub[outcome], bins=edges, density=True, histtype="step", linewidth=1.5,
                color=color, label=f"{key} (n={len(sub)})")
    ax.axvline(0, color="0.3", linestyle="-", linewidth=1, label="no change")
    inst = INSTRUMENTS.get(instrument or outcome.split("_")[0])
    if inst is not None:
        mcid = inst.mcid if inst.higher_is_better else -inst.mcid
        ax.axvline(mcid, color="0.3", linestyle="--", linewidth=1, label=f"MCID ({mcid:+g})")
    ax.set_xlabel(_instrument_label(outcome))
    ax.set_ylabel("density")
    ax.legend()
    return ax


# --------------------------------------------------------------------------- survival


def plot_km(
    data: pd.DataFrame,
    duration: str,
    event: str,
    *,
    group: str | None = None,
    at_risk: bool = True,
    times: Sequence[float] | None = None,
    min_at_risk: int = 1,
    ax: Axes | None = None,
) -> Axes:
    """Kaplan-Meier curves by group, with the numbers at risk beneath.

    Parameters
    ----------
    duration, event : str
        Follow-up time and event indicator (1 = event, 0 = censored).
    group : str, optional
        One curve per value.
    at_risk : bool
        Print the number at risk (``duration >= t``) at each of ``times`` under the axis.
    times : sequence of float, optional
        Times of the at-risk table (and x ticks); default: the axis' ticks.
    min_at_risk : int, default 1
        Cell-size rule for published figures (the reports pass 11): each curve and its band
        stop at the last time with at least ``min_at_risk`` at risk (below it, every step
        gives away single events), and a number at risk from 1 to ``min_at_risk - 1`` is
        printed as ``<min_at_risk`` (0 stays 0). The default draws everything.

    Returns
    -------
    Axes
        One step line per group with a shaded 95 % band, both from
        :func:`outcomes.models.survival.km_curve` (R ``survfit``'s log-transformed Greenwood
        interval, the one :func:`outcomes.km_table` reports). At-risk counts are ``Text``
        artists in ``ax.texts``.
    """
    from outcomes.models.survival import km_curve

    _need(data, [duration, event, *([group] if group else [])], "plot_km")
    own_figure = ax is None
    ax = _axes(ax)
    df = data.dropna(subset=[duration, event, *([group] if group else [])])
    groups = list(df.groupby(group, sort=True, observed=True)) if group else [("all", df)]
    for (key, sub), color in zip(groups, _colors(len(groups)), strict=True):
        curve = km_curve(sub[duration].to_numpy(float), sub[event].to_numpy(float))
        _draw_km(ax, curve[curve["n_risk"] >= min_at_risk], str(key), color)
    ax.legend()
    ax.set_xlabel(duration)
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.02)
    if at_risk:
        _at_risk_table(ax, groups, duration, times, min_at_risk)
        if own_figure:  # leave room for the table under the axis
            ax.figure.subplots_adjust(bottom=0.2 + 0.06 * len(groups))
    return ax


def _draw_km(ax: Axes, curve: pd.DataFrame, label: str, color: Any) -> None:
    """Survival step curve from (0, 1) and its pointwise band (gaps where S = 0)."""
    t = np.r_[0.0, curve["time"].to_numpy()]
    ax.step(t, np.r_[1.0, curve["surv"].to_numpy()], where="post", color=color, label=label)
    ax.fill_between(t, np.r_[1.0, curve["lower"].to_numpy()], np.r_[1.0, curve["upper"].to_numpy()],
                    step="post", color=color, alpha=0.15, linewidth=0)


def _at_risk_table(ax: Axes, groups: list, duration: str, times: Sequence[float] | None,
                   min_at_risk: int = 1) -> None:
    from matplotlib.transforms import blended_transform_factory

    if times is None:
        lo, hi = ax.get_xlim()
        times = [t for t in ax.get_xticks() if lo <= t <= hi]
    ax.set_xticks(list(times))
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    label_trans = ax.transAxes
    ax.text(-0.02, -0.2, "at risk", transform=label_trans, ha="right", fontsize=8,
            fontweight="bold")
    for row, (key, sub) in enumerate(groups):
        y = -0.28 - 0.08 * row
        ax.text(-0.02, y, str(key), transform=label_trans, ha="right", fontsize=8)
        d = sub[duration].to_numpy()
        for t in times:
            n = int((d >= t).sum())
            shown = f"<{min_at_risk}" if 0 < n < min_at_risk else str(n)
            ax.text(t, y, shown, transform=trans, ha="center", fontsize=8)


# --------------------------------------------------------------------------- weighting


def plot_ps_overlap(
    data: pd.DataFrame,
    ps: str,
    treatment: str,
    *,
    bins: int = 30,
    kde: bool = False,
    show_n: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Propensity-score distributions by arm on [0, 1].

    Parameters
    ----------
    bins : int
        Histogram bins (``kde=False``).
    kde : bool
        Draw a Gaussian kernel density per arm (``scipy.stats.gaussian_kde``, Scott's
        bandwidth, on 200 points of [0, 1], reflected at 0 and 1 so that scores near the ends
        are not under-drawn and the density integrates to 1 on [0, 1]) instead of a density
        histogram. For published
        figures: with the arm's n, a histogram bar's height times its width gives the count of
        its bin, often 1-10.
    show_n : bool
        Put each arm's n in its legend label (next to a table of arm sizes, it would give the
        number dropped for missing covariates).

    Returns
    -------
    Axes
        One filled histogram (or one line with a filled area) per treatment value, labelled
        ``"<value> (n=...)"`` (``"<value>"`` with ``show_n=False``).
    """
    _need(data, [ps, treatment], "plot_ps_overlap")
    ax = _axes(ax)
    df = data.dropna(subset=[ps, treatment])
    edges = np.linspace(0, 1, bins + 1)
    grid = np.linspace(0, 1, 200)
    groups = list(df.groupby(treatment, sort=True, observed=True))
    for (key, sub), color in zip(groups, _colors(len(groups)), strict=True):
        label = f"{key} (n={len(sub)})" if show_n else str(key)
        if not kde:
            ax.hist(sub[ps], bins=edges, density=True, alpha=0.45, color=color, label=label)
            continue
        x = sub[ps].to_numpy(float)
        density = np.zeros_like(grid)  # one value: no density to draw
        if len(x) > 1 and np.ptp(x) > 0:  # reflected at 0 and 1: no mass lost past the ends
            kernel = stats.gaussian_kde(x)
            density = kernel(grid) + kernel(-grid) + kernel(2 - grid)
        ax.plot(grid, density, color=color, label=label)
        ax.fill_between(grid, density, color=color, alpha=0.25, linewidth=0)
    ax.set_xlim(0, 1)
    ax.set_xlabel("propensity score")
    ax.set_ylabel("density")
    ax.legend(title=treatment)
    return ax


def plot_love(
    balance: pd.DataFrame,
    *,
    threshold: float = 0.1,
    absolute: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Love plot: standardized differences per covariate before and after weighting.

    Parameters
    ----------
    balance : DataFrame
        ``covariate, smd_before, smd_after`` (:func:`outcomes.models.weighting.balance_table`,
        ``IPTWResult.balance``): standardized for every covariate type, binary ones over
        ``sqrt((p1(1-p1) + p0(1-p0)) / 2)`` as OHDSI CohortMethod, the values the diagnostics
        gate checks (not the raw differences in proportions of ``diff_raw_*``).
    threshold : float
        Balance threshold drawn as a dashed line (0.1, OHDSI CohortMethod / Austin 2009).

    Returns
    -------
    Axes
        Two marker series labelled ``before`` and ``after``; covariates on the y axis.
    """
    _need(balance, ["covariate", "smd_before", "smd_after"], "plot_love")
    ax = _axes(ax)
    b = balance.copy()
    if absolute:
        b[["smd_before", "smd_after"]] = b[["smd_before", "smd_after"]].abs()
    b = b.sort_values("smd_before", key=np.abs).reset_index(drop=True)
    y = np.arange(len(b))
    ax.scatter(b["smd_before"], y, marker="o", facecolors="none", edgecolors="C3", label="before")
    ax.scatter(b["smd_after"], y, marker="o", color="C0", label="after")
    for x in ([threshold] if absolute else [-threshold, threshold]):
        ax.axvline(x, color="0.4", linestyle="--", linewidth=1)
    ax.axvline(0, color="0.2", linewidth=0.8)
    ax.set_yticks(y, b["covariate"].astype(str))
    label = "standardized difference (binary: pooled binomial SD)"
    ax.set_xlabel(f"|{label}|" if absolute else label)
    ax.legend(loc="lower right")
    return ax


# --------------------------------------------------------------------------- therapists


def plot_funnel(
    estimates: pd.DataFrame,
    *,
    kind: str | None = None,
    target: float | None = None,
    sd: float | None = None,
    levels: Sequence[float] = (0.95, 0.998),
    label: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Funnel plot: each therapist's raw value against caseload, over control limits.

    Parameters
    ----------
    estimates : DataFrame
        :func:`outcomes.therapist_estimates` output (``n``, ``raw``; ``target``); ``kind``,
        ``sd`` default to its ``attrs``.
    label : str, optional
        Column whose values annotate the points (e.g. ``therapist_id``); None for no labels.

    Returns
    -------
    Axes
        The points (one ``PathCollection``), a target line and two lines (lower, upper) per
        level, labelled ``"95% limits"`` and ``"99.8% limits"``.
    """
    from outcomes.models.therapist import funnel_limits

    _need(estimates, ["n", "raw"], "plot_funnel")
    kind = kind or estimates.attrs.get("kind", "proportion")
    sd = sd if sd is not None else estimates.attrs.get("sd")
    if target is None:
        if "target" not in estimates:
            raise InputError("plot_funnel: give target= or a 'target' column")
        target = float(estimates["target"].iloc[0])
    ax = _axes(ax)
    grid = np.unique(np.linspace(1, max(int(estimates["n"].max() * 1.1), 2), 200).astype(int))
    lim = funnel_limits(grid, target, kind=kind, sd=sd, levels=levels)
    for level, style in zip(levels, ["--", ":", "-."], strict=False):
        sub = lim[lim["level"] == level]
        lab = f"{100 * level:g}% limits"
        ax.plot(sub["n"], sub["lower"], color="0.4", linestyle=style, label=lab)
        ax.plot(sub["n"], sub["upper"], color="0.4", linestyle=style, label="_" + lab)
    ax.axhline(target, color="0.2", linewidth=1, label="clinic")
    ax.scatter(estimates["n"], estimates["raw"], color="C0", zorder=3, label="therapist")
    if label is not None:
        for _, r in estimates.iterrows():
            ax.annotate(str(r[label]), (r["n"], r["raw"]), xytext=(3, 3),
                        textcoords="offset points", fontsize=7)
    ax.set_xlabel("patients (n)")
    ax.set_ylabel("proportion" if kind == "proportion" else "mean")
    ax.legend()
    return ax


# --------------------------------------------------------------------------- run chart


def detect_run_signals(values: Sequence[float], *, shift: int = 6, trend: int = 5
                      ) -> pd.DataFrame:
    """Run-chart rules on a series in time order.

    Returns
    -------
    DataFrame
        ``value, median, shift, trend``: ``shift`` marks points in a run of ``shift`` or more
        consecutive points on one side of the median; ``trend`` marks points in ``trend`` or
        more consecutive points all going up or all going down.

    Notes
    -----
    Perla, Provost & Murray 2011, BMJ Qual Saf 20:46-51: points exactly on the median neither
    add to nor break a shift; repeated equal values count once in a trend. Missing values
    are skipped.
    """
    v = pd.Series(values, dtype=float).reset_index(drop=True)
    med = float(v.median())
    out = pd.DataFrame({"value": v, "median": med, "shift": False, "trend": False})
    side = np.sign(v - med).dropna()
    side = side[side != 0]
    for idx in _long_runs(side.to_numpy(), shift):
        out.loc[side.index[idx], "shift"] = True
    obs = v.dropna()
    distinct = obs[obs.diff().ne(0)]  # a repeat counts once
    step = np.sign(distinct.diff().iloc[1:]).to_numpy()
    for idx in _long_runs(step, trend - 1):
        first, last = distinct.index[idx[0]], distinct.index[idx[-1] + 1]
        out.loc[first:last, "trend"] = out.loc[first:last, "value"].notna()
    return out


def _long_runs(labels: np.ndarray, length: int) -> list[np.ndarray]:
    """Index arrays of runs of equal labels at least ``length`` long."""
    if len(labels) == 0:
        return []
    starts = np.r_[0, np.flatnonzero(labels[1:] != labels[:-1]) + 1]
    ends = np.r_[starts[1:], len(labels)]
    return [np.arange(s, e) for s, e in zip(starts, ends, strict=True) if e - s >= length]


def plot_run_chart(
    data: pd.DataFrame,
    value: str,
    *,
    time: str = "quarter",
    shift: int = 6,
    trend: int = 5,
    ax: Axes | None = None,
) -> Axes:
    """Run chart: values in time order, the median, and points signalling a shift or trend.

    Parameters
    ----------
    data : DataFrame
        One row per period (e.g. ``start_quarter`` and a responder rate), sorted by ``time``
        here.
    value, time : str
        Plotted column and period column.

    Returns
    -------
    Axes
        Line ``value``, line ``median``, and scatter series ``shift`` / ``trend`` for the
        flagged points (see :func:`detect_run_signals`).
    """
    _need(data, [value, time], "plot_run_chart")
    ax = _axes(ax)
    df = data.sort_values(time).reset_index(drop=True)
    sig = detect_run_signals(df[value], shift=shift, trend=trend)
    x = np.arange(len(df))
    ax.plot(x, sig["value"], marker="o", color="C0", label=value)
    ax.plot(x, sig["median"], color="0.4", linestyle="--", label="median")
    _mark(ax, x, sig, "shift", dict(color="C3", s=60, marker="o", zorder=3))
    _mark(ax, x, sig, "trend", dict(facecolors="none", edgecolors="C1", s=140, marker="s"))
    ax.set_xticks(x, df[time].astype(str), rotation=45, ha="right")
    ax.set_xlabel(time)
    ax.set_ylabel(value)
    ax.legend()
    return ax


def _mark(ax: Axes, x: np.ndarray, sig: pd.DataFrame, rule: str, style: dict[str, Any]) -> None:
    flagged = sig[rule].to_numpy(bool)
    if flagged.any():
        ax.scatter(x[flagged], sig.loc[flagged, "value"], label=f"{rule} signal", **style)
