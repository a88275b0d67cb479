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

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd

from outcomes.errors import InputError
from outcomes.instruments import INSTRUMENTS
from outcomes.schema import COVARIATE_COLUMNS, EVAL_CPT, EpisodeSchema, condition_of

__all__ = ["build_episodes", "check_episodes", "orphan_visits", "visit_scores",
           "EPISODE_INSTRUMENTS"]

#: Instruments summarised per episode (intake, discharge, change, responder, ceiling).
EPISODE_INSTRUMENTS = ("nprs", "lefs", "psfs")

_TYPE_ORDER = {"evaluation": 0, "re-evaluation": 1, "treatment": 2, "discharge": 3}
_NEEDED = ("visit_id", "patient_id", "clinic_id", "therapist_id", "visit_date", "visit_type",
           "icd10", *EPISODE_INSTRUMENTS)
_EVAL_RE = r"(?:^|[;,\s])(?:" + "|".join(EVAL_CPT) + r")(?:$|[;,\s])"
_DAY = np.timedelta64(1, "D")
_DISCHARGE = _TYPE_ORDER["discharge"]
_ARM_LABELS = pd.array(["none", "pri", "traditional", "mixed"], dtype="string")
_STATUS_LABELS = pd.array(["completed", "no_discharge_score", "open"], dtype="string")


