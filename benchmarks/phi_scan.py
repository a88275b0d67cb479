"""PHI scanner: recall and false positives on the labelled corpus, and throughput on 1M notes.

Part 1 - accuracy. :func:`phi_corpus.generate_phi_corpus` plants identifiers of every
kind in synthetic therapy notes (1,000 notes with one to three planted values, 500 notes with only
clinical look-alikes such as ``L4-L5``, ``CPT 97110``, ``Left AIC``, ``Thomas test``). Printed per
kind: planted, detected (planted span fully covered by a hit of the same kind), recall, false
positives (hits overlapping no planted value, in any note), clean notes flagged and the FP rate
(share of the 500 look-alike notes with a hit of that kind). Targets (privacy brief): recall 1.0
for phones, emails, SSNs and keyworded record numbers, >= 0.95 for names, FP rate < 2 %.
The patterns were tuned on seeds 0-3 and 20261125; ``tests/test_privacy.py`` asserts the targets on
seed 424242. The default seed here is 7 (also never tuned on).

Part 2 - throughput. ``generate_notes`` makes N notes (2 % with identifiers; many distinct,
because scores and dates vary). Timed in the same run on the same Series:
- baseline: one trivial regex pass, ``notes.str.contains(r"\\d{3}-\\d{4}")``;
- ``redact_phi(notes)`` (factorise, per-kind RE2 triggers, Python detectors on triggered distinct
  notes, broadcast back to rows, counts by kind).
Printed: rows/s of each, the ratio redact / baseline, and distinct notes/s of redact_phi (the
cost grows with distinct notes, not rows). Timings vary with machine load; the ratio is the number
to compare between runs.

Run: ``.venv/bin/python benchmarks/phi_scan.py [--rows 1000000] [--seed 7]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import pandas as pd
from phi_corpus import generate_notes, generate_phi_corpus, score_phi_scan

from outcomes.privacy import redact_phi, scan_phi

TARGETS = {"phone": 1.0, "email": 1.0, "ssn": 1.0, "mrn": 1.0, "name": 0.95}


def accuracy_table(seed: int) -> pd.DataFrame:
    """Per-kind recall and false positives on the labelled corpus of this seed."""
    notes, labels = generate_phi_corpus(n_phi=1000, n_clean=500, seed=seed)
    table = score_phi_scan(notes, labels, scan_phi(notes))
    table["target"] = [f">= {TARGETS[k]:.2f}" if k in TARGETS else "" for k in table.index]
    return table


def print_accuracy(table: pd.DataFrame) -> None:
    head = f"{'kind':8} {'planted':>7} {'detected':>8} {'recall':>7} {'false_pos':>9} "
    print(head + f"{'clean_flagged':>13} {'fp_rate':>8}  target")
    for kind, row in table.iterrows():
        print(
            f"{kind:8} {row.planted:7d} {row.detected:8d} {row.recall:7.3f} "
            f"{row.false_positives:9d} {row.clean_flagged:6d}/{row.clean_notes:<6d} "
            f"{row.fp_rate:8.3%}  {row.target}"
        )


def time_once(func) -> tuple[float, object]:
    start = time.perf_counter()
    out = func()
    return time.perf_counter() - start, out


def throughput(rows: int, seed: int) -> None:
    """Rows/s of redact_phi against one trivial regex pass over the same notes."""
    notes = generate_notes(rows, share_phi=0.02, seed=seed)
    distinct = notes.nunique()
    t_base, _ = time_once(lambda: notes.str.contains(r"\d{3}-\d{4}", regex=True))
    t_redact, (_, counts) = time_once(lambda: redact_phi(notes))
    print(
        f"\nnotes: {rows:,} rows, {distinct:,} distinct, mean length "
        f"{notes.str.len().mean():.0f} chars, 2 % with identifiers"
    )
    print(f"baseline  one regex pass  {t_base:7.2f} s  {rows / t_base:12,.0f} rows/s")
    print(
        f"redact_phi                {t_redact:7.2f} s  {rows / t_redact:12,.0f} rows/s"
        f"  ({distinct / t_redact:,.0f} distinct notes/s)"
    )
    print(f"ratio redact_phi / baseline: {t_redact / t_base:.1f}x")
    print("hits by kind (rows):", ", ".join(f"{k} {v:,}" for k, v in counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(f"python {platform.python_version()}, pandas {pd.__version__}, {platform.machine()}")
    print(
        f"\nlabelled corpus, seed {args.seed}: 1,000 notes with planted identifiers, "
        "500 look-alike notes"
    )
    print_accuracy(accuracy_table(args.seed))
    throughput(args.rows, args.seed)


if __name__ == "__main__":
    main()
