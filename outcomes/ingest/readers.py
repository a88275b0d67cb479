"""Readers of export files (CSV, XLSX, Parquet) into text frames; private to ``ingest``.

Every problem with a whole file raises :class:`~outcomes.errors.InputError` naming the file
(and column), never a cell value. Cells come back as text exactly as written; parsing is
:mod:`outcomes.ingest.clean`'s job.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from outcomes.errors import InputError
from outcomes.schema import VISIT_COLUMNS, is_direct_identifier

if TYPE_CHECKING:
    from outcomes.ingest.profile import Profile

_STR = pd.StringDtype("pyarrow")
T = TypeVar("T")
_CHUNK = 1 << 23

def reject(path: Path, message: str) -> InputError:
    return InputError(f"{path.name}: {message}")


def scan_file(path: Path, encoding: str | None) -> str:
    """Stream the file once: sha256, and (for text) check every byte decodes as ``encoding``.

    Raises :class:`InputError` naming the byte offset of the first invalid byte; characters are
    never replaced.
    """
    import codecs

    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder(encoding)("strict") if encoding else None
    offset = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                if decoder is not None:
                    _decode(decoder, chunk, offset, path, encoding, final=False)
                offset += len(chunk)
        if decoder is not None:
            _decode(decoder, b"", offset, path, encoding, final=True)
    except OSError as exc:
        raise reject(path, f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    return digest.hexdigest()


def read_scanned(path: Path, encoding: str | None, read: Callable[[], T]) -> tuple[str, T]:
    """``(scan_file(path, encoding), read())``, the scan running on a worker thread meanwhile.

    Hashing releases the GIL, as does the Arrow CSV reader, so the two passes over the file
    overlap instead of adding up. An encoding problem found by the scan is raised in preference
    to whatever the reader made of the same bytes (the scan's message names the byte offset).
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outcomes-scan") as pool:
        scan = pool.submit(scan_file, path, encoding)
        try:
            out = read()
        except Exception:
            scan.result()  # the scan's InputError, when there is one, comes first
            raise
        return scan.result(), out


def _decode(decoder, chunk: bytes, offset: int, path: Path, encoding: str, final: bool) -> None:
    pending = len(decoder.getstate()[0])
    try:
        decoder.decode(chunk, final=final)
    except UnicodeDecodeError as exc:
        at = offset - pending + exc.start
        raise reject(path, f"byte offset {at} is not valid {encoding}; declare the file's "
                          "encoding in the profile (encoding = ...)") from None


def file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    if suffix in (".xlsx", ".xlsm"):
        return "xlsx"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise reject(path, f"unsupported file type {suffix or '(none)'}; use .csv, .xlsx or .parquet")


def check_header(path: Path, names: list[str]) -> None:
    """Reject duplicate, empty or direct-identifier column names (names only, no values)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if name.strip() == "":
            raise reject(path, f"column {i} has no name in the header row")
        if name in seen:
            # a wrong header_row makes a data row the header: name a cell only when it is
            # one of our column names, never a value that may be patient data
            shown = f"{name!r}" if name in VISIT_COLUMNS else f"(columns {seen[name]} and {i})"
            raise reject(path, f"duplicate column name {shown} in the header row "
                               "(is the profile's header_row right?)")
        seen[name] = i
        if is_direct_identifier(name):
            raise reject(path, f"column {name!r} is a direct identifier; remove it from the "
                              "export (records must arrive de-identified)")


# --- CSV -------------------------------------------------------------------------------------


def _header_line(path: Path, prof: Profile) -> str:
    """The header row's text (decoded), for names and delimiter detection."""
    with path.open("r", encoding=_py_encoding(prof.encoding), newline="") as fh:
        for _ in range(prof.header_row - 1):
            fh.readline()
        return fh.readline().rstrip("\r\n")


def _py_encoding(encoding: str) -> str:
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def _arrow_encoding(encoding: str) -> str:
    """Arrow's own name for UTF-8 (``utf8``): any other spelling makes pyarrow transcode the
    file through Python first (about 20 % of the read). The bytes were already checked by
    :func:`scan_file`, and Arrow validates UTF-8 in text columns itself."""
    return "utf8" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def detect_delimiter(header: str) -> str:
    """The delimiter of a header line among ``,`` ``;`` tab ``|`` (csv.Sniffer; default ``,``)."""
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


#: Bytes per Arrow CSV block; blocks are parsed in parallel.
CSV_BLOCK_BYTES = 1 << 24


def read_csv_text(path: Path, prof: Profile):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = _header_line(path, prof)
    if header.strip() == "":
        raise reject(path, f"row {prof.header_row} (the header row) is empty")
    delim = prof.delimiter or detect_delimiter(header)
    names = next(csv.reader([header], delimiter=delim))
    check_header(path, names)
    bad: list[tuple[int | None, str, str]] = []

    def on_invalid(row) -> str:
        bad.append((None, row.text, "blank" if row.text.strip(" \t\r") == "" else "ragged"))
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(skip_rows=prof.header_row, column_names=names,
                                           encoding=_arrow_encoding(prof.encoding),
                                           block_size=CSV_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=delim, newlines_in_values=True,
                                             ignore_empty_lines=False,
                                             invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.large_string() for n in names}, strings_can_be_null=False,
                quoted_strings_can_be_null=False, null_values=[]),
        )
    except (pa.ArrowInvalid, pa.ArrowException, UnicodeDecodeError):
        raise reject(path, "could not be parsed as CSV (unbalanced quotes or broken rows?)") from None
    frame = table.to_pandas(types_mapper={pa.large_string(): _STR}.get)  # zero-copy
    del table
    frame.index = _record_numbers(path, prof, delim, len(names), len(frame), bad)
    return frame, bad, delim, prof.delimiter is None


