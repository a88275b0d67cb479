"""Output safety: defuse spreadsheet formulas in exported cells, make text inert in HTML."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

# --------------------------------------------------------------------------------------------
# Export and HTML safety
# --------------------------------------------------------------------------------------------

#: Leading characters that make a spreadsheet treat a cell as a formula (OWASP CSV injection),
#: plus their full-width forms, which some spreadsheet locales also accept.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _neutralize(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def neutralize_formulas(data: pd.DataFrame) -> pd.DataFrame:
    """Defuse spreadsheet formulas in the text cells of a table about to be exported.

    Parameters
    ----------
    data : pandas.DataFrame
        The table to write to CSV or XLSX. Not modified.

    Returns
    -------
    pandas.DataFrame
        A copy in which every string cell (and string column label) starting with ``=``, ``+``,
        ``-``, ``@``, a tab or a carriage return (or a full-width ``＝ ＋ － ＠``) is prefixed with
        a single quote ``'``. Numeric columns are untouched, so a negative number stored as a
        number stays a number; a negative number stored as *text* is quoted, as OWASP advises.

    Notes
    -----
    Follows the OWASP "CSV Injection" guidance: prefix the cell with ``'`` so the spreadsheet
    shows it as text. Only object, string and categorical columns are inspected; a categorical
    column comes back as ``object``.
    """
    out = data.copy()
    for column in out.columns:
        col = out[column]
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.astype(object)
        elif not (col.dtype == object or isinstance(col.dtype, pd.StringDtype)):
            continue
        fixed = [_neutralize(v) for v in col.tolist()]
        if fixed != col.tolist() or col is not out[column]:
            out[column] = pd.Series(fixed, index=out.index, dtype=col.dtype)
    out.columns = [_neutralize(c) for c in out.columns]
    return out


def escape_text(value: Any) -> str:
    """Make a value inert in HTML and in Jinja-style templates.

    Parameters
    ----------
    value : object
        Anything; ``None`` and missing values become ``""``, others ``str(value)``.

    Returns
    -------
    str
        ``html.escape(text, quote=True)`` with ``{`` and ``}`` also replaced by ``&#123;`` and
        ``&#125;``, so ``<script>``, ``<img onerror=...>``, ``{{7*7}}`` and ``{% ... %}`` render
        as literal text and are never evaluated by a template engine.
    """
    if value is None or (not isinstance(value, str) and _is_missing(value)):
        return ""
    text = html.escape(str(value), quote=True)
    return text.replace("{", "&#123;").replace("}", "&#125;")


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


