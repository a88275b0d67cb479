"""The "This quarter at a glance" box (outcomes.reports.glance) and the safe share bands.

Hand-built episodes (``_ep`` from tests/test_report.py) with known numbers; the references for
the change intervals are scipy and statsmodels, named in each test.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_report import _ep, _frame

from outcomes import reports as rp
from outcomes.privacy import SUPPRESSED, WITHHELD, share_band

Q3, Q2 = "2026Q3", "2026Q2"


def _quarter(first: int, n: int, end: str, **kw) -> list[dict]:
    return [_ep(first + i, start="2026-01-05", end=end, **kw) for i in range(n)]


def _row(figures: pd.DataFrame, measure: str) -> pd.Series:
    return figures.set_index("measure").loc[measure]


NPRS = "NPRS pain: mean change (negative = better)"
MCID = "% reaching the NPRS MCID"
MISSING = "% ended without a discharge score"


# --------------------------------------------------------------------------- beyond chance
def test_diff_means_ci_matches_scipy_welch():
    """Reference: scipy.stats.ttest_ind(equal_var=False).confidence_interval(0.95); 1e-10."""
    from scipy import stats

    a = pd.Series([-3.0, -4.5, -1.0, -2.0, -5.5, -3.5, float("nan"), -2.5])
    b = pd.Series([-1.0, -2.5, 0.0, -1.5, -2.0, -3.0, -0.5, -1.0, 1.0, -2.0])
    d, lo, hi = rp.diff_means_ci(a, b)
    ref = stats.ttest_ind(a.dropna(), b, equal_var=False).confidence_interval(0.95)
    assert d == pytest.approx(a.mean() - b.mean(), abs=1e-12)
    assert (lo, hi) == pytest.approx((ref.low, ref.high), abs=1e-10)
    assert all(math.isnan(v) for v in rp.diff_means_ci(a.iloc[:1], b))


def test_diff_proportions_ci_matches_statsmodels_newcombe():
    """Reference: statsmodels confint_proportions_2indep(method='newcomb', compare='diff');
    tolerance 1e-10."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    for k1, n1, k2, n2 in ((56, 70, 48, 80), (9, 10, 3, 10), (0, 25, 4, 30), (40, 40, 35, 41)):
        d, lo, hi = rp.diff_proportions_ci(k1, n1, k2, n2)
        ref = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff")
        assert d == pytest.approx(k1 / n1 - k2 / n2, abs=1e-12)
        assert (lo, hi) == pytest.approx(ref, abs=1e-10), (k1, n1, k2, n2)


def test_count_change_p_is_the_exact_even_split_test():
    """Two-sided exact binomial p of 30 vs 10 under p = 1/2, summed by hand from math.comb."""
    tail = sum(math.comb(40, k) for k in range(30, 41)) / 2 ** 40
    assert rp.count_change_p(30, 10) == pytest.approx(2 * tail, rel=1e-9)
    assert rp.count_change_p(20, 20) == pytest.approx(1.0)
    assert rp.count_change_p(0, 0) == 1.0


# --------------------------------------------------------------------------- the figures
def test_glance_figures_compare_with_last_quarter_and_judge_the_change():
    this = _quarter(0, 40, "2026-08-15", nprs=(7.0, 2.0))  # change -5, all reach the MCID
    this += _quarter(100, 20, "2026-08-20", nprs=(6.0, 5.0))  # change -1, none
    last = _quarter(200, 45, "2026-05-15", nprs=(6.0, 5.0))
    last += _quarter(300, 15, "2026-05-20", nprs=(6.0, 3.0))
    last += _quarter(400, 15, "2026-05-25", status="no_discharge_score", nprs=(6.0, None))
    fig = rp.glance_figures(_frame(this + last), Q3)
    ended = _row(fig, "episodes ended")
    assert (ended["this"], ended["last"], ended["this_text"]) == (60, 75, 60)
    assert not ended["beyond_chance"] and ended["direction"] == ""  # 60 vs 75: p = 0.25
    nprs = _row(fig, NPRS)
    assert nprs["this"] == pytest.approx((40 * -5 + 20 * -1) / 60)
    assert nprs["last"] == pytest.approx(-1.5)
    assert nprs["beyond_chance"] and nprs["direction"] == "better" and nprs["ci_high"] < 0
    mcid = _row(fig, MCID)
    assert (mcid["this"], mcid["last"]) == pytest.approx((100 * 40 / 60, 25.0))
    assert mcid["direction"] == "better"
    missing = _row(fig, MISSING)
    assert (missing["this"], missing["last"]) == pytest.approx((0.0, 20.0))
    assert missing["direction"] == "better"
    table = rp.glance_table(fig)
    assert table.loc[NPRS, "change"].startswith("\u25bc -")
    assert table.loc[NPRS, "change"].endswith("better")
    assert table.loc["episodes ended", "change"] == "-15 episodes, within chance"


