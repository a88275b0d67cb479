"""A labelled, synthetic corpus of therapy notes with planted identifiers (for tests and benchmarks).

:func:`generate_phi_corpus` writes notes the way therapists do (shorthand, scores, CPT and ICD
codes, technique names) and plants identifiers of every kind the scanner knows, recording each
planted value's kind and character span. A share of notes holds no identifier at all but is full of
clinical text that looks like one (``L4-L5``, ``CPT 97110``, ``NPRS 7/10``, ``Left AIC``,
``Dr. Scholl's inserts``): the false-positive test. :func:`score_phi_scan` compares scanner hits
with the labels.

Everything is synthetic and seeded: the same seed gives the same corpus on every machine. Names
are drawn partly from outside the scanner's first-name list, some values are lower- or upper-cased,
and formats, cues and positions vary, so the measured recall is not a foregone conclusion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from outcomes.privacy.patterns import KINDS

__all__ = ["generate_phi_corpus", "generate_notes", "score_phi_scan"]

_FIRST = (
    "John Mary James Linda Robert Susan Michael Karen David Lisa Thomas Nancy Daniel Emily "
    "Kevin Laura Brian Megan Anna Tom Jane Grace Peter Helen Carlos Priya Wei Olumide Siobhan "
    "Mateo Aaliyah Dmitri Keisha Rohan Ingrid Tariq Yuki Bogdan Nkechi Leilani Anders Fatima "
    "Esperanza Giorgos Marisol Tenzin Eamon Zoltan"
).split()
_LAST = (
    "Smith O'Neil Okafor Nguyen Garcia McDonald Smith-Jones D'Angelo Lee Kowalski Hernandez "
    "Patel Wright Long Young Hill Green King Rivera Bell Price Walker Brennan Schultz Abara "
    "Lindqvist Castellanos Mahmoud Takahashi Oyelaran Fitzgerald Novak Petrov MacLeod Baptiste"
).split()
_STREETS = "Main Oak Elm Maple Cedar Lakeview Sunset Washington Park Hillcrest Pine River".split()
_SUFFIXES = "St Street Ave Avenue Rd Road Blvd Dr Drive Ln Lane Ct Court Way Pl Terrace".split()
_DOMAINS = "gmail.com yahoo.com outlook.com icloud.com comcast.net example.org mail.co.uk".split()
_MONTHS = "January February March April May June July August September October November December"


# --------------------------------------------------------------------------------------------
# value generators: each returns the planted value
# --------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(str(d) for d in rng.integers(0, 10, n))


def _phone(rng):
    a, b, c = f"{rng.integers(201, 990)}", f"{rng.integers(200, 1000)}", _digits(rng, 4)
    fmt = _pick(
        rng,
        [
            f"({a}) {b}-{c}",
            f"{a}-{b}-{c}",
            f"{a}.{b}.{c}",
            f"+1 {a} {b} {c}",
            f"{a}{b}{c}",
            f"{a} {b} {c}",
            f"1-{a}-{b}-{c}",
            f"({a}){b}-{c}",
            f"+1-{a}-{b}-{c}",
            f"+1 ({a}) {b}-{c}",
        ],
    )
    if rng.random() < 0.15:
        fmt += _pick(
            rng,
            [
                f" ext. {rng.integers(1, 999)}",
                f" x{rng.integers(10, 9999)}",
                f" ext {rng.integers(1, 99)}",
            ],
        )
    return fmt


def _email(rng):
    first, last = _pick(rng, _FIRST).lower(), _pick(rng, _LAST).lower().replace("'", "")
    local = _pick(
        rng,
        [
            f"{first}.{last}",
            f"{first[0]}{last}{rng.integers(1, 99)}",
            f"{first}_{last}",
            f"{first}+pt",
            f"{last}.{first[0]}",
        ],
    )
    value = f"{local}@{_pick(rng, _DOMAINS)}"
    return value.upper() if rng.random() < 0.1 else value


def _url(rng):
    return _pick(
        rng,
        [
            f"https://www.{_pick(rng, ['youtube.com', 'vimeo.com'])}/watch?v={_digits(rng, 6)}",
            f"www.{_pick(rng, _LAST).lower().replace(chr(39), '')}family.org",
            f"http://portal.{_pick(rng, ['clinicpt', 'mychart'])}.net/pt?id={_digits(rng, 5)}",
            f"facebook.com/{_pick(rng, _FIRST).lower()}.{_pick(rng, _LAST).lower()[:4]}",
        ],
    )


def _ssn(rng):
    a, b, c = _digits(rng, 3), _digits(rng, 2), _digits(rng, 4)
    return _pick(rng, [f"{a}-{b}-{c}", f"{a} {b} {c}", f"{a}{b}{c}"])


def _mrn(rng):
    return _pick(
        rng,
        [
            _digits(rng, 8),
            f"A{_digits(rng, 7)}",
            _digits(rng, 6),
            f"{_digits(rng, 2)}-{_digits(rng, 4)}",
            f"00{_digits(rng, 5)}",
            f"XJ{_digits(rng, 8)}",
            f"{rng.integers(2019, 2027)}-{_digits(rng, 5)}",
        ],
    )


def _dob(rng):
    y, m, d = int(rng.integers(1925, 2006)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    month = _MONTHS.split()[m - 1]
    return _pick(
        rng,
        [
            f"{m:02d}/{d:02d}/{y}",
            f"{m}/{d}/{y}",
            f"{y}-{m:02d}-{d:02d}",
            f"{month} {d}, {y}",
            f"{d} {month[:3]} {y}",
            f"{m}/{d}/{y % 100:02d}",
            f"{m:02d}-{d:02d}-{y}",
            f"{month[:3]}. {d} {y}",
        ],
    )


def _address(rng):
    number = f"{rng.integers(1, 9999)}"
    street = f"{_pick(rng, _STREETS)} {_pick(rng, _SUFFIXES)}"
    value = _pick(
        rng,
        [
            f"{number} {street}",
            f"{number} {street} Apt {rng.integers(1, 40)}",
            f"{number} {_pick(rng, ['N', 'S', 'E', 'W'])}. {street}",
            f"{number} W {rng.integers(2, 99)}th St",
            f"{number} {street}, Unit {rng.integers(1, 9)}B",
            f"PO Box {rng.integers(10, 9999)}",
        ],
    )
    return value.lower() if rng.random() < 0.1 else value


def _age(rng):
    n = int(rng.integers(90, 106))
    return _pick(
        rng,
        [
            f"{n} yo",
            f"{n}yo",
            f"{n} y/o",
            f"{n}-year-old",
            f"{n} year old",
            f"{n} YO",
            f"{n} yrs old",
        ],
    )


def _name(rng, words: int):
    first, last = _pick(rng, _FIRST), _pick(rng, _LAST)
    value = {1: first, 2: f"{first} {last}", 0: last}[words]
    roll = rng.random()
    return value.upper() if roll < 0.04 else value.lower() if roll < 0.06 else value


# --------------------------------------------------------------------------------------------
# templates: "{v}" marks the planted value; ages use "{v}" inside their own cue
# --------------------------------------------------------------------------------------------

# (template, words of the name: 0 = surname, 1 = first name, 2 = first + last)
_NAME_TEMPLATES = [
    ("Pt {v} reports less pain", 2),
    ("patient {v} arrived late", 2),
    ("Patient: {v}", 2),
    ("pt {v} seen for f/u", 1),
    ("HEP reviewed per Dr. {v}", 0),
    ("Dr {v} cleared for running", 0),
    ("seen by Dr. {v} last wk", 2),
    ("Mrs. {v} tolerated well", 0),
    ("Mr {v} late today", 0),
    ("Ms. {v} called", 0),
    ("wife {v} drove pt", 1),
    ("her husband {v} helps w/ HEP", 1),
    ("son {v} attended visit", 1),
    ("emergency contact mother, {v}", 2),
    ("daughter {v} present", 2),
    ("caregiver: {v}", 2),
    ("spoke with {v} re: schedule", 2),
    ("{v} called to reschedule", 2),
    ("msg left for {v}", 2),
    ("referred by dr. {v}", 0),
    ("PATIENT NAME: {v}", 2),
    ("client {v} ran 5k", 2),
    ("Wife {v} asked about HEP", 1),
]
_CONTACT_TEMPLATES = {
    "phone": [
        "call {v} to reschedule",
        "cell {v}",
        "ph: {v}",
        "fax {v} for records",
        "{v}",
        "home # {v}",
        "reach pt at {v}",
        "mobile {v} (text ok)",
        "Phone {v}",
        "pt phone: {v}",
    ],
    "email": ["email {v} re HEP", "sent HEP to {v}", "{v}", "Email: {v}", "prefers email ({v})"],
    "url": ["HEP video {v}", "see {v}", "pt blog {v}", "{v}"],
    "ssn": [
        "SSN {v} on intake form",
        "ss no {v}",
        "SS# {v}",
        "social security number: {v}",
        "ssn:{v}",
        "{v} (SSN) on file",
    ],
    "mrn": [
        "MRN {v}",
        "MRN: {v}",
        "mrn#{v}",
        "acct #{v} billing",
        "account no. {v}",
        "record number {v}",
        "chart #{v} reviewed",
        "Med Rec # {v}",
        "medical record number {v}",
        "Pt ID {v}",
        "member id {v}",
        "claim # {v}",
    ],
    "dob": [
        "DOB {v}",
        "DOB: {v}",
        "dob {v}",
        "born {v}",
        "date of birth: {v}",
        "D.O.B. {v}",
        "birthdate {v}",
        "(DOB {v})",
    ],
    "address": [
        "lives at {v}, stairs to enter",
        "moved to {v}",
        "home: {v}",
        "address {v}",
        "{v} - 2nd floor walkup",
        "mail HEP to {v}",
    ],
    "age": ["{v} female, L knee", "{v} male runner", "pt is {v}", "{v}, lives alone"],
}
_AGE_KEYWORD_TEMPLATES = ["age {n}, lives alone", "Age: {n}", "aged {n}", "AGE {n} hx THA"]
_VALUES = {
    "phone": _phone,
    "email": _email,
    "url": _url,
    "ssn": _ssn,
    "mrn": _mrn,
    "dob": _dob,
    "address": _address,
    "age": _age,
}

#: Clinical fragments, most of them built to look like identifiers.
# fmt: off
_CLEAN = [
    "L4-L5 disc bulge", "L5-S1 mobs", "T4-T8 mobility", "S1 dermatome intact", "C5-C6 stiffness",
    "CPT 97110 x3 units", "97140 x2", "CPT 97162; 97140; 97530", "97164 re-eval", "dx M76.31",
    "ICD M54.50, M22.2X1", "M25.551", "Dx: ITBS (M76.32)", "NPRS {p}/10 at eval",
    "pt reports {p}/10 pain", "pain {p}/10 w/ stairs", "LEFS {l}/80", "PSFS {p}.{p}", "ODI {o}%",
    "GROC +{g}", "MMT 4/5 glute med", "4+/5 hip abd", "5/5 quad", "3x10 reps bridges",
    "2x15 clamshells", "3 sets x 12", "hold 5 sec x 10", "HEP 2x/wk", "1-2x/week x 6 wks",
    "90/90 hip lift w/ balloon", "R AIC pattern", "Left AIC pattern noted", "Right BC pattern",
    "L AIC", "PRI left AIC pattern", "Postural Restoration techniques", "per Hruska approach",
    "Postural Restoration Institute course", "seen 3/{d}", "f/u 4/{d}", "next visit 3/21",
    "visit #{v}", "visit {v} of 12", "ROM 0-120 deg", "knee flex 0-13{p}", "hip IR 20 deg",
    "SLR 70 deg", "Dr. appt f/u 2 wks", "MD appt 4/10", "Dr appt next week", "per Dr. orders",
    "hip flexor tightness", "foam rolling ITB", "Glute med re-ed in sidelying", "glute med re-ed",
    "hiking poles gait training", "exhalation breathing w/ balloon", "shoewear recs",
    "PT educated pt on HEP", "Patient tolerated well", "Pt tolerated tx well",
    "Pt arrived 10 min late", "Patient Education: HEP", "Pt Education provided", "ice 10 min",
    "e-stim 15 min", "US 1.0 W/cm2 x 8 min", "BP 120/80", "HR 72 bpm", "SpO2 98%", "ran 5 mi",
    "10k race 5/12", "marathon 10/6", "Hx of MS", "MS Pt reports fatigue", "Hx ACL recon 2019",
    "s/p THA 2021", "squat 3x10 @ 95 lb", "90 deg knee flexion", "walked 100 yards",
    "Dr. Scholl's inserts tried", "Brooks Adrenaline shoes", "Hoka Bondi recommended",
    "Theraband Blue", "wife present during session", "pt's son drove today", "mother has OA",
    "Tolerated well. Progressed to 3x15", "Reviewed HEP", "Glute Med Re-Ed", "Hip Flexor Stretch",
    "Left Hip Pain", "Right Knee", "Sx began 1/2/2026", "x-ray 12/2025 neg", "10 reps each way",
    "Pt Lateral hip pain", "pt independent w/ HEP", "Pt Response: good", "Hip IR/ER 30/40",
    "cadence 170 spm", "ran 3 miles @ 9:30 pace", "wt 150 lb", 'ht 5\'6"', "rtn to run 2/10 pain",
    "Age appropriate", "single leg squat x 10", "Mini squat 2x10", "FABER (+) R",
    "Ober test (+) L", "Thomas test (+) bilat", "Trendelenburg (+) L",
    "pt Will progress next visit", "Clamshells 3x15 w/ Green band",
    "Monster walks w/ Red TheraBand", "Bird Dog 2x10", "Dead Bug 3x8", "Copenhagen plank 3x20s",
    "Nordic hamstring curls", "Single Leg RDL 3x8 @ 20 lb", "Bulgarian split squat",
    "Side plank 3x30 sec", "Lateral step downs 6 in", "Standing Hip Abduction",
    "Supine 90/90 Hip Shift", "Right Sidelying Respiratory Adductor Pull Back",
    "Left Sidelying Apical Expansion", "Standing Wall Supported Reach", "Seated Resisted Hip IR",
    "Hruska Adduction Lift Test positive", "Adduction Drop Test (+) L",
    "PRI Left AIC/Right BC pattern", "Pelvic Ascension Test negative", "Sit-to-stand x 10",
    "Gait: Trendelenburg L", "Plan: cont POC 2x/wk x 4 wks", "Goals: return to running 10 mi/wk",
    "Assessment: improving", "Subjective: pt states knee better", "Objective: R hip IR 25 deg",
    "Next Visit: progress HEP", "Monday/Wednesday schedule", "Visit 3/12/2026", "Re-eval due 4/15",
    "Copay $40", "Auth 12 visits thru 6/30", "Treadmill 3.0 mph 10 min", "Bike 10 min L5",
    "UBE 6 min", "Mile time 9:45", "5K PR 24:10", "Boston Marathon 4/20", "Nike Pegasus 40",
    "New Balance 880", "Superfeet Green insoles", "Kinesio tape to ITB",
    "Graston to lateral thigh", "Dry needling TFL", "Pilates reformer 1x/wk", "PMH: HTN, DM2",
    "Meds: ibuprofen 400 mg", "Allergies: NKDA", "X-ray 3/2/26: no fx", "MRI 2025 neg",
    "Ortho f/u in 6 wks", "Dr. visit next week", "PCP referral received", "Pain at Night: yes",
    "FOTO score 62", "BMI 24.5", 'Height 5\'10"', "Steps 8,000/day",
    "Pt Goal: run Chicago Marathon", "Mother's Day 10k", "Father Time jokes",
    "Pt's wife Supportive", "Grade II MCL sprain 2018", "Ottawa ankle rules negative",
    "Room 3, table 2", "Ext rotation 45 deg", "Pt states Tuesday better", "Saw Ortho PA last wk",
    "Per Protocol ACL phase 2", "With Cues for form", "Referred by Ortho", "Seen by PCP",
]
# fmt: on


def _case_template(rng, template: str) -> str:
    """Vary the casing of the text around ``{v}`` (never the placeholder itself)."""
    roll = rng.random()
    if roll < 0.7:
        return template
    head, _, tail = template.partition("{v}")
    change = str.lower if roll < 0.85 else str.upper
    return change(head) + "{v}" + change(tail)


def _clean_fragment(rng) -> str:
    template = _pick(rng, _CLEAN)
    fill = {
        "p": rng.integers(0, 10),
        "l": rng.integers(20, 81),
        "o": rng.integers(0, 101),
        "g": rng.integers(1, 8),
        "d": rng.integers(1, 31),
        "v": rng.integers(1, 20),
    }
    text = template.format(**fill) if "{" in template else template
    roll = rng.random()
    return text.lower() if roll < 0.1 else text.upper() if roll < 0.15 else text


def _phi_fragment(rng, kind: str) -> tuple[str, int, int]:
    """A fragment holding one planted value: (text, start, end) of the value."""
    if kind == "name":
        template, words = _pick(rng, _NAME_TEMPLATES)
        value = _name(rng, words)
    elif kind == "age" and rng.random() < 0.4:
        template = _pick(rng, _AGE_KEYWORD_TEMPLATES).replace("{n}", "{v}")
        value = str(int(rng.integers(90, 106)))
    else:
        template, value = _pick(rng, _CONTACT_TEMPLATES[kind]), _VALUES[kind](rng)
    template = _case_template(rng, template)
    start = template.index("{v}")
    return template.replace("{v}", value), start, start + len(value)


def _join(rng, fragments: list[str]) -> tuple[str, list[int]]:
    """Join fragments with varied separators; returns the note and each fragment's offset."""
    text, offsets = "", []
    for i, fragment in enumerate(fragments):
        if i:
            text += _pick(rng, [". ", "; ", ", ", " - ", "\n", " ", ". ", "; "])
        offsets.append(len(text))
        text += fragment
    return text, offsets


