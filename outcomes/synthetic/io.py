"""Write a synthetic export (CSV / XLSX / Parquet) and its truth JSON. Private to ``synthetic``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd

from outcomes.synthetic.messy import RAGGED_EXTRA

FILE_ONLY_KINDS = ("bom", "ragged_row")


def write_frame(frame: pd.DataFrame, path: Path, messy: dict | None) -> None:
    """Write ``frame`` by extension; a messy CSV gets its BOM, blank lines and ragged rows."""
    suffix = path.suffix.lower()
    if messy is not None:
        for kind in FILE_ONLY_KINDS:
            messy[kind]["written"] = suffix == ".csv"
    if suffix == ".csv" and messy is not None:
        _write_messy_csv(frame, path, messy)
    elif suffix == ".csv":
        frame.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")
    elif suffix == ".xlsx":
        frame.to_excel(path, index=False, engine="openpyxl")
    else:
        frame.to_parquet(path, index=False)


def _write_messy_csv(frame: pd.DataFrame, path: Path, messy: dict) -> None:
    blank = dict(zip(messy["blank_row"]["rows"], messy["blank_row"]["forms"], strict=True))
    ragged = set(messy["ragged_row"]["rows"])
    width = len(frame.columns)
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(frame.columns)
        for i, row in enumerate(frame.itertuples(index=False, name=None)):
            if i in blank:
                fh.write("\n" if blank[i] == "empty_line" else "," * (width - 1) + "\n")
                continue
            cells = ["" if v is None or v is pd.NA else v for v in row]
            writer.writerow([*cells, RAGGED_EXTRA] if i in ragged else cells)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def episodes_to_json(episodes: pd.DataFrame, limit: int) -> dict | str:
    """Column-oriented episode truth, or a note when there are more than ``limit`` episodes."""
    if len(episodes) > limit:
        return (f"omitted: {len(episodes)} episodes (more than {limit}); call"
                " outcomes.generate_export() with the same arguments to get them")
    return {c: episodes[c].tolist() for c in episodes.columns}


def write_truth(truth: dict, path: Path, limit: int) -> None:
    """Write the truth dict as deterministic, indented JSON."""
    out = dict(truth)
    out["episodes"] = episodes_to_json(truth["episodes"], limit)
    text = json.dumps(_jsonable(out), indent=1, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
