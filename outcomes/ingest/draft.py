"""``outcomes profile draft``: a commented profile guessed from an export's headers and a sample.

Reads the header and up to :data:`SAMPLE_ROWS` rows of each file and proposes the column
mapping (by name similarity and by content: dates, scores in range, ICD-10 and CPT patterns),
the delimiter, encoding, header row, date format (only when every sampled date agrees with one
format; otherwise the profile asks in a comment), visit-type and sex value mappings, which file
is which in a multi-file export, and the measure-name mapping of a long flowsheet. Every guess
is marked ``REVIEW`` in the TOML it writes. Nothing is loaded; a draft never echoes more than
the distinct short category values (visit types, measure names) it proposes to map.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import json
import re
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from outcomes.ingest.measures import load_measure_vocabulary, normalize_measure_name
from outcomes.ingest.readers import detect_delimiter, file_kind, reject
from outcomes.schema import VISIT_COLUMNS, is_direct_identifier

__all__ = ["draft_profile", "SAMPLE_ROWS", "DATE_FORMATS"]

SAMPLE_ROWS = 500
#: Date formats a draft tries, in this order; one is proposed only when it alone fits all.
DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%m/%d/%y", "%d-%b-%Y")
_SYNONYMS = {
    "visit_id": ["visit id", "encounter", "encounter id", "encounter #", "visit number",
                 "appointment id"],
    "patient_id": ["patient id", "patient key", "patient", "pt id", "person id", "client id"],
    "clinic_id": ["clinic", "location", "site", "facility", "department"],
    "therapist_id": ["therapist", "provider", "rendering provider", "provider npi", "clinician",
                     "rendering provider npi"],
    "visit_date": ["visit date", "date of service", "dos", "service date", "appointment date"],
    "visit_type": ["visit type", "type", "note type", "appointment type"],
    "cpt_codes": ["cpt", "cpt codes", "procedure codes", "billing codes", "cpt code"],
    "icd10": ["icd10", "icd-10", "diagnosis", "diagnosis codes", "dx", "diagnosis code"],
    "technique_notes": ["interventions", "treatment notes", "notes", "techniques",
                        "treatment", "plan"],
    "nprs": ["pain", "pain (0-10)", "nprs", "pain score"],
    "lefs": ["lefs", "lefs total"],
    "psfs": ["psfs"], "groc": ["groc", "global rating of change"],
    "age": ["age", "age at intake", "age at visit"], "sex": ["sex", "gender"],
    "payer": ["payer", "primary payer", "insurance type", "financial class"],
    "symptom_duration_weeks": ["symptom duration (wks)", "symptom duration", "weeks since onset"],
    "prior_pt": ["prior pt", "previous pt"], "prior_injection": ["prior injection"],
    "surgery_recommended": ["surgery recommended"],
}
_ICD = re.compile(r"^[A-Z][0-9][0-9A-Z]\.?[0-9A-Z]{0,4}$")
_CPT = re.compile(r"^\d{5}(-\w\w)?(\s*[,;/ ]\s*\d{5}(-\w\w)?)*$")
_NUM = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass
class Sample:
    """One file's header and sampled rows (text), and how it was read."""

    path: Path
    names: list[str]
    rows: list[list[str]]
    header_row: int = 1
    delimiter: str | None = None
    encoding: str = "utf-8"
    typed_dates: set[str] = field(default_factory=set)

    def values(self, name: str) -> list[str]:
        i = self.names.index(name)
        return [r[i].strip() for r in self.rows if i < len(r) and r[i].strip()]


def draft_profile(paths: list[Path]) -> str:
    """A commented TOML profile for the export in ``paths`` (files, or a folder's files).

    Parameters
    ----------
    paths : list of Path
        The export's file(s): CSV, XLSX or FHIR NDJSON.

    Returns
    -------
    str
        TOML text; every guess carries a ``REVIEW`` comment.

    Raises
    ------
    InputError
        A file that cannot be read (named), or an unsupported type.
    """
    if all(p.suffix.lower() == ".ndjson" for p in paths):
        return _draft_fhir(paths)
    samples = [_sample(p) for p in paths]
    roles = _roles(samples)
    lines = _header_lines(samples, roles)
    lines += _columns_section(samples, roles)
    lines += _values_sections(samples, roles)
    if "measures" in roles.values():
        lines += _measures_section(next(s for s in samples if roles[s.path] == "measures"))
    return "\n".join(lines) + "\n"


# --- reading a sample -------------------------------------------------------------------------


