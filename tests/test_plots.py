"""Plots: each returns an Axes carrying the expected lines, labels and artists (Agg backend)."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from outcomes.errors import InputError  # noqa: E402
from outcomes.models.therapist import funnel_limits, therapist_estimates  # noqa: E402
from outcomes.plots import (  # noqa: E402
    detect_run_signals,
    plot_change_distribution,
    plot_funnel,
    plot_km,
    plot_love,
    plot_ps_overlap,
    plot_run_chart,
    plot_trajectories,
    summarize_trajectories,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def scores() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 120
    d = pd.DataFrame({"arm": np.repeat(["pri", "traditional"], n // 2),
                      "week": np.tile(np.arange(6), n // 6)})
    d["nprs"] = 7 - 0.5 * d["week"] + rng.normal(0, 1, n)
    return d


def labels(ax) -> list[str]:
    return [h.get_label() for h in ax.get_legend_handles_labels()[0]]


def test_summarize_trajectories_matches_hand_t_interval(scores):
    """t interval of the mean: mean +/- t_{n-1, 0.975} s / sqrt(n), per (arm, week)."""
    from scipy import stats

    out = summarize_trajectories(scores, "nprs")
    sub = scores[(scores["arm"] == "pri") & (scores["week"] == 2)]["nprs"]
    row = out[(out["arm"] == "pri") & (out["week"] == 2)].iloc[0]
    half = stats.t.ppf(0.975, len(sub) - 1) * sub.std(ddof=1) / np.sqrt(len(sub))
    assert row["n"] == len(sub) == 10
    assert row["ci_low"] == pytest.approx(sub.mean() - half)
    assert row["ci_high"] == pytest.approx(sub.mean() + half)


def test_plot_trajectories_raw_and_predictions(scores):
    ax = plot_trajectories(scores, "nprs")
    assert [line.get_label() for line in ax.lines] == ["pri", "traditional"]
    assert len(ax.collections) == 2  # one band per arm
    assert ax.get_xlabel() == "week" and ax.get_ylabel() == "NPRS pain"
    pred = pd.DataFrame({"week": [0, 1, 0, 1], "arm": ["a", "a", "b", "b"],
                         "estimate": [6, 5, 6, 4], "ci_low": [5, 4, 5, 3],
                         "ci_high": [7, 6, 7, 5]})
    fig, given = plt.subplots()
    ax2 = plot_trajectories(scores, "nprs", predictions=pred, ax=given)
    assert ax2 is given
    np.testing.assert_array_equal(ax2.lines[1].get_ydata(), [6, 4])
    with pytest.raises(InputError, match="ci_low"):
        plot_trajectories(scores, "nprs", predictions=pred.drop(columns="ci_low"))


def test_plot_change_distribution_mcid_line():
    d = pd.DataFrame({"arm": ["pri"] * 5 + ["traditional"] * 5,
                      "nprs_change": [-3, -2, -4, 0, -1, -1, 0, -2, 1, -3]})
    ax = plot_change_distribution(d, "nprs_change")
    assert "MCID (-2)" in labels(ax) and "no change" in labels(ax)
    mcid_line = [ln for ln in ax.lines if ln.get_label() == "MCID (-2)"][0]
    assert mcid_line.get_xdata()[0] == -2
    assert len(ax.patches) == 2  # one step histogram per arm
    lefs = plot_change_distribution(d.rename(columns={"nprs_change": "lefs_change"}),
                                    "lefs_change")
    assert "MCID (+9)" in labels(lefs)


def test_plot_km_with_numbers_at_risk():
    d = pd.DataFrame({"weeks": [1, 2, 3, 4, 5, 6, 2, 4, 6, 8, 10, 12],
                      "event": [1, 1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1],
                      "arm": ["pri"] * 6 + ["traditional"] * 6})
    ax = plot_km(d, "weeks", "event", group="arm", times=[0, 4, 8])
    assert {"pri", "traditional"} <= set(labels(ax))
    texts = {t.get_text() for t in ax.texts}
    assert {"at risk", "pri", "traditional"} <= texts
    # at risk (weeks >= t): pri 6, 3, 0; traditional 6, 5, 3
    pri_y = [t for t in ax.texts if t.get_text() == "pri"][0].get_position()[1]
    row = sorted((t.get_position()[0], t.get_text()) for t in ax.texts
                 if t.get_position()[1] == pri_y and t.get_text() != "pri")
    assert [c for _, c in row] == ["6", "3", "0"]
    tr_y = [t for t in ax.texts if t.get_text() == "traditional"][0].get_position()[1]
    row = sorted((t.get_position()[0], t.get_text()) for t in ax.texts
                 if t.get_position()[1] == tr_y and t.get_text() != "traditional")
    assert [c for _, c in row] == ["6", "5", "3"]


def test_plot_km_draws_r_log_band():
    """The drawn curve and band are R ``survfit``'s (``conf.type = "log"``), as km_table reports.

    Hand computation for times 1..6 with events 1, 1, 0, 1, 1, 0: S = 5/6, 4/6, 4/6, 4/9, 2/9,
    2/9; at t = 1 the log band is ``S exp(+/- 1.959964 sqrt(1 / (6 * 5)))`` (Greenwood).
    Tolerance 1e-12 (the curve) and 1e-6 (the band, z printed to 7 digits)."""
    d = pd.DataFrame({"weeks": [1, 2, 3, 4, 5, 6], "event": [1, 1, 0, 1, 1, 0]})
    ax = plot_km(d, "weeks", "event", at_risk=False)
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_xdata(), [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(line.get_ydata(), [1, 5 / 6, 4 / 6, 4 / 6, 4 / 9, 2 / 9, 2 / 9],
                               atol=1e-12)
    band_y = ax.collections[0].get_paths()[0].vertices[:, 1]
    half = 1.959964 * np.sqrt(1 / 30)
    for bound in (5 / 6 * np.exp(-half), min(5 / 6 * np.exp(half), 1.0)):
        assert np.min(np.abs(band_y - bound)) < 1e-6


def test_plot_ps_overlap():
    rng = np.random.default_rng(2)
    d = pd.DataFrame({"ps": np.r_[rng.beta(2, 5, 50), rng.beta(5, 2, 30)],
                      "arm": ["traditional"] * 50 + ["pri"] * 30})
    ax = plot_ps_overlap(d, "ps", "arm")
    assert labels(ax) == ["pri (n=30)", "traditional (n=50)"]
    assert ax.get_xlim() == (0, 1)


def test_plot_love():
    bal = pd.DataFrame({"covariate": ["age", "prior_pt", "chronic"],
                        "smd_before": [0.05, -0.4, 0.25], "smd_after": [0.01, 0.08, -0.02]})
    ax = plot_love(bal)
    assert labels(ax) == ["before", "after"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["age", "chronic", "prior_pt"]
    assert any(ln.get_xdata()[0] == 0.1 for ln in ax.lines)
    before = ax.collections[0].get_offsets()[:, 0]
    np.testing.assert_allclose(before, [0.05, 0.25, 0.4])
    assert "standardized" in ax.get_xaxis().get_label().get_text()


def test_plot_love_plots_standardized_not_raw_binary_differences():
    """An IPTWResult.balance: the plotted values are smd_* (binary standardized as OHDSI
    CohortMethod), not the raw differences in proportions kept in diff_raw_*."""
    from outcomes.models.weighting import balance_table

    rng = np.random.default_rng(1)
    d = pd.DataFrame({"t": rng.integers(0, 2, 200).astype(float)})
    d["flag"] = (rng.uniform(size=200) < 0.1 + 0.1 * d["t"]).astype(float)
    bal = balance_table(d, d["t"], np.ones(200), ["flag"])
    ax = plot_love(bal)
    x = ax.collections[0].get_offsets()[:, 0]
    np.testing.assert_allclose(x, bal["smd_before"].abs())
    assert abs(bal["smd_before"].item()) > abs(bal["diff_raw_before"].item())
    assert "binary: pooled binomial SD" in ax.get_xlabel()


def test_plot_funnel_from_therapist_estimates():
    d = pd.DataFrame({"therapist_id": np.repeat(list("abcdef"), 40),
                      "resp": np.r_[np.ones(38), np.zeros(2), np.tile([1, 0], 100)]})
    est = therapist_estimates(d, "resp", kind="proportion")
    ax = plot_funnel(est, label="therapist_id")
    assert {"95% limits", "99.8% limits", "clinic", "therapist"} <= set(labels(ax))
    assert len(ax.collections[0].get_offsets()) == 6
    assert {t.get_text() for t in ax.texts} == set("abcdef")
    upper95 = ax.lines[1]
    ref = funnel_limits(upper95.get_xdata(), est["target"].iloc[0], levels=(0.95,))
    np.testing.assert_allclose(upper95.get_ydata(), ref["upper"])
    means = therapist_estimates(d.assign(y=d["resp"] * 3.0), "y")
    assert plot_funnel(means).get_ylabel() == "mean"


def test_detect_run_signals_rules():
    """Perla, Provost & Murray 2011 (BMJ Qual Saf 20:46): 6+ points on one side of the median
    (points on the median skipped) = shift; 5+ points all up or all down (repeats count once)
    = trend."""
    v = [5, 5, 5, 1, 2, 3, 2, 1, 2, 8, 9, 8, 9, 8, 9]
    sig = detect_run_signals(v)  # median 5
    assert sig["median"].iloc[0] == 5
    # 8,9,8,9,8,9 = 6 above -> shift; 1,2,3,2,1,2 = 6 below -> shift; the 5s are on the median
    assert sig["shift"].tolist() == [False] * 3 + [True] * 12
    assert not sig["trend"].any()
    up = detect_run_signals([1, 2, 2, 3, 4, 5, 3])  # 1,2,(2),3,4,5 = 5 distinct increasing
    assert up["trend"].tolist() == [True] * 6 + [False]
    assert not detect_run_signals([1, 2, 3, 4, 3]).trend.any()


def test_plot_run_chart():
    d = pd.DataFrame({"quarter": [f"{y}Q{q}" for y in (2024, 2025, 2026) for q in (1, 2, 3, 4)],
                      "rate": [0.3, 0.32, 0.31, 0.33, 0.30, 0.32, 0.5, 0.52, 0.55, 0.51, 0.56,
                               0.53]})
    ax = plot_run_chart(d.sample(frac=1, random_state=1), "rate")
    assert labels(ax)[:2] == ["rate", "median"]
    assert "shift signal" in labels(ax)
    shift_points = [c for c in ax.collections if c.get_label() == "shift signal"][0]
    assert len(shift_points.get_offsets()) == 12  # six below, then six above the median
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "2024Q1"
    np.testing.assert_allclose(ax.lines[1].get_ydata(), np.median(d["rate"]))


def test_plot_km_stops_the_curve_and_hides_numbers_at_risk_below_min_at_risk():
    """Under 11 at risk the steps of the curve give away single events and the numbers at risk
    are small cells: the curve stops at the last time with 11 or more at risk, and a number at
    risk of 1-10 reads ``<11`` (0 stays 0)."""
    weeks = np.arange(1, 26)
    d = pd.DataFrame({"weeks": weeks, "event": np.tile([1, 0], 13)[:25]})
    ax = plot_km(d, "weeks", "event", times=[0, 10, 20, 30], min_at_risk=11)
    x = ax.lines[0].get_xdata()
    # at risk at week t is 26 - t: 11 or more up to week 15
    assert max(x) <= 15 and max(x) >= 14
    texts = [t.get_text() for t in ax.texts if t.get_text() not in ("at risk", "all")]
    assert texts == ["25", "16", "<11", "0"]
    band = ax.collections[0].get_paths()[0].vertices[:, 0]
    assert band.max() <= 15
    ax = plot_km(d, "weeks", "event", times=[0, 20])  # default: everything drawn
    assert max(ax.lines[0].get_xdata()) == 25


def test_plot_ps_overlap_smooth_density_has_no_bins_and_no_n():
    """Density histograms with n in the legend give every bin's count (height x width x n),
    and n next to Table 1's arm sizes gives the number dropped for missing covariates: the
    report draws a kernel density per arm (no bins to count) without n."""
    rng = np.random.default_rng(2)
    d = pd.DataFrame({"ps": np.r_[rng.beta(2, 5, 50), rng.beta(5, 2, 30), 0.99],
                      "arm": ["traditional"] * 50 + ["pri"] * 31})
    ax = plot_ps_overlap(d, "ps", "arm", kde=True, show_n=False)
    assert labels(ax) == ["pri", "traditional"]
    assert not ax.patches  # no histogram bars
    assert not any(re.search(r"\d", t.get_text()) for t in ax.texts)
    for line in ax.lines:
        y = line.get_ydata()
        assert len(y) >= 100 and np.all(np.isfinite(y)) and y.min() >= 0
        area = np.trapezoid(y, line.get_xdata())
        assert 0.8 < area <= 1.0 + 1e-6  # a density on [0, 1] (reflected at the ends)
    ax = plot_ps_overlap(d, "ps", "arm")  # default unchanged
    assert labels(ax) == ["pri (n=31)", "traditional (n=50)"]


def test_plot_ps_overlap_density_is_reflected_at_0_and_1():
    """Scores crowd the ends exactly when overlap is poor: a plain kernel density loses the mass
    past 0 and 1 and draws about half the density at the ends (area 0.74 for these U-shaped
    scores). Reflected at both ends, the curve is a density on [0, 1]."""
    rng = np.random.default_rng(2)
    d = pd.DataFrame({"ps": np.r_[rng.beta(0.5, 0.5, 40), rng.beta(1, 15, 40)],
                      "arm": ["pri"] * 40 + ["traditional"] * 40})
    ax = plot_ps_overlap(d, "ps", "arm", kde=True, show_n=False)
    for line in ax.lines:
        x, y = line.get_xdata(), line.get_ydata()
        assert x[0] == 0 and x[-1] == 1
        assert np.trapezoid(y, x) == pytest.approx(1, abs=0.01)
