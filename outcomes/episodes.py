"""Episodes of care built from the clean visit table, and the long visit-score table.

Rules (DOMAIN.md, "Definitions"):

* An episode **starts** with an initial evaluation: ``visit_type == "evaluation"`` or a CPT code
  97161-97163 on the visit. A re-evaluation (97164) does not start one.
* It **ends** with a discharge visit, before a gap longer than ``gap_days`` between consecutive
  visits of the patient, or before the patient's next initial evaluation (for the same problem
  or another one): each of these closes the current episode.
* Visits that follow no evaluation are **orphan visits**: visits before a patient's first
  evaluation, visits after a discharge and visits after a long gap, until the next evaluation.
  They belong to no episode; :func:`orphan_visits` returns them with the reason, and
  ``build_episodes(...).attrs["n_orphan_visits"]`` counts them.

Visits of a patient are ordered by date, then by visit type (evaluation, re-evaluation,
treatment, discharge), then by ``visit_id``, so the result does not depend on row order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from outcomes.errors import InputError
from outcomes.instruments import INSTRUMENTS
from outcomes.schema import COVARIATE_COLUMNS, EVAL_CPT, EpisodeSchema, condition_of

__all__ = ["build_episodes", "orphan_visits", "visit_scores", "EPISODE_INSTRUMENTS"]

#: Instruments summarised per episode (intake, discharge, change, responder, ceiling).
EPISODE_INSTRUMENTS = ("nprs", "lefs", "psfs")

_TYPE_ORDER = {"evaluation": 0, "re-evaluation": 1, "treatment": 2, "discharge": 3}
_NEEDED = ("visit_id", "patient_id", "clinic_id", "therapist_id", "visit_date", "visit_type",
           "icd10", *EPISODE_INSTRUMENTS)
_EVAL_RE = r"(?:^|[;,\s])(?:" + "|".join(EVAL_CPT) + r")(?:$|[;,\s])"
_DAY = np.timedelta64(1, "D")


def build_episodes(
    visits: pd.DataFrame,
    techniques: pd.DataFrame,
    *,
    gap_days: int = 60,
    baseline_visits: int = 3,
    baseline_includes_evaluation: bool = False,
    primary: str = "nprs",
    as_of: str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Build one row per episode of care.

    Parameters
    ----------
    visits : DataFrame
        Clean visit table (columns of ``outcomes.schema.VISIT_COLUMNS``; ``visit_date``
        datetime64, scores float with NaN for missing).
    techniques : DataFrame
        ``visit_id, technique_code, family`` (``pri`` / ``traditional`` / ``other``; NA when the
        text was not mapped).
    gap_days : int
        A gap between consecutive visits longer than this ends the episode.
    baseline_visits : int
        Size of the exposure window: the first ``baseline_visits`` treatment visits.
    baseline_includes_evaluation : bool
        Count the evaluation visit as the first visit of the window (default: no, the window is
        treatment visits only, as in DOMAIN.md).
    primary : str
        Instrument whose discharge score makes an episode ``completed``.
    as_of : date-like, optional
        Date the data describe (the extraction date); visits after it are ignored. Default: the
        last visit date in ``visits``.

    Returns
    -------
    DataFrame
        One row per episode, validated by :class:`outcomes.schema.EpisodeSchema`:
        ``episode_id, patient_id, clinic_id, therapist_id, condition, icd10, start_date,
        end_date, n_visits, days, status, arm, has_discharge_visit``, the covariates of
        ``COVARIATE_COLUMNS`` at intake, ``start_quarter, end_quarter``, and per instrument
        ``X`` in (nprs, lefs, psfs): ``X_intake, X_discharge, X_last, X_change,
        X_pct_change, X_responder, X_ceiling``; and ``groc_discharge``.
        ``attrs`` holds ``n_orphan_visits`` and the parameters.

    Notes
    -----
    * ``episode_id`` is ``"<patient_id>-<YYYYMMDD of the evaluation>"``; when a patient has two
      evaluations on one day, ``-<visit_id of the evaluation>`` is appended. It depends only on
      the data, never on row order.
    * ``therapist_id``, ``clinic_id``, ``icd10`` come from the evaluation visit; ``condition``
      is :func:`outcomes.schema.condition_of` of that ``icd10``.
    * Covariates at intake are the first non-missing value in the episode (the evaluation's,
      unless the EMR left it blank there).
    * ``n_visits`` counts attended visits from the evaluation to the last visit (the discharge,
      when there is one); ``days`` is end - start in days.
    * ``status``: ``completed`` when the episode has a discharge visit with a ``primary`` score;
      ``no_discharge_score`` when it has a discharge visit without that score, or no discharge
      visit and its last visit is more than ``gap_days`` before ``as_of`` (it has ended);
      ``open`` otherwise (last visit within ``gap_days`` of ``as_of``, no discharge yet).
    * ``arm``: the families seen in the baseline window (see ``baseline_visits``); ``pri``
      only -> ``pri``, ``traditional`` only -> ``traditional``, both -> ``mixed``, neither ->
      ``none``. Family ``other`` and unmapped text do not count. Episodes with fewer treatment
      visits than the window use the ones they have. Later visits never change the arm, so a
      change of plan caused by the outcome cannot leak into the exposure.
    * ``X_intake`` is the score at the evaluation visit (NaN when not recorded there; a later
      score is not an intake score). ``X_discharge`` is the score at the discharge visit (NaN
      without one; **not** the last observation); ``X_last`` is the last score observed in the
      episode, for last-observation-carried-forward sensitivity analyses.
    * ``X_change = X_discharge - X_intake``; ``X_pct_change = 100 * X_change / X_intake`` (NaN
      when the intake is 0).
    * ``X_ceiling``: the intake leaves less room than the MCID in the good direction
      (``high - intake < mcid`` when higher is better, else ``intake - low < mcid``): NPRS
      intake <= 1, LEFS intake > 71, PSFS intake > 8.
    * ``X_responder`` (nullable boolean): improvement (change in the good direction) of at least
      the MCID, **or**, for instruments with a relative MCID (NPRS: 30 %, Farrar 2001), an
      improvement of at least that share of the intake; either counts. NA without an intake or
      a discharge score, and NA for ceiling cases (they cannot respond).
    """
    _check_columns(visits, _NEEDED, "visits")
    _check_columns(techniques, ("visit_id", "family"), "techniques")
    as_of_ts = _as_of(visits, as_of)
    used = [*_NEEDED, *(c for c in ("cpt_codes", "groc", *COVARIATE_COLUMNS) if c in visits)]
    v = _assign_episodes(visits.loc[visits["visit_date"] <= as_of_ts, used], gap_days)
    n_orphans = int(v["_episode"].isna().sum())
    v = v[v["_episode"].notna()]
    ep = _episode_frame(v)
    ep["arm"] = _arms(v, techniques, baseline_visits, baseline_includes_evaluation)
    ep = ep.join(_discharge_scores(v))
    ep = _add_status(ep, primary, gap_days, as_of_ts)
    inst = _instrument_columns(v, ep)
    ep = ep.drop(columns=[c for c in inst.columns if c in ep.columns]).join(inst)
    ep = ep.reset_index(drop=True)
    ep = EpisodeSchema.validate(ep)
    ep.attrs.update(n_orphan_visits=n_orphans, gap_days=gap_days, baseline_visits=baseline_visits,
                    baseline_includes_evaluation=baseline_includes_evaluation,
                    primary=primary, as_of=as_of_ts)
    return ep


