"""Shared fixtures. Other test modules may append fixtures here with small targeted edits."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from outcomes.schema import VISIT_COLUMNS

#: The ingest date the ingest tests use for the future-visit check.
TODAY = "2025-06-30"


def make_visit_rows(n_patients: int = 3, start: str = "2024-01-08",
                    prefix: str = "") -> list[dict[str, str]]:
    """Valid canonical visit rows as text: per patient an evaluation, 3 treatments, a discharge.

    Built by hand (not by outcomes.synthetic) so ingest tests control every cell.
    """
    rows = []
    kinds = ["evaluation", "treatment", "treatment", "treatment", "discharge"]
    notes = ["90/90 hip lift w/ balloon", "hiking poles; glute med re-ed", "foam rolling",
             "IT band stretch", "ice"]
    for p in range(n_patients):
        day0 = pd.Timestamp(start) + pd.Timedelta(days=30 * (p % 12))
        for k, kind in enumerate(kinds):
            rows.append({
                "visit_id": f"{prefix}V{p:03d}{k}", "patient_id": f"{prefix}P{p:03d}", "clinic_id": "C1",
                "therapist_id": f"T{p % 2}", "visit_date": (day0 + pd.Timedelta(days=7 * k))
                .strftime("%Y-%m-%d"), "visit_type": kind,
                "cpt_codes": "97162" if k == 0 else "97110", "icd10": "M76.31",
                "technique_notes": notes[k], "nprs": str(max(0, 7 - k)), "lefs": str(40 + 5 * k),
                "psfs": str(3 + k), "groc": "" if k < 4 else "4", "age": "45", "sex": "F",
                "payer": "commercial", "symptom_duration_weeks": "10", "prior_pt": "1",
                "prior_injection": "0", "surgery_recommended": "0",
            })
    return rows


def write_rows(path: Path, rows: list[dict[str, str]] | list[list[str]],
               header: list[str] | None = None, delimiter: str = ",",
               encoding: str = "utf-8") -> Path:
    """Write rows (dicts in canonical order, or raw lists) as CSV with proper quoting."""
    header = list(VISIT_COLUMNS) if header is None else header
    with path.open("w", newline="", encoding=encoding) as fh:
        writer = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([row.get(c, "") for c in header] if isinstance(row, dict) else row)
    return path


@pytest.fixture
def visit_rows() -> list[dict[str, str]]:
    """15 valid visit rows (3 patients x 5 visits) as text."""
    return make_visit_rows()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh store path (not yet created)."""
    return tmp_path / "store.duckdb"


@pytest.fixture
def clean_csv(tmp_path: Path, visit_rows) -> Path:
    """A valid canonical CSV export of :func:`make_visit_rows`."""
    return write_rows(tmp_path / "export.csv", visit_rows)


def store_snapshot(db: Path) -> dict | None:
    """Everything a reader can see in a store (None when the file does not exist)."""
    import duckdb

    if not Path(db).exists():
        return None
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        for table in ("visits", "visit_techniques", "quarantine", "ingest_log", "episodes"):
            rows = con.execute(f"SELECT * FROM {table}").fetchall()
            out[table] = sorted(map(repr, rows))
        return out
    finally:
        con.close()


def typed_visits(visits: pd.DataFrame) -> pd.DataFrame:
    """A clean synthetic export typed as the clean visit table (dates, float scores/flags)."""
    numeric = ["nprs", "lefs", "psfs", "groc", "age", "symptom_duration_weeks", "prior_pt",
               "prior_injection", "surgery_recommended"]
    return visits.assign(visit_date=pd.to_datetime(visits["visit_date"]),
                         **{c: visits[c].astype(float) for c in numeric})


def episodes_of(visits: pd.DataFrame) -> pd.DataFrame:
    """Episodes built from typed visits, techniques mapped from the notes."""
    import outcomes

    tech = outcomes.map_techniques(visits["technique_notes"])
    tech = tech.assign(visit_id=visits.loc[tech["row"], "visit_id"].to_numpy())
    return outcomes.build_episodes(visits, tech)


@pytest.fixture(scope="session")
def small_synthetic():
    """(episodes, visits, truth) of a seeded 900-episode export, PRI effect -1 NPRS point."""
    import outcomes

    visits, truth = outcomes.generate_export(900, seed=5, effects={"nprs": -1.0})
    v = typed_visits(visits)
    return episodes_of(v), v, truth
