"""FHIR R4 Bulk Data exports (NDJSON) -> the same canonical parts as a multi-file export.

A Bulk Data export is one NDJSON file per resource type. ``Encounter`` becomes a visit,
``Procedure`` (CPT) its billing codes and technique text, ``Condition`` (ICD-10) its diagnosis,
``Observation`` a long-format score (matched to the instrument by LOINC code, or by a code or
name the profile's ``[measures.names]`` maps), ``Patient`` the patient's covariates. Read with
the standard library's ``json`` (one resource per line; no FHIR library needed for these fields).

Privacy: a ``Patient`` carrying a direct identifier (``name``, ``telecom``, ``address``,
``photo``, ``contact``) rejects its file; nothing of it is loaded or echoed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd

from outcomes.ingest.multifile import ExportPart
from outcomes.ingest.profile import Profile
from outcomes.ingest.readers import reject

__all__ = ["read_fhir", "FHIR_RESOURCES", "PATIENT_IDENTIFIER_FIELDS"]

#: Resource types read; others (Practitioner, Organization ...) are ignored.
FHIR_RESOURCES = ("Patient", "Encounter", "Observation", "Procedure", "Condition")
#: Patient elements that are direct identifiers: a file with any of them is rejected.
PATIENT_IDENTIFIER_FIELDS = ("name", "telecom", "address", "photo", "contact")
_CPT = ("http://www.ama-assn.org/go/cpt", "urn:oid:2.16.840.1.113883.6.12")
_ICD10 = ("http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10")
_LOINC = "http://loinc.org"
_SEX = {"female": "F", "male": "M", "other": "X", "unknown": ""}
_STR = pd.StringDtype("pyarrow")


def read_fhir(paths: list[Path], prof: Profile) -> tuple[list[ExportPart], Profile, list[str]]:
    """Read NDJSON files into ``visits`` / ``measures`` / ``patients`` parts.

    Returns
    -------
    parts : list of ExportPart
        Encounter -> visits (with Procedure and Condition folded in), Observation -> measures,
        Patient -> patients. Procedure and Condition files come back as parts with their own
        counts (each resource attached to an Encounter of the export, or quarantined).
    profile : Profile
        ``prof`` with ISO dates (FHIR dates are ISO 8601 whatever the EMR's own export uses).
    ignored : list of str
        Files of resource types that are not read.

    Raises
    ------
    InputError
        Invalid JSON, a file mixing resource types, a Patient with a direct identifier, or no
        Encounter file.
    """
    resources, ignored = {}, []
    for path in sorted(paths):
        rtype, rows = _read_ndjson(path)
        if rtype not in FHIR_RESOURCES:
            ignored.append(path.name)
            continue
        if rtype in resources:
            raise reject(path, f"is a second {rtype} file; concatenate them or ingest separately")
        resources[rtype] = (path, rows)
    if "Encounter" not in resources:
        raise reject(Path(paths[0]).parent, "holds no Encounter NDJSON file (visits)")
    prof = replace(prof, date_format="%Y-%m-%d")
    return _parts(resources), prof, ignored


def _read_ndjson(path: Path) -> tuple[str | None, list[tuple[int, dict | None]]]:
    """(resource type, [(line number, resource or None for a blank line)])."""
    rows, types = [], set()
    try:
        with path.open("r", encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    rows.append((number, None))
                    continue
                try:
                    res = json.loads(line)
                except json.JSONDecodeError:
                    raise reject(path, f"line {number} is not valid JSON (NDJSON: one resource "
                                       "per line)") from None
                types.add(res.get("resourceType") if isinstance(res, dict) else None)
                rows.append((number, res))
    except UnicodeDecodeError:
        raise reject(path, "is not valid UTF-8 (FHIR NDJSON is always UTF-8)") from None
    except OSError as exc:
        raise reject(path, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(types) > 1:
        raise reject(path, f"mixes resource types ({', '.join(sorted(map(str, types)))}); a "
                           "Bulk Data file holds one type")
    return (types.pop() if types else None), rows


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ref(value: dict | None) -> str:
    """The id of a reference ``{"reference": "Patient/123"}`` -> ``"123"``."""
    ref = (value or {}).get("reference", "") or ""
    return ref.rsplit("/", 1)[-1]


def _codes(concept: dict | None, systems: tuple[str, ...]) -> list[str]:
    return [c.get("code", "") for c in (concept or {}).get("coding", [])
            if c.get("system") in systems and c.get("code")]


def _frame(rows: list[dict], index: list[int], columns: tuple[str, ...]) -> pd.DataFrame:
    data = pd.DataFrame(rows, columns=list(columns), index=pd.Index(index, dtype="int64"))
    return data.fillna("").astype(_STR)


def _blank(rows) -> list:
    return [(n, "", "blank") for n, res in rows if res is None]


def _parts(resources: dict) -> list[ExportPart]:
    """Encounter-centred parts; Procedure/Condition fold into the visits."""
    extra_by_encounter, fold_parts = _fold(resources)
    path, rows = resources["Encounter"]
    visits = [(n, _encounter(res, extra_by_encounter)) for n, res in rows if res is not None]
    frame = _frame([v for _, v in visits], [n for n, _ in visits], _VISIT_FIELDS)
    parts = [ExportPart("visits", path.name, frame, _blank(rows), _sha(path))]
    if "Observation" in resources:
        path, rows = resources["Observation"]
        obs = [(n, _observation(res)) for n, res in rows if res is not None]
        parts.append(ExportPart("measures", path.name, _frame(
            [o for _, o in obs], [n for n, _ in obs], _MEASURE_FIELDS), _blank(rows), _sha(path)))
    if "Patient" in resources:
        path, rows = resources["Patient"]
        pats = [(n, _patient(path, n, res)) for n, res in rows if res is not None]
        parts.append(ExportPart("patients", path.name, _frame(
            [p for _, p in pats], [n for n, _ in pats], ("patient_id", "sex")), _blank(rows),
            _sha(path)))
    return parts + fold_parts


_VISIT_FIELDS = ("visit_id", "patient_id", "clinic_id", "therapist_id", "visit_date",
                 "visit_type", "cpt_codes", "icd10", "technique_notes", "nprs")
_MEASURE_FIELDS = ("patient_id", "measure_date", "measure_name", "measure_code", "score")


def _encounter(res: dict, extra: dict) -> dict:
    """An Encounter as a canonical visit row (text cells)."""
    eid = str(res.get("id", ""))
    cpt, icd, notes = extra.get(eid, ([], [], []))
    types = res.get("type") or [{}]
    vtype = types[0].get("text") or next(
        (c.get("code") or c.get("display") for c in types[0].get("coding", [])), "")
    participants = res.get("participant") or [{}]
    return {
        "visit_id": eid, "patient_id": _ref(res.get("subject")),
        "clinic_id": _ref(res.get("serviceProvider")),
        "therapist_id": _ref(participants[0].get("individual")),
        "visit_date": str((res.get("period") or {}).get("start", ""))[:10],
        "visit_type": vtype or _type_from_cpt(cpt), "cpt_codes": ";".join(cpt),
        "icd10": icd[0] if icd else "", "technique_notes": "; ".join(notes), "nprs": "",
    }


def _type_from_cpt(cpt: list[str]) -> str:
    """Visit type when the Encounter has none: by its evaluation CPT codes, else treatment."""
    from outcomes.schema import EVAL_CPT, REEVAL_CPT

    if any(c in EVAL_CPT for c in cpt):
        return "evaluation"
    return "re-evaluation" if any(c in REEVAL_CPT for c in cpt) else "treatment"


def _observation(res: dict) -> dict:
    """An Observation as a long measure row; a dataAbsentReason leaves the score empty."""
    code = res.get("code") or {}
    loinc = _codes(code, (_LOINC,))
    other = [c.get("code", "") for c in code.get("coding", []) if c.get("code")]
    value = ""
    if "valueQuantity" in res:
        value = (res["valueQuantity"] or {}).get("value", "")
    elif "valueInteger" in res or "valueDecimal" in res:
        value = res.get("valueInteger", res.get("valueDecimal"))
    elif "valueString" in res:
        value = res["valueString"]
    return {"patient_id": _ref(res.get("subject")),
            "measure_date": str(res.get("effectiveDateTime", ""))[:10],
            "measure_name": code.get("text") or next(
                (c.get("display") for c in code.get("coding", []) if c.get("display")), ""),
            "measure_code": (loinc or other or [""])[0],
            "score": "" if value is None else str(value)}


def _patient(path: Path, number: int, res: dict) -> dict:
    """A Patient's id and sex; a direct identifier rejects the file (never loaded or shown)."""
    found = [f for f in PATIENT_IDENTIFIER_FIELDS if res.get(f)]
    if found:
        raise reject(path, f"line {number}: Patient.{found[0]} is a direct identifier; export "
                           "de-identified Patients (records must arrive de-identified)")
    return {"patient_id": str(res.get("id", "")), "sex": _SEX.get(res.get("gender", ""), "")}


def _fold(resources: dict) -> tuple[dict, list[ExportPart]]:
    """Procedure (CPT + text) and Condition (ICD-10) by Encounter id, with their own counts."""
    encounters = {str(r.get("id", "")) for _, r in resources["Encounter"][1] if r}
    by_encounter: dict[str, tuple[list, list, list]] = {}
    parts = []
    for rtype, role in (("Procedure", "procedures"), ("Condition", "conditions")):
        if rtype not in resources:
            continue
        path, rows = resources[rtype]
        lost = []
        for number, res in rows:
            if res is None:
                continue
            eid = _ref(res.get("encounter"))
            if eid not in encounters:
                lost.append(number)
                continue
            cpt, icd, notes = by_encounter.setdefault(eid, ([], [], []))
            if rtype == "Procedure":
                cpt += _codes(res.get("code"), _CPT)
                notes += [n.get("text", "") for n in res.get("note", []) if n.get("text")]
            else:
                icd += _codes(res.get("code"), _ICD10)
        parts.append(_folded_part(role, path, rows, lost))
    return by_encounter, parts


def _folded_part(role: str, path: Path, rows: list, lost: list[int]) -> ExportPart:
    """A Procedure/Condition file: resources attached to an Encounter, or quarantined."""
    kept = [(n, res) for n, res in rows if res is not None]
    frame = _frame([{"id": str(res.get("id", "")), "encounter": _ref(res.get("encounter"))}
                    for _, res in kept], [n for n, _ in kept], ("id", "encounter"))
    return ExportPart(role, path.name, frame, _blank(rows), _sha(path), lost=lost)