def orphan_visits(
    visits: pd.DataFrame, *, gap_days: int = 60, as_of: str | pd.Timestamp | None = None
) -> pd.DataFrame:
    """Return the visits that belong to no episode, with the reason.

    Returns
    -------
    DataFrame
        The orphan rows of ``visits`` (all their columns) plus ``reason``: one of
        ``before_first_evaluation`` (the patient had no evaluation yet), ``after_discharge``
        (visits after a discharge, before a new evaluation) and ``after_gap`` (visits after a
        gap longer than ``gap_days``, before a new evaluation).
    """
    _check_columns(visits, _NEEDED, "visits")
    as_of_ts = _as_of(visits, as_of)
    v = _assign_episodes(visits[visits["visit_date"] <= as_of_ts], gap_days)
    out = v[v["_episode"].isna()].rename(columns={"_orphan_reason": "reason"})
    return out[[*visits.columns, "reason"]].reset_index(drop=True)


def visit_scores(
    visits: pd.DataFrame, episodes: pd.DataFrame, *, gap_days: int | None = None
) -> pd.DataFrame:
    """Long table of scored visits, one row per visit with a score, for mixed models.

    Parameters
    ----------
    visits : DataFrame
        The clean visit table the episodes were built from.
    episodes : DataFrame
        Output of :func:`build_episodes` (possibly filtered: only its episodes are kept).
    gap_days : int, optional
        Must equal the value used to build ``episodes``; default ``episodes.attrs["gap_days"]``
        or 60.

    Returns
    -------
    DataFrame
        ``episode_id, patient_id, therapist_id, clinic_id, arm, condition, status, visit_id,
        visit_date, visit_type, visit_number`` (1 = evaluation), ``day`` (days since the
        episode start), ``week`` (``day // 7``), ``nprs, lefs, psfs`` and the episode's intake
        covariates. Only visits with at least one of nprs / lefs / psfs.
    """
    _check_columns(visits, _NEEDED, "visits")
    _check_columns(episodes, ("episode_id", "start_date", "end_date", "arm"), "episodes")
    gap = gap_days if gap_days is not None else episodes.attrs.get("gap_days", 60)
    used = [*_NEEDED, *(["cpt_codes"] if "cpt_codes" in visits else [])]
    v = _assign_episodes(visits[used], gap)
    v = v[v["_episode"].notna()]
    v = v.assign(visit_number=v.groupby("_episode", sort=False).cumcount() + 1)
    ids = _episode_ids(v)["episode_id"]
    try:
        row_of = pd.Index(episodes["episode_id"]).get_indexer(ids)
    except pd.errors.InvalidIndexError:
        raise InputError("episodes: column episode_id has duplicate values") from None
    pos = pd.Series(row_of, index=ids.index).reindex(v["_episode"]).to_numpy()
    keep = (pos >= 0) & v[list(EPISODE_INSTRUMENTS)].notna().any(axis=1).to_numpy()
    v, pos = v[keep], pos[keep]
    ep_cols = ["episode_id", "therapist_id", "clinic_id", "arm", "condition", "status",
               "start_date", "end_date", *COVARIATE_COLUMNS]
    ep = episodes[[c for c in ep_cols if c in episodes]].iloc[pos].reset_index(drop=True)
    cols = ["patient_id", "visit_id", "visit_date", "visit_type", "visit_number",
            *EPISODE_INSTRUMENTS]
    out = pd.concat([ep, v[cols].reset_index(drop=True)], axis=1)
    out = out[(out["visit_date"] <= out["end_date"]).to_numpy()]
    out["day"] = ((out["visit_date"] - out["start_date"]) / _DAY).astype("int64")
    out["week"] = out["day"] // 7
    first = ["episode_id", "patient_id", "therapist_id", "clinic_id", "arm", "condition",
             "status", "visit_id", "visit_date", "visit_type", "visit_number", "day", "week",
             *EPISODE_INSTRUMENTS]
    first = [c for c in first if c in out]
    rest = [c for c in out.columns if c not in first and c not in ("start_date", "end_date")]
    return out[first + rest].reset_index(drop=True)


