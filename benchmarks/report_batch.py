"""Benchmark: a whole quarter of reports vs one therapist's report, in the same run.

Builds a synthetic store with 50 therapists (``outcomes.synthetic`` -> ``outcomes.ingest``) in
``benchmarks/_work``, then times, through the command line as a user runs it:

* baseline: ``outcomes report therapist --therapist <one>`` (cold: Python, kernel, imports);
* batch: ``outcomes report all --jobs 2`` (director's report, 50 therapists, comparative).

Prints the ratio batch / baseline. Target: at most 10 on a 2-core machine (warm kernels run many
notebooks each, so the batch does not pay 52 cold starts).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

WORK = Path(__file__).resolve().parent / "_work" / "report_batch"
QUARTER = "2026Q3"
N_THERAPISTS = 50


def build_store() -> Path:
    """A 50-therapist synthetic store (cached between runs)."""
    from outcomes.ingest import ingest_file
    from outcomes.synthetic import generate_export

    db = WORK / "store.duckdb"
    if db.exists():
        return db
    WORK.mkdir(parents=True, exist_ok=True)
    frame, _ = generate_export(n_episodes=3000, seed=2026, n_therapists=N_THERAPISTS,
                               n_clinics=5)
    frame.to_csv(WORK / "export.csv", index=False)
    ingest_file(WORK / "export.csv", db=db)
    return db


def run(args: list[str]) -> float:
    """Seconds one ``outcomes report ...`` command takes (fresh output folder)."""
    out = WORK / "reports"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "outcomes.cli", "report", *args, "--db",
           str(WORK / "store.duckdb"), "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())
    return time.perf_counter() - t0


def main() -> None:
    db = build_store()
    from outcomes.reports import active_therapists
    from outcomes.store import load_episodes

    therapists = active_therapists(load_episodes(db), QUARTER)
    one = run(["therapist", "--quarter", QUARTER, "--therapist", therapists[0]])
    batch = run(["all", "--quarter", QUARTER, "--jobs", "2"])
    manifest = json.loads((WORK / "reports" / QUARTER / "manifest.json").read_text())
    kinds: dict[str, list[float]] = {}
    for r in manifest["reports"]:
        kinds.setdefault(r["notebook"], []).append(r["seconds"])
    print(f"store: {db} ({len(therapists)} therapists active in {QUARTER})")
    print(f"baseline  one therapist report (cold CLI run): {one:7.2f} s")
    print(f"batch     all {len(manifest['reports'])} reports, --jobs 2:          {batch:7.2f} s")
    for nb, secs in sorted(kinds.items()):
        print(f"          {nb:28s} n={len(secs):3d}  mean execute {sum(secs) / len(secs):5.2f} s")
    print(f"ratio batch / baseline: {batch / one:.2f}  (target <= 10)")


if __name__ == "__main__":
    main()
