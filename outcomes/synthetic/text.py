"""Free-text building blocks of the synthetic export: technique phrasings, noise, defects.

Private to :mod:`outcomes.synthetic`. The phrasings imitate how therapists write daily notes:
abbreviations, side markers, varied case and punctuation, and a few typos. Every phrasing listed
under a code must map back to that code through the packaged vocabulary
(``outcomes/data/techniques.toml``); ``UNMAPPED`` phrases must map to nothing. Both promises are
checked in ``tests/test_techniques.py``.
"""

from __future__ import annotations

#: Technique code -> phrasings the generator writes for it (typos on purpose).
PHRASES: dict[str, tuple[str, ...]] = {
    "pri_manual_ribcage": (
        "manual ribcage", "Manual Rib Cage technique", "ribcage mob", "rib cage mobilization",
        "manual ribcage tech to activate obliques", "L ribcage manual", "manaul ribcage",
        "PRI manual ribcage", "R rib cage manual tech",
    ),
    "pri_exhalation_breathing": (
        "balloon breathing", "exhalation breathing", "Balloon Breathing", "full exhalation w/ balloon",
        "exhale breathing drill", "breathing w/ balloon", "exhalation drills", "ballon breathing",
        "ZOA breathing",
    ),
    "pri_repositioning": (
        "90/90 hip lift", "90/90 hip lift w/ balloon", "R AIC repositioning", "L AIC reposition",
        "hamstring repositioning", "oblique repositioning", "pelvic repositioning", "90-90 hip lift",
        "repositioning ex", "Left AIC repositioning", "PRI repositioning", "90/90 HL w/ balloon",
    ),
    "pri_hiking_stick_gait": (
        "hiking poles", "hiking stick gait", "gait w/ hiking sticks", "walking w/ hiking poles",
        "Hiking Sticks", "trekking poles gait", "hikng poles", "hiking-pole gait trng",
    ),
    "pri_glute_reeducation": (
        "glute med re-ed", "glute re-education", "glut med re-ed", "glute timing",
        "glute activation timing", "L glute med re-ed", "gluteal reeducation", "glute med reed",
        "Glute Med Re-Ed.",
    ),
    "pri_shoewear": (
        "shoewear rec", "shoe wear recommendation", "shoe rec's", "temporary shoewear",
        "shoewear recs given", "shoe-wear rec",
    ),
    "trad_hip_stretching": (
        "ITB foam roll", "IT band stretch", "foam rolling ITB", "hip flexor stretch", "ITB stretching",
        "foam roller lat thigh", "piriformis stretch", "Hip Stretching", "IT band strech",
        "TFL stretch", "itb foam rool", "I.T.B. stretch",
    ),
    "trad_glute_strengthening": (
        "glute strengthening", "clamshells", "clam shells", "glute bridges", "side-lying hip abd",
        "SL hip abduction", "monster walks", "glute med strengthening", "glut strengthening",
        "bridging",
    ),
    "trad_quad_strengthening": (
        "quad sets", "quad strengthening", "SLR", "straight leg raise", "LAQ", "wall sits",
        "mini squats", "step ups", "TKE", "leg press", "quad strenghtening",
    ),
    "trad_hamstring_strengthening": (
        "hamstring curls", "HS curls", "ham curls", "hamstring strengthening", "stability ball HS curls",
        "nordic curls", "hamstring strenghtening",
    ),
    "trad_core_strengthening": (
        "core strengthening", "core stab", "planks", "dead bugs", "bird dogs", "core stabilization",
        "side planks", "Core Strength",
    ),
    "other_modalities": (
        "ice", "ice 10 min", "cold pack", "moist heat", "MHP", "US", "ultrasound", "e-stim",
        "estim", "IFC", "TENS", "heat 10'",
    ),
}

#: Family of each code (mirrors the vocabulary; the generator needs it without reading TOML).
FAMILY: dict[str, str] = {
    code: ("pri" if code.startswith("pri_") else "traditional" if code.startswith("trad_")
           else "other")
    for code in PHRASES
}

PRI_CODES = tuple(c for c in PHRASES if FAMILY[c] == "pri")
TRAD_CODES = tuple(c for c in PHRASES if FAMILY[c] == "traditional")

#: Technique text the vocabulary deliberately does not know (counted as unmapped at ingest).
UNMAPPED: tuple[str, ...] = (
    "dry needling L TFL", "Graston lat thigh", "kinesiotape lat knee", "IASTM", "cupping",
    "blood flow restriction", "PNF patterns", "aquatic therapy",
)

#: Extra unknown technique text injected by ``--messy``.
UNMAPPED_MESSY: tuple[str, ...] = ("Schroth", "McKenzie ext", "ASTYM lat thigh", "Feldenkrais")

#: Routine text that is not a technique; the vocabulary treats it as noise (never reported).
NOISE: tuple[str, ...] = (
    "HEP reviewed", "pt tolerated well", "cont POC", "HEP updated", "tolerated tx well",
    "see flowsheet",
)

#: Evaluation-visit openers.
EVAL_NOTES: tuple[str, ...] = ("Initial eval", "IE completed", "PT eval", "Eval; HEP issued")

#: Separators between fragments of one note (the mapper splits on each of them).
SEPARATORS: tuple[str, ...] = ("; ", ", ", " + ", "; ", ", ", " and ", " / ", "\n")

#: PHI planted in notes by ``--messy``: kind -> text appended to the note.
PHI_SNIPPETS: dict[str, str] = {
    "name": "Pt John Smith",
    "provider_name": "per Dr. Okafor",
    "phone": "call back 555-867-5309",
    "email": "jsmith@example.com",
    "ssn": "SSN 123-45-6789",
    "mrn": "MRN 12345678",
    "dob": "DOB 04/12/1961",
    "address": "lives at 42 Elm Street",
    "age_over_89": "pt is 93 y/o",
}

#: Markup and template strings planted by ``--messy`` (must be rendered inert downstream).
MARKUP_SNIPPETS: dict[str, str] = {
    "xss_script": "<script>alert(1)</script>",
    "xss_img": "<img src=x onerror=alert(1)>",
    "template": "{{7*7}}",
}

#: Score text planted by ``--messy``: only ``N/A`` has an explicit mapping (to missing).
TEXT_SCORES: tuple[str, ...] = ("N/A", "refused", "7/10", "6,5")