def _note(rng, kinds: list[str]) -> tuple[str, list[tuple[str, int, int]]]:
    """One note: clinical fragments with a fragment per planted kind at a random position."""
    parts: list[tuple[str, tuple[str, int, int] | None]] = [
        (_clean_fragment(rng), None) for _ in range(int(rng.integers(1, 5)))
    ]
    for kind in kinds:
        text, start, end = _phi_fragment(rng, kind)
        parts.insert(int(rng.integers(0, len(parts) + 1)), (text, (kind, start, end)))
    note, offsets = _join(rng, [text for text, _ in parts])
    planted = [
        (lab[0], off + lab[1], off + lab[2])
        for (_, lab), off in zip(parts, offsets, strict=True)
        if lab is not None
    ]
    return note, planted


def generate_phi_corpus(
    n_phi: int = 1000, n_clean: int = 500, *, seed: int = 0
) -> tuple[pd.Series, pd.DataFrame]:
    """Notes with planted identifiers and notes with only clinical look-alikes.

    Parameters
    ----------
    n_phi : int
        Notes holding one to three planted identifiers (kinds drawn evenly, names twice as often).
    n_clean : int
        Notes holding no identifier, built from clinical fragments that resemble identifiers.
    seed : int
        Seed of the generator; the corpus is a pure function of the arguments.

    Returns
    -------
    notes : pandas.Series
        Index ``n00000``...; the notes in random order.
    labels : pandas.DataFrame
        One row per planted value: ``row`` (index label in ``notes``), ``kind``, ``start``,
        ``end``, ``value``.
    """
    rng = np.random.default_rng(seed)
    weights = np.array([2.0 if k == "name" else 1.0 for k in KINDS])
    texts, labels = [], []
    for i in range(n_phi + n_clean):
        n_kinds = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1])) if i < n_phi else 0
        kinds = list(rng.choice(KINDS, size=n_kinds, p=weights / weights.sum()))
        text, planted = _note(rng, [str(k) for k in kinds])
        texts.append(text)
        labels += [(i, k, s, e, text[s:e]) for k, s, e in planted]
    order = rng.permutation(len(texts))
    index = [f"n{j:05d}" for j in range(len(texts))]
    position = {int(old): index[new] for new, old in enumerate(order)}
    notes = pd.Series([texts[o] for o in order], index=index, name="technique_notes")
    frame = pd.DataFrame(labels, columns=["row", "kind", "start", "end", "value"])
    frame["row"] = frame["row"].map(position)
    return notes, frame.sort_values(["row", "start"]).reset_index(drop=True)


