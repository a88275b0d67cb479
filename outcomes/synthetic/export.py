"""Synthetic EMR visit exports with a known truth, for trying and testing the toolkit.

Real exports are private, so :func:`generate_export` makes one that looks and behaves like a real
one: one row per attended visit with exactly the columns of :data:`outcomes.schema.VISIT_COLUMNS`,
free-text technique notes in many spellings, confounding by indication, therapist effects,
informative (but missing-at-random) dropout, open episodes and ceiling cases.
:func:`write_export` writes it (CSV, XLSX or Parquet) with the truth beside it as JSON.

Data-generating contract (other modules and tests rely on it; also in the truth JSON)
---------------------------------------------------------------------------------------
- **Arm.** Each episode gets an arm: ``pri``, ``traditional`` or ``mixed``. The arm fixes the
  technique families named in the notes of the episode's *first three treatment visits* (pri: only
  PRI techniques; traditional: only traditional ones; mixed: both, treatment visit 1 always names
  both). Modalities (family ``other``), unmappable text and routine text can appear anywhere.
  Later visits mostly follow the arm, but drift (a traditional patient who is not improving may
  get PRI techniques added), so an arm read from the whole episode is biased.
- **Effect.** Per instrument (``nprs``, ``lefs``, ``psfs``) the change at the *planned*
  discharge (discharge - intake, observed scale) under PRI equals the change under traditional
  care plus the constant ``effects[instrument]`` for every patient, so ATE = ATT = effect. Mixed
  gets half. Defaults: ``{"nprs": -1.0, "lefs": 4.0, "psfs": 0.0}``; zero effects are allowed.
  To keep this exact on a bounded, rounded scale the traditional discharge score is clipped to
  leave room for the effect, and a shift that is not a whole step (mixed: -0.5 NPRS) is rounded
  stochastically per patient, so it is exact in expectation; the truth JSON reports the sample
  effects from every episode's potential outcomes (``sample_effects``). The price: with an
  effect of -1 NPRS no traditional-arm patient is discharged at 0 (they sit at 1).
- **Confounding by indication.** A latent chronicity drives symptom_duration_weeks, prior_pt,
  prior_injection and surgery_recommended. These (not the latent) raise the probability of PRI care
  and shrink the improvement, as do age and the baseline score; the therapist's PRI training
  (style ``pri`` / ``both`` / ``traditional``) strongly raises P(PRI). All confounders are export
  columns; the outcome model is linear in them (with ``log(symptom_duration_weeks / 8)``), so a
  regression on baseline + confounders removes the bias the naive comparison shows.
- **Therapist effect.** A random therapist intercept on the change: about a tenth of the residual
  variance of the NPRS change (SD 0.4 against a patient residual SD of 1.25 before rounding
  and clipping). Intercepts are centred within therapist style, so they do not confound the arm.
- **Dropout (MAR).** The full trajectory is generated first; then after each visit the patient
  stops with a probability depending only on observed things: arm, payer, intake NPRS and the NPRS
  measured at that visit. A stopped episode has no discharge visit. Episodes running past ``end``
  are cut there (``open``).
- **Deterministic.** ``numpy.random.default_rng(seed)``; the same arguments give the same rows,
  and ``write_export`` the same bytes. ``messy`` draws from its own stream, so a messy export is
  the clean one plus the recorded defects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from outcomes.errors import InputError
from outcomes.schema import VISIT_COLUMNS
from outcomes.synthetic import dgp
from outcomes.synthetic import visits as sv

__all__ = ["DEFAULT_EFFECTS", "generate_export", "write_export"]

#: True PRI-vs-traditional effects on the change at planned discharge (points).
DEFAULT_EFFECTS = {"nprs": -1.0, "lefs": 4.0, "psfs": 0.0}
#: Default messy rate: defects injected, as a share of clean rows.
DEFAULT_MESSY_RATE = 0.02
#: Episode truth tables up to this size are embedded in the truth JSON.
MAX_EPISODES_IN_JSON = 20_000


def _check_args(n_episodes, start, end, effects, messy, n_therapists, n_clinics):
    if not isinstance(n_episodes, int | np.integer) or n_episodes < 1:
        raise InputError("n_episodes must be a positive integer")
    if not (isinstance(n_clinics, int | np.integer) and n_clinics >= 1):
        raise InputError("n_clinics must be a positive integer")
    if n_therapists is not None and not int(n_therapists) >= n_clinics:
        raise InputError("n_therapists must be at least n_clinics (every clinic needs one)")
    unknown = set(effects or {}) - set(DEFAULT_EFFECTS)
    if unknown:
        known = ", ".join(DEFAULT_EFFECTS)
        raise InputError(f"effects: unknown instrument {sorted(unknown)[0]!r}; known: {known}")
    try:
        lo, hi = np.datetime64(start, "D"), np.datetime64(end, "D")
    except ValueError:
        raise InputError("start and end must be ISO dates (YYYY-MM-DD)") from None
    if hi <= lo:
        raise InputError("end must be after start")
    rate = DEFAULT_MESSY_RATE if messy is True else float(messy or 0.0)
    if not 0 <= rate <= 0.5:
        raise InputError("messy must be True, False or a rate between 0 and 0.5")
    return lo, hi, rate


def generate_export(n_episodes: int = 600, seed: int = 2026, *, start: str = "2025-01-01",
                    end: str = "2026-09-30", effects: dict[str, float] | None = None,
                    messy: bool | float = False, n_therapists: int | None = None,
                    n_clinics: int = 3) -> tuple[pd.DataFrame, dict]:
    """Generate a synthetic visit export and the truth behind it.

    Parameters
    ----------
    n_episodes : int
        Episodes of care to generate (about 6 attended visits each).
    seed : int
        Seed of ``numpy.random.default_rng``; same arguments give identical output.
    start, end : str
        ISO dates bounding the visits; episodes still running at ``end`` are cut (open).
    effects : dict, optional
        True PRI-vs-traditional effect on the change at planned discharge per instrument
        (``nprs``, ``lefs``, ``psfs``); given keys override :data:`DEFAULT_EFFECTS`.
    messy : bool or float
        Inject QUALITY.md's row-level defects: ``True`` at 2 % of rows, or a rate.
    n_therapists : int, optional
        Default ``20``.
    n_clinics : int
        Clinics (default 3).

    Returns
    -------
    frame : pandas.DataFrame
        One row per visit, columns :data:`outcomes.schema.VISIT_COLUMNS` in order, sorted by date.
        Clean: ``visit_date`` ISO text, scores/age/duration/flags nullable integers (``psfs``
        float), flags 0/1. Messy: every column is text as the file holds it (``None`` = empty).
    truth : dict
        Seed, arguments, effects, mechanism parameters, therapists, counts, sample effects on the
        observed scale, ``episodes`` (a DataFrame, one row per generated episode: ids, arm,
        status, intake and potential changes under each arm) and ``messy`` (what was injected).

    Notes
    -----
    The contract is in the module docstring. Checked in ``tests/test_synthetic.py``: on 20,000
    episodes the naive completer difference in NPRS change is biased away from the effect while an
    OLS adjusted for baseline and confounders recovers it.
    """
    lo, hi, rate = _check_args(n_episodes, start, end, effects, messy, n_therapists, n_clinics)
    eff = {**DEFAULT_EFFECTS, **{k: float(v) for k, v in (effects or {}).items()}}
    n_ther = int(n_therapists) if n_therapists is not None else 20
    rng = np.random.default_rng(seed)
    ther = dgp.draw_therapists(rng, n_ther, int(n_clinics))
    ep = dgp.draw_episodes(rng, int(n_episodes), ther)
    changes = dgp.draw_changes(rng, ep, ther, eff)
    vis = dgp.plan_visits(rng, ep)
    scores = dgp.visit_scores(rng, ep, vis, changes)
    last_kept = dgp.draw_dropout(rng, ep, vis, scores["nprs"])
    ep_start = sv.place_in_calendar(rng, ep, vis, last_kept, int((hi - lo).astype(int)))
    days = sv.visit_days(ep_start, vis, lo)
    kept = (vis["k"] <= last_kept[vis["episode"]]) & (days <= hi)
    ids = _make_ids(rng, ep, ther)
    frame, first_rows = _build_frame(rng, ep, vis, scores, changes, kept, days, ids)
    episodes = _episode_truth(ep, vis, kept, last_kept, changes, ids, first_rows, frame)
    truth = _truth(seed, n_episodes, start, end, eff, n_clinics, ther, ids, frame, episodes)
    if rate > 0:
        from outcomes.synthetic.messy import inject_defects

        frame, truth["messy"] = inject_defects(np.random.default_rng([seed, 1]), frame, rate)
        truth["messy"] = {
            "rate": rate,
            "row_numbering": "0-based data record index = frame index (header not counted;"
                             " CSV line numbers differ after notes holding newlines)",
            "bom": {"count": 1, "rows": [], "note": "UTF-8 byte-order mark at file start"},
            **truth["messy"],
        }
    return frame, truth


def _make_ids(rng: np.random.Generator, ep: dict, ther: dict) -> dict:
    n_ther = len(ther["clinic"])
    order = np.lexsort((np.arange(n_ther), ther["clinic"]))  # number therapists by clinic
    ther_num = np.empty(n_ther, dtype=int)
    ther_num[order] = np.arange(1, n_ther + 1)
    is_first = ep["first_of"] < 0
    patient = np.empty(len(is_first), dtype=int)
    patient[is_first] = rng.permutation(int(is_first.sum())) + 100001
    second = np.flatnonzero(~is_first)
    patient[second] = patient[ep["first_of"][second]]
    return {
        "patient": patient,
        "patient_id": np.char.mod("P%06d", patient).astype(object),
        "therapist_id": np.char.mod("T%03d", ther_num).astype(object),
        "clinic_id": np.char.mod("CL%02d", np.arange(1, int(ther["clinic"].max()) + 2)).astype(object),
    }


def _build_frame(rng, ep, vis, scores, changes, kept, days, ids):
    """The export rows (kept visits only), sorted by date; also each episode's first row."""
    e, k, last = vis["episode"][kept], vis["k"][kept], vis["last"][kept]
    vt = sv.visit_types(k, last)
    nprs = scores["nprs"][kept]
    n_pri, n_trad = sv.technique_counts(rng, ep["arm"][e], vt, k, nprs, ep["nprs0"][e])
    notes, cpt = sv.build_notes(rng, vt, n_pri, n_trad)
    icd = _icd10(rng, ep)
    order = np.lexsort((k, ids["patient"][e], ep["therapist"][e], ep["clinic"][e], days[kept]))
    cols = {
        "patient_id": ids["patient_id"][e], "clinic_id": ids["clinic_id"][ep["clinic"][e]],
        "therapist_id": ids["therapist_id"][ep["therapist"][e]],
        "visit_date": days[kept].astype(str).astype(object),
        "visit_type": sv.VISIT_TYPE_NAMES[vt], "cpt_codes": cpt, "icd10": icd[e],
        "technique_notes": notes,
        **_score_columns(rng, ep, e, k, vt, scores, kept, changes),
        **_covariate_columns(ep, e),
    }
    frame = pd.DataFrame({c: v[order] for c, v in cols.items()})
    frame.insert(0, "visit_id", [f"V{i:07d}" for i in range(1000001, 1000001 + len(frame))])
    first_rows = np.full(len(ep["arm"]), -1)
    pos = np.empty(len(order), dtype=int)
    pos[order] = np.arange(len(order))
    first_rows[e[k == 0]] = pos[k == 0]
    return frame[list(VISIT_COLUMNS)], first_rows


