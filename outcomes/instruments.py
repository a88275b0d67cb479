"""Registry of outcome instruments: range, direction, MCID, MDC and source.

One registry drives both validation (range checks at ingest) and responder logic (episodes).
"""

from __future__ import annotations

from dataclasses import dataclass

from outcomes.schema import LABELS

__all__ = ["Instrument", "INSTRUMENTS", "get_instrument"]


@dataclass(frozen=True)
class Instrument:
    """An outcome instrument.

    Attributes
    ----------
    code : str
        Canonical column name in the visit table (``nprs``, ``lefs`` ...).
    name : str
        Human name.
    low, high : float
        Valid range, inclusive.
    higher_is_better : bool
        Direction of improvement.
    mcid : float
        Minimal clinically important difference, in points, in the good direction.
    mcid_pct : float or None
        Alternative relative MCID (for NPRS, 30 % of the baseline); a change meeting either
        threshold counts as a response.
    mdc : float or None
        Minimal detectable change, where published.
    integer : bool
        Whether valid scores are whole numbers.
    source : str
        Reference for the MCID.
    """

    code: str
    name: str
    low: float
    high: float
    higher_is_better: bool
    mcid: float
    mcid_pct: float | None = None
    mdc: float | None = None
    integer: bool = True
    source: str = ""

    def in_range(self, value: float) -> bool:
        """True when ``value`` lies in the instrument's valid range."""
        return self.low <= value <= self.high

    @property
    def range_text(self) -> str:
        """The valid range as ``low-high`` for messages and quarantine reasons."""
        return f"{self.low:g}-{self.high:g}"


INSTRUMENTS: dict[str, Instrument] = {
    i.code: i
    for i in (
        Instrument("nprs", LABELS["instrument"]["nprs"], 0, 10, False, 2, mcid_pct=0.30,
                   source="Farrar et al. 2001, Pain 94:149-158"),
        Instrument("lefs", LABELS["instrument"]["lefs"], 0, 80, True, 9, mdc=9,
                   source="Binkley et al. 1999, Phys Ther 79:371-383"),
        Instrument("psfs", LABELS["instrument"]["psfs"], 0, 10, True, 2, integer=False,
                   source="Stratford et al. 1995, Physiother Can 47:258-263"),
        Instrument("odi", LABELS["instrument"]["odi"], 0, 100, False, 12, integer=False,
                   source="Delitto et al. 2012 / JOSPT CPG 2014"),
        Instrument("groc", LABELS["instrument"]["groc"], -7, 7, True, 3,
                   source="Jaeschke et al. 1989 (anchor: +3 or more = improved)"),
        Instrument("promis_pf", LABELS["instrument"]["promis_pf"], 10, 90, True, 2, integer=False,
                   source="HealthMeasures PROMIS PF; about 2 T points"),
    )
}


def get_instrument(code: str) -> Instrument:
    """Return the registered instrument ``code`` or raise a helpful error."""
    from outcomes.errors import OutcomesError

    try:
        return INSTRUMENTS[code]
    except KeyError:
        known = ", ".join(sorted(INSTRUMENTS))
        raise OutcomesError(f"unknown instrument {code!r}; known: {known}") from None
