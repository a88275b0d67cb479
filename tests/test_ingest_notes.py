"""Ingest's note stages on the synthetic messy export: PHI redaction and technique rows.

``ingest._techniques`` maps the notes in bulk (Arrow dedupe and split, integer joins); the
reference here maps every visit's note on its own with :func:`outcomes.ingest.techniques.split_note`
and the vocabulary, which is what the stored ``visit_techniques`` rows are documented to be.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from outcomes.ingest import read_export
from outcomes.ingest.pipeline import _redact, _techniques
from outcomes.ingest.techniques import load_vocabulary, split_note

MESSY = Path(__file__).parents[1] / "data" / "synthetic" / "export_messy.csv"


def _reference(visits: pd.DataFrame) -> tuple[list[tuple], dict[str, int]]:
    vocab = load_vocabulary()
    rows, unmapped = [], {}
    for visit_id, note in zip(visits["visit_id"], visits["technique_notes"], strict=True):
        if pd.isna(note):
            continue
        for fragment in split_note(note):
            codes = vocab.match(fragment)
            if codes:
                rows += [(visit_id, c, vocab.families[c], fragment) for c in codes]
            elif not vocab.is_noise(fragment):
                rows.append((visit_id, None, None, fragment))
                unmapped[fragment] = unmapped.get(fragment, 0) + 1
    return rows, unmapped


COLUMNS = ["visit_id", "technique_code", "family", "source_text"]


def _decoded(rows) -> list[tuple]:
    """The technique rows of ``_techniques`` (dictionary-encoded Arrow) as plain tuples."""
    columns = [rows.column(c).to_pylist() for c in COLUMNS]
    return list(zip(*columns, strict=True))


def test_techniques_match_a_visit_by_visit_reference():
    import pyarrow as pa

    raw = read_export(MESSY)
    _redact(raw)
    visits = raw.frame[["visit_id", "technique_notes"]]
    visits = pd.concat([visits, visits.iloc[::5]], ignore_index=True)  # repeated notes
    rows, families, unmapped, positions = _techniques(visits)
    expected, expected_unmapped = _reference(visits)
    got = _decoded(rows)
    assert got == expected and len(got) > len(visits)
    # each row's visit position: where its visit_id is (ids repeat here, so compare the text)
    assert list(visits["visit_id"].iloc[positions]) == [r[0] for r in got]
    assert list(families["family"].astype(object).where(families["family"].notna(), None)) == [
        r[2] for r in got]
    assert unmapped == expected_unmapped and unmapped
    assert rows.column_names == COLUMNS
    # stored as text: each column decodes to strings (the dictionary holds no other type)
    assert all(pa.types.is_dictionary(t) and pa.types.is_large_string(t.value_type)
               for t in rows.schema.types)


def test_techniques_of_no_visits():
    visits = pd.DataFrame({"visit_id": pd.Series([], dtype="string[pyarrow]"),
                           "technique_notes": pd.Series([], dtype="string[pyarrow]")})
    rows, families, unmapped, positions = _techniques(visits)
    assert rows.num_rows == 0 and families.empty and unmapped == {} and len(positions) == 0
    assert rows.column_names == COLUMNS


def test_redact_counts_match_a_note_by_note_scan():
    from outcomes.privacy.phi import _scan_text

    raw = read_export(MESSY)
    notes = raw.frame["technique_notes"].copy()
    phi = _redact(raw)
    expected: dict[str, int] = {}
    for note in notes.dropna():
        for _, _, kind in _scan_text(note):
            expected[kind] = expected.get(kind, 0) + 1
    assert phi == dict(sorted(expected.items())) and phi
