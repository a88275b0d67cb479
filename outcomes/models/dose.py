"""Dose and adherence: the change in an outcome by the number of PRI-style visits (descriptive).

The number of PRI-style visits an episode ends up with is decided after baseline, partly by how
the patient is doing (those who improve quickly stop early; those who do not may switch style),
so it is a mediator and a consequence of the outcome as much as a cause. These tables describe;
they do not estimate a dose effect. The causal comparison is the primary analysis, whose arm
comes from the first treatment visits only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from outcomes.errors import ModelError

__all__ = ["dose_response", "pri_visit_counts"]

LABEL = "descriptive: dose is post-baseline, not a causal dose effect"


def pri_visit_counts(episodes: pd.DataFrame, visits: pd.DataFrame,
                     techniques: pd.DataFrame | None = None) -> pd.Series:
    """Number of visits with at least one PRI-family technique, per episode.

    Parameters
    ----------
    episodes : DataFrame
        ``episode_id, patient_id, start_date, end_date``.
    visits : DataFrame
        Clean visit table (``visit_id, patient_id, visit_date``, and ``technique_notes`` when
        ``techniques`` is not given).
    techniques : DataFrame
        ``visit_id, family``: :func:`outcomes.load_techniques` of the store, or
        :func:`outcomes.map_techniques` of the notes with ``visit_id`` added. (Models do not
        map text themselves: that is ingest's job.)

    Returns
    -------
    Series
        Indexed like ``episodes``; a visit belongs to the episode of its patient whose
        ``start_date <= visit_date <= end_date``.
    """
    if techniques is None or not {"visit_id", "family"} <= set(techniques.columns):
        raise ModelError("techniques= is required: a table with visit_id and family, e.g. "
                         "outcomes.load_techniques(db) or the mapped notes")
    pri_ids = set(techniques.loc[techniques["family"].eq("pri"), "visit_id"])
    v = visits.loc[visits["visit_id"].isin(pri_ids), ["patient_id", "visit_id", "visit_date"]]
    m = episodes[["episode_id", "patient_id", "start_date", "end_date"]].merge(v, on="patient_id")
    m = m[(m["visit_date"] >= m["start_date"]) & (m["visit_date"] <= m["end_date"])]
    counts = m.groupby("episode_id")["visit_id"].nunique()
    return episodes["episode_id"].map(counts).fillna(0).astype(int)


def _band_labels(edges: Sequence[int]) -> list[str]:
    labels = []
    for lo, hi in zip(edges, [*edges[1:], None], strict=True):
        if hi is None:
            labels.append(f"{lo}+")
        else:
            labels.append(str(lo) if hi - lo == 1 else f"{lo}-{hi - 1}")
    return labels


def dose_response(
    episodes: pd.DataFrame,
    visits: pd.DataFrame,
    outcome: str = "nprs",
    *,
    techniques: pd.DataFrame | None = None,
    bands: Sequence[int] = (0, 1, 4, 7),
    by: str | None = None,
) -> pd.DataFrame:
    """Mean change in ``outcome`` by number of PRI-style visits: a DESCRIPTIVE table.

    Parameters
    ----------
    episodes, visits : DataFrame
        As :func:`outcomes.models.primary_analysis` (open episodes are dropped here).
    outcome : str
        Instrument; ``<outcome>_change`` is summarised.
    techniques : DataFrame
        ``visit_id, family`` (required); see :func:`pri_visit_counts`.
    bands : sequence of int
        Increasing lower edges of the PRI-visit bands: ``(0, 1, 4, 7)`` gives ``0``, ``1-3``,
        ``4-6``, ``7+``.
    by : str, optional
        Also split by this episode column (e.g. ``"arm"``).

    Returns
    -------
    DataFrame
        One row per band (and ``by`` value): ``band, term, estimate`` (mean change), ``se,
        ci_low, ci_high`` (t on n - 1 df), ``n`` (episodes with a change score),
        ``n_episodes`` (all finished episodes in the band), ``mean_pri_visits``,
        ``mean_visits`` and ``analysis`` (always the label saying this is descriptive).

    Notes
    -----
    Why not causal: the PRI visit count is fixed after baseline and depends on the course of
    the episode (dropout, switching style, length of care), so comparing bands compares
    patients who differ in prognosis and follow-up, not doses. All finished episodes are
    included whatever their arm; ``mixed`` episodes (excluded from the primary comparison)
    appear here with their PRI visit count. Completers only have a change score: the
    ``n`` / ``n_episodes`` ratio shows how selective each band is.
    """
    change = f"{outcome}_change"
    if change not in episodes.columns:
        raise ModelError(f"dose_response: the episode table lacks column {change!r}")
    if list(bands) != sorted(set(bands)) or bands[0] != 0:
        raise ModelError(f"bands={tuple(bands)}: give increasing lower edges starting at 0")
    ep = episodes[episodes["status"].ne("open")]
    ep = ep.assign(_pri=pri_visit_counts(ep, visits, techniques))
    labels = _band_labels(list(bands))
    ep = ep.assign(band=pd.cut(ep["_pri"], [*bands, np.inf], right=False, labels=labels))
    keys = ["band"] if by is None else [by, "band"]
    rows = [{**dict(zip(keys, key, strict=True)), **_summary(g, change)}
            for key, g in ep.groupby(keys, observed=True)]
    return pd.DataFrame(rows).assign(analysis=LABEL)


def _summary(g: pd.DataFrame, change: str) -> dict:
    y = g[change].dropna().to_numpy(float)
    n = len(y)
    mean = float(y.mean()) if n else np.nan
    se = float(y.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
    half = stats.t.ppf(0.975, n - 1) * se if n > 1 else np.nan
    return {"term": f"mean {change}", "estimate": mean, "se": se,
            "ci_low": mean - half, "ci_high": mean + half, "n": n, "n_episodes": len(g),
            "mean_pri_visits": float(g["_pri"].mean()), "mean_visits": float(g["n_visits"].mean())}
