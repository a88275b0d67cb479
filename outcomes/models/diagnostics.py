"""The diagnostics gate: a comparative result is shown only when its diagnostics pass.

OHDSI CohortMethod's discipline (Schuemie et al. 2020): an effect estimate is not interpretable
unless covariate balance after weighting, equipoise and the effective sample size are adequate.
Reports call :func:`diagnostics_gate` and print the label instead of the estimate when it fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

__all__ = ["diagnostics_gate", "GateResult"]


@dataclass
class GateResult:
    """Outcome of the diagnostics gate.

    Attributes
    ----------
    interpretable : bool
        True when every check passes.
    label : str
        ``"interpretable"`` or ``"not interpretable: <failed checks>"`` for reports.
    checks : DataFrame
        ``check, value, threshold, passed, detail``: one row per covariate balance check, the
        equipoise check and one ESS check per arm.
    """

    interpretable: bool
    label: str
    checks: pd.DataFrame

    def __bool__(self) -> bool:
        return self.interpretable


def diagnostics_gate(
    iptw_result,
    *,
    smd_threshold: float = 0.1,
    equipoise_min: float = 0.2,
    ess_min: float = 30.0,
) -> GateResult:
    """Decide whether an IPTW comparison may be interpreted.

    Parameters
    ----------
    iptw_result : IPTWResult
        Output of :func:`outcomes.models.iptw` (uses ``.balance``, ``.equipoise``, ``.ess``).
    smd_threshold : float
        Largest acceptable ``|SMD|`` after weighting for every covariate (CohortMethod: 0.1).
    equipoise_min : float
        Smallest acceptable share of patients with preference score in [0.3, 0.7]
        (CohortMethod's default 0.2).
    ess_min : float
        Smallest acceptable effective sample size in each arm. Our choice (30): below it the
        weighted estimate rests on a handful of heavily weighted patients.

    Returns
    -------
    GateResult
        ``interpretable``, ``label`` and the per-check table.

    Notes
    -----
    Balance uses ``balance["smd_after"]``: standardized for every covariate type, binary ones
    over ``sqrt((p1(1-p1) + p0(1-p0)) / 2)`` as OHDSI CohortMethod (a raw difference in
    proportions of 0.05 at p near 0.05 is a standardized difference of about 0.2).

    Example label: ``"not interpretable: balance after weighting fails for
    symptom_duration_weeks (|SMD| 0.14 > 0.1); equipoise 0.12 < 0.2"``. Missing values (an SMD
    that could not be computed) fail their check.
    """
    rows = []
    for cov, smd in zip(iptw_result.balance["covariate"], iptw_result.balance["smd_after"],
                        strict=True):
        rows.append(("balance", cov, abs(smd), smd_threshold, bool(abs(smd) <= smd_threshold)))
    eq = float(iptw_result.equipoise)
    rows.append(("equipoise", "preference score in [0.3, 0.7]", eq, equipoise_min,
                 bool(eq >= equipoise_min)))
    for arm, ess in iptw_result.ess.items():
        rows.append(("ess", str(arm), float(ess), ess_min, bool(ess >= ess_min)))
    checks = pd.DataFrame(rows, columns=["check", "detail", "value", "threshold", "passed"])
    ok = bool(checks["passed"].all())
    return GateResult(ok, "interpretable" if ok else "not interpretable: " + _reasons(checks),
                      checks)


def _reasons(checks: pd.DataFrame) -> str:
    failed = checks[~checks["passed"]]
    parts = []
    bal = failed[failed["check"] == "balance"]
    if len(bal):
        items = ", ".join(f"{r.detail} (|SMD| {_fmt(r.value)} > {r.threshold:g})"
                          for r in bal.itertuples())
        parts.append(f"balance after weighting fails for {items}")
    for r in failed[failed["check"] == "equipoise"].itertuples():
        parts.append(f"equipoise {_fmt(r.value)} < {r.threshold:g}")
    for r in failed[failed["check"] == "ess"].itertuples():
        parts.append(f"effective sample size {_fmt(r.value, 1)} < {r.threshold:g} in arm {r.detail}")
    return "; ".join(parts)


def _fmt(value: float, digits: int = 2) -> str:
    return "NA" if pd.isna(value) else f"{value:.{digits}f}"