def _icd10(rng: np.random.Generator, ep: dict) -> np.ndarray:
    codes = dgp.MECHANISM["icd10"]
    out = np.empty(len(ep["arm"]), dtype=object)
    for c, name in enumerate(dgp.MECHANISM["conditions"]):
        mask = ep["condition"] == c
        out[mask] = np.array(codes[name], dtype=object)[rng.integers(0, len(codes[name]),
                                                                      mask.sum())]
    return out


def _score_columns(rng, ep, e, k, vt, scores, kept, changes) -> dict:
    discharge = vt == 3
    lefs_due = (k == 0) | (k % 4 == 0) | discharge
    psfs_due = (k == 0) | (vt == 2) | discharge
    skip = rng.random((2, len(e))) < 0.03  # a form not filled in now and then
    groc = _groc(rng, ep, changes)
    return {
        "nprs": pd.array(scores["nprs"][kept].astype(int), dtype="Int64"),
        "lefs": _masked(scores["lefs"][kept], lefs_due & ~skip[0], "Int64"),
        "psfs": _masked(scores["psfs"][kept], psfs_due & ~skip[1], "Float64"),
        "groc": _masked(groc[e], discharge, "Int64"),
    }


def _masked(values: np.ndarray, keep: np.ndarray, dtype: str) -> pd.api.extensions.ExtensionArray:
    arr = pd.array(values.astype(int) if dtype == "Int64" else values, dtype=dtype)
    arr[~keep] = pd.NA
    return arr


