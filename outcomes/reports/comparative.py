"""Comparative-analysis sections of the reports (target-trial framing), DataFrame in and out.

Re-exported by :mod:`outcomes.reports`; the comparative notebook calls them as ``rp.<name>``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import pandas as pd

from outcomes.errors import ReportError
from outcomes.privacy import SUPPRESSED
from outcomes.reports.data import MIN_CELL, QUARTER_RE, is_small, parse_quarter

__all__ = [
    "PS_COVARIATES", "TABLE_ONE_COLUMNS", "STRATEGIES", "parse_exposure_rule",
    "episodes_for_rule", "parse_period", "protocol_table", "comparison_problem", "MIN_ARM",
    "MIN_COMPLETERS",
    "cohort_flow", "analysis_cohort", "table_one_display", "balance_display", "time_to_mcid",
    "gate_notice",
    "gated", "therapist_clustering", "propensity_frame", "cohort_scores", "trajectory_weeks",
    "fit_trajectories",
    "trajectory_predictions", "format_tidy", "survival_data", "suppress_km", "limitations",
]

# --------------------------------------------------------------------------------------------
# Comparative analysis (target-trial framing)
# --------------------------------------------------------------------------------------------
#: Baseline covariates of the propensity model and Table 1.
PS_COVARIATES = ("age", "C(sex)", "C(payer)", "symptom_duration_weeks", "prior_pt",
                 "prior_injection", "surgery_recommended")
#: Table 1 variables (plain columns).
TABLE_ONE_COLUMNS = ("age", "sex", "payer", "symptom_duration_weeks", "prior_pt",
                     "prior_injection", "surgery_recommended")
#: The two strategies compared, comparator first.
STRATEGIES = ("traditional", "pri")


_RULE = re.compile(r"^first(\d{1,2})(\+eval)?$")


def parse_exposure_rule(rule: str) -> tuple[int, bool]:
    """``"first3"`` -> (3, False); ``"first2+eval"`` -> (2, True): the arm's baseline window.

    The window is the first N treatment visits (``+eval``: counting the evaluation as the first),
    as :func:`outcomes.episodes.build_episodes` takes it (``baseline_visits``,
    ``baseline_includes_evaluation``).
    """
    match = _RULE.match(str(rule).strip().lower())
    if not match or not 1 <= int(match.group(1)) <= 10:
        raise ReportError("exposure_rule: expected 'firstN' or 'firstN+eval' with N from 1 to 10 "
                          "(the baseline window of treatment visits that sets the arm)")
    return int(match.group(1)), match.group(2) is not None


def episodes_for_rule(database: str, rule: str) -> pd.DataFrame:
    """The episode table with arms assigned by exposure ``rule`` (see :func:`parse_exposure_rule`).

    The store's episodes use the default window (first 3 treatment visits); any other rule
    rebuilds the episodes from the stored visits and techniques. Cached per kernel.
    """
    from outcomes.reports.data import load_report_data

    n, with_eval = parse_exposure_rule(rule)
    data = load_report_data(database)
    if (n, with_eval) == (3, False):
        return data["episodes"]
    return _rebuilt(str(database), n, with_eval, id(data["visits"]))


@lru_cache(maxsize=4)
def _rebuilt(database: str, n: int, with_eval: bool, _key: int) -> pd.DataFrame:
    from outcomes.episodes import build_episodes
    from outcomes.reports.data import load_report_data
    from outcomes.store import load_techniques

    visits = load_report_data(database)["visits"]
    return build_episodes(visits, load_techniques(database), baseline_visits=n,
                          baseline_includes_evaluation=with_eval)


def parse_period(period: str) -> tuple[str | None, str | None]:
    """``"all"`` -> (None, None); ``"2025Q1-2026Q3"`` -> first and last quarter (inclusive)."""
    if str(period).strip().lower() == "all":
        return None, None
    parts = str(period).split("-")
    if len(parts) == 2 and QUARTER_RE.match(parts[0]) and QUARTER_RE.match(parts[1]):
        first, last = parse_quarter(parts[0]), parse_quarter(parts[1])
        if first <= last:
            return first, last
    raise ReportError("period: expected 'all' or 'YYYYQn-YYYYQn' (first-last evaluation quarter)")


def protocol_table(condition: str, period: str, outcome: str, exposure_rule: str,
                   estimand: str) -> pd.DataFrame:
    """The target-trial protocol the comparative analysis emulates, as a two-column table."""
    from outcomes.instruments import INSTRUMENTS
    from outcomes.schema import label_of

    inst = INSTRUMENTS[outcome]
    rows = {
        "eligibility": f"episodes of care for {label_of('condition', condition)} starting with an initial evaluation "
                       f"(CPT 97161-97163) with an intake {inst.name} score; evaluation in "
                       f"{'any quarter' if period == 'all' else period}",
        "time zero": "the initial evaluation (start of the episode)",
        "treatment strategies": "PRI-style care vs traditional PT, assigned from the "
                                f"techniques of the baseline window ({exposure_rule}); "
                                "mixed and unclassified episodes are excluded",
        "outcome": f"{inst.name} change from intake to discharge (MCID {inst.mcid:g} points); "
                   "time to reaching the MCID",
        "follow-up": "from the evaluation to discharge, or the last visit when no discharge "
                     "score was recorded (missing, handled in the sensitivity analysis)",
        "estimand": f"{estimand.upper()}: "
                    + ("average effect over all eligible patients" if estimand.lower() == "ate"
                       else "average effect among patients who received PRI-style care"),
        "analysis": "inverse probability of treatment weighting on baseline covariates; "
                    "results are shown only if the diagnostics gate passes",
    }
    return pd.DataFrame({"specification": rows}).rename_axis("element")


def cohort_flow(episodes: pd.DataFrame, condition: str, period: str,
                outcome: str) -> pd.DataFrame:
    """How many episodes each eligibility step keeps and removes, and why.

    Returns
    -------
    DataFrame
        ``step, remaining, excluded``; small counts shown as ``<11``.

    Notes
    -----
    Each step is a relation ``remaining[i-1] = remaining[i] + excluded[i]``: a hidden cell
    next to the two other shown cells of its relation would be their difference. So a hidden
    exclusion also hides the count remaining before it, and that hidden count the exclusion of
    its own step (the two hidden exclusions then add up to a shown difference, but cannot be
    told apart). An exclusion of 0 is shown and never hidden: it is often public (every
    quarter is in the period ``"all"``), so the counts remaining on either side of it are the
    same number, hidden or shown together. The cascade never hides the analysis cohort
    (Table 1 publishes it by arm), nor a count tied to it by exclusions of 0;
    a hidden exclusion between the cohort and the completers hides the completers here, but
    the numbers of the completer analyses may still give it (a residual limit).
    """
    from outcomes.privacy import suppress_small_cells

    steps = _cohort_steps(episodes, condition, period, outcome)
    rows, before = [], None
    for label, data in steps:
        rows.append({"step": label, "remaining": len(data),
                     "excluded": 0 if before is None else before - len(data)})
        before = len(data)
    table = pd.DataFrame(rows).set_index("step")
    out = suppress_small_cells(table, ["remaining", "excluded"], threshold=MIN_CELL)
    rem = (out["remaining"] == SUPPRESSED).tolist()
    exc = (out["excluded"] == SUPPRESSED).tolist()
    zero = (table["excluded"] == 0).tolist()
    fixed = [i >= len(rows) - 2 for i in range(len(rows))]  # published elsewhere
    for i in range(len(rows) - 2, 0, -1):  # a zero exclusion ties a count to the next one
        fixed[i - 1] = fixed[i - 1] or (fixed[i] and zero[i])
    for _ in range(2 * len(rows)):
        changed = False
        for i in range(1, len(rows)):
            if zero[i]:  # known to be 0 (period "all"): remaining[i-1] = remaining[i]
                j = i if rem[i - 1] else i - 1
                if rem[i - 1] != rem[i] and not fixed[j]:
                    rem[j] = changed = True
                continue
            if rem[i - 1] + rem[i] + exc[i] != 1:
                continue
            if not exc[i]:
                exc[i] = True
            elif not fixed[i - 1]:
                rem[i - 1] = True
            else:
                rem[i] = True
            changed = True
        if not changed:
            break
    out.loc[rem, "remaining"] = SUPPRESSED
    out.loc[exc, "excluded"] = SUPPRESSED
    return out


def _cohort_steps(episodes: pd.DataFrame, condition: str, period: str,
                  outcome: str) -> list[tuple[str, pd.DataFrame]]:
    first, last = parse_period(period)
    sq = episodes["start_date"].dt.to_period("Q").astype(str)
    in_period = pd.Series(True, index=episodes.index)
    if first is not None:
        in_period = (sq >= first) & (sq <= last)
    s1 = episodes
    s2 = s1[s1["condition"] == condition]
    s3 = s2[in_period.loc[s2.index]]
    s4 = s3[s3["status"] != "open"]
    s5 = s4[s4["arm"].isin(STRATEGIES)]
    s6 = s5[s5[f"{outcome}_intake"].notna()]
    s7 = s6[s6[f"{outcome}_discharge"].notna()]
    return [("all episodes in the store", s1), (f"condition = {condition}", s2),
            ("evaluation in the study period", s3), ("episode has ended (not open)", s4),
            ("PRI-style or traditional in the baseline window", s5),
            (f"intake {outcome.upper()} recorded (analysis cohort)", s6),
            (f"discharge {outcome.upper()} recorded (completers)", s7)]


def analysis_cohort(episodes: pd.DataFrame, condition: str, period: str,
                    outcome: str) -> pd.DataFrame:
    """Eligible episodes (see :func:`cohort_flow`), with or without a discharge score.

    Responder flags become 0.0 / 1.0 / NaN floats, the form the model functions take.
    """
    cohort = _cohort_steps(episodes, condition, period, outcome)[-2][1]
    flags = [c for c in cohort.columns if c.endswith("_responder")]
    return cohort.assign(**{c: cohort[c].astype("Float64").astype(float) for c in flags})


#: Smallest analysis cohort per arm (episodes with an intake score) for a comparative report,
#: and smallest number of completers per arm: below them the models are not worth fitting.
MIN_ARM, MIN_COMPLETERS = 20, 11


def comparison_problem(episodes: pd.DataFrame, condition: str, period: str,
                       outcome: str) -> str | None:
    """Why a comparative analysis cannot be run on these episodes, or None when it can."""
    cohort = analysis_cohort(episodes, condition, period, outcome)
    done = cohort[cohort[f"{outcome}_discharge"].notna()]
    for arm in STRATEGIES:
        if (cohort["arm"] == arm).sum() < MIN_ARM:
            return (f"fewer than {MIN_ARM} {condition} episodes in the {arm} arm "
                    "(with an intake score); a comparison would not be informative")
        if (done["arm"] == arm).sum() < MIN_COMPLETERS:
            return (f"fewer than {MIN_COMPLETERS} {condition} episodes with a discharge score "
                    f"in the {arm} arm")
    return None


def table_one_display(cohort: pd.DataFrame,
                      columns: tuple[str, ...] = TABLE_ONE_COLUMNS) -> pd.DataFrame:
    """Table 1 by arm with SMDs (:func:`outcomes.tables.table_one`), small cells as ``<11``.

    A categorical level (or either side of a binary variable) counted 1-10 times in an arm
    shows ``<11`` in place of ``n (%)``. When that leaves a single hidden level of a variable
    in an arm, the smallest other level is hidden too (else it is the arm's n minus the shown
    levels), and a variable with a hidden cell shows ``<11`` for its SMD (with the other arm's
    share, the SMD gives the hidden share back).

    Shares are of the non-missing values, so a count and its share give the number of
    non-missing values, and the arm's n minus it the number missing. When 1-10 values of a
    binary or categorical variable are missing in an arm, its cells there show the count
    without the share, a categorical variable has at least one level hidden (else the shown
    counts add up to the non-missing number), and the SMD is hidden.
    """
    from outcomes.tables import format_table_one, table_one

    data = cohort.assign(arm=cohort["arm"].astype(str))
    long = table_one(data, "arm", list(columns), order=list(STRATEGIES))
    wide = format_table_one(long)
    for variable, label, group in _small_table_one_cells(long):
        wide.loc[label, group] = SUPPRESSED
        _hide_smd(wide, long, variable)
    for variable, group in _small_missing(long):
        rows = _table_one_labels(long, variable)
        wide.loc[rows, group] = [c if c == SUPPRESSED else c.split(" (")[0]
                                 for c in wide.loc[rows, group]]
        _hide_smd(wide, long, variable)
    return wide


def balance_display(balance: pd.DataFrame, cohort: pd.DataFrame,
                    columns: tuple[str, ...] = TABLE_ONE_COLUMNS) -> pd.DataFrame:
    """``IPTWResult.balance`` for the Love plot, without what Table 1 hides.

    Before weighting, a binary covariate's standardized difference is computed from the two
    arms' shares: with one share shown in Table 1 (or 0), the plotted point gives the other,
    hidden count back. ``smd_before`` is therefore blanked (NaN, not drawn) for every
    covariate (``C(sex)[F]`` -> ``sex``) whose SMD :func:`table_one_display` hides. Weighted
    differences (``smd_after``) are kept: they rest on the weights, not on counts.
    """
    from outcomes.tables import table_one

    long = table_one(cohort.assign(arm=cohort["arm"].astype(str)), "arm", list(columns),
                     order=list(STRATEGIES))
    hidden = {v for v, _, _ in _small_table_one_cells(long)} | {
        v for v, _ in _small_missing(long)}
    base = balance["covariate"].astype(str).str.replace(r"^C\((.*?)\)(\[.*\])?$", r"\1",
                                                        regex=True)
    out = balance.copy()
    out.loc[base.isin(hidden).to_numpy(), "smd_before"] = float("nan")
    return out


def _hide_smd(wide: pd.DataFrame, long: pd.DataFrame, variable: str) -> None:
    smd_rows = [r for r in _table_one_labels(long, variable) if wide.loc[r, "SMD"] != ""]
    wide.loc[smd_rows, "SMD"] = SUPPRESSED


def _small_missing(long: pd.DataFrame) -> list[tuple[str, str]]:
    """``(variable, arm)`` of binary and categorical variables with 1-10 missing in the arm."""
    counted = long[long["type"].isin(["binary", "categorical"])]
    first = counted.groupby(["variable", "group"], sort=False)["missing"].first()
    return [(str(v), str(g)) for (v, g), m in first.items() if is_small(int(m))]


def _small_table_one_cells(long: pd.DataFrame) -> list[tuple[str, str, str]]:
    """``(variable, row label, arm)`` of the table-one cells to hide (primary + complementary)."""
    from outcomes.tables import row_label

    cells = []
    counted = long[long["type"].isin(["binary", "categorical"])]
    for (variable, group), part in counted.groupby(["variable", "group"], sort=False):
        counts = part["count"].astype(int).tolist()
        hide = [is_small(c) or (t == "binary" and is_small(int(n) - c))
                for c, n, t in zip(counts, part["n"], part["type"], strict=True)]
        # with 1-10 missing the shown levels must not add up to the non-missing number
        gap = (sum(hide) == 0 and is_small(int(part["missing"].iloc[0]))
               and (part["type"] == "categorical").all())
        if (sum(hide) == 1 and len(hide) > 1) or gap:
            shown = [i for i, h in enumerate(hide) if not h]
            shown = [i for i in shown if counts[i] > 0] or shown
            hide[min(shown, key=lambda i: counts[i])] = True
        cells += [(str(variable), row_label(r), str(group))
                  for (_, r), h in zip(part.iterrows(), hide, strict=True) if h]
    return cells


def _table_one_labels(long: pd.DataFrame, variable: str) -> list[str]:
    from outcomes.tables import row_label

    return list(dict.fromkeys(row_label(r) for _, r in long[long["variable"] == variable].iterrows()))


def time_to_mcid(scores: pd.DataFrame, cohort: pd.DataFrame, outcome: str = "nprs"
                 ) -> pd.DataFrame:
    """Days from the evaluation to the first visit reaching the MCID, censored at the last score.

    Parameters
    ----------
    scores : DataFrame
        Long visit scores (:func:`outcomes.visit_scores`): ``episode_id, day`` and ``outcome``.
    cohort : DataFrame
        Episodes with ``episode_id, arm`` and ``{outcome}_intake``.

    Returns
    -------
    DataFrame
        ``episode_id, arm, days, reached`` (1 = MCID reached at ``days``; 0 = censored at the
        last scored visit). Ceiling cases (``{outcome}_ceiling``) are left out.

    Notes
    -----
    A visit reaches the MCID when its improvement from intake is at least the instrument's MCID
    or, where defined, its relative MCID times the intake (as ``X_responder``).
    """
    from outcomes.instruments import INSTRUMENTS

    inst = INSTRUMENTS[outcome]
    eligible = cohort[~cohort[f"{outcome}_ceiling"].fillna(False).astype(bool)]
    base = eligible.set_index("episode_id")[f"{outcome}_intake"]
    s = scores[scores["episode_id"].isin(base.index) & scores[outcome].notna()
               & (scores["day"] > 0)]
    intake = s["episode_id"].map(base)
    gain = (s[outcome] - intake) * (1 if inst.higher_is_better else -1)
    hit = gain >= inst.mcid
    if inst.mcid_pct is not None:
        hit |= gain >= inst.mcid_pct * intake
    first = s[hit].groupby("episode_id")["day"].min()
    last = s.groupby("episode_id")["day"].max()
    out = pd.DataFrame({"episode_id": base.index})
    out["arm"] = out["episode_id"].map(eligible.set_index("episode_id")["arm"])
    out["reached"] = out["episode_id"].isin(first.index).astype(int)
    out["days"] = out["episode_id"].map(first).fillna(out["episode_id"].map(last))
    return out.dropna(subset=["days"]).reset_index(drop=True)


def gate_notice(gate: Any) -> pd.DataFrame:
    """The diagnostics verdict as a one-row table (``verdict``, ``detail``)."""
    verdict = "PASSED: results may be interpreted" if gate.interpretable else (
        "FAILED: effect estimates are withheld")
    return pd.DataFrame({"detail": [gate.label]},
                        index=pd.Index([verdict], name="diagnostics gate"))


def gated(table: pd.DataFrame, gate: Any) -> pd.DataFrame:
    """``table`` when the diagnostics gate passed; otherwise a notice that it is withheld."""
    if gate.interpretable:
        return table
    return pd.DataFrame({"result": ["withheld: the diagnostics gate failed ("
                                    + str(gate.label) + ")"]}, index=pd.Index([""]))


def therapist_clustering(cohort: pd.DataFrame, outcome: str = "nprs") -> pd.DataFrame:
    """Between-therapist share of the variance of the change score (ICC) and design effect.

    Returns
    -------
    DataFrame
        One row: ``therapists, episodes, tau2, sigma2, icc, mean_cluster_size, design_effect``;
        ``icc = tau2 / (tau2 + sigma2)`` from the REML one-way model of
        :func:`outcomes.models.therapist_estimates`, ``design effect = 1 + (m - 1) icc``.
    """
    from outcomes.models import therapist_estimates

    data = cohort[cohort[f"{outcome}_change"].notna()]
    est = therapist_estimates(data, f"{outcome}_change", kind="mean")
    tau2, sigma2 = est.attrs["tau2"], est.attrs["sigma2"]
    icc = tau2 / (tau2 + sigma2)
    m = len(data) / len(est)
    return pd.DataFrame([{"therapists": len(est), "episodes": len(data), "tau2": tau2,
                          "sigma2": sigma2, "icc": icc, "mean_cluster_size": m,
                          "design_effect": 1 + (m - 1) * icc}], index=pd.Index(["all"]))


def propensity_frame(cohort: pd.DataFrame, weighting: Any) -> pd.DataFrame:
    """``arm`` and propensity score ``ps`` of the weighted cohort (for the overlap plot)."""
    return pd.DataFrame({"arm": cohort["arm"], "ps": weighting.ps}).dropna()


def cohort_scores(visits: pd.DataFrame, cohort: pd.DataFrame) -> pd.DataFrame:
    """Long visit scores of the cohort's episodes (:func:`outcomes.visit_scores`)."""
    from outcomes.episodes import visit_scores

    return visit_scores(visits, cohort)


