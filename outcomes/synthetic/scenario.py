"""Ways a synthetic export can be wrong like real data: the optional departures of the DGP.

Private to :mod:`outcomes.synthetic`. The default :class:`Scenario` changes nothing (exports stay
bit-identical); each option breaks one assumption of the primary analysis, or moves the effect,
and is written into the truth JSON under ``scenario`` with the mechanism it used:

- ``therapist_shift``: therapist intercepts no longer centred within style; PRI-trained therapists
  (style ``pri`` or ``both``) change NPRS by this many points more (negative: better), LEFS and
  PSFS through their therapist loadings. Therapist quality then confounds the arm unless the
  analysis absorbs therapists (fixed effects).
- ``effect_subgroup``: the effects apply only to episodes in this baseline subgroup (names as
  :data:`outcomes.models.MODIFIERS`); everyone else has no effect. The overall effect is the
  subgroup effect times the subgroup share; the truth gives both per stratum.
- ``secular_trend``: NPRS change drifts by this many points from the start of the date range to
  its end (negative: later patients improve more), and PRI adoption rises over the same range,
  so calendar time confounds the arm (it is not an export column the primary analysis adjusts for).
- ``mnar_dropout``: the per-visit dropout logit gains this times the NPRS change the patient would
  have at planned discharge, which is never observed for a dropout: missing not at random.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from outcomes.errors import InputError

#: Baseline subgroups an effect can be confined to; names and definitions as the models'
#: effect modifiers (``outcomes.models.MODIFIERS``), which synthetic may not import.
SUBGROUPS = {
    "prior_pt": "prior_pt = 1",
    "prior_injection": "prior_injection = 1",
    "surgery_recommended": "surgery_recommended = 1",
    "chronic": "symptom_duration_weeks > 12",
    "failed_conservative_care": "prior_pt = 1 or prior_injection = 1 or surgery_recommended = 1",
}
#: Logit-scale rise of PRI adoption (arm latent) across the date range under a secular trend.
ADOPTION_RISE = 3.0


@dataclass(frozen=True)
class Scenario:
    """Departures from the default DGP (all off by default); see the module docstring."""

    therapist_shift: float = 0.0
    effect_subgroup: str | None = None
    secular_trend: float = 0.0
    mnar_dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("therapist_shift", "secular_trend", "mnar_dropout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise InputError(f"{name} must be a finite number of points, got {value!r}")
        if self.effect_subgroup is not None and self.effect_subgroup not in SUBGROUPS:
            raise InputError(f"effect_subgroup={self.effect_subgroup!r} is unknown; use one of "
                             f"{', '.join(SUBGROUPS)}")

    @property
    def active(self) -> bool:
        """True when any option departs from the default DGP."""
        return self != Scenario()

    def record(self) -> dict:
        """The options and the mechanism each active one used, for the truth JSON."""
        mech = {
            "therapist_shift": "added to the NPRS change intercept of every therapist of style"
                               " pri or both (after centring within style); LEFS x -4, PSFS x -0.5",
            "effect_subgroup": f"effects apply only when {SUBGROUPS.get(self.effect_subgroup)};"
                               " 0 for everyone else",
            "secular_trend": f"NPRS change + secular_trend x (calendar - 0.5), calendar = intended"
                             f" start as a fraction of the date range; PRI arm latent +"
                             f" {ADOPTION_RISE} x (calendar - 0.5); LEFS x -4, PSFS x -0.5",
            "mnar_dropout": "dropout logit + mnar_dropout x (NPRS change at planned discharge"
                            " under the episode's own arm + 2), unobserved for dropouts (MNAR)",
        }
        on = {k: v for k, v in asdict(self).items() if v not in (0.0, None)}
        return {**asdict(self), "mechanism": {k: mech[k] for k in on}}


def subgroup_mask(ep: dict, name: str | None) -> np.ndarray:
    """Boolean per episode: in the subgroup (all True when no subgroup is set)."""
    n = len(ep["arm"])
    if name is None:
        return np.ones(n, dtype=bool)
    if name == "chronic":
        return ep["symptom_duration_weeks"] > 12
    if name == "failed_conservative_care":
        return (ep["prior_pt"] + ep["prior_injection"] + ep["surgery_recommended"]) > 0
    return ep[name] == 1


def calendar_fraction(seed: int, n: int) -> np.ndarray:
    """Intended start of each episode as a fraction of the date range, from its own stream.

    A separate stream (``[seed, 2]``) keeps the main draws, and so the rest of the export, the
    same as without the trend.
    """
    return np.random.default_rng([seed, 2]).random(n)