def test_no_arrow_without_both_quarters_shown():
    """Last quarter ended 5 episodes: shown as <11, so nothing is compared or judged."""
    rows = _quarter(0, 40, "2026-08-15") + _quarter(100, 5, "2026-05-15", nprs=(6.0, 6.0))
    fig = rp.glance_figures(_frame(rows), Q3)
    assert (fig["last_text"] == SUPPRESSED).all()
    assert fig["difference"].isna().all() and not fig["beyond_chance"].any()
    assert rp.glance_table(fig).loc[NPRS, "change"].startswith("not compared")


def test_glance_shows_what_the_tables_withhold_the_same_way():
    """3 non-responders among 40: the By arm / By diagnosis 'All episodes' share is a band,
    and the box shows that band, not 92%; the arm with 5 episodes hides nothing of the total."""
    rows = _quarter(0, 37, "2026-08-15") + _quarter(50, 3, "2026-08-15", nprs=(6.0, 5.0))
    rows += _quarter(100, 5, "2026-08-15", arm="traditional")
    rows += _quarter(200, 30, "2026-05-15")
    fig = rp.glance_figures(_frame(rows), Q3)
    by_arm = rp.summary_table(rp.ended_in(_frame(rows), Q3), "arm")
    shown = by_arm.loc["All episodes", "NPRS pain: % reaching MCID (95% CI)"]
    assert shown == "over 70%" == _row(fig, MCID)["this_text"]
    assert pd.isna(_row(fig, MCID)["difference"])
    assert _row(fig, NPRS)["this_text"] == pytest.approx(_row(fig, NPRS)["this"])


def test_therapist_glance_is_their_own_episodes_unsuppressed():
    rows = _quarter(0, 4, "2026-08-15", therapist="T1")
    rows += _quarter(10, 30, "2026-08-15", therapist="T2", nprs=(6.0, 6.0))
    fig = rp.therapist_glance_figures(_frame(rows), Q3, "T1")
    assert _row(fig, "episodes ended")["this_text"] == 4
    assert _row(fig, NPRS)["this"] == pytest.approx(-4.0)


# --------------------------------------------------------------------------- items needing action
def _clinic(outlier_change: float) -> pd.DataFrame:
    rows = []
    for t in range(6):
        change = outlier_change if t == 0 else -3.0 + 0.2 * (t % 3)
        for i in range(25):
            rows.append(_ep(1000 * t + i, therapist=f"T{t}", end="2026-08-15",
                            nprs=(7.0, 7.0 + change + (i % 5 - 2) * 0.5)))
    return _frame(rows)


def test_actions_name_a_therapist_outside_the_funnel_and_only_then():
    flagged = _clinic(outlier_change=1.0)
    fig = rp.glance_figures(flagged, Q3)
    items = rp.glance_actions(flagged, Q3, fig)
    assert any(i.startswith("Therapist T0: mean NPRS change above the 99.8%") for i in items)
    calm = _clinic(outlier_change=-2.8)
    items = rp.glance_actions(calm, Q3, rp.glance_figures(calm, Q3))
    assert items == [next(i for i in items if i.startswith("Nothing needs action"))]


