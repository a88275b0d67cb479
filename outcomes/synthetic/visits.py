"""Turn the synthetic episodes into export rows: calendar, visit types, notes, CPT codes, scores.

Private to :mod:`outcomes.synthetic`. Vectorised over visits (numpy object arrays for text).
"""

from __future__ import annotations

import numpy as np

from outcomes.synthetic import text as txt
from outcomes.synthetic.dgp import MECHANISM

PAYERS = ("commercial", "medicare", "medicaid", "workers_comp", "self_pay")
SEXES = ("F", "M", "X")
VISIT_TYPE_NAMES = np.array(["evaluation", "treatment", "re-evaluation", "discharge"], dtype=object)

_PRI_WEIGHTS = {"pri_manual_ribcage": 1.0, "pri_exhalation_breathing": 1.5,
                "pri_repositioning": 1.5, "pri_hiking_stick_gait": 0.8,
                "pri_glute_reeducation": 1.0, "pri_shoewear": 0.3}
_TRAD_WEIGHTS = {"trad_hip_stretching": 1.5, "trad_glute_strengthening": 1.3,
                 "trad_quad_strengthening": 1.0, "trad_hamstring_strengthening": 0.7,
                 "trad_core_strengthening": 1.0}
_CPT_OF_CODE = {"pri_manual_ribcage": "97140", "pri_exhalation_breathing": "97112",
                "pri_repositioning": "97112", "pri_hiking_stick_gait": "97116",
                "pri_glute_reeducation": "97112", "pri_shoewear": "97535",
                "trad_hip_stretching": "97110", "trad_glute_strengthening": "97110",
                "trad_quad_strengthening": "97110", "trad_hamstring_strengthening": "97110",
                "trad_core_strengthening": "97110", "other_modalities": "97010"}
_CPT_ORDER = ("97110", "97112", "97116", "97140", "97535", "97010")


def place_in_calendar(rng: np.random.Generator, ep: dict, vis: dict, last_kept: np.ndarray,
                      n_days: int) -> np.ndarray:
    """Start day (offset from ``start``) of every episode; updates ``ep['first_of']`` for orphans.

    First episodes start uniformly in the date range (those with a later second episode in its
    first 45 %). A second episode starts 61-240 days after the first one's last attended visit
    (or 10-60 days when it is for another condition, half of the time); one that would start after
    the range becomes a new patient's first episode.
    """
    n = len(ep["arm"])
    first_of = ep["first_of"]
    second = np.flatnonzero(first_of >= 0)
    first = first_of[second]
    start = rng.integers(0, n_days + 1, n)
    start[first] = rng.integers(0, int(0.45 * n_days) + 1, len(first))
    other_condition = ep["condition"][second] != ep["condition"][first]
    short = other_condition & (rng.random(len(second)) < 0.5)
    gap = np.where(short, rng.integers(10, 61, len(second)), rng.integers(61, 241, len(second)))
    last_day = vis["day"][vis["starts"][first] + last_kept[first]]
    s2 = start[first] + last_day + gap
    orphan = s2 > n_days
    start[second[~orphan]] = s2[~orphan]
    first_of[second[orphan]] = -1
    return start


def visit_days(ep_start: np.ndarray, vis: dict, start: np.datetime64) -> np.ndarray:
    """Calendar day of each planned visit (datetime64[D]); Sunday visits move to Monday."""
    days = start + (ep_start[vis["episode"]] + vis["day"]).astype("timedelta64[D]")
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    return days + (weekday == 6).astype("timedelta64[D]")


def visit_types(k: np.ndarray, last: np.ndarray) -> np.ndarray:
    """0 evaluation, 1 treatment, 2 re-evaluation, 3 discharge."""
    vt = np.where((k % 7 == 0) & (k > 0), 2, 1)
    vt = np.where(k == 0, 0, vt)
    return np.where(k == last, 3, vt)


def _weighted_order(rng: np.random.Generator, n: int, weights: dict) -> np.ndarray:
    """Per row, the family's codes in a random weighted order (Efraimidis-Spirakis keys)."""
    w = np.array(list(weights.values()))
    keys = np.log(rng.random((n, len(w)))) / w
    return np.argsort(-keys, axis=1)


def _phrase_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    codes = list(txt.PHRASES)
    counts = np.array([len(txt.PHRASES[c]) for c in codes])
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    flat = np.array([p for c in codes for p in txt.PHRASES[c]], dtype=object)
    return flat, offsets, counts, codes


