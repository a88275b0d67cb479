"""Data-generating process of the synthetic export: who is treated how, and what happens.

Private to :mod:`outcomes.synthetic` (its docstring states the contract). Everything here works on
numpy arrays, one entry per therapist, episode or planned visit; there is no per-visit Python loop.
"""

from __future__ import annotations

import numpy as np

#: Mechanism parameters; written verbatim into the truth JSON.
MECHANISM: dict = {
    "conditions": {"itbs": 0.45, "pfps": 0.20, "hip_pain": 0.15, "lbp": 0.20},
    "icd10": {
        "itbs": ["M76.30", "M76.31", "M76.32"],
        "pfps": ["M22.2X1", "M22.2X2"],
        "hip_pain": ["M25.551", "M25.552"],
        "lbp": ["M54.50", "M54.59"],
    },
    "age_mean_sd": {"itbs": [34, 11], "pfps": [30, 12], "hip_pain": [57, 16], "lbp": [48, 15]},
    "age_top_code": 90,
    "second_episode_share": 0.10,
    "therapist_styles": {"pri": 0.30, "both": 0.25, "traditional": 0.45},
    "therapist_pri_orientation": {"pri": 2.6, "both": 0.0, "traditional": -2.6},
    "chronicity": {
        "symptom_duration_weeks": "exp(1.9 + 0.9 z + N(0, 0.5)), rounded, 1..520",
        "prior_pt": "Bernoulli(logistic(-0.7 + 1.3 z))",
        "prior_injection": "Bernoulli(logistic(-1.8 + 1.0 z + 0.5 prior_pt))",
        "surgery_recommended": "Bernoulli(logistic(-3.0 + 0.9 z + 0.7 prior_injection))",
    },
    "ceiling_share": 0.03,
    "arm_model": {
        "latent": "orientation[therapist] + N(0, 0.3) + 1.0 prior_pt + 0.8 prior_injection"
                  " + 1.2 surgery_recommended + 0.5 log(symptom_duration_weeks / 8) + Logistic(0, 1)",
        "therapist_intercepts": "centred within style and scaled to a caseload-weighted SD of"
                                " therapist_sd, so therapist quality does not confound the arm",
        "cuts": {"traditional_below": -0.9, "pri_above": 0.9},
    },
    "outcome_model": {
        "nprs": {"intercept": -2.6, "baseline": -0.45, "baseline_center": 5.2, "prior_pt": 0.8,
                 "prior_injection": 0.6, "surgery_recommended": 1.0, "log_duration_over_8": 0.4,
                 "age_per_decade_over_40": 0.1, "therapist_sd": 0.4, "residual_sd": 1.25},
        "lefs": {"intercept": 13.0, "baseline": -0.3, "baseline_center": 46.0, "prior_pt": -3.0,
                 "prior_injection": -2.5, "surgery_recommended": -4.0, "log_duration_over_8": -1.5,
                 "age_per_decade_over_40": -0.6, "therapist_loading": -4.0,
                 "residual": "-3 * nprs_residual + N(0, 5.5)"},
        "psfs": {"intercept": 3.0, "baseline": -0.35, "baseline_center": 3.8, "prior_pt": -0.4,
                 "prior_injection": -0.3, "surgery_recommended": -0.6, "log_duration_over_8": -0.25,
                 "age_per_decade_over_40": 0.0, "therapist_loading": -0.5,
                 "residual": "-0.5 * nprs_residual + N(0, 1.0)"},
        "change": "traditional discharge score = intake + linear predictor + therapist + residual,"
                  " rounded and clipped to [low + max(0, -effect), high - max(0, effect)];"
                  " pri = traditional + effect, mixed = traditional + effect / 2 (non-integer"
                  " shifts rounded stochastically), so the effect is exact on the observed scale",
        "trajectory": "intake + (1 - (1 - f)^1.6) * change + visit noise, f = visit / last visit",
        "visit_noise_sd": {"nprs": 0.7, "lefs": 3.0, "psfs": 0.5},
        "groc": "round(-1.1 * nprs change + 0.08 * lefs change + N(0, 1.2)), clipped to -7..7",
    },
    "schedule": {
        "treatment_visits": "3 + Poisson(4.5 + 0.8 [z > 0.5]), at most 22",
        "re_evaluation": "every 7th visit (visit index 7, 14, 21) unless it is the last",
        "gap_days": "2 + Poisson(2.5), plus 5..20 days with probability 0.05",
        "scores": "NPRS every visit; LEFS at evaluation, every 4th visit and discharge; PSFS at"
                  " evaluation, re-evaluation and discharge; GROC at discharge",
    },
    "dropout_model": {
        "logit": "-3.5 + 0.9 [after evaluation] + arm + 0.22 (nprs_now - nprs_intake + 2)"
                 " + 1.2 [nprs_now <= 1 and visit >= 2] + 0.5 [self_pay] + 0.3 [medicaid]",
        "arm": {"pri": 0.45, "mixed": 0.2, "traditional": 0.0},
        "note": "hazard of stopping after a visit; uses only observed data (MAR)",
    },
    "technique_drift": {
        "pri_adds_traditional": 0.08,
        "traditional_adds_pri": "0.04 + 0.25 [nprs_now > nprs_intake - 1] (after visit 3 only)",
        "mixed_visit_families": "visit 1 both; later visits pri 0.3 / traditional 0.3 / both 0.4",
    },
    "note_extras": {"modality": 0.15, "unmapped": 0.035, "noise": 0.25, "newline_separator": 0.02},
}