# --------------------------------------------------------------------------- helpers


def _check_columns(data: pd.DataFrame, needed: tuple[str, ...], name: str) -> None:
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise InputError(f"{name}: missing column(s) {', '.join(missing)}")
    if name == "visits" and not pd.api.types.is_datetime64_any_dtype(data["visit_date"]):
        raise InputError("visits: column visit_date must be datetime64 (parse dates first)")


def _as_of(visits: pd.DataFrame, as_of: str | pd.Timestamp | None) -> pd.Timestamp:
    if as_of is None:
        last = visits["visit_date"].max()
        return pd.Timestamp("1900-01-01") if pd.isna(last) else pd.Timestamp(last)
    try:
        return pd.Timestamp(as_of)
    except (ValueError, TypeError):
        raise InputError("parameter as_of: not a date (use YYYY-MM-DD)") from None


def _is_evaluation(v: pd.DataFrame) -> pd.Series:
    by_type = v["visit_type"].astype("string").eq("evaluation").fillna(False)
    if "cpt_codes" not in v:
        return by_type.astype(bool)
    # a few hundred distinct code lists: search each once, not once per visit
    codes, uniques = pd.factorize(v["cpt_codes"])
    hit = pd.Series(uniques, dtype="string").str.contains(_EVAL_RE, regex=True)
    by_cpt = np.r_[hit.fillna(False).to_numpy(bool), False][codes]  # code -1 (NA) -> False
    return by_type.astype(bool) | by_cpt


