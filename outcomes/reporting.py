"""Report-level data assembly: the thin per-section functions the report notebooks call.

Everything here is DataFrame in, new DataFrame out, except :func:`load_report_data`, which reads
the store through :mod:`outcomes.store` (and caches the result per kernel, so a warm kernel that
renders fifty therapist reports reads the store once).

Published tables go through :func:`outcomes.privacy.suppress_small_cells`: counts of 1-10, and the
percentages and means computed from them, are shown as ``<11``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from outcomes.errors import ReportError

__all__ = [
    "parse_quarter",
    "quarter_bounds",
    "previous_quarters",
    "latest_quarter",
    "check_quarter",
    "active_therapists",
    "load_report_data",
]

_QUARTER = re.compile(r"^\s*(\d{4})\s*-?\s*[Qq]([1-4])\s*$")


def parse_quarter(text: str) -> str:
    """Canonical quarter label ``YYYYQn`` from ``2026Q3``, ``2026-Q3`` or ``2026q3``.

    Raises
    ------
    ReportError
        When ``text`` is not a quarter (message names the parameter and the expected form).
    """
    match = _QUARTER.match(str(text))
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


def _active(episodes: pd.DataFrame, quarter: str) -> pd.Series:
    """Episodes with at least one day inside ``quarter``."""
    start, end = quarter_bounds(quarter)
    return (episodes["start_date"] <= end) & (episodes["end_date"] >= start)


def check_quarter(episodes: pd.DataFrame, quarter: str, clinic: str | None = None) -> str:
    """Validate ``quarter`` (and ``clinic``) against the store; return the canonical label.

    Raises
    ------
    ReportError
        Bad quarter string, unknown clinic, or no episode active in the quarter.
    """
    quarter = parse_quarter(quarter)
    data = episodes
    if clinic is not None and clinic != "all":
        data = episodes[episodes["clinic_id"] == clinic]
        if data.empty:
            raise ReportError("--clinic: no episodes for this clinic id in the store")
    if not _active(data, quarter).any():
        raise ReportError(f"--quarter: no episodes in {quarter} in the store "
                          f"(the data end in {latest_quarter(episodes)})")
    return quarter


def active_therapists(episodes: pd.DataFrame, quarter: str) -> list[str]:
    """Sorted ids of the therapists with an episode active in ``quarter``."""
    ids = episodes.loc[_active(episodes, quarter), "therapist_id"].dropna().astype(str)
    return sorted(ids.unique())


def load_report_data(database: str | Path) -> dict[str, Any]:
    """Everything the reports read from the store, loaded once per kernel and cached.

    Parameters
    ----------
    database : path
        The DuckDB store.

    Returns
    -------
    dict
        ``episodes``, ``visits``, ``quarantine``, ``unmapped`` (DataFrames). Callers must not
        mutate them (every function of this module returns new frames).

    Notes
    -----
    The cache key is the resolved path plus the file's size and modification time, so a
    re-ingested store is read again.
    """
    path = Path(database).resolve()
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
    }
