"""Dose tables (outcomes.models.dose): descriptive, labelled so, and counting PRI visits right."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import outcomes
from outcomes.errors import ModelError
from outcomes.models.dose import LABEL, dose_response, pri_visit_counts


def _techniques(v):
    tech = outcomes.map_techniques(v["technique_notes"])
    return tech.assign(visit_id=v.loc[tech["row"], "visit_id"].to_numpy())


def test_pri_visit_counts_match_visit_scores_assignment(small_synthetic):
    """Independent count: episodes assigned to visits by outcomes.episodes.visit_scores (every
    synthetic visit is scored), then visits with a PRI technique counted."""
    from outcomes.episodes import visit_scores

    ep, v, _ = small_synthetic
    tech = _techniques(v)
    assert v[["nprs", "lefs", "psfs"]].notna().any(axis=1).all()
    long = visit_scores(v, ep)
    pri = set(tech.loc[tech["family"] == "pri", "visit_id"])
    ref = long[long["visit_id"].isin(pri)].groupby("episode_id")["visit_id"].nunique()
    got = pri_visit_counts(ep, v, tech)
    expected = ep["episode_id"].map(ref).fillna(0).astype(int)
    pd.testing.assert_series_equal(got, expected, check_names=False)
    assert got[ep["arm"].eq("traditional")].le(got[ep["arm"].eq("pri")].max()).all()
    assert (got > 0).any() and (got == 0).any()


def test_dose_table_is_descriptive_and_its_numbers_are_means(small_synthetic):
    ep, v, _ = small_synthetic
    tab = dose_response(ep, v, techniques=_techniques(v))
    assert tab["band"].astype(str).tolist() == ["0", "1-3", "4-6", "7+"]
    assert tab["analysis"].eq(LABEL).all() and "not a causal" in LABEL
    counts = pri_visit_counts(ep[ep["status"] != "open"], v, _techniques(v))
    done = ep[ep["status"] != "open"]
    y = done.loc[counts.between(4, 6), "nprs_change"].dropna()
    row = tab.set_index("band").loc["4-6"]
    assert row["estimate"] == pytest.approx(y.mean())
    assert row["n"] == len(y) and row["n_episodes"] == counts.between(4, 6).sum()
    half = stats.t.ppf(0.975, len(y) - 1) * y.std(ddof=1) / np.sqrt(len(y))
    assert row["ci_high"] - row["estimate"] == pytest.approx(half)
    assert tab["n_episodes"].sum() == len(done)
    by_arm = dose_response(ep, v, by="arm", bands=(0, 5), techniques=_techniques(v))
    assert set(by_arm["band"].astype(str)) <= {"0-4", "5+"}
    assert "mixed" in set(by_arm["arm"])  # mixed episodes are described here
    assert by_arm["n_episodes"].sum() == len(done)


def test_dose_errors(small_synthetic):
    ep, v, _ = small_synthetic
    tech = _techniques(v)
    with pytest.raises(ModelError, match="bands="):
        dose_response(ep, v, bands=(1, 3), techniques=tech)
    with pytest.raises(ModelError, match="odi_change"):
        dose_response(ep, v, "odi", techniques=tech)
    with pytest.raises(ModelError, match="techniques= is required"):
        dose_response(ep, v)
