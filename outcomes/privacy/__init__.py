"""Privacy: everything that keeps identifiers out of the store and small counts out of reports.

Owns: PHI detection and redaction in free-text notes (:mod:`.phi`, patterns in :mod:`.patterns`),
HIPAA data regimes (:mod:`.regimes`), the CMS small-cell rule for published tables
(:mod:`.suppression`), and output safety: spreadsheet formulas and HTML escaping (:mod:`.escaping`).

May import: :mod:`outcomes.errors` and :mod:`outcomes.schema` only. Used by ingest, store and
reports. No function here prints, logs or raises with a data value: errors name the column and
the kind of problem only.
"""

from __future__ import annotations

from outcomes.privacy.escaping import FORMULA_PREFIXES, escape_text, neutralize_formulas
from outcomes.privacy.phi import PHI_KINDS, redact_phi, scan_phi
from outcomes.privacy.regimes import REGIMES, check_regime
from outcomes.privacy.suppression import (
    SUPPRESSED,
    WITHHELD,
    WITHHELD_NOTE,
    is_suppressed,
    share_band,
    suppress_small_cells,
)

__all__ = [
    "PHI_KINDS",
    "scan_phi",
    "redact_phi",
    "check_regime",
    "REGIMES",
    "suppress_small_cells",
    "is_suppressed",
    "SUPPRESSED",
    "WITHHELD",
    "WITHHELD_NOTE",
    "share_band",
    "neutralize_formulas",
    "escape_text",
    "FORMULA_PREFIXES",
]
