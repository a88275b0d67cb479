"""Ingest: from an EMR export file to clean, typed visit rows in the store, in one transaction.

Owns, in the order the data passes through:

- :mod:`.profile` - the EMR profile (column names, formats, regime) and :func:`load_profile`;
- :mod:`.readers` - reading CSV / XLSX text into canonical columns, ragged and blank rows;
- :mod:`.clean` - typing, validation, quarantine with a reason, duplicate detection;
- :mod:`.techniques` - mapping free-text technique notes to canonical codes (the vocabulary);
- :mod:`.pipeline` - :func:`ingest_file`: read -> redact PHI -> clean -> techniques -> store ->
  episodes -> commit, with conservation (rows in = loaded + quarantined + duplicate + blank);
- :mod:`.codes` - CPT lists and ICD-10 codes in their canonical spelling;
- :mod:`.measures` - long-format scores: measure vocabulary, matching scores to visits;
- :mod:`.multifile` - visits + measures + patients files joined into canonical visit rows;
- :mod:`.fhir` - FHIR R4 Bulk Data NDJSON read into the same parts;
- :mod:`.sources` - :func:`ingest_export`: one file, several, a folder, a zip or FHIR;
- :mod:`.draft` - ``outcomes profile draft``: a commented profile guessed from the files.

May import: ``errors``, ``schema``, ``instruments``, ``privacy``, ``store`` (write side) and
``episodes``. Nothing here imports ``models``, ``reports`` or ``cli``.
"""

from __future__ import annotations

from outcomes.ingest.clean import clean_visits
from outcomes.ingest.draft import draft_profile
from outcomes.ingest.measures import load_measure_vocabulary, match_measures
from outcomes.ingest.multifile import ingest_multifile
from outcomes.ingest.pipeline import (
    IngestResult,
    RawExport,
    check_conservation,
    detect_delimiter,
    ingest_file,
    read_export,
    scan_file,
)
from outcomes.ingest.profile import Profile, load_profile
from outcomes.ingest.sources import expand_inputs, ingest_export
from outcomes.ingest.techniques import load_vocabulary, map_techniques

__all__ = [
    "Profile",
    "load_profile",
    "RawExport",
    "read_export",
    "IngestResult",
    "ingest_file",
    "check_conservation",
    "detect_delimiter",
    "scan_file",
    "clean_visits",
    "map_techniques",
    "load_vocabulary",
    "ingest_export",
    "ingest_multifile",
    "load_measure_vocabulary",
    "match_measures",
    "draft_profile",
    "expand_inputs",
]
