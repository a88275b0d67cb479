"""HIPAA data regimes: check a visit table against its declared regime (limited data set or Safe Harbor)."""

from __future__ import annotations

import re
from collections.abc import Hashable

import pandas as pd

from outcomes.errors import InputError

# --------------------------------------------------------------------------------------------
# Data regimes
# --------------------------------------------------------------------------------------------

#: Regimes a profile can declare. A limited data set may keep day-level dates, 5-digit ZIP codes
#: and exact ages; Safe Harbor data may keep years only, 3-digit ZIPs and ages top-coded at 90.
REGIMES = ("limited_data_set", "safe_harbor")

#: 3-digit ZIP prefixes with 20,000 people or fewer (HHS de-identification guidance, 2000 census):
#: under Safe Harbor they must be reported as ``000``.
RESTRICTED_ZIP3 = frozenset(
    "036 059 063 102 203 556 692 790 821 823 830 831 878 879 884 890 893".split()
)
_ZIP_COLUMN = re.compile(r"^(zip|zipcode|zip5|zip3|postal|postalcode|postcode)$")
_ZIP5 = re.compile(r"^\d{5}(-?\d{4})?$")
_YEAR_ONLY = re.compile(r"^\d{4}(\.0)?$")
#: Age at or above which Safe Harbor requires aggregation; the schema top-codes ages at 90, so
#: 90 itself is read as the "90 or older" category and only larger values are rejected.
_AGE_TOP_CODE = 90


def _flat(column: Hashable) -> str:
    return re.sub(r"[^a-z0-9]", "", str(column).lower())


def _identifier_problems(data: pd.DataFrame) -> list[str]:
    from outcomes.schema import is_direct_identifier  # pandera: import only when needed

    return [
        f"column {col!r} is a direct identifier; remove it from the export"
        for col in data.columns
        if is_direct_identifier(col)
    ]


def _is_date_column(column: Hashable, values: pd.Series) -> bool:
    name = str(column).lower()
    return (
        pd.api.types.is_datetime64_any_dtype(values)
        or name == "date"
        or name.endswith(("_date", "date", "_dt"))
    )


def _has_day_precision(values: pd.Series) -> bool:
    """True when a date column holds anything finer than a year."""
    present = values.dropna()
    if present.empty:
        return False
    if pd.api.types.is_datetime64_any_dtype(present):
        return bool(((present.dt.month != 1) | (present.dt.day != 1)).any())
    if pd.api.types.is_numeric_dtype(present):
        return bool((present > 9999).any())  # years are 4 digits; anything else is a serial date
    text = present.astype(str).str.strip()
    return not bool(text.str.match(_YEAR_ONLY).all())


def _safe_harbor_problems(data: pd.DataFrame) -> list[str]:
    problems = []
    for column in data.columns:
        values = data[column]
        if _is_date_column(column, values) and _has_day_precision(values):
            problems.append(
                f"column {column!r} has dates finer than a year; Safe Harbor allows the year only"
            )
        elif _ZIP_COLUMN.match(_flat(column)):
            problems.extend(_zip_problems(column, values))
        elif _flat(column) == "age":
            ages = pd.to_numeric(values, errors="coerce")
            if bool((ages > _AGE_TOP_CODE).any()):
                problems.append(
                    f"column {column!r} has ages over 89; Safe Harbor requires them top-coded at 90"
                )
    return problems


def _zip_problems(column: Hashable, values: pd.Series) -> list[str]:
    text = values.dropna().astype(str).str.strip()
    if text.str.match(_ZIP5).any():
        return [f"column {column!r} has 5-digit ZIP codes; Safe Harbor allows the first 3 digits"]
    if text.str[:3].isin(RESTRICTED_ZIP3).any():
        return [
            f"column {column!r} has 3-digit ZIP prefixes of areas under 20,000 people; "
            "Safe Harbor requires 000 for them"
        ]
    return []


def check_regime(
    data: pd.DataFrame, regime: str = "limited_data_set", *, strict: bool = False
) -> list[str]:
    """Check a visit table against the HIPAA data regime its profile declares.

    Parameters
    ----------
    data : pandas.DataFrame
        Visits with canonical column names (:data:`outcomes.schema.VISIT_COLUMNS`), possibly a
        ``zip`` column. Not modified.
    regime : {"limited_data_set", "safe_harbor"}
        ``limited_data_set`` (default) allows day-level dates, 5-digit ZIPs and exact ages;
        ``safe_harbor`` allows none of them.
    strict : bool, default False
        Raise :class:`~outcomes.errors.InputError` listing every problem instead of returning them.

    Returns
    -------
    list of str
        One message per problem, naming the column and never a value; empty when the table
        fits the regime.

    Notes
    -----
    Under both regimes a column whose name is a direct identifier
    (:func:`outcomes.schema.is_direct_identifier`) is a problem. Under Safe Harbor
    (45 CFR 164.514(b)(2)): any date column holding more than a year (a datetime that is not
    1 January, or text that is not a 4-digit year); a ZIP column holding 5-digit codes or one of
    the 17 restricted 3-digit prefixes; an ``age`` over 90 (the schema top-codes ages at 90, so
    90 is read as "90 or older").
    """
    if regime not in REGIMES:
        raise InputError(f"regime: unknown data regime {regime!r}; use one of {', '.join(REGIMES)}")
    problems = _identifier_problems(data)
    if regime == "safe_harbor":
        problems += _safe_harbor_problems(data)
    if strict and problems:
        raise InputError(f"data does not fit the {regime} regime: " + "; ".join(problems))
    return problems


