"""Registry of outcome instruments: range, direction, MCID, MDC and source.

One registry drives both validation (range checks at ingest) and responder logic (episodes).
"""

from __future__ import annotations

from dataclasses import dataclass

from outcomes.schema import LABELS

__all__ = ["Instrument", "INSTRUMENTS", "get_instrument", "make_instrument", "instrument_registry"]


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
        Instrument("ndi", LABELS["instrument"]["ndi"], 0, 50, False, 7.5, mdc=10.2,
                   source="Young et al. 2009, Spine J 9:802-808 (raw 0-50 points; MCID 7.5, "
                          "MDC 10.2)"),
        Instrument("quickdash", LABELS["instrument"]["quickdash"], 0, 100, False, 8, mdc=11.2, integer=False,
                   source="Mintken et al. 2009, J Shoulder Elbow Surg 18:920-926 (MCID 8, "
                          "MDC 11.2)"),
        Instrument("koos_jr", LABELS["instrument"]["koos_jr"], 0, 100, True, 14, integer=False,
                   source="Lyman et al. 2016, Clin Orthop Relat Res 474:1472-1482; MCID "
                          "about 14 (Lyman et al. 2018)"),
        Instrument("hoos_jr", LABELS["instrument"]["hoos_jr"], 0, 100, True, 18, integer=False,
                   source="Lyman et al. 2016, J Arthroplasty 31:1181-1186; MCID about 18 "
                          "(Lyman et al. 2018)"),
        Instrument("promis_pi", LABELS["instrument"]["promis_pi"], 10, 90, False, 2, integer=False,
                   source="HealthMeasures PROMIS PI; Amtmann et al. 2014: MCID about 2 T "
                          "points"),
        Instrument("functional_status", LABELS["instrument"]["functional_status"], 0, 100, True,
                   9, integer=False,
                   source="Generic 0-100 functional status (FOTO-style). FOTO publishes "
                          "body-part-specific MCIDs; 9 is our choice, not a published value: "
                          "a clinic sets its own by adding an instrument in its profile"),
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


_INSTRUMENT_KEYS = ("name", "low", "high", "higher_is_better", "mcid", "mcid_pct", "mdc",
                    "integer", "source")


def make_instrument(code: str, spec: dict) -> Instrument:
    """Build an :class:`Instrument` from a profile's ``[instruments.<code>]`` table.

    Parameters
    ----------
    code : str
        Lower-case identifier (letters, digits, ``_``), not one of the registered codes.
    spec : dict
        ``name``, ``low``, ``high``, ``higher_is_better``, ``mcid`` and ``source`` are
        required; ``mcid_pct``, ``mdc`` and ``integer`` (default true) are optional.

    Raises
    ------
    ProfileError
        A missing or unknown key, a bad value, or a code that shadows a registered instrument.
    """
    import re

    from outcomes.errors import ProfileError

    where = f"instruments.{code}"
    if not re.fullmatch(r"[a-z][a-z0-9_]*", str(code)):
        raise ProfileError(f"{where}: code must be lower-case letters, digits and _")
    if code in INSTRUMENTS:
        raise ProfileError(f"{where}: {code!r} is a registered instrument; pick another code")
    unknown = set(spec) - set(_INSTRUMENT_KEYS)
    missing = {"name", "low", "high", "higher_is_better", "mcid", "source"} - set(spec)
    if unknown or missing:
        raise ProfileError(f"{where}: " + (f"unknown key(s) {', '.join(sorted(unknown))}"
                           if unknown else f"missing key(s) {', '.join(sorted(missing))}"))
    try:
        inst = Instrument(code, str(spec["name"]), float(spec["low"]), float(spec["high"]),
                          bool(spec["higher_is_better"]), float(spec["mcid"]),
                          mcid_pct=_opt_float(spec.get("mcid_pct")),
                          mdc=_opt_float(spec.get("mdc")),
                          integer=bool(spec.get("integer", True)), source=str(spec["source"]))
    except (TypeError, ValueError):
        raise ProfileError(f"{where}: low, high, mcid, mdc must be numbers") from None
    if not (inst.low < inst.high and inst.mcid > 0 and inst.source.strip()):
        raise ProfileError(f"{where}: needs low < high, mcid > 0 and a source")
    return inst


def _opt_float(value) -> float | None:
    return None if value is None else float(value)


def instrument_registry(extra: dict[str, dict] | None = None) -> dict[str, Instrument]:
    """The registered instruments plus those a profile adds (``{code: spec}``), by code."""
    added = {code: make_instrument(code, spec) for code, spec in (extra or {}).items()}
    return {**INSTRUMENTS, **added}
