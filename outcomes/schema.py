"""Canonical column names, dtypes and pandera schemas, defined once and imported everywhere.

The *visit export* is one row per attended visit, as an EMR exports it (after a profile has mapped
the EMR's own column names). The *episode table* is one row per episode of care, built by
:func:`outcomes.episodes.build_episodes`.
"""

from __future__ import annotations

import re

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

__all__ = [
    "VISIT_TYPES",
    "EVAL_CPT",
    "REEVAL_CPT",
    "VISIT_COLUMNS",
    "REQUIRED_COLUMNS",
    "SCORE_COLUMNS",
    "COVARIATE_COLUMNS",
    "ID_COLUMNS",
    "DIRECT_IDENTIFIER_PATTERNS",
    "is_direct_identifier",
    "CONDITIONS",
    "condition_of",
    "ARMS",
    "EPISODE_STATUSES",
    "LABELS",
    "label_of",
    "label_values",
    "VisitSchema",
    "EpisodeSchema",
]

#: Visit types, in the order they occur in an episode.
VISIT_TYPES = ("evaluation", "treatment", "re-evaluation", "discharge")
#: Initial-evaluation CPT codes (PT evaluation, low / moderate / high complexity).
EVAL_CPT = ("97161", "97162", "97163")
#: Re-evaluation CPT code; it does not start an episode.
REEVAL_CPT = ("97164",)

#: De-identified keys. ``visit_id`` is the EMR's encounter key and the visit's identity in the store.
ID_COLUMNS = ("visit_id", "patient_id", "clinic_id", "therapist_id")

#: Outcome score columns; each is an instrument code in :mod:`outcomes.instruments`.
SCORE_COLUMNS = ("nprs", "lefs", "psfs", "groc")

#: Patient-level covariates repeated on every visit row, as EMR exports do.
COVARIATE_COLUMNS = (
    "age",  # years, top-coded at 90
    "sex",  # F / M / X
    "payer",  # commercial / medicare / medicaid / workers_comp / self_pay
    "symptom_duration_weeks",
    "prior_pt",  # bool
    "prior_injection",  # bool
    "surgery_recommended",  # bool
)

#: Every canonical column of the visit export, in export order.
VISIT_COLUMNS = (
    *ID_COLUMNS,
    "visit_date",  # ISO date in the synthetic export; other formats need a profile
    "visit_type",  # one of VISIT_TYPES
    "cpt_codes",  # semicolon-separated CPT codes, e.g. "97162;97110"
    "icd10",  # e.g. "M76.31"
    "technique_notes",  # free text; mapped to technique codes by outcomes.ingest.techniques
    *SCORE_COLUMNS,
    *COVARIATE_COLUMNS,
)

#: Columns without which a file is rejected.
REQUIRED_COLUMNS = (
    "visit_id",
    "patient_id",
    "clinic_id",
    "therapist_id",
    "visit_date",
    "visit_type",
    "icd10",
    "technique_notes",
    "nprs",
)

#: Column names that are direct identifiers: a file carrying one is rejected at ingest.
#: Searched for in the column name lower-cased with everything but letters removed, so EMR
#: spellings such as "Patient Phone", "Pt DOB", "Med Rec #", "Address Line 1" or "SS#" are caught.
#: ZIP codes are not listed: a limited data set may keep them (Safe Harbor is checked separately).
DIRECT_IDENTIFIER_PATTERNS = tuple(
    re.compile(p)
    for p in (
        r"^(patient|pt|first|last|full|given|family|sur|middle|legal|maiden)*name$",
        r"(first|last|full|given|family|middle|legal|maiden)name",
        r"(patient|pt)name",
        r"^dob$|patientdob|ptdob|dateofbirth|birthdate|birthdt|birthday|^born$",
        r"^ss$|^ssn|ssn$|socialsecurity|socsec",
        r"phone|telephone|^tel$|mobile|^cell$|cellnumber|^fax|faxnumber",
        r"email|^mail$|emailaddress",
        r"address|^street|streetname|^addr|^city$|^residence",
        r"^mrn|mrn$|medicalrecord|medrec|recordnumber|recordno|chartnumber|chartno",
        r"accountnumber|accountno|^acct|^account$|memberid|subscriberid|policynumber",
        r"beneficiary|insuranceid|medicareid|medicaidid|licensenumber|licenseno",
        r"^url$|website|ipaddress|deviceserial|vehicle|plate",
    )
)


def is_direct_identifier(column: object) -> bool:
    """True when a column *name* looks like a direct identifier (name, DOB, SSN, phone, MRN...).

    Only the name is looked at, never the values, so the caller can reject a file without
    reading or echoing any identifier.
    """
    flat = re.sub(r"[^a-z]", "", str(column).lower())
    return any(p.search(flat) for p in DIRECT_IDENTIFIER_PATTERNS)


#: Conditions by ICD-10 prefix. Everything else is ``other``.
CONDITIONS = {
    "itbs": ("M76.3",),  # iliotibial band syndrome
    "pfps": ("M22.2",),  # patellofemoral disorders
    "hip_pain": ("M25.55",),  # pain in hip
    "lbp": ("M54.5",),  # low back pain
}