def _groc(rng: np.random.Generator, ep: dict, changes: dict) -> np.ndarray:
    own = np.arange(len(ep["arm"]))
    d = {i: dgp.observed_score(i, ep[f"{i}0"] + changes[i][ep["arm"], own]) - ep[f"{i}0"]
         for i in ("nprs", "lefs")}
    raw = -1.1 * d["nprs"] + 0.08 * d["lefs"] + rng.normal(0, 1.2, len(own))
    return np.clip(np.rint(raw), -7, 7)


def _covariate_columns(ep: dict, e: np.ndarray) -> dict:
    def ints(name):
        return pd.array(ep[name][e], dtype="Int64")

    return {
        "age": ints("age"), "sex": np.array(sv.SEXES, dtype=object)[ep["sex"][e]],
        "payer": np.array(sv.PAYERS, dtype=object)[ep["payer"][e]],
        "symptom_duration_weeks": ints("symptom_duration_weeks"), "prior_pt": ints("prior_pt"),
        "prior_injection": ints("prior_injection"),
        "surgery_recommended": ints("surgery_recommended"),
    }


def _episode_truth(ep, vis, kept, last_kept, changes, ids, first_rows, frame) -> pd.DataFrame:
    """One row per generated episode: keys, arm, status and potential changes under each arm."""
    n = len(ep["arm"])
    attended = np.bincount(vis["episode"][kept], minlength=n)
    planned = vis["n_planned"]
    truncated = attended < np.minimum(last_kept + 1, planned)
    is_tx = kept & (sv.visit_types(vis["k"], vis["last"]) == 1)
    treatments = np.bincount(vis["episode"][is_tx], minlength=n)
    arm = np.array(dgp.ARM_NAMES, dtype=object)[ep["arm"]]
    status = np.where(attended == planned, "completed", np.where(truncated, "open", "dropout"))
    table = {
        "episode": np.arange(n), "patient_id": ids["patient_id"],
        "clinic_id": ids["clinic_id"][ep["clinic"]],
        "therapist_id": ids["therapist_id"][ep["therapist"]],
        "first_visit_id": frame["visit_id"].to_numpy()[first_rows],
        "start_date": frame["visit_date"].to_numpy()[first_rows],
        "condition": np.array(list(dgp.MECHANISM["conditions"]), dtype=object)[ep["condition"]],
        "arm": arm,
        # what the export shows: no attended treatment visit -> no exposure ('none')
        "observed_arm": np.where(treatments > 0, arm, "none").astype(object),
        "planned_visits": planned, "attended_visits": attended,
        "treatment_visits": treatments, "status": status,
        "second_episode": ep["first_of"] >= 0,
    }
    for instr in ("nprs", "lefs", "psfs"):
        base = ep[f"{instr}0"]
        table[f"{instr}_intake"] = base
        for a, name in enumerate(dgp.ARM_NAMES):
            table[f"{instr}_change_if_{name}"] = dgp.observed_score(instr, base + changes[instr][a]) - base
    return pd.DataFrame(table)