def _sample(path: Path) -> Sample:
    kind = file_kind(path)
    if kind == "xlsx":
        return _sample_xlsx(path)
    if kind != "csv":
        raise reject(path, "a draft reads .csv, .xlsx or FHIR .ndjson files")
    raw = path.read_bytes()[: 1 << 20]
    encoding = "utf-8"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(raw) - 4:  # not just a character cut at the sample's end
            encoding, text = "cp1252", raw.decode("cp1252", errors="replace")
        else:
            text = raw[: exc.start].decode("utf-8-sig")
    lines = text.splitlines()[: SAMPLE_ROWS + 30]
    delim = detect_delimiter(_widest(lines))
    rows = list(csv.reader(lines, delimiter=delim))
    header = _header_index(rows)
    return Sample(path, [c.strip() for c in rows[header]], rows[header + 1:][:SAMPLE_ROWS],
                  header + 1, delim, encoding)


def _widest(lines: list[str]) -> str:
    """The line most likely to be the header (title lines above it have fewer separators)."""
    return max(lines[:30] or [""], key=lambda s: max(s.count(d) for d in ",;\t|"))


def _header_index(rows: list[list]) -> int:
    """The first row with as many non-empty cells as the widest of the first 30 rows."""
    filled = [sum(1 for c in r if str(c or "").strip()) for r in rows[:30]]
    return filled.index(max(filled)) if filled else 0


def _sample_xlsx(path: Path) -> Sample:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the workbook is unreadable
        raise reject(path, f"workbook is corrupt or unreadable ({type(exc).__name__})") from None
    try:
        raw = [list(r) for r in islice(wb.worksheets[0].iter_rows(values_only=True),
                                       SAMPLE_ROWS + 30)]
    finally:
        wb.close()
    header = _header_index(raw)
    names = [str(c).strip() if c is not None else "" for c in raw[header]]
    typed = {names[i] for r in raw[header + 1:] for i, c in enumerate(r[:len(names)])
             if isinstance(c, dt.datetime | dt.date)}
    rows = [[_cell(c) for c in r[:len(names)]] for r in raw[header + 1:]]
    return Sample(path, names, rows, header + 1, None, "utf-8", typed)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date):
        return value.strftime("%Y-%m-%d")
    return f"{value:g}" if isinstance(value, float) else str(value)


# --- guessing ---------------------------------------------------------------------------------


def _similar(name: str) -> tuple[str | None, float]:
    """The canonical column whose synonyms are nearest to ``name`` (and how near, 0-1)."""
    flat = re.sub(r"[^a-z0-9#()\- ]+", " ", name.lower()).strip()
    best, score = None, 0.0
    for col, words in _SYNONYMS.items():
        for w in [col.replace("_", " "), *words]:
            s = difflib.SequenceMatcher(None, flat, w).ratio()
            if s > score:
                best, score = col, s
    return best, score


def _content(sample: Sample, name: str) -> str | None:
    """What the sampled values look like: date, icd10, cpt, number, or None."""
    values = sample.values(name)[:200]
    if not values:
        return None
    if name in sample.typed_dates or _date_formats(values):
        return "date"
    share = lambda rx: sum(bool(rx.match(v.upper())) for v in values) / len(values)  # noqa: E731
    if share(_CPT) > 0.9:
        return "cpt"
    if share(_ICD) > 0.9:
        return "icd10"
    return "number" if share(_NUM) > 0.9 else None


def _date_formats(values: list[str]) -> list[str]:
    """The formats of :data:`DATE_FORMATS` every value parses with."""
    fits = []
    for fmt in DATE_FORMATS:
        try:
            for v in values:
                dt.datetime.strptime(v, fmt)
        except ValueError:
            continue
        fits.append(fmt)
    return fits


def _guess_column(sample: Sample, name: str) -> tuple[str | None, str]:
    """(canonical column or None, why) for one header name."""
    target, score = _similar(name)
    kind = _content(sample, name)
    by_content = {"date": "visit_date", "cpt": "cpt_codes", "icd10": "icd10"}.get(kind or "")
    if by_content and (score < 0.75 or target != by_content):
        return by_content, f"values look like {kind} codes" if kind != "date" else \
            "values are dates"
    if score >= 0.75:
        return target, f"name is like {target!r} ({score:.0%})"
    return None, "no confident guess"


def _roles(samples: list[Sample]) -> dict[Path, str]:
    """visits / measures / patients per file (one file: visits)."""
    if len(samples) == 1:
        return {samples[0].path: "visits"}
    vocab = load_measure_vocabulary()
    roles = {}
    for s in samples:
        if _measure_name_column(s, vocab):
            roles[s.path] = "measures"
        elif any(_guess_column(s, n)[0] == "visit_date" for n in s.names):
            roles[s.path] = "visits"
        else:
            roles[s.path] = "patients"
    return roles


