"""Table 1: baseline characteristics by group, with standardized mean differences.

:func:`table_one` returns numbers at full precision in a tidy frame; :func:`format_table_one`
rounds them into the familiar human-readable table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from outcomes.errors import InputError
from outcomes.models import pooled_sd

__all__ = ["table_one", "format_table_one", "row_label"]

_STAT_COLUMNS = ("n", "missing", "mean", "sd", "median", "q1", "q3", "count", "pct")


def table_one(
    data: pd.DataFrame,
    group: str,
    columns: Sequence[str],
    *,
    categorical: Sequence[str] | None = None,
    nonnormal: Sequence[str] | None = None,
    order: Sequence | None = None,
) -> pd.DataFrame:
    """Baseline characteristics by ``group`` with standardized mean differences (SMD).

    Parameters
    ----------
    data : DataFrame
        One row per subject (episode).
    group : str
        Grouping column (e.g. ``arm``); rows where it is missing are dropped.
    columns : sequence of str
        Variables to describe, in display order.
    categorical : sequence of str, optional
        Variables to show as n (%). Default: non-numeric and boolean columns, and numeric
        columns whose values are all 0/1 (shown as the share of 1).
    nonnormal : sequence of str, optional
        Continuous variables to summarise by median [Q1, Q3] instead of mean (SD).
    order : sequence, optional
        Group levels in display order; default sorted. With two groups the SMD is
        ``order[1]`` minus ``order[0]``.

    Returns
    -------
    DataFrame
        Long format, one row per (variable, level, group): ``variable, level`` (NA for
        continuous variables; the level for categorical ones), ``type`` (``continuous``,
        ``nonnormal``, ``binary``, ``categorical``), ``group``, ``n`` (non-missing), ``missing``,
        ``mean, sd, median, q1, q3`` (continuous), ``count, pct`` (categorical; pct of
        non-missing, 0-100), ``smd`` (NaN with more than two groups). The first rows
        (``variable == "n"``) hold each group's size.

    Notes
    -----
    SMD, for two groups (as R ``tableone`` and Austin 2009, Stat Med 28:3083):

    * continuous (also for ``nonnormal``): ``(mean_1 - mean_0) / sqrt((s_1^2 + s_0^2) / 2)``
      with unweighted SDs (the WeightIt / cobalt convention for continuous covariates);
    * binary (0/1): ``(p_1 - p_0) / sqrt((p_1 (1 - p_1) + p_0 (1 - p_0)) / 2)``, the standard
      SMD for proportions (cobalt's ``bal.tab`` instead reports the raw difference);
    * categorical with k levels: Yang & Dalton 2012 (SAS Global Forum 335-2012),
      ``sqrt(T' S^-1 T)`` with ``T = p_1 - p_0`` over levels 2..k and ``S`` the average of the
      two groups' multinomial covariance matrices; non-negative. For two levels it equals the
      absolute binary SMD.

    Binary and categorical SMDs are signed only for binary (0/1) variables. Checked against
    the WeightIt README (lalonde, re74 SMD -0.5958), Hernan & Robins *What If* Table 12.1
    (NHEFS) and the ``tableone`` package (Pollard et al. 2018) on NHEFS.
    """
    columns = list(columns)
    _check(data, group, columns)
    df = data[data[group].notna()]
    levels = list(order) if order is not None else sorted(df[group].unique().tolist())
    kinds = _kinds(df, columns, set(categorical or ()), set(nonnormal or ()))
    parts = [_size_rows(df, group, levels)]
    for col in columns:
        parts.append(_describe(df, group, levels, col, kinds[col]))
    out = pd.concat(parts, ignore_index=True)
    out.attrs.update(group=group, levels=levels)
    return out


def format_table_one(table: pd.DataFrame, *, digits: int = 1, smd_digits: int = 3) -> pd.DataFrame:
    """Round a :func:`table_one` frame into a human-readable wide table.

    Returns
    -------
    DataFrame
        Index: row labels (``"age, mean (SD)"``, ``"sex = F, n (%)"``); one string column per
        group, then ``SMD`` (on the first row of each variable).
    """
    levels = table.attrs.get("levels") or list(dict.fromkeys(table["group"]))
    rows: dict[str, dict[str, str]] = {}
    seen: set[str] = set()
    for _, r in table.iterrows():
        label = row_label(r)
        rows.setdefault(label, {"SMD": ""})[str(r["group"])] = _cell(r, digits)
        if r["variable"] not in seen and pd.notna(r["smd"]):  # once per variable
            rows[label]["SMD"] = f"{r['smd']:.{smd_digits}f}"
        seen.add(r["variable"])
    out = pd.DataFrame.from_dict(rows, orient="index")
    return out[[*map(str, levels), "SMD"]]


# --------------------------------------------------------------------------- helpers


def _check(data: pd.DataFrame, group: str, columns: list[str]) -> None:
    missing = [c for c in [group, *columns] if c not in data.columns]
    if missing:
        raise InputError(f"table_one: missing column(s) {', '.join(missing)}")
    if data[group].nunique() < 2:
        raise InputError(f"table_one: column {group!r} needs at least 2 groups")


def _kinds(df: pd.DataFrame, columns: list[str], categorical: set, nonnormal: set
           ) -> dict[str, str]:
    kinds = {}
    for col in columns:
        s = df[col]
        numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        if col in categorical or not numeric:
            kinds[col] = "categorical"
        elif s.dropna().isin([0, 1]).all() and s.notna().any():
            kinds[col] = "binary"
        else:
            kinds[col] = "nonnormal" if col in nonnormal else "continuous"
    return kinds


def _size_rows(df: pd.DataFrame, group: str, levels: list) -> pd.DataFrame:
    sizes = df[group].value_counts()
    return pd.DataFrame({"variable": "n", "level": pd.NA, "type": "n", "group": levels,
                         "n": [int(sizes.get(g, 0)) for g in levels], "missing": 0})


def _describe(df: pd.DataFrame, group: str, levels: list, col: str, kind: str) -> pd.DataFrame:
    if kind in ("continuous", "nonnormal"):
        out = _continuous(df, group, levels, col)
    else:
        out = _categorical(df, group, levels, col, kind)
    out.insert(0, "variable", col)
    out.insert(2, "type", kind)
    out["smd"] = _smd(df, group, levels, col, kind) if len(levels) == 2 else np.nan
    return out


def _continuous(df: pd.DataFrame, group: str, levels: list, col: str) -> pd.DataFrame:
    rows = []
    for g in levels:
        x = df.loc[df[group] == g, col].astype(float)
        v = x.dropna()
        rows.append({"level": pd.NA, "group": g, "n": len(v), "missing": int(x.isna().sum()),
                     "mean": v.mean(), "sd": v.std(ddof=1), "median": v.median(),
                     "q1": v.quantile(0.25), "q3": v.quantile(0.75)})
    return pd.DataFrame(rows)


def _categorical(df: pd.DataFrame, group: str, levels: list, col: str, kind: str
                 ) -> pd.DataFrame:
    values = df[col].dropna()
    cats = [1] if kind == "binary" else sorted(values.unique().tolist(), key=str)
    rows = []
    for g in levels:
        x = df.loc[df[group] == g, col]
        v = x.dropna()
        for c in cats:
            count = int((v == c).sum())
            rows.append({"level": c, "group": g, "n": len(v), "missing": int(x.isna().sum()),
                         "count": count, "pct": 100 * count / len(v) if len(v) else np.nan})
    return pd.DataFrame(rows)


def _smd(df: pd.DataFrame, group: str, levels: list, col: str, kind: str) -> float:
    x0 = df.loc[df[group] == levels[0], col].dropna()
    x1 = df.loc[df[group] == levels[1], col].dropna()
    if kind in ("continuous", "nonnormal"):
        x0, x1 = x0.astype(float), x1.astype(float)
        return _ratio(x1.mean() - x0.mean(), pooled_sd(x1, x0))
    if kind == "binary":
        p0, p1 = float((x0 == 1).mean()), float((x1 == 1).mean())
        return _ratio(p1 - p0, np.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2))
    return _smd_categorical(x0, x1)


def _smd_categorical(x0: pd.Series, x1: pd.Series) -> float:
    """Yang & Dalton (2012) multivariate SMD over levels 2..k."""
    cats = sorted(pd.concat([x0, x1]).unique().tolist(), key=str)
    if len(cats) < 2:
        return 0.0
    p0 = np.array([(x0 == c).mean() for c in cats[1:]])
    p1 = np.array([(x1 == c).mean() for c in cats[1:]])
    cov = (np.diag(p1) - np.outer(p1, p1) + np.diag(p0) - np.outer(p0, p0)) / 2
    t = p1 - p0
    return float(np.sqrt(max(t @ np.linalg.pinv(cov) @ t, 0.0)))


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else (0.0 if num == 0 else float("nan"))


def row_label(r: pd.Series) -> str:
    """The Table 1 row label of one long-format row (``age, mean (SD)``, ``prior_pt = 1, n (%)``)."""
    if r["type"] == "n":
        return "n"
    if r["type"] == "continuous":
        return f"{r['variable']}, mean (SD)"
    if r["type"] == "nonnormal":
        return f"{r['variable']}, median [Q1, Q3]"
    return f"{r['variable']} = {r['level']}, n (%)"


def _cell(r: pd.Series, digits: int) -> str:
    if r["type"] == "n":
        return f"{int(r['n'])}"
    if r["type"] == "continuous":
        return f"{r['mean']:.{digits}f} ({r['sd']:.{digits}f})"
    if r["type"] == "nonnormal":
        return f"{r['median']:.{digits}f} [{r['q1']:.{digits}f}, {r['q3']:.{digits}f}]"
    return f"{int(r['count'])} ({r['pct']:.{digits}f})"