ARM_NAMES = ("traditional", "mixed", "pri")  # arm code 0, 1, 2
STYLE_NAMES = ("pri", "both", "traditional")
INSTRUMENT_RANGE = {"nprs": (0, 10), "lefs": (0, 80), "psfs": (0, 10)}


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _choice_by_share(rng: np.random.Generator, shares: dict, n: int) -> np.ndarray:
    p = np.array(list(shares.values()), dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def draw_therapists(rng: np.random.Generator, n_therapists: int, n_clinics: int) -> dict:
    """Therapists: clinic, style (pri / both / traditional), PRI orientation, caseload weight."""
    shares = np.array(list(MECHANISM["therapist_styles"].values()))
    counts = np.floor(shares * n_therapists).astype(int)
    counts[np.argsort(-(shares * n_therapists - counts))[: n_therapists - counts.sum()]] += 1
    style = rng.permutation(np.repeat(np.arange(3), counts))
    clinic = rng.permutation(np.arange(n_therapists) % n_clinics)
    orient_map = np.array([MECHANISM["therapist_pri_orientation"][s] for s in STYLE_NAMES])
    sd = MECHANISM["outcome_model"]["nprs"]["therapist_sd"]
    weight = rng.gamma(3.0, 1.0, n_therapists)
    intercept = rng.normal(0, sd, n_therapists)
    for s in range(3):  # centre within style: therapist quality must not confound the arm
        mask = style == s
        if mask.sum() > 1:
            intercept[mask] -= np.average(intercept[mask], weights=weight[mask])
    spread = np.sqrt(np.average(intercept**2, weights=weight))
    if n_therapists > 1 and spread > 0:  # realised caseload-weighted SD is exactly the target
        intercept *= sd / spread
    return {
        "clinic": clinic,
        "style": style,
        "orientation": orient_map[style] + rng.normal(0, 0.3, n_therapists),
        "weight": weight,
        "intercept": intercept,
    }


def draw_episodes(rng: np.random.Generator, n: int, ther: dict) -> dict:
    """Episode-level draws: therapist, condition, covariates, baselines, arm, repeat links."""
    ep = {"therapist": rng.choice(len(ther["weight"]), n, p=ther["weight"] / ther["weight"].sum())}
    ep["first_of"] = _draw_repeat_links(rng, n)
    _same_clinic_therapist(rng, ep, ther)
    ep["clinic"] = ther["clinic"][ep["therapist"]]
    ep["condition"] = _choice_by_share(rng, MECHANISM["conditions"], n)
    _draw_covariates(rng, ep, n)
    _draw_baselines(rng, ep, n)
    latent = (ther["orientation"][ep["therapist"]] + 1.0 * ep["prior_pt"]
              + 0.8 * ep["prior_injection"] + 1.2 * ep["surgery_recommended"]
              + 0.5 * np.log(ep["symptom_duration_weeks"] / 8) + rng.logistic(0, 1, n))
    cuts = MECHANISM["arm_model"]["cuts"]
    ep["arm"] = np.where(latent < cuts["traditional_below"], 0,
                         np.where(latent > cuts["pri_above"], 2, 1))
    return ep


def _draw_repeat_links(rng: np.random.Generator, n: int) -> np.ndarray:
    """-1 for a patient's first episode; else the index of that patient's first episode."""
    first_of = np.full(n, -1)
    k = int(round(MECHANISM["second_episode_share"] * n))
    if k and n >= 2 * k:
        idx = rng.permutation(n)
        first_of[idx[:k]] = idx[k: 2 * k]
    return first_of


def _same_clinic_therapist(rng: np.random.Generator, ep: dict, ther: dict) -> None:
    """A second episode stays in the first one's clinic, usually with the same therapist."""
    second = np.flatnonzero(ep["first_of"] >= 0)
    first_ther = ep["therapist"][ep["first_of"][second]]
    new = first_ther.copy()
    switch = rng.random(len(second)) < 0.3
    for c in np.unique(ther["clinic"]):
        pool = np.flatnonzero(ther["clinic"] == c)
        pick = pool[rng.integers(0, len(pool), len(second))]
        mask = switch & (ther["clinic"][first_ther] == c)
        new[mask] = pick[mask]
    ep["therapist"][second] = new


def _draw_covariates(rng: np.random.Generator, ep: dict, n: int) -> None:
    z = rng.normal(0, 1, n)
    ep["z"] = z
    mean_sd = np.array([MECHANISM["age_mean_sd"][c] for c in MECHANISM["conditions"]])
    age = rng.normal(mean_sd[ep["condition"], 0], mean_sd[ep["condition"], 1])
    ep["age"] = np.clip(np.rint(age), 14, MECHANISM["age_top_code"]).astype(int)
    ep["sex"] = rng.choice(3, n, p=[0.58, 0.41, 0.01])  # F, M, X
    older = ep["age"] >= 65
    young = rng.choice(5, n, p=[0.62, 0.05, 0.15, 0.10, 0.08])
    old = rng.choice(5, n, p=[0.20, 0.75, 0.0, 0.0, 0.05])
    ep["payer"] = np.where(older, old, young)  # PAYERS order
    dur = np.exp(1.9 + 0.9 * z + rng.normal(0, 0.5, n))
    ep["symptom_duration_weeks"] = np.clip(np.rint(dur), 1, 520).astype(int)
    ep["prior_pt"] = (rng.random(n) < _logistic(-0.7 + 1.3 * z)).astype(int)
    ep["prior_injection"] = (rng.random(n) < _logistic(-1.8 + z + 0.5 * ep["prior_pt"])).astype(int)
    p_surg = _logistic(-3.0 + 0.9 * z + 0.7 * ep["prior_injection"])
    ep["surgery_recommended"] = (rng.random(n) < p_surg).astype(int)
    _inherit_patient_traits(ep)


def _inherit_patient_traits(ep: dict) -> None:
    """A patient's second episode keeps their sex and payer, and is a year older at most."""
    second = np.flatnonzero(ep["first_of"] >= 0)
    first = ep["first_of"][second]
    ep["sex"][second] = ep["sex"][first]
    ep["payer"][second] = ep["payer"][first]
    ep["age"][second] = np.minimum(ep["age"][first] + (second % 2), MECHANISM["age_top_code"])


def _draw_baselines(rng: np.random.Generator, ep: dict, n: int) -> None:
    z = ep["z"]
    shift = np.array([0.0, -0.3, 0.3, 0.4])[ep["condition"]]
    nprs = np.clip(np.rint(5.2 + 0.3 * z + shift + rng.normal(0, 1.6, n)), 0, 10)
    ceiling = rng.random(n) < MECHANISM["ceiling_share"]
    nprs = np.where(ceiling, rng.integers(0, 2, n), nprs)
    ep["nprs0"] = nprs.astype(float)
    lefs = 46 - 3 * z - 2.2 * (nprs - 5.2) + rng.normal(0, 9, n)
    ep["lefs0"] = np.clip(np.rint(lefs), 0, 80)
    psfs = 3.8 - 0.25 * (nprs - 5.2) - 0.3 * z + rng.normal(0, 1.3, n)
    ep["psfs0"] = np.clip(np.round(psfs, 1), 0, 10)


def draw_changes(rng: np.random.Generator, ep: dict, ther: dict, effects: dict) -> dict:
    """Observed-scale change at the planned discharge per instrument, under arms (0, 1, 2).

    The traditional-care discharge score is the rounded latent score, clipped so the effect still
    fits in the instrument's range; the PRI score adds the effect and the mixed score half of it.
    A non-integer shift is rounded stochastically (``floor(shift / step + U) * step`` with one
    ``U`` per patient), so its expectation is exact and an integer effect is exact for everyone.
    """
    om = MECHANISM["outcome_model"]
    n = len(ep["arm"])
    u = ther["intercept"][ep["therapist"]]
    e_nprs = rng.normal(0, om["nprs"]["residual_sd"], n)
    resid = {
        "nprs": u + e_nprs,
        "lefs": om["lefs"]["therapist_loading"] * u - 3 * e_nprs + rng.normal(0, 5.5, n),
        "psfs": om["psfs"]["therapist_loading"] * u - 0.5 * e_nprs + rng.normal(0, 1.0, n),
    }
    dither = rng.random(n)
    out = {}
    for instr, res in resid.items():
        base = ep[f"{instr}0"]
        eff = float(effects.get(instr, 0.0))
        step = 0.1 if instr == "psfs" else 1.0
        lo, hi = INSTRUMENT_RANGE[instr]
        room_lo = np.ceil((lo + max(0.0, -eff)) / step) * step
        room_hi = np.floor((hi - max(0.0, eff)) / step) * step
        y0 = np.clip(observed_score(instr, base + _linear_predictor(ep, instr) + res), room_lo,
                     room_hi)
        finals = [y0 + np.floor(f * eff / step + dither) * step for f in (0.0, 0.5, 1.0)]
        out[instr] = np.round(np.stack(finals) - base, 1)  # traditional, mixed, pri
    return out


def _linear_predictor(ep: dict, instr: str) -> np.ndarray:
    c = MECHANISM["outcome_model"][instr]
    return (c["intercept"] + c["baseline"] * (ep[f"{instr}0"] - c["baseline_center"])
            + c["prior_pt"] * ep["prior_pt"] + c["prior_injection"] * ep["prior_injection"]
            + c["surgery_recommended"] * ep["surgery_recommended"]
            + c["log_duration_over_8"] * np.log(ep["symptom_duration_weeks"] / 8)
            + c["age_per_decade_over_40"] * (ep["age"] - 40) / 10)


def observed_score(instr: str, latent: np.ndarray) -> np.ndarray:
    """Round (PSFS to 0.1) and clip a latent score to the instrument's range."""
    lo, hi = INSTRUMENT_RANGE[instr]
    rounded = np.round(latent, 1) if instr == "psfs" else np.rint(latent)
    return np.clip(rounded, lo, hi)


def plan_visits(rng: np.random.Generator, ep: dict) -> dict:
    """Planned visits, flattened: episode index, visit index k, last index, day offset."""
    n = len(ep["arm"])
    n_tx = 3 + rng.poisson(4.5 + 0.8 * (ep["z"] > 0.5), n)
    n_visits = np.minimum(n_tx, 22) + 2
    epi = np.repeat(np.arange(n), n_visits)
    starts = np.concatenate([[0], np.cumsum(n_visits)[:-1]])
    k = np.arange(len(epi)) - starts[epi]
    gap = 2 + rng.poisson(2.5, len(epi)) + (rng.random(len(epi)) < 0.05) * rng.integers(5, 21, len(epi))
    gap[k == 0] = 0
    day = np.cumsum(gap) - np.repeat(np.cumsum(gap)[starts], n_visits)
    return {"episode": epi, "k": k, "last": (n_visits - 1)[epi], "day": day,
            "n_planned": n_visits, "starts": starts}


def visit_scores(rng: np.random.Generator, ep: dict, vis: dict, changes: dict) -> dict:
    """Potential scores at every planned visit under the episode's own arm."""
    e, k, last = vis["episode"], vis["k"], vis["last"]
    f = k / last
    g = 1 - (1 - f) ** 1.6
    inner = (k > 0) & (k < last)
    sd = MECHANISM["outcome_model"]["visit_noise_sd"]
    scores = {}
    for instr in ("nprs", "lefs", "psfs"):
        change = changes[instr][ep["arm"], np.arange(len(ep["arm"]))][e]
        latent = ep[f"{instr}0"][e] + g * change + inner * rng.normal(0, sd[instr], len(e))
        scores[instr] = observed_score(instr, latent)
    return scores


def draw_dropout(rng: np.random.Generator, ep: dict, vis: dict, nprs: np.ndarray) -> np.ndarray:
    """Index of the last visit attended per episode (the planned last when nobody drops out).

    The hazard of stopping after visit k uses only what is observed by then (MAR): the arm,
    payer, the intake NPRS and the NPRS measured at visit k.
    """
    e, k = vis["episode"], vis["k"]
    arm_term = np.array([MECHANISM["dropout_model"]["arm"][a] for a in ARM_NAMES])
    nprs0 = ep["nprs0"][e]
    logit = (-3.5 + 0.9 * (k == 0) + arm_term[ep["arm"]][e] + 0.22 * (nprs - nprs0 + 2)
             + 1.2 * ((nprs <= 1) & (k >= 2)) + 0.5 * (ep["payer"][e] == 4)
             + 0.3 * (ep["payer"][e] == 2))
    stop = (rng.random(len(e)) < _logistic(logit)) & (k < vis["last"])
    first_stop = np.full(len(ep["arm"]), np.iinfo(np.int64).max)
    stop_episodes, first = np.unique(e[stop], return_index=True)  # rows are in k order
    first_stop[stop_episodes] = k[stop][first]
    return np.minimum(first_stop, vis["n_planned"] - 1)
