"""Therapist's caseload report sections: own patients only; clinic numbers pool colleagues.

Re-exported by :mod:`outcomes.reports`; the therapist notebook calls them as ``rp.<name>``.
Every function starts from the therapist's own episodes (:func:`own_episodes`) or from the
*aggregates* of their colleagues (:func:`colleagues`), never from another therapist's rows.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from outcomes.reports.data import (
    MIN_CELL,
    REPORT_INSTRUMENTS,
    active_in,
    ended_in,
    is_small,
    previous_quarters,
)
from outcomes.reports.quarterly import format_interval, instrument_row, wilson_ci

__all__ = [
    "MIN_COLLEAGUES", "own_episodes", "caseload_table", "missing_discharge_list", "colleagues",
    "therapist_vs_clinic", "therapist_trend", "format_therapist_trend",
]


#: Fewest colleagues a "rest of clinic" benchmark must pool: with one, it would be that person.
MIN_COLLEAGUES = 2


def own_episodes(episodes: pd.DataFrame, therapist: str) -> pd.DataFrame:
    """The episodes of ``therapist`` (and nobody else's)."""
    return episodes[episodes["therapist_id"] == therapist]


def caseload_table(episodes: pd.DataFrame, quarter: str, therapist: str) -> pd.DataFrame:
    """The therapist's episodes active in ``quarter``, with change and responder flags.

    Returns
    -------
    DataFrame
        Indexed by ``episode`` (the pseudonymous episode id, which starts with the patient's
        pseudonym): ``diagnosis, arm, start, last visit, status, visits`` (in words) and per report
        instrument ``intake -> discharge``, ``change`` and ``MCID`` (``yes``/``no``/``ceiling``
        /``-``), as text.
    """
    own = own_episodes(episodes, therapist)
    own = own[active_in(own, quarter)].sort_values(["start_date", "episode_id"])
    from outcomes.schema import label_values

    out = pd.DataFrame({
        "episode": own["episode_id"], "diagnosis": label_values(own["condition"], "condition"),
        "arm": label_values(own["arm"], "arm"),
        "start": own["start_date"].dt.strftime("%Y-%m-%d"),
        "last visit": own["end_date"].dt.strftime("%Y-%m-%d"),
        "status": label_values(own["status"], "status"),
        "visits": own["n_visits"]})
    for code in REPORT_INSTRUMENTS:
        name = code.upper()
        out[f"{name} intake -> discharge"] = [
            f"{_num(a)} -> {_num(b)}" for a, b in
            zip(own[f"{code}_intake"], own[f"{code}_discharge"], strict=True)]
        out[f"{name} change"] = [_num(v) for v in own[f"{code}_change"]]
        out[f"{name} MCID"] = _responder_text(own[f"{code}_responder"], own[f"{code}_ceiling"])
    return out.set_index("episode")


def _num(value: Any) -> str:
    return "-" if pd.isna(value) else f"{value:g}"


def _responder_text(responder: pd.Series, ceiling: pd.Series) -> list[str]:
    out = []
    for r, c in zip(responder, ceiling, strict=True):
        if c is True or (not pd.isna(c) and bool(c)):
            out.append("ceiling")
        elif pd.isna(r):
            out.append("-")
        else:
            out.append("yes" if bool(r) else "no")
    return out


def missing_discharge_list(episodes: pd.DataFrame, quarter: str, therapist: str) -> pd.DataFrame:
    """The therapist's episodes active in ``quarter`` that ended without a discharge score.

    Returns
    -------
    DataFrame
        Indexed by ``episode``: ``last visit, visits, last NPRS, discharge visit recorded``,
        oldest first: the list to act on (score the discharge, or record the self-discharge).
        When there is none, one row saying so.
    """
    own = own_episodes(episodes, therapist)
    own = own[active_in(own, quarter) & (own["status"] == "no_discharge_score")]
    own = own.sort_values(["end_date", "episode_id"])
    if own.empty:
        return pd.DataFrame({"last visit": ["-"]},
                            index=pd.Index(["none: every ended episode has a discharge score"],
                                           name="episode"))
    return pd.DataFrame({
        "episode": own["episode_id"], "last visit": own["end_date"].dt.strftime("%Y-%m-%d"),
        "visits": own["n_visits"], "last NPRS": [_num(v) for v in own["nprs_last"]],
        "discharge visit recorded": own["has_discharge_visit"].map({True: "yes", False: "no"}),
    }).set_index("episode")


def colleagues(episodes: pd.DataFrame, therapist: str) -> pd.DataFrame:
    """Episodes of the other therapists of the clinic(s) where ``therapist`` works."""
    clinics = set(own_episodes(episodes, therapist)["clinic_id"])
    mask = episodes["clinic_id"].isin(clinics) & (episodes["therapist_id"] != therapist)
    return episodes[mask]


def _benchmark_row(data: pd.DataFrame, code: str) -> dict[str, Any]:
    row = instrument_row(data, code)
    missing = int((data["status"] == "no_discharge_score").sum())
    lo, hi = wilson_ci(missing, len(data))
    return {**row, "ended": len(data), "missing": missing,
            "pct_missing": 100 * missing / len(data) if len(data) else float("nan"),
            "missing_low": 100 * lo, "missing_high": 100 * hi}


def therapist_vs_clinic(episodes: pd.DataFrame, quarters: list[str], therapist: str,
                        code: str = "nprs") -> pd.DataFrame:
    """The therapist's results next to the rest of their clinic, with 95 % intervals.

    Parameters
    ----------
    episodes : DataFrame
        Every episode (the function selects the therapist's and their colleagues').
    quarters : list of str
        Window of episode end quarters (e.g. the last four quarters).
    therapist : str
        Therapist id.
    code : str
        Instrument.

    Returns
    -------
    DataFrame
        Rows ``episodes ended``, ``without discharge score``, ``mean change``, ``% reaching
        MCID``; columns ``you`` and ``rest of clinic``. The benchmark is shown only when it
        pools at least :data:`MIN_COLLEAGUES` colleagues and each of its cells rests on at
        least 11 episodes; otherwise it reads ``not shown (fewer than 2 colleagues)`` or
        ``<11``.
    """
    mine = _benchmark_row(ended_in(own_episodes(episodes, therapist), quarters), code)
    rest_eps = ended_in(colleagues(episodes, therapist), quarters)
    rest = _benchmark_row(rest_eps, code)
    cols = {"you": _benchmark_cells(mine, code, suppress=False)}
    if rest_eps["therapist_id"].nunique() < MIN_COLLEAGUES:
        cols["rest of clinic"] = dict.fromkeys(cols["you"], "not shown (fewer than 2 colleagues)")
    else:
        cols["rest of clinic"] = _benchmark_cells(rest, code, suppress=True)
    out = pd.DataFrame(cols)
    out.index.name = "measure"
    return out


def _benchmark_cells(r: dict[str, Any], code: str, suppress: bool) -> dict[str, str]:
    from outcomes.privacy import SUPPRESSED, WITHHELD, share_band

    def withheld(part: int, whole: int, shown: str) -> str:
        if not suppress or not is_small(part, whole - part):
            return shown
        if is_small(whole):
            return SUPPRESSED
        return share_band(part, whole, MIN_CELL) or WITHHELD

    ended = SUPPRESSED if suppress and is_small(r["ended"]) else str(r["ended"])
    missing = withheld(r["missing"], r["ended"], format_interval(
        r["pct_missing"], r["missing_low"], r["missing_high"], 0, "%"))
    change = (SUPPRESSED if suppress and is_small(r[f"{code}_n"]) else
              format_interval(r[f"{code}_change"], r[f"{code}_change_low"],
                              r[f"{code}_change_high"]))
    pct = withheld(r[f"{code}_responders"], r[f"{code}_eligible"], format_interval(
        r[f"{code}_pct_mcid"], r[f"{code}_pct_low"], r[f"{code}_pct_high"], 0, "%"))
    name = code.upper()
    return {"episodes ended": ended, "without discharge score (95% CI)": missing,
            f"{name} mean change (95% CI)": change, f"{name} % reaching MCID (95% CI)": pct}


def therapist_trend(episodes: pd.DataFrame, quarter: str, therapist: str, n_quarters: int = 8,
                    code: str = "nprs") -> pd.DataFrame:
    """Per quarter: the therapist's % reaching the MCID and, when publishable, the rest of clinic.

    Returns
    -------
    DataFrame
        ``quarter, you_n, you_pct_mcid, clinic_pct_mcid`` and ``your % reaching MCID`` (a copy
        of ``you_pct_mcid`` labelled for the chart); the colleagues' value is NaN when it
        pools fewer than :data:`MIN_COLLEAGUES` colleagues or a cell of 1-10 episodes.
    """
    mine = own_episodes(episodes, therapist)
    rest = colleagues(episodes, therapist)
    rows = []
    for q in previous_quarters(quarter, n_quarters):
        m = instrument_row(ended_in(mine, q), code)
        rq = ended_in(rest, q)
        r = instrument_row(rq, code)
        hidden = (rq["therapist_id"].nunique() < MIN_COLLEAGUES
                  or is_small(r[f"{code}_responders"], r[f"{code}_nonresponders"]))
        rows.append({"quarter": q, "you_n": m[f"{code}_eligible"],
                     "you_pct_mcid": m[f"{code}_pct_mcid"],
                     "clinic_pct_mcid": float("nan") if hidden else r[f"{code}_pct_mcid"]})
    out = pd.DataFrame(rows)
    out["your % reaching MCID"] = out["you_pct_mcid"]
    first = out.index[out["you_n"].gt(0) | out["clinic_pct_mcid"].notna()]
    return out.loc[first[0]:].reset_index(drop=True) if len(first) else out


def format_therapist_trend(trend: pd.DataFrame) -> pd.DataFrame:
    """Readable :func:`therapist_trend` table."""
    def pct(v: float) -> str:
        return "-" if pd.isna(v) else f"{v:.0f}%"

    return pd.DataFrame({
        "your episodes with a result": trend["you_n"].to_numpy(),
        "you: % reaching MCID": [pct(v) for v in trend["you_pct_mcid"]],
        "rest of clinic: % reaching MCID": [pct(v) for v in trend["clinic_pct_mcid"]],
    }, index=pd.Index(trend["quarter"], name="quarter"))