def trajectory_weeks(scores: pd.DataFrame, outcome: str = "nprs") -> int:
    """Last week with at least 11 scores in every arm (later weeks rest on a few episodes)."""
    data = scores[scores[outcome].notna()]
    counts = data.groupby(["week", "arm"]).size().unstack(fill_value=0)
    ok = counts[(counts >= MIN_CELL).all(axis=1)]
    return int(ok.index.max()) if len(ok) else 0


def fit_trajectories(scores: pd.DataFrame, outcome: str, max_week: int) -> Any:
    """Mixed model of the score over weeks by arm: ``outcome ~ week * C(arm)``.

    Random intercept and slope per episode (:func:`outcomes.models.fit_mixed`), weeks 0 to
    ``max_week`` (see :func:`trajectory_weeks`); traditional PT is the reference arm, so the
    ``week:...[T.pri]`` term is the difference in weekly slope.
    """
    from outcomes.models import fit_mixed

    data = scores[scores[outcome].notna() & (scores["week"] <= max_week)]
    return fit_mixed(data, f"{outcome} ~ week * C(arm, Treatment('traditional'))",
                     groups="episode_id", re_formula="~week", allow_nonconverged=True)


def trajectory_predictions(fit: Any, max_week: int) -> pd.DataFrame:
    """Population-average curve per arm from :func:`fit_trajectories`, weeks 0 to ``max_week``.

    Returns
    -------
    DataFrame
        ``week, arm, estimate, se, ci_low, ci_high`` (for :func:`outcomes.plots.plot_trajectories`).
    """
    grid = pd.DataFrame([(w, a) for a in STRATEGIES for w in range(max_week + 1)],
                        columns=["week", "arm"])
    pred = fit.predict(grid)
    return pd.concat([grid, pred.reset_index(drop=True)], axis=1)


