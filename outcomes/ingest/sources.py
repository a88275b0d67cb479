"""What ``outcomes ingest`` was given -> the right reader: one file, several, a folder, a zip, FHIR.

- one file and a profile without ``[files]``: :func:`outcomes.ingest.pipeline.ingest_file`;
- several files, a folder or a ``.zip`` of them: :func:`outcomes.ingest.multifile.ingest_multifile`
  (the profile's ``[files]`` patterns say which is which);
- ``.ndjson`` files (a FHIR Bulk Data export): :mod:`outcomes.ingest.fhir`.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

from outcomes.errors import InputError
from outcomes.ingest.pipeline import IngestResult, _check_regime, ingest_file
from outcomes.ingest.profile import load_profile
from outcomes.ingest.readers import reject

__all__ = ["ingest_export", "expand_inputs"]

_DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx", ".xlsm", ".parquet", ".pq", ".ndjson")
#: Bytes a zip may expand to before it is refused (a zip bomb must not fill the disk).
MAX_UNZIPPED_BYTES = 8 << 30


def ingest_export(paths: list[str | os.PathLike] | str | os.PathLike, *, db=None, profile=None,
                  today=None, dry_run: bool = False, progress: bool = False) -> IngestResult:
    """Ingest an export however it came: one file, several files, a folder, a zip, FHIR NDJSON.

    Parameters
    ----------
    paths : path or list of path
        The export's file(s), a folder holding them, or a ``.zip`` of them.
    db, profile, today, dry_run, progress
        As for :func:`outcomes.ingest.ingest_file`.

    Returns
    -------
    IngestResult
        For several files, ``files`` holds each file's own counts (each conserved).

    Raises
    ------
    InputError
        A whole file or the set of files is rejected; nothing is written.
    """
    prof = load_profile(profile)
    given = [Path(p) for p in ([paths] if isinstance(paths, str | os.PathLike) else paths)]
    with expand_inputs(given) as files:
        if files and all(f.suffix.lower() == ".ndjson" for f in files):
            return _ingest_fhir(files, prof, db, today, dry_run, progress)
        if len(files) == 1 and not prof.files:
            return ingest_file(files[0], db=db, profile=prof, today=today, dry_run=dry_run,
                               progress=progress)
        from outcomes.ingest.multifile import ingest_multifile

        return ingest_multifile(files, db=db, profile=prof, today=today, dry_run=dry_run,
                                progress=progress)


@contextmanager
def expand_inputs(paths: list[Path]):
    """Folders -> their data files (sorted; hidden files skipped), zips -> their members."""
    with tempfile.TemporaryDirectory(prefix="outcomes-zip-") as tmp:
        files: list[Path] = []
        for path in paths:
            if path.is_dir():
                files += sorted(p for p in path.iterdir() if p.is_file() and not
                                p.name.startswith(".") and p.suffix.lower() in _DATA_SUFFIXES)
            elif path.suffix.lower() == ".zip":
                files += _unzip(path, Path(tmp) / f"{len(files)}")
            elif not path.is_file():
                raise reject(path, "file not found")
            else:
                files.append(path)
        if not files:
            raise InputError(f"no export files in {', '.join(p.name for p in paths)} "
                             f"(looked for {', '.join(_DATA_SUFFIXES)})")
        yield files


def _unzip(path: Path, into: Path) -> list[Path]:
    """Extract a zip's data files by their base names only (no path from the archive is used)."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()
                       and Path(m.filename).suffix.lower() in _DATA_SUFFIXES
                       and not Path(m.filename).name.startswith(".")]
            if sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES:
                raise reject(path, "expands to more than 8 GiB; unzip it yourself")
            names = [Path(m.filename).name for m in members]
            if len(set(names)) != len(names):
                raise reject(path, "holds two files with the same name in different folders")
            into.mkdir(parents=True)
            for member, name in zip(members, names, strict=True):
                (into / name).write_bytes(zf.read(member))
    except (zipfile.BadZipFile, RuntimeError, OSError) as exc:
        if isinstance(exc, InputError):
            raise
        raise reject(path, f"is not a readable zip ({type(exc).__name__}; password-protected "
                           "zips are not supported)") from None
    return sorted(into / n for n in names)


def _ingest_fhir(files, prof, db, today, dry_run, progress) -> IngestResult:
    from outcomes.ingest.codes import normalize_codes
    from outcomes.ingest.fhir import read_fhir
    from outcomes.ingest.multifile import ingest_parts

    parts, fprof, ignored = read_fhir(files, prof)
    for part in parts:
        _check_regime(Path(part.name), part.frame, fprof)
    parts[0].frame = normalize_codes(parts[0].frame)
    result = ingest_parts(parts, fprof, db=db, today=today, dry_run=dry_run, progress=progress,
                          fmt="fhir-ndjson")
    if ignored:
        result.warnings["ignored_files"] = ", ".join(ignored)
    return result