def _record_numbers(path: Path, prof: Profile, delim: str, width: int, n_ok: int,
                    bad: list) -> pd.Index:
    """Spreadsheet row numbers of the parsed records (header_row + record ordinal).

    Arrow skips ragged records without saying where they were; when there are any, one
    streaming pass of Python's csv reader locates them (same quoting rules).
    """
    first = prof.header_row + 1
    if not bad:
        return pd.RangeIndex(first, first + n_ok)
    ok_rows, bad_rows = [], []
    with path.open("r", encoding=_py_encoding(prof.encoding), newline="") as fh:
        for _ in range(prof.header_row):
            next(csv.reader(fh, delimiter=delim), None)
        for i, rec in enumerate(csv.reader(fh, delimiter=delim), start=first):
            if len(rec) == width or rec == []:
                ok_rows.append(i)
            else:
                bad_rows.append((i, tuple(rec)))
    if len(ok_rows) != n_ok or len(bad_rows) != len(bad):
        raise reject(path, "rows could not be split into columns unambiguously "
                          "(check quoting and the delimiter)")
    bad[:] = _pair_bad_rows(bad_rows, bad, delim)
    return pd.Index(ok_rows, dtype="int64")


def _pair_bad_rows(located: list[tuple[int, tuple]], reported: list, delim: str) -> list:
    """Give each skipped record found by the csv pass (row number, cells) its Arrow text.

    Arrow parses blocks in parallel, so its skipped-row callbacks do not arrive in file order
    on files bigger than one block: texts are paired with rows by their cells, not by position
    (same cells, same text). A row whose text cannot be paired gets its cells joined by the
    delimiter instead, so a row number never shows another row's text.
    """
    from collections import defaultdict, deque

    texts: dict[tuple, deque] = defaultdict(deque)
    for _, text, kind in reported:
        cells = next(csv.reader([text.rstrip("\r\n")], delimiter=delim), [])
        texts[tuple(cells)].append((text, kind))
    out = []
    for row, cells in located:
        if texts.get(cells):
            text, kind = texts[cells].popleft()
        else:
            text = delim.join(cells)
            kind = "blank" if text.strip(" \t\r") == "" else "ragged"
        out.append((row, text, kind))
    return out


# --- XLSX and Parquet ------------------------------------------------------------------------


def _cell_text(value: Any, prof: Profile, epoch) -> str:
    """A workbook cell as text; typed dates follow the profile's declared date format."""
    import datetime as dt

    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date):
        if prof.date_format in ("excel_serial", "excel_1904"):
            from openpyxl.utils.datetime import to_excel

            return f"{to_excel(value, epoch):g}"
        return value.strftime(prof.date_format)
    if isinstance(value, float):
        return f"{value:.15g}"
    return str(value)