def _visit_order(visits: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Positions sorting visits by patient, date, visit type, visit_id (integer lexsort).

    Also returns each visit's patient code (same order as ``visits``), so callers compare
    integers instead of text.
    """
    if len(visits) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    types, distinct = pd.factorize(visits["visit_type"], use_na_sentinel=False)
    rank = pd.Series(distinct).map(_TYPE_ORDER).fillna(9).to_numpy(float)[types]
    ids = visits["patient_id"]
    if ids.isna().any():  # as text, so a missing id sorts and groups like the text "<NA>"
        ids = ids.astype(str)
    patient = pd.factorize(ids, sort=True)[0]
    date = visits["visit_date"].to_numpy()
    first = np.lexsort([rank, date, patient])
    # visit_id only breaks the rare remaining ties; factorizing every id would dominate the cost
    same = np.r_[False, (np.diff(patient[first]) == 0) & (np.diff(rank[first]) == 0)
                 & (np.diff(date[first]) == np.timedelta64(0))]
    if not same.any():
        return first, patient
    tied = np.zeros(len(first), bool)
    tied[first[same]] = tied[first[np.r_[same[1:], False]]] = True
    vid = np.zeros(len(first), np.int64)
    vid[tied] = pd.factorize(visits["visit_id"].to_numpy()[tied].astype(str), sort=True)[0]
    return np.lexsort([vid, rank, date, patient]), patient


def _assign_episodes(visits: pd.DataFrame, gap_days: int) -> pd.DataFrame:
    """Sort visits and give each an episode number (``_episode``, NaN for orphans).

    A segment boundary falls at a new patient, an evaluation, the visit after a discharge and
    a gap longer than ``gap_days``; a segment is an episode when its first visit is an
    evaluation (``cumsum`` over the boundaries numbers the segments).
    """
    if gap_days < 0:
        raise InputError("parameter gap_days: must be >= 0")
    order, patient = _visit_order(visits)
    if np.array_equal(order, np.arange(len(order))):  # already in order (e.g. read sorted)
        v = visits.reset_index(drop=True)
    else:
        v = visits.take(order).reset_index(drop=True)
    is_eval = _is_evaluation(v).to_numpy()
    v["_is_eval"] = is_eval
    pid = patient[order]
    new_patient = np.r_[True, pid[1:] != pid[:-1]]
    gap = np.r_[np.inf, np.diff(v["visit_date"].to_numpy()) / _DAY]
    after_gap = ~new_patient & (gap > gap_days)
    is_dis = v["visit_type"].astype("string").eq("discharge").fillna(False).to_numpy()
    after_dis = ~new_patient & np.r_[False, is_dis[:-1]]
    boundary = new_patient | is_eval | after_gap | after_dis
    segment = np.cumsum(boundary)
    seg_eval = is_eval[boundary][segment - 1]
    v["_episode"] = np.where(seg_eval, segment, np.nan)
    reason = np.select([new_patient, after_dis, after_gap], ["before_first_evaluation",
                       "after_discharge", "after_gap"], default="")[boundary][segment - 1]
    v["_orphan_reason"] = pd.array(np.where(seg_eval, None, reason), dtype="string")
    return v


def _episode_frame(v: pd.DataFrame) -> pd.DataFrame:
    """Identity, dates, counts and intake covariates of each episode (index ``_episode``)."""
    g = v.groupby("_episode", sort=True)
    first = _first_valid(v, ["patient_id", "clinic_id", "therapist_id", "icd10", "visit_id"])
    ep = first.join(_episode_ids(v))
    ep["condition"] = _conditions(ep["icd10"])
    ep["start_date"] = g["visit_date"].min()
    ep["end_date"] = g["visit_date"].max()
    ep["n_visits"] = g.size()
    ep["days"] = ((ep["end_date"] - ep["start_date"]) / _DAY).astype("int64")
    covs = [c for c in COVARIATE_COLUMNS if c in v.columns]
    ep = ep.join(_first_valid(v, covs))
    ep["start_quarter"] = ep["start_date"].dt.to_period("Q").astype("string")
    ep["end_quarter"] = ep["end_date"].dt.to_period("Q").astype("string")
    order = ["episode_id", "patient_id", "clinic_id", "therapist_id", "condition", "icd10",
             "start_date", "end_date", "n_visits", "days", *covs, "start_quarter", "end_quarter"]
    return ep[order]


def _conditions(icd10: pd.Series) -> pd.Series:
    """:func:`outcomes.schema.condition_of`, run once per distinct code and broadcast back."""
    codes, uniques = pd.factorize(icd10, use_na_sentinel=False)
    labels = condition_of(pd.Series(uniques, dtype=icd10.dtype))
    return pd.Series(labels.array.take(codes), index=icd10.index)


def _first_valid(v: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``v.groupby("_episode", sort=True)[cols].first()``, by row positions.

    Like ``first``, takes per episode the first row (in ``v``'s order) where the column has a
    value; taking rows by position avoids a groupby reduction over Arrow-backed text, which
    dominated the episode build on a million visits. Tested against ``groupby().first()``.
    """
    key = v["_episode"].to_numpy()
    episodes, start = np.unique(key, return_index=True)
    out = {}
    for col in cols:
        ok = v[col].notna().to_numpy()
        pos = start
        if not ok.all():
            have, first = np.unique(key[ok], return_index=True)
            pos = np.full(len(episodes), -1, dtype=np.int64)
            pos[np.searchsorted(episodes, have)] = np.flatnonzero(ok)[first]
        out[col] = v[col].array.take(pos, allow_fill=True)
    return pd.DataFrame(out, index=pd.Index(episodes, name="_episode"))


def _episode_ids(v: pd.DataFrame) -> pd.DataFrame:
    """``episode_id`` per episode number: patient + evaluation date (+ visit id if needed)."""
    first = _first_valid(v, ["patient_id", "visit_date", "visit_id"])
    base = _patient_day(first["patient_id"], first["visit_date"])
    dup = base.duplicated(keep=False)
    ids = base.where(~dup, base + "-" + first["visit_id"].astype(str))
    return ids.rename("episode_id").to_frame()


def _patient_day(patient: pd.Series, date: pd.Series) -> pd.Series:
    """``"<patient>-<YYYYMMDD>"`` as Python strings (what ``astype(str)`` and ``strftime`` give).

    Built in Arrow from integer dates when every patient id is text and every date a 4-digit
    year (always, for clean visits); otherwise the plain pandas expression.
    """
    years = date.dt.year
    if not (isinstance(patient.dtype, pd.StringDtype) and patient.notna().all()
            and years.between(1000, 9999).all()):
        return patient.astype(str) + "-" + date.dt.strftime("%Y%m%d")
    import pyarrow as pa
    import pyarrow.compute as pc

    ymd = (years * 10000 + date.dt.month * 100 + date.dt.day).to_numpy(np.int64)
    text = pc.binary_join_element_wise(pa.array(patient.array, pa.large_string()),
                                       pc.cast(pa.array(ymd), pa.large_string()),
                                       pa.scalar("-", pa.large_string()))
    return pd.Series(text.to_numpy(zero_copy_only=False), index=patient.index, dtype=object)


def _arms(v: pd.DataFrame, techniques: pd.DataFrame, window: int, with_eval: bool) -> pd.Series:
    """Arm of each episode from the technique families of its baseline window."""
    eligible = v["visit_type"].eq("treatment").fillna(False).to_numpy(bool)
    if with_eval:
        eligible |= v["_is_eval"].to_numpy(bool)
    episode = v["_episode"].to_numpy()[eligible]
    rank = pd.Series(episode).groupby(episode, sort=False).cumcount().to_numpy()
    rows = np.flatnonzero(eligible)[rank < window]  # only these rows' ids are looked up
    fam = techniques["family"].astype("string")
    keep = fam.isin(["pri", "traditional"]).to_numpy()
    pos = _positions(v["visit_id"].iloc[rows], techniques.loc[keep, "visit_id"])
    hit_ep = v["_episode"].to_numpy()[rows][pos[pos >= 0]]
    hit_fam = fam[keep].to_numpy()[pos >= 0]
    episodes = np.sort(v["_episode"].unique())
    pri = np.isin(episodes, hit_ep[hit_fam == "pri"])
    trad = np.isin(episodes, hit_ep[hit_fam == "traditional"])
    arm = np.select([pri & trad, pri, trad], ["mixed", "pri", "traditional"], default="none")
    return pd.Series(arm, index=episodes, dtype="string")


def _positions(ids: pd.Series, keys: pd.Series) -> np.ndarray:
    """Position of each key in ``ids`` as text (-1 when absent); ``ids`` must be unique.

    Arrow-backed text without missing values is matched in Arrow (no Python strings); anything
    else goes through ``astype(str)`` and a pandas Index, with the same result.
    """
    if all(isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow"
           and not s.hasnans for s in (ids, keys)):
        import pyarrow as pa
        import pyarrow.compute as pc

        values = pa.array(ids.array)
        if pc.count_distinct(values).as_py() != len(ids):
            raise InputError("visits: column visit_id has duplicate values")
        found = pc.index_in(pa.array(keys.array), value_set=values)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    try:
        return pd.Index(ids.astype(str)).get_indexer(keys.astype(str))
    except pd.errors.InvalidIndexError:
        raise InputError("visits: column visit_id has duplicate values") from None


def _discharge_scores(v: pd.DataFrame) -> pd.DataFrame:
    """Scores at the (first) discharge visit of each episode; NaN without one."""
    scores = [*EPISODE_INSTRUMENTS, *(["groc"] if "groc" in v else [])]
    dis = v[v["visit_type"] == "discharge"].groupby("_episode", sort=True)[scores].first()
    out = dis.add_suffix("_discharge")
    out["has_discharge_visit"] = True
    return out.reindex(np.sort(v["_episode"].unique()))


def _add_status(ep: pd.DataFrame, primary: str, gap_days: int, as_of: pd.Timestamp) -> pd.DataFrame:
    has_dis = ep["has_discharge_visit"].eq(True)
    col = f"{primary}_discharge"
    if col not in ep:
        raise InputError(f"parameter primary: {primary!r} is not one of {EPISODE_INSTRUMENTS}")
    ended = (as_of - ep["end_date"]) / _DAY > gap_days
    status = np.select([has_dis & ep[col].notna(), has_dis | ended],
                       ["completed", "no_discharge_score"], default="open")
    return ep.assign(status=pd.array(status, dtype="string"), has_discharge_visit=has_dis)


def _instrument_columns(v: pd.DataFrame, ep: pd.DataFrame) -> pd.DataFrame:
    """Intake, last, change, percent change, ceiling and responder per instrument (registry)."""
    intake = v[v["_is_eval"]].groupby("_episode", sort=True)[list(EPISODE_INSTRUMENTS)].first()
    last = v.groupby("_episode", sort=True)[list(EPISODE_INSTRUMENTS)].last()
    cols = {}
    for code in EPISODE_INSTRUMENTS:
        cols.update(_instrument_summary(code, intake[code], ep[f"{code}_discharge"], last[code]))
    return pd.DataFrame(cols, index=ep.index)


def _instrument_summary(code: str, intake: pd.Series, discharge: pd.Series,
                        last: pd.Series) -> dict[str, pd.Series]:
    inst = INSTRUMENTS[code]
    sign = 1.0 if inst.higher_is_better else -1.0
    change = discharge - intake
    room = inst.high - intake if inst.higher_is_better else intake - inst.low
    ceiling = (room < inst.mcid).astype("boolean").mask(intake.isna())
    improvement = sign * change
    responder = improvement >= inst.mcid - 1e-9
    if inst.mcid_pct is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = improvement / intake.abs()
        responder = responder | (rel >= inst.mcid_pct - 1e-9)
    responder = responder.astype("boolean").mask(change.isna() | ceiling.fillna(True))
    pct = (100 * change / intake).where(intake != 0)
    return {f"{code}_intake": intake, f"{code}_discharge": discharge, f"{code}_last": last,
            f"{code}_change": change, f"{code}_pct_change": pct,
            f"{code}_responder": responder, f"{code}_ceiling": ceiling}