def build_episodes(
    visits: pd.DataFrame,
    techniques: pd.DataFrame,
    *,
    gap_days: int = 60,
    baseline_visits: int = 3,
    baseline_includes_evaluation: bool = False,
    primary: str = "nprs",
    as_of: str | pd.Timestamp | None = None,
    validate: bool = True,
    technique_visits: np.ndarray | None = None,
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
    validate : bool
        Check the result against :class:`outcomes.schema.EpisodeSchema` (pandera). False is
        for :mod:`outcomes.episode_table`, which checks what it stores with
        :func:`check_episodes` (once per table: pandera's cost is per call and per value).
    technique_visits : array of int, optional
        For each row of ``techniques``, the position of its visit among the rows of ``visits``
        (0-based, as for ``visits.iloc``; -1 for none). A caller that already knows it (an
        ingest, which made both tables) saves matching ``visit_id`` text, the costliest step
        at a million visits. It must agree with ``visit_id``: that is not checked. Default:
        technique rows are matched to visits by ``visit_id``.

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
    # with technique_visits, rows are placed by position: visit_id is not read
    _check_columns(techniques, ("family",) if technique_visits is not None
                   else ("visit_id", "family"), "techniques")
    as_of_ts = _as_of(visits, as_of)
    kept = (visits["visit_date"] <= as_of_ts).to_numpy()
    if technique_visits is not None:
        technique_visits = _renumbered(technique_visits, len(techniques), kept)
    if not kept.all():  # else read the columns in place: nothing below writes to them
        used = [*_NEEDED, *(c for c in ("cpt_codes", "groc", *COVARIATE_COLUMNS) if c in visits)]
        visits = visits.loc[kept, used]
    seg = _segments(visits, gap_days)
    member = ~np.isnan(seg.episode)
    n_orphans = int(len(member) - member.sum())
    g = _Groups(seg.order[member], seg.episode[member])
    # columns collected in order and framed once: no join or assign copies the table
    ep = _episode_frame(visits, g)
    ep["arm"] = _arms(visits, g, seg.rank[member], seg.is_eval[member], techniques,
                      technique_visits, baseline_visits, baseline_includes_evaluation)
    dis = _discharge_scores(visits, g, seg.rank[member] == _DISCHARGE)
    inst = _instrument_columns(visits, g, seg.is_eval[member], dis)
    ep.update({c: col for c, col in dis.items() if c not in inst})
    ep["status"] = _status(dis, ep["end_date"], primary, gap_days, as_of_ts)
    ep.update(inst)
    ep = pd.DataFrame(ep)
    ep.attrs.update(n_orphan_visits=n_orphans, gap_days=gap_days, baseline_visits=baseline_visits,
                    baseline_includes_evaluation=baseline_includes_evaluation,
                    primary=primary, as_of=as_of_ts)
    if not validate:
        return ep
    out = EpisodeSchema.validate(ep)
    out.attrs = dict(ep.attrs)
    return out


def check_episodes(episodes: pd.DataFrame) -> pd.DataFrame:
    """Run :class:`outcomes.schema.EpisodeSchema`'s checks without coercing (for the store).

    Every check runs (unique ``episode_id``, ``status`` and ``arm`` values, ``n_visits >= 1``),
    but Arrow-backed text is not turned into Python strings (which cost more than the build),
    so text columns are not dtype-checked (the store holds them as VARCHAR). An empty table is
    coerced, so its columns get the schema's dtypes. Returns ``episodes`` (coerced when empty);
    raises ``pandera.errors.SchemaError`` when a check fails.
    """
    if episodes.empty:
        return EpisodeSchema.validate(episodes)
    return _value_schema().validate(episodes, inplace=True)  # nothing to coerce: no copy


def _value_schema():
    schema = EpisodeSchema.to_schema()
    schema = schema.update_columns({name: {"dtype": None} for name, col in schema.columns.items()
                                    if str(col.dtype) == "str"})
    schema.coerce = False
    return schema


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
    g = _Groups(np.arange(len(v)), v["_episode"].to_numpy())
    v = v.assign(visit_number=np.arange(len(v)) - g.start[g.group] + 1)
    ids = _episode_ids(pd.DataFrame(g.values(v, ("patient_id", "visit_date", "visit_id"))))
    try:
        row_of = pd.Index(episodes["episode_id"]).get_indexer(ids)
    except pd.errors.InvalidIndexError:
        raise InputError("episodes: column episode_id has duplicate values") from None
    pos = row_of[g.group]
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


def _is_evaluation(v: pd.DataFrame, rank: np.ndarray) -> np.ndarray:
    """Initial evaluations, by visit type (``rank`` 0, see :func:`_visit_order`) or CPT code."""
    by_type = rank == _TYPE_ORDER["evaluation"]
    if "cpt_codes" not in v:
        return by_type
    # a few hundred distinct code lists: search each once, not once per visit
    codes, uniques = pd.factorize(v["cpt_codes"])
    hit = pd.Series(uniques, dtype="string").str.contains(_EVAL_RE, regex=True)
    by_cpt = np.r_[hit.fillna(False).to_numpy(bool), False][codes]  # code -1 (NA) -> False
    return by_type | by_cpt


def _visit_order(visits: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions sorting visits by patient, date, visit type, visit_id (integer sort keys).

    Also returns each visit's patient code and visit-type rank (``_TYPE_ORDER``, 9 for any
    other or missing type), in the order of ``visits``, so callers compare integers instead
    of text.
    """
    if len(visits) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    types, distinct = pd.factorize(visits["visit_type"], use_na_sentinel=False)
    rank = pd.Series(distinct).map(_TYPE_ORDER).fillna(9).to_numpy(float)[types]
    ids = visits["patient_id"]
    if ids.isna().any():  # as text, so a missing id sorts and groups like the text "<NA>"
        ids = ids.astype(str)
    patient = pd.factorize(ids, sort=True)[0]
    date = visits["visit_date"].to_numpy()
    key = _sort_key(patient, date, rank)
    if key is None:
        first = np.lexsort([rank, date, patient])
        same = np.r_[False, (np.diff(patient[first]) == 0) & (np.diff(rank[first]) == 0)
                     & (np.diff(date[first]) == np.timedelta64(0))]
    else:
        first = stable_argsort(key)
        same = np.r_[False, np.diff(key[first]) == 0]
    # visit_id only breaks the rare remaining ties; factorizing every id would dominate the cost
    if not same.any():
        return first, patient, rank
    tied = np.zeros(len(first), bool)
    tied[first[same]] = tied[first[np.r_[same[1:], False]]] = True
    vid = np.zeros(len(first), np.int64)
    vid[tied] = pd.factorize(visits["visit_id"][tied].to_numpy().astype(str), sort=True)[0]
    # sort by (run of tied visits, visit_id): ``first`` is stable, so this is the order of a
    # lexsort by patient, date, type and visit_id
    run = np.cumsum(~same)
    return first[stable_argsort(run * (int(vid.max()) + 1) + vid[first])], patient, rank


def _sort_key(patient: np.ndarray, date: np.ndarray, rank: np.ndarray) -> np.ndarray | None:
    """One int64 ordered as (patient, date, rank), so a stable argsort replaces a 3-key lexsort.

    Only when every date is a whole day (always, for clean visits) and the key fits; else None.
    """
    if date.dtype.kind != "M":
        return None
    day = date.astype("datetime64[D]")
    if not (day == date).all():  # times of day, or NaT
        return None
    day = day.view(np.int64) - day.view(np.int64).min()
    span = int(day.max()) + 1
    if (int(patient.max()) + 1) * span * 10 >= 2**62:
        return None
    return (patient.astype(np.int64) * span + day) * 10 + rank.astype(np.int64)


def stable_argsort(key: np.ndarray) -> np.ndarray:
    """``np.argsort(key, kind="stable")`` for integer keys, 16 bits at a time.

    numpy sorts 16-bit integers by radix sort, and a stable sort by each 16-bit digit from
    the lowest (LSD radix) is a stable sort by the whole key: about 3x faster than the
    merge sort numpy uses for int64 when the key spans two or three digits. Keys with a
    negative value fall back to numpy's stable sort.
    """
    key = np.asarray(key)
    if len(key) and int(key.min()) < 0:
        return np.argsort(key, kind="stable")
    order = np.argsort((key & 0xFFFF).astype(np.uint16), kind="stable")
    top, shift = int(key.max()) if len(key) else 0, 16
    while top >> shift:
        digit = ((key[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
    return order


class _Segments(NamedTuple):
    """Visits in episode order (all arrays but ``order`` are in that order)."""

    order: np.ndarray  # positions of the visits in the input, sorted
    rank: np.ndarray  # visit-type rank (_TYPE_ORDER)
    is_eval: np.ndarray  # initial evaluation
    episode: np.ndarray  # episode number, NaN for orphans
    reason: np.ndarray  # why a segment starts: 0 new patient, 1 discharge, 2 gap, 3 other


def _segments(visits: pd.DataFrame, gap_days: int) -> _Segments:
    """Sort visits and give each an episode number, by position (no column is copied).

    A segment boundary falls at a new patient, an evaluation, the visit after a discharge and
    a gap longer than ``gap_days``; a segment is an episode when its first visit is an
    evaluation (``cumsum`` over the boundaries numbers the segments).
    """
    if gap_days < 0:
        raise InputError("parameter gap_days: must be >= 0")
    order, patient, rank = _visit_order(visits)
    is_eval = _is_evaluation(visits, rank)[order]
    rank = rank[order]
    pid = patient[order]
    new_patient = np.r_[True, pid[1:] != pid[:-1]]
    gap = np.r_[np.inf, np.diff(visits["visit_date"].to_numpy()[order]) / _DAY]
    after_gap = ~new_patient & (gap > gap_days)
    after_dis = ~new_patient & np.r_[False, rank[:-1] == _DISCHARGE]
    boundary = new_patient | is_eval | after_gap | after_dis
    segment = np.cumsum(boundary)
    seg_eval = is_eval[boundary][segment - 1]
    reason = np.select([new_patient, after_dis, after_gap], [0, 1, 2], default=3)
    return _Segments(order, rank, is_eval, np.where(seg_eval, segment, np.nan),
                     reason[boundary][segment - 1])


_REASONS = np.array(["before_first_evaluation", "after_discharge", "after_gap", ""], object)


def _assign_episodes(visits: pd.DataFrame, gap_days: int) -> pd.DataFrame:
    """The visits sorted (:func:`_segments`), with ``_is_eval``, ``_episode`` (NaN for orphans)
    and ``_orphan_reason`` (NA in episodes)."""
    seg = _segments(visits, gap_days)
    if np.array_equal(seg.order, np.arange(len(seg.order))):  # already in order
        v = visits.reset_index(drop=True)
    else:
        v = visits.take(seg.order).reset_index(drop=True)
    v["_is_eval"] = seg.is_eval
    v["_episode"] = seg.episode
    orphan = np.isnan(seg.episode)
    v["_orphan_reason"] = pd.array(np.where(orphan, _REASONS[seg.reason], None), dtype="string")
    return v


class _Groups:
    """The visits of the episodes, in visit order: ``rows`` (positions in the input) and the
    episode each belongs to (``group``, 0 .. n-1, non-decreasing)."""

    def __init__(self, rows: np.ndarray, number: np.ndarray) -> None:
        self.rows = rows
        first = np.r_[True, number[1:] != number[:-1]][: len(number)]
        self.start = np.flatnonzero(first)
        self.end = np.append(self.start[1:], len(rows))[: len(self.start)] - 1
        self.group = np.cumsum(first) - 1
        self.n = len(self.start)

    def sizes(self) -> np.ndarray:
        return (self.end - self.start + 1).astype(np.int64)

    def pick(self, at: np.ndarray | None = None, last: bool = False) -> np.ndarray:
        """Per episode, the first (last) of the positions ``at`` (ascending, into ``rows``;
        default all) that falls in it; -1 when none."""
        if at is None:
            return self.end if last else self.start
        pos = np.full(self.n, -1, dtype=np.int64)
        if len(at):
            g = self.group[at]
            change = g[1:] != g[:-1]
            sel = np.r_[change, True] if last else np.r_[True, change]
            pos[g[sel]] = at[sel]
        return pos

    def values(self, v: pd.DataFrame, columns: Iterable[str], where: np.ndarray | None = None,
               last: bool = False) -> dict[str, pd.Series]:
        """``groupby().first()`` (``last()``) of ``v[columns]`` over the rows ``where`` holds:
        per column, the first (last) non-missing value, missing when there is none.

        The rows considered (few, when ``where`` marks evaluations or discharges) and each
        episode's first (last) of them are found once for all columns; a column looks further
        only when it is blank at one of those rows.
        """
        at = None if where is None else np.flatnonzero(where)
        at_rows = self.rows if at is None else self.rows[at]
        picked = self._input_rows(self.pick(at, last))
        chosen = picked[picked >= 0]
        out = {}
        for c in columns:
            col = v[c]
            missing = col.isna().to_numpy(bool)
            take = picked
            if missing[chosen].any():
                ok = ~missing[at_rows]
                take = self._input_rows(self.pick(np.flatnonzero(ok) if at is None else at[ok],
                                                  last))
            out[c] = pd.Series(col.array.take(take, allow_fill=True))
        return out

    def _input_rows(self, pos: np.ndarray) -> np.ndarray:
        """``rows[pos]``, -1 where ``pos`` is -1."""
        return np.where(pos >= 0, self.rows[pos], -1)


def _episode_frame(v: pd.DataFrame, g: _Groups) -> dict[str, pd.Series]:
    """Identity, dates, counts and intake covariates of each episode (columns in order)."""
    ident = g.values(v, ("patient_id", "clinic_id", "therapist_id", "icd10", "visit_id"))
    dates = v["visit_date"].array
    start = pd.Series(dates.take(g.rows[g.start]))
    # visits are in date order within an episode, and none is NaT after the as_of filter
    end = pd.Series(dates.take(g.rows[g.end]))
    ids = pd.DataFrame({**ident, "visit_date": start})
    covs = [c for c in COVARIATE_COLUMNS if c in v.columns]
    return {"episode_id": _episode_ids(ids), "patient_id": ident["patient_id"],
            "clinic_id": ident["clinic_id"], "therapist_id": ident["therapist_id"],
            "condition": _conditions(ident["icd10"]), "icd10": ident["icd10"],
            "start_date": start, "end_date": end, "n_visits": pd.Series(g.sizes()),
            "days": ((end - start) / _DAY).astype("int64"),
            **g.values(v, covs),
            "start_quarter": _quarters(start), "end_quarter": _quarters(end)}


def _quarters(dates: pd.Series) -> pd.Series:
    """``dates.dt.to_period("Q").astype("string")`` ("2026Q3"), formatted once per quarter."""
    codes, quarters = pd.factorize(dates.dt.to_period("Q"))
    labels = pd.Series(quarters).astype("string").array
    return pd.Series(labels.take(codes, allow_fill=True), index=dates.index)


def _conditions(icd10: pd.Series) -> pd.Series:
    """:func:`outcomes.schema.condition_of`, run once per distinct code and broadcast back."""
    codes, uniques = pd.factorize(icd10, use_na_sentinel=False)
    labels = condition_of(pd.Series(uniques, dtype=icd10.dtype))
    return pd.Series(labels.array.take(codes), index=icd10.index)


def _episode_ids(first: pd.DataFrame) -> pd.Series:
    """``episode_id`` (Python strings) from each episode's ``patient_id``, evaluation
    ``visit_date`` and ``visit_id`` (patient + evaluation date, + visit id when that is not
    unique)."""
    base = _patient_day(first["patient_id"], first["visit_date"])
    dup = base.duplicated(keep=False)
    base = base.astype(object)
    if dup.any():
        base = base.where(~dup, base + "-" + first["visit_id"].astype(str))
    return base.rename("episode_id")


def _patient_day(patient: pd.Series, date: pd.Series) -> pd.Series:
    """``patient.astype(str) + "-" + date.dt.strftime("%Y%m%d")``.

    Each distinct day is formatted once, and the text joined in Arrow (``string[pyarrow]``)
    when every patient id is text and every date set (always, for clean visits); otherwise
    the plain expression (Python strings).
    """
    codes, days = pd.factorize(date)
    if not (isinstance(patient.dtype, pd.StringDtype) and patient.notna().all()
            and (codes >= 0).all()):
        return patient.astype(str) + "-" + date.dt.strftime("%Y%m%d")
    import pyarrow as pa
    import pyarrow.compute as pc

    day_text = pa.array(days.strftime("%Y%m%d"), pa.large_string()).take(codes)
    text = pc.binary_join_element_wise(pa.array(patient.array, pa.large_string()), day_text,
                                       pa.scalar("-", pa.large_string()))
    return pd.Series(pd.array(text, pd.StringDtype("pyarrow")), index=patient.index)


def _arms(v: pd.DataFrame, g: _Groups, rank: np.ndarray, is_eval: np.ndarray,
          techniques: pd.DataFrame, technique_visits: np.ndarray | None, window: int,
          with_eval: bool) -> pd.Series:
    """Arm of each episode from the technique families of its baseline window.

    ``rank`` and ``is_eval`` describe the episode visits (``g.rows``), in visit order;
    ``technique_visits`` is :func:`build_episodes`' argument, renumbered for ``v``.
    """
    eligible = rank == _TYPE_ORDER["treatment"]
    if with_eval:
        eligible = eligible | is_eval
    at = np.flatnonzero(eligible)
    sub = _Groups(at, g.group[at])  # the eligible visits, numbered within their episode
    within = np.arange(len(at)) - np.repeat(sub.start, sub.sizes())
    at = at[within < window]  # the baseline windows' visits (positions into g.rows)
    fam = techniques["family"]
    if not isinstance(fam.dtype, pd.StringDtype):  # keep Arrow-backed text in Arrow
        fam = fam.astype("string")
    is_pri, is_trad = _equals(fam, "pri"), _equals(fam, "traditional")
    # the episode of each technique row whose visit is in a baseline window; g.n (a slot
    # past the episodes) for the others
    window_rows = g.rows[at]
    if technique_visits is None:  # only these rows' ids are looked up, in the windows' ids
        keep = is_pri | is_trad
        pos = _positions(v["visit_id"].iloc[window_rows], techniques["visit_id"][keep])
        episode = np.append(g.group[at], g.n)[pos]  # pos -1 (not found) -> g.n
        is_pri = is_pri[keep]
        is_trad = ~is_pri
    else:
        window_episode = np.full(len(v) + 1, g.n)  # by row of v; the extra slot is row -1
        window_episode[window_rows] = g.group[at]
        episode = window_episode[technique_visits]
    pri = np.zeros(g.n + 1, bool)
    pri[episode[is_pri]] = True
    trad = np.zeros(g.n + 1, bool)
    trad[episode[is_trad]] = True
    code = pri[:-1] + 2 * trad[:-1].astype(np.int64)
    return pd.Series(_ARM_LABELS.take(code))  # none, pri, traditional, mixed


def _renumbered(technique_visits: np.ndarray, n_techniques: int, kept: np.ndarray) -> np.ndarray:
    """``technique_visits`` checked, and renumbered for the ``kept`` visits (-1 for others)."""
    rows = np.asarray(technique_visits)
    if (rows.shape != (n_techniques,) or rows.dtype.kind not in "iu"
            or (len(rows) and (rows.min() < -1 or rows.max() >= len(kept)))):
        raise InputError("parameter technique_visits: must hold one visit position (-1 for "
                         "none) per technique row")
    if kept.all():
        return rows
    new = np.where(kept, np.cumsum(kept) - 1, -1)
    return np.append(new, -1)[rows]  # the appended slot answers -1


def _equals(text: pd.Series, value: str) -> np.ndarray:
    """``text == value`` as a numpy bool array, missing -> False (in Arrow when Arrow-backed)."""
    if isinstance(text.dtype, pd.StringDtype) and text.dtype.storage == "pyarrow":
        import pyarrow as pa
        import pyarrow.compute as pc

        hit = pc.equal(pa.array(text.array), pa.scalar(value, pa.large_string()))
        return hit.fill_null(False).to_numpy(zero_copy_only=False)
    return text.eq(value).fillna(False).to_numpy(bool)


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
        if len(pc.unique(values)) != len(ids):
            raise InputError("visits: column visit_id has duplicate values")
        found = pc.index_in(pa.array(keys.array), value_set=values)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    try:
        return pd.Index(ids.astype(str)).get_indexer(keys.astype(str))
    except pd.errors.InvalidIndexError:
        raise InputError("visits: column visit_id has duplicate values") from None


def _discharge_scores(v: pd.DataFrame, g: _Groups, is_dis: np.ndarray) -> dict[str, pd.Series]:
    """Scores at the (first) discharge visit of each episode; NaN without one.

    ``is_dis`` marks the discharge visits among the episode visits (``g.rows``).
    """
    scores = [*EPISODE_INSTRUMENTS, *(["groc"] if "groc" in v else [])]
    out = {f"{c}_discharge": col for c, col in g.values(v, scores, where=is_dis).items()}
    out["has_discharge_visit"] = pd.Series(g.pick(np.flatnonzero(is_dis)) >= 0)
    return out


def _status(dis: dict[str, pd.Series], end_date: pd.Series, primary: str, gap_days: int,
            as_of: pd.Timestamp) -> pd.Series:
    has_dis = dis["has_discharge_visit"]
    col = f"{primary}_discharge"
    if col not in dis:
        raise InputError(f"parameter primary: {primary!r} is not one of {EPISODE_INSTRUMENTS}")
    ended = (as_of - end_date) / _DAY > gap_days
    code = np.select([has_dis & dis[col].notna(), has_dis | ended], [0, 1], default=2)
    return pd.Series(_STATUS_LABELS.take(code))


def _instrument_columns(v: pd.DataFrame, g: _Groups, is_eval: np.ndarray,
                        dis: dict[str, pd.Series]) -> dict[str, pd.Series]:
    """Intake, last, change, percent change, ceiling and responder per instrument (registry).

    ``is_eval`` marks the evaluation visits among the episode visits (``g.rows``).
    """
    intake = g.values(v, EPISODE_INSTRUMENTS, where=is_eval)
    last = g.values(v, EPISODE_INSTRUMENTS, last=True)
    cols = {}
    for code in EPISODE_INSTRUMENTS:
        cols.update(_instrument_summary(code, intake[code], dis[f"{code}_discharge"], last[code]))
    return cols


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