#: Columns of tidy model tables shown to a reader (the rest stay in the audit notebook).
_TIDY_SHOWN = ("method", "term", "estimate", "se", "ci_low", "ci_high", "p", "n", "odds_ratio",
               "or_ci_low", "or_ci_high", "hr", "hr_ci_low", "hr_ci_high", "n_missing")


def format_tidy(table: pd.DataFrame, digits: int = 2, terms: str | None = None) -> pd.DataFrame:
    """A tidy model table for reading: key columns, rounded, indexed by method or term.

    Parameters
    ----------
    table : DataFrame
        Tidy result (``term, estimate, se, ci_low, ci_high, p`` ...).
    digits : int
        Decimals (p-values get 3).
    terms : str, optional
        Keep only terms containing this text (e.g. ``"arm"``: the treatment effect).

    Counts of episodes (``n``, ``n_missing``, ``episodes``) of 1-10 are shown as ``<11``, and
    so is an ``n`` 1-10 below the largest ``n`` of the table (their difference is a count: in
    the missing-data sensitivity table, the episodes without a discharge score).
    """
    from outcomes.privacy import suppress_small_cells

    out = table if terms is None else table[table["term"].astype(str).str.contains(
        terms, regex=False)]
    out = out[[c for c in out.columns if c in _TIDY_SHOWN] or list(out.columns)].copy()
    for col in out.columns:
        numeric = pd.to_numeric(out[col], errors="coerce")
        if col not in ("method", "term") and numeric.notna().sum() == out[col].notna().sum():
            out[col] = numeric.round(3 if col == "p" else digits)
    counts = [c for c in ("n", "n_missing", "episodes") if c in out.columns]
    if counts and out.index.is_unique:
        out = suppress_small_cells(out, counts, threshold=MIN_CELL)
    if "n" in out.columns:  # e.g. all episodes (LOCF, MI) minus completers = the missing
        n = pd.to_numeric(out["n"], errors="coerce")
        out.loc[(n.max() - n).between(1, MIN_CELL - 1).to_numpy(), "n"] = SUPPRESSED
    key = "method" if "method" in out.columns else ("term" if "term" in out.columns else None)
    return out.set_index(key) if key else out


