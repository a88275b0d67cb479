"""The benchmark scripts run end to end at a tiny size (their numbers are in benchmarks/README.md).

Timings are never asserted here (the machines are noisy); only that each script runs from a
fresh checkout and prints the lines its README documents.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_ingest_scale_prints_ratio_floor_and_linearity(tmp_path):
    out = subprocess.run(
        [sys.executable, str(BENCH / "ingest_scale.py"), "--rows", "3000", "--small", "1500",
         "--repeat", "1", "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True).stdout
    lines = out.splitlines()
    assert lines[0].split()[:7] == ["rows", "MB", "bare", "s", "ingest", "s", "ratio"]
    assert "ingest/floor" in lines[0]
    rows = [line.split() for line in (lines[1], lines[3])]
    assert [int(r[0]) > 1000 for r in rows] == [True, True]
    # ingest stages are reported, each size with its stage floors, and the floor is below
    # the full ingest (ingest/floor is their ratio)
    assert all("episodes=" in line and "redact=" in line for line in (lines[1], lines[3]))
    assert all("stage floors: read" in line for line in (lines[2], lines[4]))
    for r in rows:
        ingest_s, floor_s, tables_s = float(r[3]), float(r[5]), float(r[8])
        assert 0 < floor_s < ingest_s and tables_s > 0
        assert float(r[7]) == pytest.approx(ingest_s / floor_s, rel=0.1)  # shown rounded
        # ingest against the floor of every table it writes (visits, techniques, episodes)
        assert float(r[9]) == pytest.approx(ingest_s / (floor_s + tables_s), rel=0.1)
    assert any(line.startswith("linearity:") for line in lines)
    # the budget ingest/floor <= 2 leaves once the rows are written, for the largest size
    headroom = next(line for line in lines if line.startswith("headroom at"))
    floor_s, tables_s = float(rows[1][5]), float(rows[1][8])
    took = float(headroom.split(" takes ")[1].split()[0])
    left = float(headroom.split(" leaves ")[1].split()[0])
    assert took == pytest.approx(floor_s + tables_s, abs=0.02)
    assert left == pytest.approx(floor_s - tables_s, abs=0.02)
    # the multi-file export of the largest size, then with rows of a measure outside the
    # vocabulary: every one of those is quarantined (a real flowsheet holds other measures)
    multi = lines[lines.index(next(x for x in lines if x.startswith("multi-file export"))) + 2]
    loaded = next(x for x in lines if x.startswith("loaded: "))
    assert multi.split()[0] == rows[1][0] and "join=" in multi
    measure_rows = int(loaded.split(" of ")[1].split()[0])
    other = next(x for x in lines if x.startswith("with 10 % more flowsheet rows"))
    n_other = round(measure_rows * 0.1)
    quarantined = int(other.split(" rows quarantined")[0].split()[-1])
    assert quarantined >= n_other and "other/multi" in other and "commit=" in other


@pytest.mark.slow
def test_recovery_prints_every_scenario_estimator_and_the_sensitivity_table(tmp_path):
    csv = tmp_path / "rows.csv"
    out = subprocess.run(
        [sys.executable, str(BENCH / "recovery.py"), "--replicates", "2", "--episodes", "1000",
         "--processes", "1", "--scenarios", "uniform,subgroup,small,mnar",
         "--boot-replicates", "1", "--n-boot", "5", "--sensitivity-replicates", "1",
         "--out", str(csv)],
        capture_output=True, text=True, timeout=600, check=True).stdout
    assert out.startswith("recovery: 2 replicates per scenario, 1000 episodes each")
    for word in ("bias", "emp_sd", "mean_se", "coverage", "gate_pass", "primary_boot",
                 "primary_same_reps", "difference", "targets (primary, jackknife",
                 "missing-data sensitivity table", "multiple_imputation"):
        assert word in out, word
    import pandas as pd

    rows = pd.read_csv(csv)
    assert set(rows["scenario"]) == {"uniform", "subgroup", "small", "mnar"}
    sub = rows[(rows["scenario"] == "subgroup") & (rows["estimand"] == "difference")]
    assert (sub.loc[sub["outcome"] == "nprs", "truth"] == -2.0).all()  # stratum truth
    overall = rows[(rows["scenario"] == "subgroup") & (rows["estimand"] == "overall")
                   & (rows["outcome"] == "nprs")]
    assert overall["truth"].between(-2.0, -0.2).all()  # the subgroup share of -2