def _truth(seed, n_episodes, start, end, eff, n_clinics, ther, ids, frame, episodes) -> dict:
    return {
        "generator": "outcomes.synthetic.generate_export",
        "seed": int(seed), "n_episodes": int(n_episodes), "start": str(start), "end": str(end),
        "n_clinics": int(n_clinics), "n_therapists": len(ther["clinic"]),
        "effects": eff,
        "contract": {
            "arm_rule": "techniques of the first 3 treatment visits: only PRI -> pri, only"
                        " traditional -> traditional, both -> mixed (family 'other' ignored)",
            "effect": "additive constant on latent change at planned discharge (discharge - intake)"
                      " for every patient, pri vs traditional; mixed gets half; ATE = ATT",
            "dropout": "MAR: stopping after a visit depends on arm, payer, intake NPRS and the NPRS"
                       " observed at that visit",
            "confounders": ["symptom_duration_weeks", "prior_pt", "prior_injection",
                            "surgery_recommended", "age", "baseline score", "therapist"],
            "episode_status": "completed (discharge visit attended), dropout (stopped early; no"
                              " discharge), open (cut at the end date)",
        },
        "mechanism": dgp.MECHANISM,
        "therapists": _therapist_table(ther, ids),
        "counts": _counts(frame, episodes),
        "sample_effects": _sample_effects(episodes),
        "episodes": episodes,
        "messy": None,
    }