def survival_data(scores: pd.DataFrame, cohort: pd.DataFrame, outcome: str = "nprs"
                  ) -> pd.DataFrame:
    """:func:`time_to_mcid` joined with the baseline covariates, for KM and Cox."""
    tt = time_to_mcid(scores, cohort, outcome)
    cols = ["episode_id", f"{outcome}_intake", "age", "symptom_duration_weeks", "prior_pt",
            "prior_injection", "surgery_recommended"]
    return tt.merge(cohort[[c for c in cols if c in cohort]], on="episode_id", how="left")


def suppress_km(table: pd.DataFrame, arm_sizes: pd.Series | None = None) -> pd.DataFrame:
    """KM medians per arm with counts of 1-10, and what they can be derived from, as ``<11``.

    Parameters
    ----------
    table : DataFrame
        :func:`outcomes.models.km_table` (``n, events, median, ci_low, ci_high`` per arm).
    arm_sizes : Series, optional
        Size of each arm as published elsewhere in the report (the analysis cohort of Table 1);
        ``arm size - n`` is the number left out of the KM analysis (ceiling cases, no score
        after the evaluation).

    Returns
    -------
    DataFrame
        ``n`` or ``events`` of 1-10 hide themselves and the median with its interval. Then
        ``events`` is hidden when ``n - events`` (the censored) numbers 1-10, and ``n`` when
        ``arm size - n`` does: a hidden count is never a shown count minus another.
    """
    from outcomes.privacy import suppress_small_cells

    out = suppress_small_cells(table, ["n", "events"], threshold=MIN_CELL,
                               derived={"n": ["median", "ci_low", "ci_high"],
                                        "events": ["median", "ci_low", "ci_high"]})
    n = pd.to_numeric(table["n"])
    parts = pd.DataFrame({"censored": n - pd.to_numeric(table["events"])}, index=table.index)
    if arm_sizes is not None:
        sizes = pd.Series(arm_sizes)
        sizes = pd.Series(sizes.to_numpy(), index=sizes.index.astype(str))
        sizes = sizes.reindex(table.index.astype(str).tolist())
        parts["left_out"] = (sizes.to_numpy(dtype=float) - n.to_numpy(dtype=float))
        parts["left_out"] = parts["left_out"].fillna(0)
    small = suppress_small_cells(parts, list(parts.columns), threshold=MIN_CELL) == SUPPRESSED
    out.loc[small["censored"].to_numpy(), "events"] = SUPPRESSED
    if "left_out" in small:
        out.loc[small["left_out"].to_numpy(), "n"] = SUPPRESSED
    return out