def test_actions_report_a_run_chart_signal_ending_this_quarter():
    """Mean NPRS change improving five quarters in a row (2025Q3-2026Q3): a trend signal."""
    rows = []
    for k, q_end in enumerate(["2025-08-15", "2025-11-15", "2026-02-15", "2026-05-15",
                               "2026-08-15"]):
        rows += [_ep(100 * k + i, start="2025-07-01", end=q_end, nprs=(8.0, 6.0 - k))
                 for i in range(20)]
    data = _frame(rows)
    items = rp.glance_actions(data, Q3, rp.glance_figures(data, Q3))
    assert any(i.startswith("Run chart: the clinic's mean NPRS change shows a trend") for i in items)


def test_actions_report_a_jump_in_missing_discharge_scores():
    rows = _quarter(0, 40, "2026-08-15") + _quarter(50, 30, "2026-08-15",
                                                    status="no_discharge_score", nprs=(6.0, None))
    rows += _quarter(200, 60, "2026-05-15") + _quarter(300, 12, "2026-05-15",
                                                       status="no_discharge_score",
                                                       nprs=(6.0, None))
    data = _frame(rows)
    fig = rp.glance_figures(data, Q3)
    assert _row(fig, MISSING)["direction"] == "worse"
    items = rp.glance_actions(data, Q3, fig)
    assert ("Data quality: 43% of episodes ended without a discharge score, up from 17% last "
            "quarter, beyond chance (see Data quality).") in items


def test_glance_box_escapes_every_string():
    fig = rp.glance_figures(_frame(_quarter(0, 20, "2026-08-15")), Q3)
    html = rp.glance_box(fig, ["Therapist <script>alert(1)</script>: x"])._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'class="glance"' in html and rp.CHANGE_RULE.split(":")[0] in html
    assert "withheld so that a small count" in html


# --------------------------------------------------------------------------- safe bands
@settings(max_examples=400, deadline=None)
@given(whole=st.integers(11, 500), small=st.integers(1, 10), responders_small=st.booleans())
def test_no_band_lets_a_count_of_1_to_10_be_derived(whole, small, responders_small):
    """A band is true, and read back with the denominator known, every count from 1 to 10 is
    still possible: it says no more than the <11 it replaces."""
    part = small if responders_small else whole - small
    band = share_band(part, whole)
    if band is None:
        return
    x = int(band.split()[1].rstrip("%"))
    share = 100 * part / whole
    if band.startswith("over "):
        assert share >= x and all(100 * (whole - c) / whole >= x for c in range(1, 11))
    else:
        assert band.startswith("under ") and share <= x
        assert all(100 * c / whole <= x for c in range(1, 11))


def test_share_band_only_where_one_side_alone_is_small():
    assert share_band(21, 24) == "over 50%" and share_band(3, 24) == "under 50%"
    assert share_band(97, 100) == "over 90%"
    assert share_band(5, 8) is None  # the whole is small: <11
    assert share_band(30, 60) is None  # nothing small: the share is shown
    assert share_band(4, 12) is None  # both sides small
    assert share_band(1, 11) is None  # "under 100%" would say nothing


def test_summary_bands_replace_withheld_shares_and_complements_read_star():
    """PRI: 3 of 60 do not reach the MCID -> a band; mixed: 4 episodes -> <11; traditional is
    the complement of both (the smallest shown group) -> its share reads *."""
    rows = [_ep(i, arm="pri") for i in range(57)]
    rows += [_ep(60 + i, arm="pri", nprs=(6.0, 5.0)) for i in range(3)]
    rows += [_ep(100 + i, arm="traditional", nprs=(6.0, 6.0 - (i % 2) * 3)) for i in range(30)]
    rows += [_ep(140 + i, arm="mixed") for i in range(4)]
    table = rp.summary_table(_frame(rows), "arm")
    col = "NPRS pain: % reaching MCID (95% CI)"
    assert table.loc["PRI-style", col] == "over 80%"
    assert table.loc["Mixed (PRI + traditional)", col] == SUPPRESSED
    assert table.loc["Traditional PT", col] == WITHHELD
    assert table.loc["Traditional PT", "episodes ended"] == WITHHELD
    assert table.loc["All episodes", col].startswith("81% (")  # (57 + 15 + 4) / 94
