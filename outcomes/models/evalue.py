"""E-values: how strong unmeasured confounding would have to be to explain a result away.

An observational comparison is only as good as its list of measured confounders. The E-value
(VanderWeele & Ding 2017) is the minimum strength of association, on the risk-ratio scale, that
an unmeasured confounder would need with both treatment and outcome to explain the estimate
away. :mod:`outcomes.models.sensitivity` adds the negative-control outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from outcomes.errors import ModelError

__all__ = ["evalue", "EValueResult", "evalue_sentence"]

_MEASURES = ("MD", "RR", "OR", "HR")


@dataclass(frozen=True)
class EValueResult:
    """E-values of a point estimate and of its confidence limit closer to the null.

    Attributes
    ----------
    point : float
        E-value of the point estimate (1 when the estimate is the null).
    ci : float or None
        E-value of the confidence limit closer to the null; 1 when the interval includes the
        null; None when no interval was given.
    rr, rr_low, rr_high : float
        The estimate and limits on the risk-ratio scale the E-values are computed from.
    measure : str
        ``MD``, ``RR``, ``OR`` or ``HR``.
    """

    point: float
    ci: float | None
    rr: float
    rr_low: float | None
    rr_high: float | None
    measure: str

    @property
    def table(self) -> pd.DataFrame:
        """Tidy frame, one row per quantity: ``quantity`` (point / ci_low / ci_high), ``rr``,
        ``evalue`` (NaN for the limit farther from the null, as the EValue package)."""
        far = "ci_high" if self.rr >= 1 else "ci_low"
        rows = [("point", self.rr, self.point),
                ("ci_low", self.rr_low, np.nan if far == "ci_low" else self.ci),
                ("ci_high", self.rr_high, np.nan if far == "ci_high" else self.ci)]
        out = pd.DataFrame(rows, columns=["quantity", "rr", "evalue"]).astype(
            {"rr": float, "evalue": float})
        return out.assign(measure=self.measure)


def _threshold(rr: float) -> float:
    """E-value of one risk ratio: ``RR + sqrt(RR (RR - 1))`` after taking ``1/RR`` below 1."""
    if not rr > 0:
        raise ModelError(f"a risk ratio must be positive (got {rr!r}); check measure= and sd=")
    rr = 1 / rr if rr < 1 else rr
    return float(rr + np.sqrt(rr * (rr - 1)))


def _to_rr(x: float | None, measure: str, rare: bool, sd: float | None) -> float | None:
    """Approximate risk ratio of one value (EValue's ``toRR``)."""
    if x is None:
        return None
    if measure == "MD":
        return float(np.exp(0.91 * x / sd))
    if measure == "OR" and not rare:
        return float(np.sqrt(x))
    if measure == "HR" and not rare:
        return float((1 - 0.5 ** np.sqrt(x)) / (1 - 0.5 ** np.sqrt(1 / x)))
    return float(x)


def evalue(
    estimate: float,
    ci_low: float | None = None,
    ci_high: float | None = None,
    *,
    sd: float | None = None,
    se: float | None = None,
    measure: str = "MD",
    rare: bool = True,
) -> EValueResult:
    """E-value for an estimate and its confidence interval (VanderWeele & Ding 2017).

    Parameters
    ----------
    estimate : float
        Point estimate: a mean difference (``measure="MD"``) or a ratio.
    ci_low, ci_high : float, optional
        Confidence limits on the same scale as ``estimate``.
    sd : float
        ``MD`` only: the outcome's standard deviation, so ``d = estimate / sd`` (e.g. the pooled
        within-arm SD of the change score; :meth:`PrimaryResult.evalue` uses that).
    se : float, optional
        ``MD`` only, instead of the limits: the standard error of ``estimate``; the limits are
        then ``exp(0.91 d -/+ 1.78 se / sd)``, exactly as ``EValue::evalues.MD``.
    measure : {"MD", "RR", "OR", "HR"}
        Scale of ``estimate``.
    rare : bool
        ``OR``/``HR``: the outcome is rare (< 15 %), so the ratio approximates a risk ratio.
        Otherwise ``RR = sqrt(OR)`` and ``RR = (1 - 0.5^sqrt(HR)) / (1 - 0.5^sqrt(1/HR))``.

    Returns
    -------
    EValueResult
        ``.point``, ``.ci`` (limit closer to the null; 1 if the interval includes it), ``.rr``
        and ``.table`` (one row per point / limit).

    Notes
    -----
    ``E = RR + sqrt(RR (RR - 1))`` for ``RR >= 1`` (``1/RR`` taken below 1). A mean difference
    is converted with ``RR = exp(0.91 d)`` (Chinn 2000; VanderWeele & Ding 2017, Table 2),
    likewise its limits. Checked against the ``EValue`` R package's documented examples:
    ``evalues.RR(0.80, 0.71, 0.91)`` -> 1.809017 / 1.428571, ``evalues.MD(.5, .25)`` ->
    2.529142 / 1.110803, ``evalues.OR(0.86, 0.75, 0.99, rare = FALSE)`` -> 1.3689529 /
    1.0761939, ``evalues.HR(0.56, 0.46, 0.69, rare = FALSE)`` -> 2.349531 / 1.9080039, and
    against the package's formulas run in base R (``tests/test_sensitivity_r.py``).

    References
    ----------
    VanderWeele TJ, Ding P. Sensitivity analysis in observational research: introducing the
    E-value. Ann Intern Med 2017;167:268-274.
    """
    if measure not in _MEASURES:
        raise ModelError(f"measure={measure!r}: use one of {', '.join(_MEASURES)}")
    if measure == "MD" and not (sd is not None and sd > 0):
        raise ModelError("measure='MD' needs sd=, the outcome's standard deviation (> 0), to "
                         "standardize the difference")
    if se is not None:
        if measure != "MD" or ci_low is not None or ci_high is not None:
            raise ModelError("se= is for measure='MD' without ci_low/ci_high")
        d, half = estimate / sd, 1.78 * se / sd
        rr, lo, hi = np.exp(0.91 * d), np.exp(0.91 * d - half), np.exp(0.91 * d + half)
    else:
        rr, lo, hi = (_to_rr(v, measure, rare, sd) for v in (estimate, ci_low, ci_high))
    if lo is not None and hi is not None and lo > hi:
        raise ModelError(f"ci_low ({ci_low}) is above ci_high ({ci_high})")
    return EValueResult(point=_threshold(rr), ci=_ci_evalue(rr, lo, hi), rr=float(rr),
                        rr_low=None if lo is None else float(lo),
                        rr_high=None if hi is None else float(hi), measure=measure)


def _ci_evalue(rr: float, lo: float | None, hi: float | None) -> float | None:
    """E-value of the limit closer to the null; 1 when the interval includes the null."""
    near = lo if rr > 1 else hi
    if rr == 1:
        return 1.0
    if near is None:
        return None
    crosses = near <= 1 if rr > 1 else near >= 1
    return 1.0 if crosses else _threshold(near)


def evalue_sentence(
    result: EValueResult,
    *,
    treatment: str = "PRI-style care",
    comparator: str = "traditional PT",
    outcome: str = "the outcome",
) -> str:
    """What an unmeasured confounder would have to do to explain the result away, in words.

    Parameters
    ----------
    result : EValueResult
        From :func:`evalue`.
    treatment, comparator, outcome : str
        Names used in the sentence.

    Returns
    -------
    str
        One or two sentences for a report, values to two decimals.
    """
    head = (f"To explain away the estimated difference between {treatment} and {comparator}, "
            f"an unmeasured confounder would have to be associated with both the choice of "
            f"{treatment} and {outcome} by a risk ratio of at least {result.point:.2f} each, "
            f"over and above the measured confounders; weaker confounding could not.")
    if result.ci is None:
        return head
    if result.ci == 1:
        return head + (" The confidence interval already includes no difference, so no "
                       "unmeasured confounding is needed to make the data compatible with no "
                       "effect.")
    return head + (f" To move the confidence interval to include no difference, a risk ratio "
                   f"of {result.ci:.2f} each would suffice.")