def _therapist_table(ther: dict, ids: dict) -> list[dict]:
    return [
        {"therapist_id": str(ids["therapist_id"][t]), "clinic_id": str(ids["clinic_id"][c]),
         "style": dgp.STYLE_NAMES[s], "pri_trained": dgp.STYLE_NAMES[s] != "traditional",
         "nprs_change_intercept": round(float(u), 4)}
        for t, (c, s, u) in enumerate(zip(ther["clinic"], ther["style"], ther["intercept"],
                                          strict=True))
    ]


def _counts(frame: pd.DataFrame, episodes: pd.DataFrame) -> dict:
    by_arm = episodes.groupby("arm")["status"].value_counts().unstack(fill_value=0)
    no_discharge = (episodes["status"] != "completed")
    return {
        "rows": int(len(frame)),
        "episodes": int(len(episodes)),
        "patients": int(episodes["patient_id"].nunique()),
        "episodes_by_arm": {a: int((episodes["arm"] == a).sum()) for a in dgp.ARM_NAMES},
        "status": {s: int((episodes["status"] == s).sum()) for s in ("completed", "dropout", "open")},
        "status_by_arm": {a: {s: int(v) for s, v in by_arm.loc[a].items()} for a in by_arm.index},
        "no_discharge_share": round(float(no_discharge.mean()), 4),
        "dropout_share_by_arm": {a: round(float((g["status"] == "dropout").mean()), 4)
                                 for a, g in episodes.groupby("arm")},
        "ceiling_nprs_intake": int((episodes["nprs_intake"] <= 1).sum()),
    }


def _sample_effects(episodes: pd.DataFrame) -> dict:
    """Effects on the observed (rounded, clipped) scale from every episode's potential outcomes."""
    out = {}
    is_pri = episodes["arm"] == "pri"
    for instr in ("nprs", "lefs", "psfs"):
        d = episodes[f"{instr}_change_if_pri"] - episodes[f"{instr}_change_if_traditional"]
        m = episodes[f"{instr}_change_if_mixed"] - episodes[f"{instr}_change_if_traditional"]
        out[instr] = {"ate": round(float(d.mean()), 4),
                      "att": round(float(d[is_pri].mean()), 4) if is_pri.any() else None,
                      "mixed_vs_traditional": round(float(m.mean()), 4)}
    return out


def write_export(path: str | Path, n_episodes: int = 600, seed: int = 2026, *,
                 messy: bool | float = False, effects: dict[str, float] | None = None,
                 **kw) -> dict:
    """Generate an export and write it, with ``<stem>.truth.json`` beside it.

    Parameters
    ----------
    path : str or Path
        ``.csv`` (UTF-8; with a byte-order mark only when messy), ``.xlsx`` or ``.parquet``.
    n_episodes, seed, messy, effects, **kw
        As :func:`generate_export`.

    Returns
    -------
    dict
        ``rows`` (visit rows written, defects included), ``episodes``, ``path``, ``truth_path``.

    Notes
    -----
    The BOM, blank lines and the ragged row only exist in CSV; for XLSX and Parquet the truth
    marks them ``"written": false``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx", ".parquet"):
        raise InputError(f"{path}: output must end in .csv, .xlsx or .parquet")
    frame, truth = generate_export(n_episodes, seed, messy=messy, effects=effects, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    from outcomes.synthetic.io import write_frame, write_truth

    write_frame(frame, path, truth.get("messy"))
    truth_path = path.with_name(f"{path.stem}.truth.json")
    write_truth(truth, truth_path, MAX_EPISODES_IN_JSON)
    return {"rows": int(len(frame)), "episodes": int(truth["counts"]["episodes"]),
            "path": str(path), "truth_path": str(truth_path)}