def limitations(flow: pd.DataFrame, gate: Any, sensitivity: pd.DataFrame | None,
                clustering: pd.DataFrame | None, weighting: Any) -> list[str]:
    """Limitations of this analysis, written from its own numbers.

    Effect estimates are quoted only when the diagnostics gate passed.
    """
    out = []
    remaining = pd.to_numeric(flow["remaining"], errors="coerce")
    cohort_n, completers = remaining.iloc[-2], remaining.iloc[-1]
    if pd.notna(cohort_n) and pd.notna(completers) and cohort_n > 0:
        share = 100 * (1 - completers / cohort_n)
        out.append(f"{share:.0f}% of the analysis cohort has no discharge score; the primary "
                   "analysis uses completers, and the sensitivity table shows how the answer "
                   "moves under other assumptions about the missing scores.")
    if not gate.interpretable:
        out.append("The diagnostics gate failed (" + str(gate.label) + "): the arms are not "
                   "comparable enough after weighting for an effect estimate to be read.")
    if weighting is not None:
        out.append(f"Equipoise: {100 * weighting.equipoise:.0f}% of episodes have a preference "
                   "score between 0.3 and 0.7; effective sample sizes "
                   + ", ".join(f"{k} {v:.0f}" for k, v in weighting.ess.items()) + ".")
    if sensitivity is not None and len(sensitivity) and gate.interpretable:
        est = sensitivity["estimate"].astype(float)
        out.append(f"Across missing-data methods the estimate ranges from {est.min():.2f} to "
                   f"{est.max():.2f} points.")
    if clustering is not None and len(clustering):
        icc = float(clustering["icc"].iloc[0])
        out.append(f"Therapists explain about {100 * icc:.0f}% of the variance in change "
                   "(ICC); standard errors that ignore this are too small.")
    out.append("Observational data: unmeasured confounding (for example, why a patient was "
               "referred for PRI-style care) can bias any of these estimates.")
    return out