def _measure_name_column(s: Sample, vocab: dict) -> str | None:
    """A text column whose values are mostly known measure names (a long flowsheet)."""
    for name in s.names:
        values = set(s.values(name))
        if values and sum(f"name:{normalize_measure_name(v)}" in vocab for v in values) \
                >= max(1, len(values) // 2):
            return name
    return None


# --- writing the TOML -------------------------------------------------------------------------


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _header_lines(samples: list[Sample], roles: dict[Path, str]) -> list[str]:
    first = next(s for s in samples if roles[s.path] == "visits") if "visits" in \
        roles.values() else samples[0]
    out = ["# EMR profile drafted by `outcomes profile draft` from "
           + ", ".join(s.path.name for s in samples) + ".",
           "# Every line marked REVIEW is a guess: check it, then try "
           "`outcomes ingest ... --profile this.toml --dry-run`.", ""]
    if first.delimiter:
        out.append(f"delimiter = {_q(first.delimiter)}   # REVIEW: detected from the header")
    out.append(f"encoding = {_q(first.encoding)}   # REVIEW: "
               + ("the sample decodes as UTF-8" if first.encoding == "utf-8" else
                  "the sample is not UTF-8; cp1252 is a guess"))
    if first.header_row != 1:
        out.append(f"header_row = {first.header_row}   # REVIEW: rows above look like a title "
                   "block")
    out += _date_lines(samples, roles)
    if len(samples) > 1:
        out += ["", "# which file is which (file-name patterns)", "[files]"]
        out += [f"{roles[s.path]} = {_q(s.path.name)}   # REVIEW" for s in samples]
    return out


def _date_lines(samples: list[Sample], roles: dict[Path, str]) -> list[str]:
    values, typed = [], False
    for s in samples:
        for n in s.names:
            if roles[s.path] == "patients":
                continue
            if n in s.typed_dates:
                typed = True
            elif _content(s, n) == "date":
                values += s.values(n)
    if typed and not values:
        return ['date_format = "%Y-%m-%d"   # REVIEW: the workbook holds typed dates (any '
                "format reads them)"]
    fits = _date_formats(values) if values else []
    if len(fits) == 1:
        return [f"date_format = {_q(fits[0])}   # REVIEW: every sampled date fits this format"]
    if fits:
        return [f"# date_format = ?   QUESTION: the sampled dates fit {', '.join(fits)}; "
                "which does your EMR write? (never guessed per row)"]
    return ["# date_format = ?   QUESTION: no date column recognised"]


def _columns_section(samples: list[Sample], roles: dict[Path, str]) -> list[str]:
    out = ["", "# EMR column name -> canonical column (outcomes.schema.VISIT_COLUMNS)",
           "[columns]"]
    seen: set[str] = set()
    written: set[str] = set()  # a key column shared by two files is one TOML key
    for s in samples:
        if roles[s.path] == "measures":
            continue
        out.append(f"# {s.path.name}")
        for name in s.names:
            if name not in written:
                out.append(_column_line(s, name, seen))
                written.add(name)
    return out


def _column_line(s: Sample, name: str, seen: set[str]) -> str:
    if is_direct_identifier(name):
        return (f"# {_q(name)}: a direct identifier; remove this column from the export "
                "(ingest rejects it)")
    target, why = _guess_column(s, name)
    if target is None or target not in VISIT_COLUMNS:
        return f"# {_q(name)} = \"\"   # REVIEW: {why}; ignored unless you map it"
    if target in seen and target != "patient_id":
        return f"# {_q(name)} = {_q(target)}   # REVIEW: {target} is already mapped above"
    seen.add(target)
    return f"{_q(name)} = {_q(target)}   # REVIEW: {why}"


_TYPE_WORDS = (("re-eval", "re-evaluation"), ("reeval", "re-evaluation"),
               ("progress", "re-evaluation"), ("discharge", "discharge"),
               ("initial", "evaluation"), ("eval", "evaluation"))


def _values_sections(samples: list[Sample], roles: dict[Path, str]) -> list[str]:
    out = []
    for s in samples:
        for name in s.names:
            target, _ = _guess_column(s, name)
            distinct = sorted(set(s.values(name)))
            if target == "visit_type" and len(distinct) <= 20:
                out += ["", "[values.visit_type]   # REVIEW: EMR visit types -> evaluation, "
                        "treatment, re-evaluation, discharge"]
                out += [f"{_q(v)} = {_q(_visit_type(v))}" for v in distinct]
            if target == "sex" and len(distinct) <= 6:
                out += ["", "[values.sex]   # REVIEW: -> F, M, X"]
                out += [f"{_q(v)} = {_q(v[:1].upper() if v[:1].upper() in 'FM' else 'X')}"
                        for v in distinct]
    return out


#: Abbreviations EMRs use for visit types, matched as the whole text.
_TYPE_ABBREVIATIONS = {"ie": "evaluation", "eval": "evaluation", "re": "re-evaluation",
                       "pn": "re-evaluation", "dc": "discharge", "d/c": "discharge",
                       "tx": "treatment", "dn": "treatment"}


def _visit_type(text: str) -> str:
    low = text.lower().strip()
    if low in _TYPE_ABBREVIATIONS:
        return _TYPE_ABBREVIATIONS[low]
    return next((t for word, t in _TYPE_WORDS if word in low), "treatment")


def _measures_section(s: Sample) -> list[str]:
    vocab = load_measure_vocabulary()
    name_col = _measure_name_column(s, vocab)
    guess = {n: _guess_column(s, n)[0] for n in s.names}
    date_col = next((n for n, t in guess.items() if t == "visit_date"), "?")
    patient_col = next((n for n, t in guess.items() if t == "patient_id"), "?")
    score_col = next((n for n in s.names if n not in (name_col, date_col, patient_col)
                      and _content(s, n) == "number"), "?")
    out = ["", f"# the long flowsheet {s.path.name}: one row per patient, date, measure, score",
           "[measures]", f"patient = {_q(patient_col)}   # REVIEW",
           f"date = {_q(date_col)}   # REVIEW", f"name = {_q(name_col or '?')}   # REVIEW",
           f"score = {_q(score_col)}   # REVIEW",
           "tolerance_days = 0   # REVIEW: a score attaches to a visit on the same day",
           "# keep = \"last\"   # of several different scores on one visit (default: quarantine)",
           "", "[measures.names]   # EMR measure name -> instrument (outcomes/data/measures.toml)"]
    for name in sorted(set(s.values(name_col))) if name_col else []:
        code = vocab.get(f"name:{normalize_measure_name(name)}")
        out.append(f"# {_q(name)} = {_q(code)}   # known to the vocabulary" if code else
                   f"# {_q(name)} = \"\"   # REVIEW: unknown; map it to an instrument code or "
                   "leave it (its rows are quarantined as unknown_measure)")
    return out


def _draft_fhir(paths: list[Path]) -> str:
    """A FHIR Bulk Data profile: visit types from Encounter.type, unknown Observation codes."""
    vocab = load_measure_vocabulary()
    types, codes = set(), {}
    for path in paths:
        for res in _resources(path):
            if res.get("resourceType") == "Encounter":
                types.update(t.get("text", "") for t in res.get("type", [])[:1])
            if res.get("resourceType") == "Observation":
                code = res.get("code") or {}
                for c in code.get("coding", [])[:1]:
                    codes[c.get("code", "")] = code.get("text") or c.get("display", "")
    out = ["# FHIR R4 Bulk Data profile drafted by `outcomes profile draft`.",
           "# FHIR dates are ISO 8601: no date_format needed.", "",
           "[values.visit_type]   # REVIEW: Encounter.type text -> visit type"]
    out += [f"{_q(t)} = {_q(_visit_type(t))}" for t in sorted(types) if t]
    out += ["", "[measures.names]   # REVIEW: Observation codes the vocabulary does not know"]
    for code, text in sorted(codes.items()):
        if f"code:{code}" in vocab:
            continue
        known = vocab.get(f"name:{normalize_measure_name(text)}")
        out.append(f"{_q(code)} = {_q(known)}   # REVIEW: its text {_q(text)} names {known}"
                   if known else f"# {_q(code)} = \"\"   # REVIEW: {_q(text)} is unknown")
    return "\n".join(out) + "\n"


def _resources(path: Path):
    """The first resources of an NDJSON file (a sample), as dicts."""
    with path.open(encoding="utf-8", errors="strict") as fh:
        for number, line in enumerate(islice(fh, SAMPLE_ROWS * 20), start=1):
            try:
                res = json.loads(line) if line.strip() else {}
            except json.JSONDecodeError:
                raise reject(path, f"line {number} is not valid JSON") from None
            yield res if isinstance(res, dict) else {}
