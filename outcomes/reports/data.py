"""What every report starts from: quarters, the store's data, the cohorts, the small-cell rule.

:func:`load_report_data` reads the store through :mod:`outcomes.store` (and caches the result per
kernel, so a warm kernel that renders fifty therapist reports reads the store once). Everything
else is DataFrame in, new DataFrame out.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from outcomes.errors import ReportError

__all__ = [
    "QUARTER_RE", "CONDITIONS_ALL", "REPORT_INSTRUMENTS", "MIN_CELL", "is_small", "active_in",
    "select_clinic", "ended_in", "started_in",
    "parse_quarter",
    "quarter_bounds",
    "previous_quarters",
    "latest_quarter",
    "check_quarter",
    "active_therapists",
    "load_report_data",
]

QUARTER_RE = re.compile(r"^\s*(\d{4})\s*-?\s*[Qq]([1-4])\s*$")


def parse_quarter(text: str) -> str:
    """Canonical quarter label ``YYYYQn`` from ``2026Q3``, ``2026-Q3`` or ``2026q3``.

    Raises
    ------
    ReportError
        When ``text`` is not a quarter (message names the parameter and the expected form).
    """
    match = QUARTER_RE.match(str(text))
    if not match:
        raise ReportError("--quarter: expected a quarter like 2026Q3 (year, 'Q', 1-4)")
    return f"{match.group(1)}Q{match.group(2)}"


def quarter_bounds(quarter: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last day of ``quarter`` (``2026Q3`` -> 2026-07-01, 2026-09-30)."""
    period = pd.Period(parse_quarter(quarter), freq="Q")
    return period.start_time.normalize(), period.end_time.normalize()


def previous_quarters(quarter: str, n: int) -> list[str]:
    """The ``n`` quarters ending with ``quarter``, oldest first."""
    period = pd.Period(parse_quarter(quarter), freq="Q")
    return [str(period - k) for k in range(n - 1, -1, -1)]


def latest_quarter(episodes: pd.DataFrame) -> str:
    """The quarter of the last episode end date in ``episodes``."""
    if episodes.empty:
        raise ReportError("the store holds no episodes; ingest an export first")
    return str(pd.Timestamp(episodes["end_date"].max()).to_period("Q"))


def active_in(episodes: pd.DataFrame, quarter: str) -> pd.Series:
    """Episodes with at least one day inside ``quarter``."""
    start, end = quarter_bounds(quarter)
    return (episodes["start_date"] <= end) & (episodes["end_date"] >= start)


def check_quarter(episodes: pd.DataFrame, quarter: str, clinic: str | None = None) -> str:
    """Validate ``quarter`` (and ``clinic``) against the store; return the canonical label.

    ``"latest"`` means the quarter of the last episode end date in the store.

    Raises
    ------
    ReportError
        Bad quarter string, unknown clinic, or no episode active in the quarter.
    """
    quarter = latest_quarter(episodes) if str(quarter).strip().lower() == "latest" else (
        parse_quarter(quarter))
    data = episodes
    if clinic is not None and clinic != "all":
        data = episodes[episodes["clinic_id"] == clinic]
        if data.empty:
            raise ReportError("--clinic: no episodes for this clinic id in the store")
    if not active_in(data, quarter).any():
        raise ReportError(f"--quarter: no episodes in {quarter} in the store "
                          f"(the data end in {latest_quarter(episodes)})")
    return quarter


def active_therapists(episodes: pd.DataFrame, quarter: str) -> list[str]:
    """Sorted ids of the therapists with an episode active in ``quarter``."""
    ids = episodes.loc[active_in(episodes, quarter), "therapist_id"].dropna().astype(str)
    return sorted(ids.unique())


def load_report_data(database: str | Path) -> dict[str, Any]:
    """Everything the reports read from the store, loaded once per kernel and cached.

    Parameters
    ----------
    database : path
        The DuckDB store; empty means ``$OUTCOMES_DB`` or ``./outcomes.duckdb``.

    Returns
    -------
    dict
        ``episodes``, ``visits``, ``quarantine``, ``unmapped``, ``instruments`` (DataFrames).
        Callers must not mutate them (every function of this module returns new frames).

    Notes
    -----
    The cache key is the resolved path plus the file's size and modification time, so a
    re-ingested store is read again.
    """
    from outcomes.store import resolve_db

    path = resolve_db(database or None).resolve()
    if not path.exists():
        raise ReportError(f"database {path.name} not found")
    stat = path.stat()
    return _load(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=2)
def _load(path: str, size: int, mtime: int) -> dict[str, Any]:
    from outcomes import store

    return {
        "episodes": store.load_episodes(path),
        "visits": store.load_visits(path),
        "quarantine": store.load_quarantine_summary(path),
        "unmapped": store.load_unmapped(path),
        "instruments": store.load_instrument_counts(path),
    }


# --------------------------------------------------------------------------------------------
# Cohorts
# --------------------------------------------------------------------------------------------
#: Condition labels a comparative analysis can be run for.
CONDITIONS_ALL = ("itbs", "pfps", "hip_pain", "lbp", "other")
#: Instruments summarised in the reports (episode columns ``X_change``, ``X_responder``...).
REPORT_INSTRUMENTS = ("nprs", "lefs")
#: Smallest published count (CMS cell-size rule: 1-10 are suppressed).
MIN_CELL = 11


def select_clinic(episodes: pd.DataFrame, clinic: str | None) -> pd.DataFrame:
    """Episodes of ``clinic`` (``None`` or ``"all"``: every clinic)."""
    if clinic in (None, "all"):
        return episodes
    return episodes[episodes["clinic_id"] == clinic]


def ended_in(episodes: pd.DataFrame, quarters: str | list[str]) -> pd.DataFrame:
    """Episodes that ended (not ``open``) in ``quarters``: the outcome cohort of a report."""
    quarters = [quarters] if isinstance(quarters, str) else list(quarters)
    end_q = episodes["end_date"].dt.to_period("Q").astype(str)
    return episodes[end_q.isin(quarters) & (episodes["status"] != "open")]


def started_in(episodes: pd.DataFrame, quarter: str) -> pd.DataFrame:
    """Episodes whose initial evaluation fell in ``quarter``."""
    return episodes[episodes["start_date"].dt.to_period("Q").astype(str) == quarter]


def is_small(*counts: int) -> bool:
    """True when any count is 1-10: a cell the CMS rule does not let a report show."""
    return any(1 <= c < MIN_CELL for c in counts)