def condition_of(icd10: pd.Series) -> pd.Series:
    """Map ICD-10 codes to condition labels (``itbs``, ``pfps``, ``hip_pain``, ``lbp``, ``other``)."""
    code = icd10.astype("string").str.upper().str.strip()
    out = pd.Series("other", index=icd10.index, dtype="string")
    for label, prefixes in CONDITIONS.items():
        out = out.mask(code.str.startswith(prefixes).fillna(False), label)
    return out


#: Exposure arms of an episode, from the techniques of its baseline window.
ARMS = ("pri", "traditional", "mixed", "none")
#: Discharge status of an episode.
EPISODE_STATUSES = ("completed", "no_discharge_score", "open")

#: What a person reads instead of a code: the one label table of reports, plots and exports.
#: ``mixed`` and ``none`` are explained where they are shown (the reports' "how to read").
LABELS: dict[str, dict[str, str]] = {
    "condition": {"itbs": "IT band syndrome", "pfps": "Patellofemoral pain",
                  "hip_pain": "Hip pain", "lbp": "Low back pain", "other": "Other diagnoses"},
    "arm": {"pri": "PRI-style", "traditional": "Traditional PT",
            "mixed": "Mixed (PRI + traditional)", "none": "Neither (other care only)"},
    "payer": {"commercial": "Commercial insurance", "medicare": "Medicare",
              "medicaid": "Medicaid", "workers_comp": "Workers' compensation",
              "self_pay": "Self-pay"},
    "status": {"completed": "discharged with a score",
               "no_discharge_score": "ended without a discharge score", "open": "open"},
    "instrument": {"nprs": "NPRS pain", "lefs": "LEFS function", "psfs": "PSFS", "odi": "ODI",
                   "groc": "GROC", "promis_pf": "PROMIS Physical Function",
                   "ndi": "NDI neck disability (raw 0-50)", "quickdash": "QuickDASH",
                   "koos_jr": "KOOS JR", "hoos_jr": "HOOS JR",
                   "promis_pi": "PROMIS Pain Interference",
                   "functional_status": "Functional status (FOTO-style, 0-100)"},
    # the total row of the report tables, and the grouping columns as table headers
    "total": {"all": "All episodes"},
    "column": {"condition": "diagnosis", "arm": "arm", "therapist_id": "therapist",
               "payer": "payer", "status": "status"},
}


def label_of(kind: str, value: object) -> str:
    """The human label of ``value`` (a code of ``kind``: ``condition``, ``arm``, ``payer``,
    ``status``, ``instrument``); the total row ``all`` reads "All episodes"; anything the table
    does not know is returned as text unchanged (a clinic's own code stays readable)."""
    text = str(value)
    return LABELS.get(kind, {}).get(text, LABELS["total"].get(text, text))


def label_values(values: pd.Series | pd.Index, kind: str) -> pd.Series | pd.Index:
    """:func:`label_of` applied to every value of a Series or Index (a new object; missing values
    stay missing)."""
    return values.map(lambda v: v if pd.isna(v) else label_of(kind, v))


class VisitSchema(pa.DataFrameModel):
    """A clean visit row, as stored in the ``visits`` table."""

    visit_id: Series[str] = pa.Field(unique=True)
    patient_id: Series[str]
    clinic_id: Series[str]
    therapist_id: Series[str]
    visit_date: Series[pd.Timestamp]
    visit_type: Series[str] = pa.Field(isin=VISIT_TYPES)
    cpt_codes: Series[str] = pa.Field(nullable=True)
    icd10: Series[str]
    technique_notes: Series[str] = pa.Field(nullable=True)
    nprs: Series[float] = pa.Field(ge=0, le=10, nullable=True)
    lefs: Series[float] = pa.Field(ge=0, le=80, nullable=True)
    psfs: Series[float] = pa.Field(ge=0, le=10, nullable=True)
    groc: Series[float] = pa.Field(ge=-7, le=7, nullable=True)
    age: Series[float] = pa.Field(ge=0, le=90, nullable=True)
    sex: Series[str] = pa.Field(nullable=True)
    payer: Series[str] = pa.Field(nullable=True)
    symptom_duration_weeks: Series[float] = pa.Field(ge=0, nullable=True)
    prior_pt: Series[float] = pa.Field(isin=[0, 1], nullable=True)
    prior_injection: Series[float] = pa.Field(isin=[0, 1], nullable=True)
    surgery_recommended: Series[float] = pa.Field(isin=[0, 1], nullable=True)

    class Config:
        coerce = True
        strict = False


class EpisodeSchema(pa.DataFrameModel):
    """One episode of care, as built by :func:`outcomes.episodes.build_episodes`.

    Per instrument ``X`` in (nprs, lefs, psfs) the table also has ``X_intake``, ``X_discharge``,
    ``X_change`` (discharge - intake), ``X_pct_change``, ``X_responder`` (nullable bool),
    ``X_ceiling`` (baseline leaves less room than the MCID); and ``groc_discharge``.
    """

    episode_id: Series[str] = pa.Field(unique=True)
    patient_id: Series[str]
    clinic_id: Series[str]
    therapist_id: Series[str]
    condition: Series[str]
    icd10: Series[str]
    start_date: Series[pd.Timestamp]
    end_date: Series[pd.Timestamp]
    n_visits: Series[int] = pa.Field(ge=1)
    days: Series[int] = pa.Field(ge=0)
    status: Series[str] = pa.Field(isin=EPISODE_STATUSES)
    arm: Series[str] = pa.Field(isin=ARMS)

    class Config:
        coerce = True
        strict = False