def generate_notes(n: int, *, share_phi: float = 0.02, seed: int = 0) -> pd.Series:
    """``n`` notes for throughput runs: mostly clean, ``share_phi`` of them with identifiers."""
    rng = np.random.default_rng(seed)
    n_phi = int(round(n * share_phi))
    phi, _ = generate_phi_corpus(n_phi=min(n_phi, 20_000), n_clean=0, seed=seed + 1)
    clean = [
        _join(rng, [_clean_fragment(rng) for _ in range(int(rng.integers(1, 5)))])[0]
        for _ in range(min(n - n_phi, 200_000))
    ]
    pool_phi = phi.to_numpy(dtype=object)
    pool_clean = np.asarray(clean, dtype=object)
    is_phi = rng.random(n) < share_phi
    out = np.where(
        is_phi,
        pool_phi[rng.integers(0, len(pool_phi), n)],
        pool_clean[rng.integers(0, len(pool_clean), n)],
    )
    return pd.Series(out, name="technique_notes")


def score_phi_scan(notes: pd.Series, labels: pd.DataFrame, hits: pd.DataFrame) -> pd.DataFrame:
    """Recall and false positives of a scan against the planted labels, by kind.

    Returns
    -------
    pandas.DataFrame
        Index ``kind`` (every kind, then ``all``) with columns ``planted``, ``detected`` (planted
        spans fully covered by hits of the same kind), ``recall``, ``false_positives`` (hits
        overlapping no planted span, in any note), ``clean_notes`` (notes with nothing planted),
        ``clean_flagged`` (clean notes with a hit of this kind) and ``fp_rate``
        (clean_flagged / clean_notes).
    """
    by_row = {row: group for row, group in hits.groupby("row")}
    detected = [_covered(span, by_row.get(span.row)) for span in labels.itertuples()]
    planted_rows = {row: group for row, group in labels.groupby("row")}
    stray = [not _overlaps(hit, planted_rows.get(hit.row)) for hit in hits.itertuples()]
    clean = notes.index.difference(labels["row"].unique())
    rows = []
    for kind in [*KINDS, "all"]:
        lab = labels["kind"].eq(kind) if kind != "all" else labels["kind"].notna()
        hit = hits["kind"].eq(kind) if kind != "all" else hits["kind"].notna()
        flagged = hits.loc[hit, "row"].isin(clean)
        rows.append(
            {
                "kind": kind,
                "planted": int(lab.sum()),
                "detected": int(np.asarray(detected, dtype=bool)[lab.to_numpy()].sum()),
                "false_positives": int(np.asarray(stray, dtype=bool)[hit.to_numpy()].sum()),
                "clean_notes": len(clean),
                "clean_flagged": int(hits.loc[hit, "row"][flagged].nunique()),
            }
        )
    table = pd.DataFrame(rows).set_index("kind")
    table.insert(2, "recall", table["detected"] / table["planted"].where(table["planted"] > 0))
    table["fp_rate"] = table["clean_flagged"] / table["clean_notes"]
    return table


def _covered(span, hits: pd.DataFrame | None) -> bool:
    """True when hits of the span's kind cover every character of it."""
    if hits is None:
        return False
    same = hits[hits["kind"].eq(span.kind)]
    covered = np.zeros(span.end - span.start, dtype=bool)
    for start, end in zip(same["start"], same["end"], strict=True):
        covered[max(start - span.start, 0) : max(end - span.start, 0)] = True
    return bool(covered.all())


def _overlaps(hit, labels: pd.DataFrame | None) -> bool:
    if labels is None:
        return False
    return bool(((labels["start"] < hit.end) & (labels["end"] > hit.start)).any())