def technique_counts(rng: np.random.Generator, arm: np.ndarray, vt: np.ndarray, k: np.ndarray,
                     nprs: np.ndarray, nprs0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How many PRI and traditional techniques each visit's note names.

    Arm 2 (pri) visits name only PRI techniques, arm 0 (traditional) only traditional ones, in the
    first three treatment visits; later visits drift (a traditional patient who is not improving
    may get PRI added: an outcome-driven change of plan the baseline window must not see).
    Arm 1 (mixed) names both families on treatment visit 1 and either or both later.
    """
    n = len(arm)
    main = 1 + rng.binomial(2, 0.45, n)
    one_or_two = 1 + rng.binomial(1, 0.4, (2, n))
    mixed_pick = rng.choice(3, n, p=[0.3, 0.3, 0.4])  # pri / traditional / both
    mixed_pick[k == 1] = 2
    late = k > 3
    drift_u = rng.random(n)
    not_improving = nprs > nprs0 - 1
    pri_drift = late & (drift_u < 0.08)
    trad_drift = late & (drift_u < 0.04 + 0.25 * not_improving)
    n_pri = np.select([arm == 2, arm == 0], [main, trad_drift.astype(int)],
                      np.where(mixed_pick == 1, 0, np.where(mixed_pick == 0, main, one_or_two[0])))
    n_trad = np.select([arm == 0, arm == 2], [main, pri_drift.astype(int)],
                       np.where(mixed_pick == 0, 0, np.where(mixed_pick == 1, main,
                                                                    one_or_two[1])))
    is_eval = vt == 0
    eval_tech = rng.random(n) < 0.5
    eval_pri = np.where(arm == 1, rng.random(n) < 0.5, arm == 2)
    n_pri = np.where(is_eval, (eval_tech & eval_pri).astype(int), n_pri)
    n_trad = np.where(is_eval, (eval_tech & ~eval_pri).astype(int), n_trad)
    return n_pri, n_trad


def build_notes(rng: np.random.Generator, vt: np.ndarray, n_pri: np.ndarray,
                n_trad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Free-text notes and CPT code strings for each visit."""
    n = len(vt)
    flat, offsets, counts, codes = _phrase_table()
    pri_idx = np.array([codes.index(c) for c in _PRI_WEIGHTS])
    trad_idx = np.array([codes.index(c) for c in _TRAD_WEIGHTS])
    pri_order = pri_idx[_weighted_order(rng, n, _PRI_WEIGHTS)[:, :3]]
    trad_order = trad_idx[_weighted_order(rng, n, _TRAD_WEIGHTS)[:, :3]]
    extras = MECHANISM["note_extras"]
    modality = rng.random(n) < extras["modality"]
    slots = []  # (present, code index or -1, text)
    for order, count in ((pri_order, n_pri), (trad_order, n_trad)):
        for j in range(3):
            code = order[:, j]
            phrase = flat[offsets[code] + (rng.random(n) * counts[code]).astype(int)]
            slots.append((count > j, code, phrase))
    swap = rng.random(n) < 0.5
    mod_code = codes.index("other_modalities")
    slots.append((modality, np.full(n, mod_code), flat[offsets[mod_code]
                  + (rng.random(n) * counts[mod_code]).astype(int)]))
    unmapped = rng.random(n) < extras["unmapped"]
    slots.append((unmapped, np.full(n, -1), _pick(rng, txt.UNMAPPED, n)))
    noise = rng.random(n) < extras["noise"]
    slots.append((noise, np.full(n, -1), _pick(rng, txt.NOISE, n)))
    sep = _pick(rng, txt.SEPARATORS[:-1], n)
    sep = np.where(rng.random(n) < extras["newline_separator"], "\n", sep)
    prefix = np.where(vt == 0, _pick(rng, txt.EVAL_NOTES, n), "")
    ordered = _order_slots(slots, swap)
    notes = _join(prefix, ordered, sep)
    notes = _vary_case(rng, notes)
    return notes, _cpt_strings(rng, vt, slots, codes)


def _pick(rng: np.random.Generator, options: tuple[str, ...], n: int) -> np.ndarray:
    return np.array(options, dtype=object)[rng.integers(0, len(options), n)]


def _order_slots(slots: list, swap: np.ndarray) -> list:
    """PRI phrases first or traditional first, per visit."""
    out = []
    for j in range(3):
        a, b = slots[j], slots[3 + j]
        out.append((np.where(swap, b[0], a[0]), None, np.where(swap, b[2], a[2])))
    for j in range(3):
        a, b = slots[j], slots[3 + j]
        out.append((np.where(swap, a[0], b[0]), None, np.where(swap, a[2], b[2])))
    return out + slots[6:]


def _join(prefix: np.ndarray, slots: list, sep: np.ndarray) -> np.ndarray:
    columns = [prefix] + [np.where(present, text, "") for present, _, text in slots]
    rows = zip(*(c.tolist() for c in columns), strict=True)
    return np.array([s.join([f for f in row if f]) for s, row in zip(sep.tolist(), rows,
                                                                    strict=True)], dtype=object)


def _vary_case(rng: np.random.Generator, notes: np.ndarray) -> np.ndarray:
    u = rng.random(len(notes))
    out = notes.copy()
    upper, lower = u < 0.05, (u >= 0.05) & (u < 0.10)
    out[upper] = [s.upper() for s in notes[upper]]
    out[lower] = [s.lower() for s in notes[lower]]
    return out


def _cpt_strings(rng: np.random.Generator, vt: np.ndarray, slots: list,
                 codes: list[str]) -> np.ndarray:
    n = len(vt)
    code_cpt = np.array([_CPT_ORDER.index(_CPT_OF_CODE[c]) for c in codes])
    flags = np.zeros((n, len(_CPT_ORDER)), dtype=bool)
    for present, code, _ in slots[:7]:
        rows = np.flatnonzero(present)
        flags[rows, code_cpt[code[rows]]] = True
    flags[:, 0] |= (vt != 0) & ~flags.any(axis=1)  # every treatment bills something
    kind = np.where(vt == 0, rng.choice(3, n, p=[.3, .5, .2]), np.where(vt == 2, 3, 4))
    key = kind * (1 << len(_CPT_ORDER)) + flags @ (1 << np.arange(len(_CPT_ORDER)))
    uniq, inverse = np.unique(key, return_inverse=True)
    heads = ("97161", "97162", "97163", "97164", None)
    table = []
    for u in uniq.tolist():
        head = heads[u >> len(_CPT_ORDER)]
        parts = [c for j, c in enumerate(_CPT_ORDER) if u >> j & 1]
        table.append(";".join(([head] if head else []) + parts))
    return np.array(table, dtype=object)[inverse]
