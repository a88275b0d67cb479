"""EMR export profiles: how one EMR writes its export, mapped onto the canonical schema.

Read from YAML or TOML (or a dict) by :func:`load_profile`; used by :mod:`outcomes.ingest`
and the readers. Re-exported by :mod:`outcomes.ingest`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from outcomes.errors import ProfileError
from outcomes.schema import VISIT_COLUMNS

__all__ = ["Profile", "load_profile", "FILE_ROLES"]

_REGIMES = ("limited_data_set", "safe_harbor")


@dataclass(frozen=True)
class Profile:
    """How one EMR writes its export, mapped onto the canonical schema.

    Attributes
    ----------
    columns : dict
        EMR column name -> canonical name (unlisted names are used as they are).
    delimiter : str or None
        CSV delimiter; None = detect from the header (``,``, ``;``, tab, ``|``).
    encoding : str
        Text encoding of CSV files; bytes invalid in it reject the file.
    decimal : str
        ``"."`` or ``","``.
    header_row : int
        1-based row of the column names (rows above it are titles, skipped).
    date_format : str
        ``strftime`` format of visit dates, or ``excel_serial`` / ``excel_1904``.
    missing_values : tuple of str
        Cell texts meaning "not recorded" in numeric columns.
    values : dict
        Per canonical column, EMR text -> canonical text.
    regime : str
        ``limited_data_set`` (day-level dates; default) or ``safe_harbor``.
    sheet : str or None
        XLSX sheet name (default: the first sheet).
    files : dict
        Multi-file exports: role (``visits``, ``measures``, ``patients``) -> file-name
        pattern (``fnmatch``, e.g. ``"*flowsheet*.csv"``). Empty = one wide visit file.
    measures : dict
        Long-format measures file: ``patient``, ``date``, ``name``, ``score`` column names,
        optional ``code`` column, ``tolerance_days`` (0 = same day), ``keep`` (``first``,
        ``last``, ``min`` or ``max``: which of several scores on one visit to keep; default:
        quarantine them all) and ``names`` (EMR measure name or code -> instrument code, on
        top of ``outcomes/data/measures.toml``).
    instruments : dict
        Instruments the clinic adds: code -> ``name, low, high, higher_is_better, mcid,
        source`` (and optional ``mdc``, ``mcid_pct``, ``integer``); see
        :func:`outcomes.instruments.make_instrument`.
    """

    columns: dict[str, str] = field(default_factory=dict)
    delimiter: str | None = None
    encoding: str = "utf-8"
    decimal: str = "."
    header_row: int = 1
    date_format: str = "%Y-%m-%d"
    missing_values: tuple[str, ...] = ("", "N/A", "NA")
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    regime: str = "limited_data_set"
    sheet: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    measures: dict = field(default_factory=dict)
    instruments: dict[str, dict] = field(default_factory=dict)


def load_profile(profile: str | os.PathLike | Profile | dict | None = None) -> Profile:
    """Read a profile from a YAML or TOML file (or a dict); None gives the default profile.

    Raises
    ------
    ProfileError
        Unreadable file, unknown key, or an invalid value (named).
    """
    if profile is None or isinstance(profile, Profile):
        return profile or Profile()
    raw = profile if isinstance(profile, dict) else _read_profile_file(Path(profile))
    name = "profile" if isinstance(profile, dict) else str(profile)
    unknown = set(raw) - set(Profile.__dataclass_fields__)
    if unknown:
        raise ProfileError(f"{name}: unknown key(s) {', '.join(sorted(unknown))}; known: "
                           f"{', '.join(Profile.__dataclass_fields__)}")
    try:
        prof = Profile(**{**raw, "missing_values": tuple(raw.get("missing_values",
                                                                 Profile.missing_values))})
    except TypeError as exc:
        raise ProfileError(f"{name}: {exc}") from None
    _check_profile(prof, name)
    return prof


def _read_profile_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"profile {path} could not be read: {type(exc).__name__}") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parser error is the user's file
        raise ProfileError(f"profile {path} is not valid {path.suffix[1:] or 'YAML'}: "
                           f"{str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"profile {path} must be a mapping of keys to values")
    return data


def _check_profile(p: Profile, name: str) -> None:
    checks = [
        (p.regime in _REGIMES, f"regime must be one of {', '.join(_REGIMES)}"),
        (p.decimal in (".", ","), "decimal must be '.' or ','"),
        (isinstance(p.header_row, int) and p.header_row >= 1, "header_row must be 1 or more"),
        (p.delimiter is None or (isinstance(p.delimiter, str) and len(p.delimiter) == 1),
         "delimiter must be one character"),
        (isinstance(p.columns, dict) and all(v in VISIT_COLUMNS for v in p.columns.values()),
         "columns must map EMR names to canonical names (outcomes.schema.VISIT_COLUMNS)"),
        (isinstance(p.values, dict) and all(isinstance(v, dict) for v in p.values.values()),
         "values must map a column to a table of text -> canonical text"),
        (p.date_format in ("excel_serial", "excel_1904") or "%" in p.date_format,
         "date_format must be a strftime format or excel_serial / excel_1904"),
    ]
    for ok, message in checks:
        if not ok:
            raise ProfileError(f"{name}: {message}")
    _check_multifile(p, name)
    try:
        "".encode(p.encoding)
    except LookupError:
        raise ProfileError(f"{name}: unknown encoding {p.encoding!r}") from None


#: File roles of a multi-file export.
FILE_ROLES = ("visits", "measures", "patients")
_MEASURE_KEYS = ("patient", "date", "name", "score", "code", "tolerance_days", "keep", "names")
_KEEP = ("first", "last", "min", "max")


def _check_multifile(p: Profile, name: str) -> None:
    """Check ``files``, ``measures`` and ``instruments`` (names the bad key)."""
    from outcomes.instruments import instrument_registry

    if not isinstance(p.instruments, dict):
        raise ProfileError(f"{name}: instruments must be a table of code -> instrument")
    try:
        instrument_registry(p.instruments)
    except ProfileError as exc:
        raise ProfileError(f"{name}: {exc}") from None
    bad_roles = set(p.files) - set(FILE_ROLES)
    if bad_roles or (p.files and "visits" not in p.files):
        raise ProfileError(f"{name}: files must name a visits file and may name "
                           f"{', '.join(FILE_ROLES[1:])} files (got {', '.join(sorted(p.files))})")
    m = p.measures
    unknown = set(m) - set(_MEASURE_KEYS)
    if unknown:
        raise ProfileError(f"{name}: measures: unknown key(s) {', '.join(sorted(unknown))}; "
                           f"known: {', '.join(_MEASURE_KEYS)}")
    if "measures" in p.files:
        missing = [k for k in ("patient", "date", "name", "score") if k not in m]
        if missing:
            raise ProfileError(f"{name}: measures: missing column key(s) {', '.join(missing)}")
    if m.get("keep") not in (None, *_KEEP):
        raise ProfileError(f"{name}: measures.keep must be one of {', '.join(_KEEP)}")
    tol = m.get("tolerance_days", 0)
    if not (isinstance(tol, int) and 0 <= tol <= 30):
        raise ProfileError(f"{name}: measures.tolerance_days must be a whole number 0-30")
