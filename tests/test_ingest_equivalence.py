"""Ingest gives the same store as the implementation before issue 13, on random messy exports.

The expectations in ``tests/data/ingest_equivalence.json`` were written by the ingest code of
commit b994722 (before the issue-13 rewrite of cleaning, episode building and the store
writes): for each scenario and each step, a digest of every stored table (visits, technique
rows, quarantine rows, ingest log without its timestamp, episodes) and the intake summary.

Each scenario is a sequence of ingests into one store: a messy export (random seed and defect
rate), a second messy export whose visit and patient ids collide with the first with other
values (conflicts, withdrawn visits, a later ``as_of``), the same export with most visit ids
made new (later visits of patients already stored: episodes span two files), an overlapping
re-export of part of the first with some scores changed (exact duplicates against the store,
conflicts against the store) and a re-ingest of the first file (a no-op). The store is compared
after every step, so incremental episode building is checked against the full rebuild.

Regenerate (only from the pre-issue-13 code): ``python tests/test_ingest_equivalence.py``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

EXPECTED = Path(__file__).parent / "data" / "ingest_equivalence.json"
TODAY = "2026-10-31"
SEEDS = (3, 17, 29, 41, 58, 73)
#: Intake-summary keys compared (seconds and timings are machine-dependent).
RESULT_KEYS = ("already_ingested", "ingest_id", "rows_in", "rows_loaded", "rows_quarantined",
               "rows_duplicate", "rows_blank", "rows_withdrawn", "quarantine_by_reason",
               "unmapped_techniques", "phi_counts", "warnings", "episodes")
#: Columns of each table left out of the digest: the run (time, package version), and the
#: summary JSON, which echoes the profile (its fields grow with new ingest options); the
#: summary's counts are compared through RESULT_KEYS.
VOLATILE = {"ingest_log": ("ingested_at", "package_version", "summary")}


def table_digests(db: Path) -> dict[str, list]:
    """Per table: [row count, sha256 of the sorted rows' repr] (the columns' types included)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        for table in ("visits", "visit_techniques", "quarantine", "ingest_log", "episodes"):
            cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()
                    if r[0] not in VOLATILE.get(table, ())]
            types = [r[1] for r in con.execute(f"DESCRIBE {table}").fetchall()
                     if r[0] in cols]
            rows = con.execute(f"SELECT {', '.join(cols)} FROM {table}").fetchall()
            text = "\n".join([repr(list(zip(cols, types, strict=True))),
                              *sorted(map(repr, rows))])
            out[table] = [len(rows), hashlib.sha256(text.encode()).hexdigest()]
        return out
    finally:
        con.close()


def overlap_export(first: Path, out: Path, seed: int) -> Path:
    """Part of ``first`` re-exported: most rows as they were, some NPRS scores changed.

    Rows are re-read from the messy file as text, so their defects come along.
    """
    rng = np.random.default_rng(seed)
    frame = pd.read_csv(first, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                        on_bad_lines="skip")
    frame = frame.iloc[np.sort(rng.choice(len(frame), size=len(frame) // 2, replace=False))]
    frame = frame.copy()
    change = rng.random(len(frame)) < 0.05
    numeric = pd.to_numeric(frame["nprs"], errors="coerce")
    new = ((numeric.fillna(5) + 1) % 11).astype(int).astype(str)
    frame.loc[change, "nprs"] = new[change]
    frame.to_csv(out, index=False, lineterminator="\n")
    return out


def renamed_export(source: Path, out: Path, seed: int) -> Path:
    """``source`` with most visit ids made new: later visits of patients already stored."""
    rng = np.random.default_rng(seed)
    frame = pd.read_csv(source, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                        on_bad_lines="skip")
    new = rng.random(len(frame)) < 0.6
    frame.loc[new, "visit_id"] = "W" + frame.loc[new, "visit_id"]
    frame.to_csv(out, index=False, lineterminator="\n")
    return out


def run_scenario(seed: int, folder: Path) -> list[dict]:
    """Ingest the scenario's files in order; per step the intake summary and table digests."""
    from outcomes.ingest import ingest_file
    from outcomes.synthetic import write_export

    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 120))
    first, second = folder / f"a{seed}.csv", folder / f"b{seed}.csv"
    write_export(first, n_episodes=n, seed=seed, messy=float(rng.uniform(0.02, 0.12)))
    write_export(second, n_episodes=int(n * 0.8), seed=seed + 1000,
                 messy=float(rng.uniform(0.02, 0.12)), end="2026-10-15")
    renamed = renamed_export(second, folder / f"r{seed}.csv", seed)
    third = overlap_export(first, folder / f"c{seed}.csv", seed)
    db = folder / f"s{seed}.duckdb"
    steps = []
    for path in (first, second, renamed, third, first):
        result = ingest_file(path, db=db, today=TODAY).to_dict()
        steps.append({"result": {k: result[k] for k in RESULT_KEYS},
                      "tables": table_digests(db)})
    return steps


def normalised(value):
    """JSON round trip, so live results compare equal to the stored ones (tuples -> lists)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_ingest_matches_the_previous_implementation(seed, tmp_path):
    """Same store contents and quarantine rows as before issue 13, at every step."""
    expected = json.loads(EXPECTED.read_text())[str(seed)]
    steps = normalised(run_scenario(seed, tmp_path))
    for i, (got, want) in enumerate(zip(steps, expected, strict=True)):
        assert got["result"] == want["result"], f"step {i}: intake summary differs"
        for table, digest in want["tables"].items():
            assert got["tables"][table] == digest, f"step {i}: table {table} differs"


def test_stored_expectations_cover_what_the_rewrite_touches():
    """A check of the fixture, not of the code: the expectations the slow test compares with
    (written by the pre-issue-13 code) include conflicts, withdrawals, duplicates and a re-ingest,
    so regenerating them with a weaker scenario fails here."""
    expected = json.loads(EXPECTED.read_text())
    assert sorted(expected) == sorted(map(str, SEEDS))
    results = [step["result"] for steps in expected.values() for step in steps]
    assert any(r["rows_withdrawn"] for r in results)
    assert any(r["rows_duplicate"] for r in results)
    assert any(r["quarantine_by_reason"].get("conflicting_duplicate") for r in results)
    assert any(r["already_ingested"] for r in results)
    reasons = {k for r in results for k in r["quarantine_by_reason"]}
    assert {"bad_date", "score_out_of_range", "ragged_row", "totals_row"} <= reasons


def main() -> None:
    """Write the expectations (run from the pre-issue-13 implementation only)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = {str(s): run_scenario(s, Path(tmp)) for s in SEEDS}
    EXPECTED.write_text(json.dumps(normalised(out), indent=1, sort_keys=True) + "\n")
    print(f"wrote {EXPECTED}", file=sys.stderr)


if __name__ == "__main__":
    main()
