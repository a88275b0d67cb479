"""Quarterly report sections (clinic directors): outcome summaries with intervals, volumes,
trends, therapist comparison, data quality.

Every function is DataFrame in, new DataFrame out. Published tables go through
:func:`outcomes.privacy.suppress_small_cells`: counts of 1-10, and the percentages and means
computed from them, are shown as ``<11``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from outcomes.errors import ReportError
from outcomes.reports.data import (
    MIN_CELL,
    REPORT_INSTRUMENTS,
    ended_in,
    is_small,
    previous_quarters,
    select_clinic,
    started_in,
)

__all__ = [
    "mean_ci", "wilson_ci", "instrument_row", "outcome_summary", "suppress_summary",
    "format_interval", "format_summary", "summary_table", "with_labels", "quarter_volumes", "quarter_trend",
    "therapist_comparison", "RISK_COVARIATES", "observed_minus_expected", "quarantine_table",
    "missing_discharge", "unmapped_table", "reported_instruments", "instruments_table",
]


# --------------------------------------------------------------------------------------------
# Summaries with intervals
# --------------------------------------------------------------------------------------------
def mean_ci(values: pd.Series, level: float = 0.95) -> tuple[int, float, float, float]:
    """``n, mean, ci_low, ci_high`` of ``values`` (NaN dropped), t interval.

    Notes
    -----
    ``mean +/- t_{n-1, (1+level)/2} * sd / sqrt(n)``; checked against ``scipy.stats.t.interval``.
    """
    from scipy import stats

    x = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    n = len(x)
    if n == 0:
        return 0, float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    if n == 1:
        return 1, m, float("nan"), float("nan")
    half = stats.t.ppf((1 + level) / 2, n - 1) * x.std(ddof=1) / n ** 0.5
    return n, m, m - half, m + half


def wilson_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (NaN for ``n == 0``).

    Notes
    -----
    ``(p + z^2/2n +/- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` (Wilson 1927); checked against
    ``statsmodels.stats.proportion.proportion_confint(method="wilson")``.
    """
    from scipy import stats

    if n == 0:
        return float("nan"), float("nan")
    z = stats.norm.ppf((1 + level) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return centre - half, centre + half


def instrument_row(group: pd.DataFrame, code: str) -> dict[str, Any]:
    n, mean, lo, hi = mean_ci(group[f"{code}_change"])
    resp = group[f"{code}_responder"].dropna().astype(bool)
    k, m = int(resp.sum()), len(resp)
    p_lo, p_hi = wilson_ci(k, m)
    return {f"{code}_n": n, f"{code}_change": mean, f"{code}_change_low": lo,
            f"{code}_change_high": hi, f"{code}_eligible": m, f"{code}_responders": k,
            f"{code}_nonresponders": m - k, f"{code}_pct_mcid": 100 * k / m if m else float("nan"),
            f"{code}_pct_low": 100 * p_lo, f"{code}_pct_high": 100 * p_hi}


def outcome_summary(episodes: pd.DataFrame, by: str | None = None,
                    instruments: tuple[str, ...] = REPORT_INSTRUMENTS) -> pd.DataFrame:
    """Change and share reaching the MCID, with 95 % intervals, per level of ``by``.

    Parameters
    ----------
    episodes : DataFrame
        Episode table (usually :func:`ended_in` a quarter).
    by : str, optional
        Grouping column (``arm``, ``condition``, ``therapist_id``); the last row, ``all``,
        holds the totals (the only row when ``by`` is None).
    instruments : tuple of str
        Instrument codes.

    Returns
    -------
    DataFrame
        Indexed by group: ``episodes`` (ended), and per instrument ``X``: ``X_n`` (with intake
        and discharge), ``X_change`` and ``X_change_low/high`` (t interval), ``X_eligible``
        (responder status known; ceiling cases excluded), ``X_responders``,
        ``X_nonresponders``, ``X_pct_mcid`` and ``X_pct_low/high`` (Wilson), raw numbers.
        Use :func:`suppress_summary` before publishing.
    """
    groups = list(episodes.groupby(by, sort=True, observed=True)) if by is not None else []
    groups.append(("all", episodes))
    rows = {}
    for key, group in groups:
        row: dict[str, Any] = {"episodes": len(group)}
        for code in instruments:
            row.update(instrument_row(group, code))
        rows[key] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = by or "group"
    return out


def suppress_summary(summary: pd.DataFrame,
                     instruments: tuple[str, ...] = REPORT_INSTRUMENTS) -> pd.DataFrame:
    """Apply the cell-size rule to an :func:`outcome_summary` table.

    A mean is hidden when it rests on 1-10 episodes (``<11``); a share reaching the MCID is
    ``<11`` when it rests on 1-10 episodes, and withheld when either the responders or the
    non-responders number 1-10 (either would be recoverable from the share and the
    denominator): it then shows a safe band (:func:`outcomes.privacy.share_band`, e.g. ``over
    50%``) or, when none exists, ``*`` (:data:`outcomes.privacy.WITHHELD`). The ``all`` row is
    the total row of complementary suppression: a single hidden group count is never
    recoverable as total minus the others; cells hidden that way show ``*``.
    """
    from outcomes.privacy import WITHHELD, share_band, suppress_small_cells

    counts = ["episodes"]
    derived: dict[str, list[str]] = {}
    for code in instruments:
        pct = [f"{code}_pct_mcid", f"{code}_pct_low", f"{code}_pct_high"]
        counts += [f"{code}_n", f"{code}_eligible", f"{code}_responders",
                   f"{code}_nonresponders"]
        derived[f"{code}_n"] = [f"{code}_change", f"{code}_change_low", f"{code}_change_high"]
        derived[f"{code}_eligible"] = pct
        derived[f"{code}_responders"] = pct
        derived[f"{code}_nonresponders"] = pct
    total = "all" if "all" in summary.index and len(summary) > 1 else None
    out = suppress_small_cells(summary, counts, derived=derived, threshold=MIN_CELL,
                               total_row=total, complement_label=WITHHELD)
    for code in instruments:
        pct = f"{code}_pct_mcid"
        for key in out.index[out[pct].eq(WITHHELD) & ~out[f"{code}_eligible"].eq(WITHHELD)]:
            band = share_band(int(summary.at[key, f"{code}_responders"]),
                              int(summary.at[key, f"{code}_eligible"]), MIN_CELL)
            if band is not None:
                out.at[key, pct] = band
    return out


def format_interval(est: Any, lo: Any, hi: Any, digits: int = 1, unit: str = "") -> str:
    if isinstance(est, str):
        return est
    if pd.isna(est):
        return "-"
    if isinstance(lo, str) or pd.isna(lo) or pd.isna(hi):
        return f"{est:.{digits}f}{unit}"
    return f"{est:.{digits}f}{unit} ({lo:.{digits}f} to {hi:.{digits}f})"


def format_summary(summary: pd.DataFrame,
                   instruments: tuple[str, ...] = REPORT_INSTRUMENTS) -> pd.DataFrame:
    """Readable columns of a suppressed summary: episodes, ``change (95 % CI)``, ``% MCID (CI)``.

    The number of episodes with both scores is left out on purpose: next to ``episodes ended``
    it would give away the number without a discharge score, which may be a small cell.
    """
    from outcomes.instruments import INSTRUMENTS

    out = pd.DataFrame(index=summary.index)
    out["episodes ended"] = summary["episodes"]
    for code in instruments:
        name = INSTRUMENTS[code].name
        s = summary
        out[f"{name}: mean change (95% CI)"] = [
            format_interval(e, lo, hi) for e, lo, hi in
            zip(s[f"{code}_change"], s[f"{code}_change_low"], s[f"{code}_change_high"], strict=True)]
        out[f"{name}: % reaching MCID (95% CI)"] = [
            format_interval(e, lo, hi, 0, "%") for e, lo, hi in
            zip(s[f"{code}_pct_mcid"], s[f"{code}_pct_low"], s[f"{code}_pct_high"], strict=True)]
    return out


def summary_table(episodes: pd.DataFrame, by: str | None = None,
                  instruments: tuple[str, ...] = REPORT_INSTRUMENTS) -> pd.DataFrame:
    """:func:`outcome_summary` -> :func:`suppress_summary` -> :func:`format_summary`, rows and
    header in words (:func:`outcomes.schema.label_values`)."""
    summary = outcome_summary(episodes, by, instruments)
    return with_labels(format_summary(suppress_summary(summary, instruments), instruments), by)


def with_labels(table: pd.DataFrame, by: str | None) -> pd.DataFrame:
    """``table`` (indexed by the codes of column ``by``) with the index in words and named
    after ``by`` as a person reads it (``condition`` -> ``diagnosis``)."""
    from outcomes.schema import label_of, label_values

    out = table.copy()
    out.index = label_values(out.index, by or "total")
    out.index.name = label_of("column", by) if by else table.index.name
    return out


# --------------------------------------------------------------------------------------------
# Director's report sections
# --------------------------------------------------------------------------------------------
def quarter_volumes(episodes: pd.DataFrame, visits: pd.DataFrame, quarter: str,
                    clinic: str | None = None, n_quarters: int = 2) -> pd.DataFrame:
    """Volumes of the last ``n_quarters`` quarters: new episodes, ended, discharged, visits.

    Returns
    -------
    DataFrame
        Index: ``new episodes``, ``episodes ended``, ``ended without a discharge score``,
        ``attended visits``, ``patients seen``; one column per quarter (oldest first),
        suppressed (1-10 -> ``<11``; episodes without a discharge score withheld, ``*``, when
        those *with* one number 1-10, since ended minus without would give them away).
    """
    from outcomes.privacy import WITHHELD, suppress_small_cells

    ep = select_clinic(episodes, clinic)
    vis = select_clinic(visits, clinic)
    vq = vis["visit_date"].dt.to_period("Q").astype(str)
    cols = {}
    for q in previous_quarters(quarter, n_quarters):
        ended = ended_in(ep, q)
        cols[q] = {
            "new episodes": len(started_in(ep, q)),
            "episodes ended": len(ended),
            "ended without a discharge score": int((ended["status"] == "no_discharge_score").sum()),
            "attended visits": int((vq == q).sum()),
            "patients seen": int(vis.loc[vq == q, "patient_id"].nunique()),
        }
    table = pd.DataFrame(cols)
    table.index.name = "measure"
    out = suppress_small_cells(table, list(table.columns), threshold=MIN_CELL)
    # ended = with a score + without: withhold "without" when the other part is a small cell
    gap = table.loc["episodes ended"] - table.loc["ended without a discharge score"]
    without = table.loc["ended without a discharge score"]
    out.loc["ended without a discharge score",
            gap.between(1, MIN_CELL - 1) & ~without.between(1, MIN_CELL - 1)] = WITHHELD
    return out


def quarter_trend(episodes: pd.DataFrame, quarter: str, n_quarters: int = 8,
                  code: str = "nprs") -> pd.DataFrame:
    """Per quarter: episodes ended, mean change and % reaching the MCID of instrument ``code``.

    Returns
    -------
    DataFrame
        ``quarter, episodes, n, change, change_low, change_high, eligible, responders,
        nonresponders, pct_mcid, pct_low, pct_high`` and ``mean X change`` (a copy of ``change``
        labelled for the chart) for the ``n_quarters`` quarters ending with ``quarter`` (leading
        quarters before the first ended episode are dropped). Small cells are blanked (NaN, so
        a chart of the table carries none): ``suppressed`` marks a mean resting on 1-10
        episodes (everything blanked), ``pct_suppressed`` a share whose responders or
        non-responders number 1-10 (the share blanked; ``pct_band`` holds its safe band from
        :func:`outcomes.privacy.share_band`, or None).
    """
    from outcomes.privacy import share_band

    rows = []
    for q in previous_quarters(quarter, n_quarters):
        ended = ended_in(episodes, q)
        row = {k.removeprefix(f"{code}_"): v for k, v in instrument_row(ended, code).items()}
        rows.append({"quarter": q, "episodes": len(ended), **row,
                     "suppressed": is_small(row["n"], row["eligible"]),
                     "pct_suppressed": is_small(row["responders"], row["nonresponders"]),
                     "pct_band": share_band(row["responders"], row["eligible"], MIN_CELL)})
    out = pd.DataFrame(rows)
    pct = ["eligible", "responders", "nonresponders", "pct_mcid", "pct_low", "pct_high"]
    out.loc[out["suppressed"], ["n", "change", "change_low", "change_high", *pct]] = float("nan")
    out.loc[out["pct_suppressed"], pct] = float("nan")
    out.loc[out["episodes"].between(1, MIN_CELL - 1), "episodes"] = float("nan")
    out[f"mean {code.upper()} change"] = out["change"]
    first = out.index[out["episodes"].ne(0)]
    return out.loc[first[0]:].reset_index(drop=True) if len(first) else out


def therapist_comparison(episodes: pd.DataFrame, outcome: str = "nprs_change",
                         kind: str = "mean") -> pd.DataFrame:
    """Partially pooled estimate per therapist with intervals, published caseloads only.

    Parameters
    ----------
    episodes : DataFrame
        Episodes ended in the comparison window.
    outcome : str
        ``X_responder`` (``kind="proportion"``) or ``X_change`` (``kind="mean"``).

    Returns
    -------
    DataFrame
        :func:`outcomes.models.therapist_estimates` columns for therapists with at least 11
        episodes with a known outcome, sorted by therapist id (never ranked); ``attrs``
        ``n_hidden`` counts the therapists left out.
    """
    from outcomes.errors import ModelError
    from outcomes.models import therapist_estimates

    data = episodes[episodes[outcome].notna()].copy()
    if kind == "proportion":
        data[outcome] = data[outcome].astype(float)
    try:
        est = therapist_estimates(data, outcome, kind=kind)
    except ModelError:  # e.g. a single therapist: nothing to pool, nothing to compare
        est = pd.DataFrame(columns=["therapist_id", "n", "raw", "estimate", "ci_low",
                                    "ci_high", "reliability", "shrinkage", "target",
                                    "funnel_flag"])
        est.attrs.update(kind=kind)
    shown = est[est["n"] >= MIN_CELL].sort_values("therapist_id").reset_index(drop=True)
    if kind == "proportion":
        k = (shown["raw"] * shown["n"]).round()
        rest = shown["n"] - k
        shown = shown[((k >= MIN_CELL) | (k == 0)) & ((rest >= MIN_CELL) | (rest == 0))]
    shown.attrs.update(est.attrs, n_hidden=len(est) - len(shown),
                       n_therapists=int(data["therapist_id"].nunique()))
    return shown.reset_index(drop=True)


def _as_float(flags: pd.Series) -> pd.Series:
    """Nullable booleans as 0.0 / 1.0 / NaN."""
    return flags.astype("Float64").astype(float)


#: Intake covariates used to risk-adjust therapist results (case mix).
RISK_COVARIATES = ("age", "symptom_duration_weeks", "prior_pt", "prior_injection",
                   "surgery_recommended")


def observed_minus_expected(episodes: pd.DataFrame, code: str = "nprs") -> pd.DataFrame:
    """Risk-adjusted observed minus expected share reaching the MCID, per therapist.

    The expected share comes from a logistic model of responding on intake score, case mix
    (:data:`RISK_COVARIATES`) and condition, without therapist terms
    (:func:`outcomes.models.fit_responder`). Therapists with 1-10 episodes, responders or
    non-responders are left out (their share would reveal a small count).

    Returns
    -------
    DataFrame
        ``therapist, n, observed, expected, o_minus_e, ci_low, ci_high`` in percentage points.
    """
    from outcomes.errors import ModelError
    from outcomes.models import fit_responder

    data = episodes.assign(**{f"{code}_responder": _as_float(episodes[f"{code}_responder"])})
    # The technique arm is left out on purpose: the choice of techniques is part of what a
    # therapist does. fit_responder needs one "treatment" term; any case-mix factor that varies
    # serves (the model is the same), condition first.
    factors = [c for c in ("condition", "prior_pt", "prior_injection", "surgery_recommended")
               if c in data and data[c].nunique() >= 2]
    if not factors:
        raise ReportError("observed minus expected: the case-mix factors do not vary")
    first = factors[0]
    covs = [c for c in (f"{code}_intake", *RISK_COVARIATES)
            if c in data and c != first and data[c].nunique() >= 2]
    try:
        res = fit_responder(data, f"{code}_responder", first, covs, therapist="therapist_id")
    except ModelError as exc:  # too little data for a risk model: say so, keep the report
        return pd.DataFrame({"therapist": ["(none)"], "n": [0], "observed": [float("nan")],
                             "expected": [float("nan")], "o_minus_e": [float("nan")],
                             "ci_low": [float("nan")], "ci_high": [float("nan")]}).assign(
            note=f"risk model not estimated: {str(exc).splitlines()[0]}")
    out = res.by_therapist
    k = (out["observed"] * out["n"]).round()
    rest = out["n"] - k
    # the observed share and n would reveal a count of 1-10 responders or non-responders
    out = out[(out["n"] >= MIN_CELL) & ((k >= MIN_CELL) | (k == 0))
              & ((rest >= MIN_CELL) | (rest == 0))].copy()
    for col in ("observed", "expected", "o_minus_e", "ci_low", "ci_high"):
        out[col] = 100 * out[col]
    return out.drop(columns=["se"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Data quality
# --------------------------------------------------------------------------------------------
def quarantine_table(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows by reason, counts of 1-10 shown as ``<11`` (one ``(none)`` row if empty)."""
    from outcomes.privacy import suppress_small_cells

    table = quarantine.rename(columns={"reason_code": "reason", "n": "rows"})
    table = table.set_index("reason")[["rows"]].sort_index()
    if table.empty:
        table = pd.DataFrame({"rows": [0]}, index=pd.Index(["(none)"], name="reason"))
    return suppress_small_cells(table, ["rows"], threshold=MIN_CELL)


def missing_discharge(episodes: pd.DataFrame, by: str, counts: bool = True) -> pd.DataFrame:
    """Share of ended episodes without a discharge score, per level of ``by``.

    Returns
    -------
    DataFrame
        Indexed by ``by`` plus a total row ``all``: ``ended``, ``missing`` and ``% without
        discharge score (95% CI)`` (Wilson interval, as text), suppressed with the total row
        and ``ended`` (= missing + with a score, per row) used for complementary suppression. ``counts=False`` keeps only the percentage, for
        tables whose rows also appear elsewhere with other counts (e.g. per therapist, next to
        the caseloads of the therapist comparison: the difference would be a count). A cell
        of 1-10 episodes reads ``<11``; one withheld so that such a cell cannot be worked out
        reads ``*``.
    """
    from outcomes.privacy import WITHHELD, suppress_small_cells

    ended = episodes[episodes["status"] != "open"]
    missing = (ended["status"] == "no_discharge_score").astype(int)
    g = missing.groupby(ended[by], sort=True, observed=True)
    table = pd.DataFrame({"ended": g.size(), "missing": g.sum()})
    table.loc["all"] = [len(ended), int(missing.sum())]
    table["complete"] = table["ended"] - table["missing"]
    table["pct_missing"] = [
        format_interval(100 * m / n, *(100 * x for x in wilson_ci(m, n)), 0, "%") if n else "-"
        for m, n in zip(table["missing"], table["ended"], strict=True)]
    out = suppress_small_cells(table, ["ended", "missing", "complete"], threshold=MIN_CELL,
                               derived={"ended": ["pct_missing"], "missing": ["pct_missing"],
                                        "complete": ["pct_missing"]}, total_row="all",
                               total_column="ended", complement_label=WITHHELD)
    out = out.drop(columns=["complete"] if counts else ["complete", "ended", "missing"])
    out = out.rename(columns={"pct_missing": "% without discharge score (95% CI)"})
    return with_labels(out, by)


def unmapped_table(unmapped: pd.DataFrame, top: int = 15) -> pd.DataFrame:
    """Technique texts the vocabulary did not map, most frequent first.

    Only texts seen at least 11 times are listed verbatim (a rarer text could point to one
    patient); the rest are counted in one ``(other texts)`` row.
    """
    from outcomes.privacy import suppress_small_cells

    df = unmapped.sort_values(["n", "text"], ascending=[False, True])
    shown = df[df["n"] >= MIN_CELL].head(top)
    rest = df.drop(shown.index)
    rows = [*zip(shown["text"], shown["n"], strict=True)]
    if len(rest):
        rows.append((f"(other texts: {len(rest)} distinct)", int(rest["n"].sum())))
    table = pd.DataFrame(rows, columns=["technique text", "mentions"]).set_index("technique text")
    return suppress_small_cells(table, ["mentions"], threshold=MIN_CELL)


# --------------------------------------------------------------------------------------------
# Instruments
# --------------------------------------------------------------------------------------------
def reported_instruments(episodes: pd.DataFrame,
                         instruments: tuple[str, ...] = REPORT_INSTRUMENTS) -> tuple[str, ...]:
    """Of ``instruments``, those with at least one intake score in ``episodes`` (a store that
    never recorded the LEFS gets no LEFS columns)."""
    return tuple(c for c in instruments if f"{c}_intake" in episodes
                 and episodes[f"{c}_intake"].notna().any())


def instruments_table(counts: pd.DataFrame) -> pd.DataFrame:
    """The instruments the store holds scores for, with what a reader needs to weigh them.

    Parameters
    ----------
    counts : DataFrame
        :func:`outcomes.store.load_instrument_counts`: ``instrument, scores, patients, spec``.

    Returns
    -------
    DataFrame
        Indexed by instrument name: ``range``, ``better``, ``MCID``, ``MDC``, ``source``,
        ``scores`` and ``patients`` (1-10 shown as ``<11``). Instruments a profile added are
        described from their definition in the ingest log.
    """
    import json

    from outcomes.instruments import INSTRUMENTS, make_instrument
    from outcomes.privacy import suppress_small_cells

    rows = []
    for r in counts.itertuples(index=False):
        if r.instrument not in INSTRUMENTS and not isinstance(r.spec, str):
            rows.append({"instrument": r.instrument, "source": "added by a profile; "
                         "definition not logged", "scores": r.scores, "patients": r.patients})
            continue
        inst = INSTRUMENTS.get(r.instrument) or make_instrument(r.instrument, json.loads(r.spec))
        rows.append({"instrument": inst.name, "range": inst.range_text,
                     "better": "higher" if inst.higher_is_better else "lower",
                     "MCID": f"{inst.mcid:g}", "MDC": "-" if inst.mdc is None else
                     f"{inst.mdc:g}", "source": inst.source, "scores": r.scores,
                     "patients": r.patients})
    table = pd.DataFrame(rows, columns=["instrument", "range", "better", "MCID", "MDC", "source",
                                        "scores", "patients"]).set_index("instrument")
    return suppress_small_cells(table, ["scores", "patients"], threshold=MIN_CELL,
                                derived={"patients": ["scores"]})
