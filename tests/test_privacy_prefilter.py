"""The PHI pre-filter is lossless, and the Arrow fast path of ``redact_phi`` changes nothing.

The scanner only runs a kind's Python detectors on notes that hit the kind's trigger, and only
looks at notes that hit the RE2 union of all triggers (ASCII notes) or are not ASCII. Each
trigger must therefore match wherever one of its kind's detectors finds a hit: checked per kind
on the labelled corpus and on random strings built from identifier pieces and the characters on
which RE2 and Python disagree (``\\v``, ``\\x1c``, no-break space, Kelvin sign, long s, dotless
i, Arabic-Indic digits, curly apostrophe).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phi_corpus import generate_phi_corpus

from outcomes.privacy import redact_phi, scan_phi
from outcomes.privacy.patterns import ANY_TRIGGER, KINDS, LABELS, PY_TRIGGERS, TRIGGERS
from outcomes.privacy.phi import _scan_text, _scan_unique

MESSY = Path(__file__).parents[1] / "data" / "synthetic" / "export_messy.csv"

_PIECES = st.sampled_from([
    "Pt ", "pt ", "Dr. ", "wife ", "spoke with ", "per ", "John", "JOHN", "john", "Smith",
    "O'Neil", "Mc", "Kevin", "nic\u212a", "\u017fam", "Wei Hill", " called", " calls",
    "555", "-", "123", "4567", "(", ")", ".", "x12", "ext", "1", "9", "19", "88", "00",
    "@", "a.b", "mail.com", ".org", "www.", "https://", "ssn", "SS#", "MRN", "mrn:", "acct",
    "chart ", "record no", "DOB", "born", "12/03/1931", "1948-05-02", "March 3, 1940",
    "12", " Main St", " Elm Street", " N ", "Apt 4", "PO Box ", "Austin, TX 78701", "TX",
    "92", "101", " yo", " y/o", "-year-old", "age ", "aged", " ", "  ", "\t", "\n", "\x0b",
    "\x0c", "\x1c", "\x1f", "\xa0", "\u2003", "\u0663", "\u0665", "\u2019", "\u0131", "\xe9",
    ",", ";", ":", "/", "L4-L5", "CPT 97110", "NPRS 7/10", "3x10", "Thomas test",
])
_TEXTS = st.lists(_PIECES, max_size=12).map("".join)


def _triggers_cover_detectors(text: str) -> None:
    ascii_text = text.isascii()
    for kind in KINDS:
        if not _scan_text(text, [kind]):
            continue
        assert PY_TRIGGERS[kind].search(text), (kind, text)
        if ascii_text:
            arr = pa.array([text], pa.large_string())
            assert pc.match_substring_regex(arr, TRIGGERS[kind])[0].as_py(), (kind, text)
            assert pc.match_substring_regex(arr, ANY_TRIGGER)[0].as_py(), (kind, text)


@pytest.fixture(scope="module")
def corpus_notes():
    return generate_phi_corpus(n_phi=1000, n_clean=500, seed=424242)[0]


def test_each_trigger_covers_its_detectors_on_the_corpus(corpus_notes):
    for text in corpus_notes:
        _triggers_cover_detectors(text)


@settings(max_examples=400, deadline=None)
@given(_TEXTS)
def test_each_trigger_covers_its_detectors_on_random_text(text):
    _triggers_cover_detectors(text)


@settings(max_examples=150, deadline=None)
@given(st.lists(_TEXTS, min_size=1, max_size=6))
def test_prefilter_is_lossless_on_random_text(texts):
    """Property: with or without the pre-filter, object or Arrow-backed, the same hits."""
    for series in (pd.Series(texts, dtype=object), pd.Series(texts, dtype="string[pyarrow]")):
        _, _, fast = _scan_unique(series, prefilter=True)
        _, _, slow = _scan_unique(series, prefilter=False)
        assert fast == slow


def _reference_redact(texts: pd.Series) -> tuple[list, dict[str, int]]:
    """Every note scanned with every detector, one by one (no factorising, no pre-filter)."""
    out, counts = [], dict.fromkeys(KINDS, 0)
    for text in texts:
        if pd.isna(text):
            out.append(None)
            continue
        found = _scan_text(str(text))
        parts, last = [], 0
        for start, end, kind in found:
            parts += [str(text)[last:start], LABELS[kind]]
            last = end
            counts[kind] += 1
        out.append("".join(parts) + str(text)[last:])
    return out, counts


def _notes_with_repeats(corpus_notes) -> pd.Series:
    notes = pd.concat([corpus_notes, corpus_notes.iloc[::7], pd.Series([None, "", "HEP", None])],
                      ignore_index=True)
    return notes.sample(frac=1.0, random_state=5).reset_index(drop=True)


@pytest.mark.parametrize("dtype", [object, "string[python]", "string[pyarrow]"])
def test_redact_matches_a_note_by_note_reference(corpus_notes, dtype):
    notes = _notes_with_repeats(corpus_notes).astype(dtype)
    redacted, counts = redact_phi(notes)
    expected, expected_counts = _reference_redact(notes)
    assert redacted.dtype == notes.dtype
    assert redacted.index.equals(notes.index)
    got = [None if pd.isna(v) else v for v in redacted]
    assert got == expected
    assert counts == expected_counts


def test_redact_arrow_path_on_the_messy_export():
    """The synthetic messy export read as Arrow text: identical to the object path."""
    from outcomes.ingest import read_export

    notes = read_export(MESSY).frame["technique_notes"]
    arrow, arrow_counts = redact_phi(notes.astype("string[pyarrow]"))
    plain, plain_counts = redact_phi(notes.astype(object))
    assert arrow_counts == plain_counts and sum(plain_counts.values()) > 0
    assert arrow.astype(object).where(arrow.notna(), None).tolist() == \
        plain.where(plain.notna(), None).tolist()


def test_redact_keeps_a_non_ascii_note_in_scope():
    """A note RE2 cannot judge (non-ASCII) is still scanned: Python's \\d takes Arabic-Indic
    digits, so this is an SSN to the detector although no RE2 trigger would see it."""
    text = "ssn \u0663\u0663\u0663-\u0663\u0663-\u0663\u0663\u0663\u0663 noted"
    assert _scan_text(text)
    for dtype in (object, "string[pyarrow]"):
        redacted, counts = redact_phi(pd.Series([text, "HEP"], dtype=dtype))
        assert counts["ssn"] == 1 and "[SSN]" in redacted[0]


@pytest.mark.parametrize("text", [
    "call 555\x0b123\x0b4567",  # Python's \s takes \v; RE2's does not
    "age\x1c95, lives alone",
    "PO Box\x1f12",
    "mr\x0bno 12345",
    "call \u0665\u0665\u0665-123-4567",  # Python's \d takes Arabic-Indic digits
    "95\xa0yo female",
])
def test_trigger_edge_cases(text):
    _triggers_cover_detectors(text)
    for dtype in (object, "string[pyarrow]"):
        series = pd.Series([text], dtype=dtype)
        assert _scan_unique(series)[2] == _scan_unique(series, prefilter=False)[2] != {}


@pytest.mark.parametrize("dtype", [object, "string", "string[pyarrow]"])
@pytest.mark.parametrize("values", [[], [None], [None, None], [None, "HEP"]])
def test_missing_and_empty_notes(values, dtype):
    """All-missing (or empty) input: no hits, missing values kept, zero counts, no error."""
    series = pd.Series(values, dtype=dtype, index=[f"r{i}" for i in range(len(values))])
    redacted, counts = redact_phi(series)
    assert redacted.index.equals(series.index) and redacted.isna().tolist() == series.isna().tolist()
    assert redacted.dropna().tolist() == series.dropna().tolist()
    assert set(counts.values()) <= {0}
    assert scan_phi(series).empty
