"""E-values against the EValue R package's formulas, run in base R (R 4.2.2).

The EValue package cannot be installed here (no CRAN); its functions ``threshold``,
``toRR.MD``, ``toRR.OR``, ``toRR.HR`` and ``evalues.MD`` (EValue/R/EValue.R and
effect_measures.R, github mayamathur/evalue_package) are copied below in base R and evaluated on
the brief's cases, e.g. ``evalues.MD(est = 0.5, se = 0.1)``. Tolerance 1e-10 relative.
"""

import io
import shutil
import subprocess

import pandas as pd
import pytest

from outcomes.models.sensitivity import evalue

pytestmark = pytest.mark.r

EVALUE_R = """
threshold <- function(x) { if (x <= 1) x <- 1 / x; x + sqrt(x * (x - 1)) }
near_null <- function(rr, lo, hi) {
  near <- if (rr > 1) lo else hi
  if ((rr > 1 && near <= 1) || (rr < 1 && near >= 1)) 1 else threshold(near)
}
md <- function(est, se) {  # evalues.MD: lo/hi = exp(0.91 est -/+ 1.78 se)
  rr <- exp(0.91 * est); lo <- exp(0.91 * est - 1.78 * se); hi <- exp(0.91 * est + 1.78 * se)
  c(threshold(rr), near_null(rr, lo, hi))
}
or_common <- function(x) sqrt(x)
hr_common <- function(x) (1 - 0.5^sqrt(x)) / (1 - 0.5^sqrt(1 / x))
ratio <- function(est, lo, hi, f) c(threshold(f(est)), near_null(f(est), f(lo), f(hi)))
out <- rbind(
  data.frame(case = "MD 0.5 se 0.1", t(md(0.5, 0.1))),
  data.frame(case = "MD -0.3 se 0.12", t(md(-0.3, 0.12))),
  data.frame(case = "MD 0.1 se 0.2", t(md(0.1, 0.2))),
  data.frame(case = "RR 0.80 0.71 0.91", t(ratio(0.80, 0.71, 0.91, identity))),
  data.frame(case = "RR 2.47 1.67 3.64", t(ratio(2.466433, 1.672663, 3.63689, identity))),
  data.frame(case = "OR 1.9 1.3 2.8 common", t(ratio(1.9, 1.3, 2.8, or_common))),
  data.frame(case = "HR 0.7 0.55 0.9 common", t(ratio(0.7, 0.55, 0.9, hr_common))))
names(out) <- c("case", "point", "ci")
write.csv(format(out, digits = 15), stdout(), row.names = FALSE)
"""

CASES = {
    "MD 0.5 se 0.1": lambda: evalue(0.5, sd=1, se=0.1),
    "MD -0.3 se 0.12": lambda: evalue(-0.3, sd=1, se=0.12),
    "MD 0.1 se 0.2": lambda: evalue(0.1, sd=1, se=0.2),
    "RR 0.80 0.71 0.91": lambda: evalue(0.80, 0.71, 0.91, measure="RR"),
    "RR 2.47 1.67 3.64": lambda: evalue(2.466433, 1.672663, 3.63689, measure="RR"),
    "OR 1.9 1.3 2.8 common": lambda: evalue(1.9, 1.3, 2.8, measure="OR", rare=False),
    "HR 0.7 0.55 0.9 common": lambda: evalue(0.7, 0.55, 0.9, measure="HR", rare=False),
}


def test_evalues_match_evalue_package_formulas_in_r():
    if shutil.which("Rscript") is None:
        pytest.fail("Rscript not found: run `make sysdeps` before the R comparison tests")
    out = subprocess.run(["Rscript", "-e", EVALUE_R], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    ref = pd.read_csv(io.StringIO(out.stdout)).set_index("case")
    assert list(ref.index) == list(CASES)
    for case, run in CASES.items():
        ev = run()
        assert ev.point == pytest.approx(ref.loc[case, "point"], rel=1e-10), case
        assert ev.ci == pytest.approx(ref.loc[case, "ci"], rel=1e-10), case
    assert ref.loc["MD 0.1 se 0.2", "ci"] == 1  # the interval includes the null
    # Hsu & Small lead example printed by the EValue docs: E 4.368237 (point), 2.733388 (lower)
    assert ref.loc["RR 2.47 1.67 3.64", "point"] == pytest.approx(4.368237, abs=5e-6)
    assert ref.loc["RR 2.47 1.67 3.64", "ci"] == pytest.approx(2.733388, abs=5e-6)
