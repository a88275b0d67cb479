"""Billing and diagnosis codes as EMRs write them -> the canonical spelling.

CPT codes come as comma, semicolon, slash or space separated lists (``"97162, 97110"``); the
store keeps them semicolon-separated (``"97162;97110"``). ICD-10 codes come with or without the
dot (``M7631`` / ``m76.31``); the store keeps ``M76.31``. Text that is not a code list is left
as it is, for cleaning to judge. DataFrame in, new DataFrame out.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["normalize_cpt", "normalize_icd10", "normalize_codes"]

_STR = pd.StringDtype("pyarrow")
#: A CPT/HCPCS code (5 characters, optional 2-character modifier after a hyphen).
_CPT_LIST = r"^\s*[0-9A-Z]{5}(-[0-9A-Z]{2})?(\s*[,;/ ]\s*[0-9A-Z]{5}(-[0-9A-Z]{2})?)*\s*$"
#: An ICD-10 code without its dot: letter, two characters, then up to four more.
_ICD_NO_DOT = r"^([A-Z][0-9][0-9A-Z])([0-9A-Z]{1,4})$"


def normalize_cpt(values: pd.Series) -> pd.Series:
    """Comma/slash/space separated CPT lists -> ``;``-separated; other text unchanged."""
    text = values.astype(_STR)
    is_list = text.str.upper().str.match(_CPT_LIST).fillna(False).astype(bool)
    joined = text.str.upper().str.strip().str.replace(r"\s*[,;/ ]\s*", ";", regex=True)
    return joined.where(is_list, text).astype(_STR)


def normalize_icd10(values: pd.Series) -> pd.Series:
    """Upper case, trimmed, the dot after the third character restored (``m7631`` -> ``M76.31``)."""
    text = values.astype(_STR).str.strip().str.upper()
    return text.str.replace(_ICD_NO_DOT, r"\1.\2", regex=True).astype(_STR)


def normalize_codes(frame: pd.DataFrame) -> pd.DataFrame:
    """``cpt_codes`` and ``icd10`` of a canonical text frame in their canonical spelling.

    Each distinct text is normalised once (a few hundred code lists in a million visits); a
    column already spelled canonically is kept as it is rather than rebuilt row by row.
    """
    out = frame.copy(deep=False)
    for col, func in (("cpt_codes", normalize_cpt), ("icd10", normalize_icd10)):
        if col in out:
            codes, uniques = pd.factorize(out[col], use_na_sentinel=True)
            uniques = pd.Series(uniques, dtype=_STR)
            fixed = func(uniques)
            if fixed.equals(uniques):
                out[col] = out[col].astype(_STR)
            else:
                out[col] = pd.Series(fixed.array.take(codes, allow_fill=True), index=out.index,
                                     dtype=_STR)
    return out
