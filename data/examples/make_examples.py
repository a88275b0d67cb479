"""Make the three example EMR exports in ``data/examples/`` (deterministic: fixed seed).

Run from the repository root: ``python data/examples/make_examples.py``. It writes

- ``webpt/``: a WebPT-like multi-file CSV export: a visit/billing list (US dates, provider NPIs,
  comma CPT lists, ICD-10 codes without dots), a long outcome-measure flowsheet and a patient
  demographics file;
- ``workbook/export.xlsx``: one XLSX workbook with a title block above the header, typed US
  dates, one wide row per visit and a totals row at the bottom;
- ``fhir/``: a FHIR R4 Bulk Data export (NDJSON: Patient, Encounter, Observation, Procedure,
  Condition).

The clinic is simulated here, independently of :mod:`outcomes.synthetic` (whose visit writer
produces our own canonical format): the point of these files is to look like what real EMRs
deliver, defects included (an unknown measure name, repeated and conflicting flowsheet rows,
a score recorded on a day without a visit, a blank line, a patient without visits). Each
example's ``profile.toml`` is the profile ``outcomes profile draft`` proposes, with the edits
the README shows.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20261
START = dt.date(2026, 1, 5)
#: ICD-10 (without dots, as billing lists write them) and the conditions they stand for
DIAGNOSES = [("M7631", "itbs"), ("M7632", "itbs"), ("M2222", "pfps"), ("M25551", "hip_pain"),
             ("M545", "lbp")]
PRI = ["90/90 hip lift w/ balloon", "hiking poles gait training", "glute med re-ed",
       "R sidelying respiratory adductor pull back", "shoe wear recs"]
TRAD = ["IT band stretching", "foam rolling", "hip abd strengthening", "quad sets",
        "core stab", "ice 10 min"]
OTHER = ["dry needling", "IASTM"]  # not in the technique vocabulary: listed as unmapped
NPIS = ["1093817465", "1245319876", "1356472819", "1467583920"]


def simulate(n_patients: int = 120, seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """Patients and their visits (one episode each; scores on the days they were measured)."""
    rng = np.random.default_rng(seed)
    patients, visits = [], []
    for i in range(n_patients):
        pid = f"WP{10400 + i}"
        icd, condition = DIAGNOSES[rng.integers(len(DIAGNOSES))]
        pri = rng.random() < 0.45
        patients.append({"patient": pid, "age": int(rng.integers(16, 95)),
                         "sex": ["Female", "Male"][rng.integers(2)],
                         "payer": ["Commercial", "Medicare", "Medicaid", "Workers Comp"][
                             rng.integers(4)],
                         "weeks": int(rng.integers(1, 80)), "prior_pt": ["Y", "N"][
                             rng.integers(2)], "condition": condition})
        visits += _episode(rng, pid, icd, condition, pri, START + dt.timedelta(
            days=int(rng.integers(0, 230))))
    return patients, visits


def _episode(rng, pid: str, icd: str, condition: str, pri: bool, start: dt.date) -> list[dict]:
    n = int(rng.integers(3, 11))
    npi = NPIS[rng.integers(len(NPIS))]
    pain0, func0 = int(rng.integers(4, 10)), int(rng.integers(20, 55))
    gain = rng.normal(0.55 if pri else 0.5, 0.25)
    rows, day = [], start
    dropout = rng.random() < 0.3
    for k in range(n):
        last = k == n - 1
        kind = "Initial Evaluation" if k == 0 else ("Discharge" if last and not dropout else
                                                     "Daily Note")
        frac = k / max(n - 1, 1)
        pain = int(np.clip(round(pain0 - gain * pain0 * frac + rng.normal(0, 0.8)), 0, 10))
        func = int(np.clip(round(func0 + gain * 30 * frac + rng.normal(0, 3)), 0, 80))
        measured = k == 0 or (kind == "Discharge") or k % 3 == 0
        techs = rng.choice(PRI if pri else TRAD, size=2, replace=False).tolist()
        if rng.random() < 0.1:
            techs.append(OTHER[rng.integers(len(OTHER))])
        rows.append({"visit": f"{pid}-{k + 1:02d}", "patient": pid, "npi": npi,
                     "clinic": "North" if int(pid[2:]) % 3 else "South", "date": day,
                     "kind": kind, "cpt": _cpt(rng, k), "icd": icd,
                     "notes": "; ".join(techs), "pain": pain if measured else None,
                     "lefs": func if measured and condition != "lbp" else None,
                     "odi": int(np.clip(60 - func * 0.6, 0, 100)) if measured and
                     condition == "lbp" else None})
        day += dt.timedelta(days=int(rng.integers(3, 9)))
    return rows


def _cpt(rng, k: int) -> list[str]:
    first = ["97162"] if k == 0 else []
    return first + rng.choice(["97110", "97112", "97140", "97530"], size=2,
                              replace=False).tolist()


def us(day: dt.date) -> str:
    return day.strftime("%m/%d/%Y")


# --- WebPT-like multi-file CSV -------------------------------------------------------------


def write_webpt(patients: list[dict], visits: list[dict], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _write_csv(folder / "visits.csv",
               ["Visit ID", "Patient Key", "Location", "Rendering Provider NPI",
                "Date of Service", "Visit Type", "CPT Codes", "Diagnosis Codes",
                "Treatment Notes"],
               [[v["visit"], v["patient"], v["clinic"], v["npi"], us(v["date"]), v["kind"],
                 ", ".join(v["cpt"]), v["icd"], v["notes"]] for v in visits])
    _write_csv(folder / "patients.csv",
               ["Patient Key", "Age at Intake", "Gender", "Primary Payer",
                "Symptom Duration (wks)", "Prior PT"],
               [[p["patient"], p["age"], p["sex"], p["payer"], p["weeks"], p["prior_pt"]]
                for p in patients] + [["WP99999", 40, "Female", "Commercial", 3, "N"]])
    _write_csv(folder / "flowsheet.csv", ["Patient Key", "Date", "Outcome Measure", "Score"],
               _flowsheet(visits))


def _flowsheet(visits: list[dict]) -> list[list]:
    names = {"pain": "Numeric Pain Rating Scale", "lefs": "LEFS Total", "odi": "Oswestry"}
    rows = [[v["patient"], us(v["date"]), names[k], v[k]] for v in visits for k in names
            if v[k] is not None]
    first = visits[0]
    rows += [
        [first["patient"], us(first["date"]), "Berg Balance Scale", 48],  # not in vocabulary
        [first["patient"], us(first["date"]), "Numeric Pain Rating Scale", first["pain"]],
        [visits[1]["patient"], us(visits[1]["date"]), "NPRS", 3],  # conflicts with another
        [visits[1]["patient"], us(visits[1]["date"]), "NPRS", 6],  # ... NPRS the same day
        [first["patient"], us(first["date"] + dt.timedelta(days=1)), "NPRS", 4],  # no visit
        [],  # a blank line
    ]
    return rows


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


# --- one XLSX workbook ----------------------------------------------------------------------


def write_workbook(patients: list[dict], visits: list[dict], path: Path) -> None:
    import openpyxl

    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Visit Export"
    ws.append(["Outcomes export - all locations"])
    ws.append(["Run date: 10/01/2026 (dates of service 01/01/2026 - 09/30/2026)"])
    ws.append([])
    ws.append(["Encounter #", "Patient Key", "Clinic", "Therapist", "Visit Date", "Type",
               "CPT", "ICD-10", "Interventions", "Pain (0-10)", "LEFS Total", "Age", "Sex"])
    by_patient = {p["patient"]: p for p in patients}
    for v in visits:
        p = by_patient[v["patient"]]
        ws.append([v["visit"], v["patient"], v["clinic"], v["npi"],
                   dt.datetime.combine(v["date"], dt.time()), v["kind"], "/".join(v["cpt"]),
                   v["icd"], v["notes"], v["pain"], v["lefs"], p["age"], p["sex"]])
        ws.cell(ws.max_row, 5).number_format = "mm/dd/yyyy"
    ws.append(["Total", len(visits)])
    wb.properties.created = dt.datetime(2026, 10, 1)  # same bytes on every run
    wb.properties.modified = dt.datetime(2026, 10, 1)
    wb.save(path)


# --- FHIR R4 Bulk Data ----------------------------------------------------------------------

_CPT = "http://www.ama-assn.org/go/cpt"
_ICD = "http://hl7.org/fhir/sid/icd-10-cm"
_LOINC = {"pain": ("72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported")}


def write_fhir(patients: list[dict], visits: list[dict], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    gender = {"Female": "female", "Male": "male"}
    _ndjson(folder / "Patient.ndjson", [
        {"resourceType": "Patient", "id": p["patient"], "gender": gender[p["sex"]]}
        for p in patients])
    _ndjson(folder / "Encounter.ndjson", [_encounter(v) for v in visits])
    _ndjson(folder / "Procedure.ndjson", [
        {"resourceType": "Procedure", "id": f"{v['visit']}-p{i}", "status": "completed",
         "subject": {"reference": f"Patient/{v['patient']}"},
         "encounter": {"reference": f"Encounter/{v['visit']}"},
         "code": {"coding": [{"system": _CPT, "code": code}]},
         **({"note": [{"text": v["notes"]}]} if i == 0 else {})}
        for v in visits for i, code in enumerate(v["cpt"])])
    _ndjson(folder / "Condition.ndjson", [
        {"resourceType": "Condition", "id": f"{v['visit']}-dx",
         "subject": {"reference": f"Patient/{v['patient']}"},
         "encounter": {"reference": f"Encounter/{v['visit']}"},
         "code": {"coding": [{"system": _ICD, "code": v["icd"][:3] + "." + v["icd"][3:]}]}}
        for v in visits])
    _ndjson(folder / "Observation.ndjson", _observations(visits))


def _encounter(v: dict) -> dict:
    return {"resourceType": "Encounter", "id": v["visit"], "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "AMB"},
            "type": [{"text": v["kind"]}], "subject": {"reference": f"Patient/{v['patient']}"},
            "participant": [{"individual": {"reference": f"Practitioner/{v['npi']}"}}],
            "period": {"start": f"{v['date'].isoformat()}T09:00:00-05:00"},
            "serviceProvider": {"reference": f"Organization/{v['clinic']}"}}


def _observations(visits: list[dict]) -> list[dict]:
    out = []
    for v in visits:
        for key, code, text in (("pain", *_LOINC["pain"]), ("lefs", "FS-LEFS", "LEFS Total"),
                                ("odi", "FS-ODI", "Oswestry")):
            if v[key] is None:
                continue
            system = "http://loinc.org" if key == "pain" else "urn:example:flowsheet"
            value = ({"valueQuantity": {"value": v[key], "unit": "{score}"}} if key == "pain"
                     else {"valueInteger": v[key]})
            out.append({"resourceType": "Observation", "id": f"{v['visit']}-{key}",
                        "status": "final", "subject": {"reference": f"Patient/{v['patient']}"},
                        "effectiveDateTime": f"{v['date'].isoformat()}T09:05:00-05:00",
                        "code": {"coding": [{"system": system, "code": code}], "text": text},
                        **value})
    out.append({"resourceType": "Observation", "id": "declined-1", "status": "final",
                "subject": {"reference": f"Patient/{visits[2]['patient']}"},
                "effectiveDateTime": f"{visits[2]['date'].isoformat()}T09:05:00-05:00",
                "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
                "dataAbsentReason": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "code": "asked-declined"}]}})
    return out


def _ndjson(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")


# --- profiles: what `outcomes profile draft` proposes, plus the README's edits ----------------

#: The one edit the README shows for the WebPT-like export: the clinic's own Berg Balance
#: Scale, which outcomes does not ship, added as an instrument and mapped from its flowsheet name.
BERG_NAME = '"Berg Balance Scale" = "berg"   # edit: the clinic\'s own instrument (below)\n'
BERG = """
# edit: an instrument outcomes does not ship, added by the clinic without code changes
[instruments.berg]
name = "Berg Balance Scale"
low = 0
high = 56
higher_is_better = true
mcid = 5            # the clinic's choice; no single published MCID
mdc = 6.5
source = "Donoghue & Stokes 2009, J Rehabil Med 41:343-346 (MDC 6.5); MCID chosen by the clinic"
"""


def write_profiles() -> None:
    """Each example's profile.toml: the draft of its files, with the README's edits applied."""
    from outcomes.ingest import draft_profile, expand_inputs

    for name in ("webpt", "workbook", "fhir"):
        with expand_inputs([HERE / name]) as files:
            text = draft_profile(files)
        if name == "webpt":
            header = next(line for line in text.splitlines() if line.startswith(
                "[measures.names]")) + "\n"
            text = text.replace(header, header + BERG_NAME) + BERG
        (HERE / name / "profile.toml").write_text(text, encoding="utf-8")


def main() -> None:
    patients, visits = simulate()
    write_webpt(patients, visits, HERE / "webpt")
    write_workbook(patients, visits, HERE / "workbook" / "export.xlsx")
    write_fhir(patients, visits, HERE / "fhir")
    write_profiles()
    print(f"{len(patients)} patients, {len(visits)} visits -> {HERE}")


if __name__ == "__main__":
    main()