def _open_workbook(path: Path, prof: Profile):
    import zipfile

    with path.open("rb") as fh:
        magic = fh.read(8)
    if magic.startswith(bytes.fromhex("D0CF11E0A1B11AE1")):
        import msoffcrypto

        try:
            with path.open("rb") as fh:
                encrypted = msoffcrypto.OfficeFile(fh).is_encrypted()
        except Exception:  # noqa: BLE001 - any failure means we cannot read it
            encrypted = False
        if encrypted:
            raise reject(path, "workbook is password-protected; save an unprotected copy")
        raise reject(path, "is not an .xlsx workbook (old .xls?); save it as .xlsx or CSV")
    import openpyxl

    try:
        # data_only=False: a formula cell reads as its formula text ("=3+3"), which cleaning
        # quarantines, instead of a cached value that may be missing or stale
        wb = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except Exception as exc:  # noqa: BLE001 - zip, zlib, XML and openpyxl errors all mean corrupt
        name = "BadZipFile" if isinstance(exc, zipfile.BadZipFile) else type(exc).__name__
        raise reject(path, f"workbook is corrupt or unreadable ({name})") from None
    if prof.sheet is not None and prof.sheet not in wb.sheetnames:
        raise reject(path, f"has no sheet named {prof.sheet!r}")
    if not wb.worksheets:
        # a damaged workbook can open with its sheet list gone (found by the byte-flip fuzz)
        raise reject(path, "workbook has no worksheets (corrupt?); save it again as .xlsx or CSV")
    return wb, wb[prof.sheet] if prof.sheet else wb.worksheets[0]


#: Workbook rows converted to Arrow strings at a time (bounds Python-object memory).
_XLSX_CHUNK = 50_000


def read_xlsx_text(path: Path, prof: Profile):
    """A workbook's first (or named) sheet as text; cells beyond the header are ragged rows."""
    wb, ws = _open_workbook(path, prof)
    try:
        rows = ws.iter_rows(values_only=True)
        for _ in range(prof.header_row - 1):
            next(rows, None)
        names = _xlsx_header(path, next(rows, None), prof, wb.epoch)
        frames, bad = _xlsx_rows(rows, names, prof, wb.epoch)
    except _TypedDate as exc:
        raise reject(path, str(exc)) from None
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types on broken parts
        raise reject(path, f"workbook is corrupt or unreadable ({type(exc).__name__})") from None
    finally:
        wb.close()
    return pd.concat(frames) if len(frames) > 1 else frames[0], bad, None, False


def _xlsx_header(path: Path, header, prof: Profile, epoch) -> list[str]:
    if header is None or all(v is None for v in header):
        raise reject(path, f"row {prof.header_row} (the header row) is empty")
    names = [_cell_text(v, prof, epoch) for v in header]
    while names and names[-1] == "":
        names.pop()
    check_header(path, names)
    return names


def _xlsx_rows(rows, names: list[str], prof: Profile, epoch):
    """Data rows in chunks of Arrow-backed frames (index = sheet row numbers)."""
    width, data, index, bad, frames = len(names), [], [], [], []

    def flush() -> None:
        frames.append(pd.DataFrame(data, columns=names, dtype=_STR,
                                   index=pd.Index(index, dtype="int64")))
        data.clear()
        index.clear()

    for number, row in enumerate(rows, start=prof.header_row + 1):
        if prof.regime == "safe_harbor":
            _no_typed_dates(row, names)
        cells = [_cell_text(v, prof, epoch) for v in row]
        if any(c.strip() for c in cells[width:]):
            bad.append((number, "\t".join(cells), "ragged"))
            continue
        data.append((cells + [""] * width)[:width])
        index.append(number)
        if len(data) >= _XLSX_CHUNK:
            flush()
    if data or not frames:
        flush()
    return frames, bad


class _TypedDate(Exception):
    """A typed date cell in a Safe Harbor workbook (turned into a file rejection)."""


def _no_typed_dates(row, names: list[str]) -> None:
    """Safe Harbor allows no day-level dates; a typed date cell always is one."""
    import datetime as dt

    for name, value in zip(names, row, strict=False):
        if isinstance(value, dt.date):
            raise _TypedDate(f"column {name!r} holds typed (day-level) dates, which the "
                             "safe_harbor regime does not allow")


def read_parquet_text(path: Path, prof: Profile):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        check_header(path, table.column_names)
        cols = {}
        for name, col in zip(table.column_names, table.columns, strict=True):
            if pa.types.is_temporal(col.type) and prof.regime == "safe_harbor":
                raise reject(path, f"column {name!r} holds typed (day-level) dates, which the "
                                   "safe_harbor regime does not allow")
            if pa.types.is_temporal(col.type) and "%" in prof.date_format:
                col = pc.strftime(col, format=prof.date_format)
            cols[name] = pc.fill_null(col.cast(pa.large_string()), "")
            try:
                cols[name].validate(full=True)  # Parquet does not check UTF-8 itself
            except pa.ArrowInvalid:
                raise reject(path, f"column {name!r} holds bytes that are not valid UTF-8") from None
        frame = pa.table(cols).to_pandas(types_mapper={pa.large_string(): _STR}.get)
    except InputError:
        raise
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:  # never echo the message
        raise reject(path, f"is not a readable Parquet file ({type(exc).__name__})") from None
    first = prof.header_row + 1
    frame.index = pd.RangeIndex(first, first + len(frame))
    return frame, [], None, False
