"""Technique vocabulary and ``map_techniques``.

The reference for "what each phrase means" is the generator's own phrase table
(``outcomes.synthetic.text.PHRASES``), itself built from DOMAIN.md's technique table: every phrasing the
synthetic export writes for a code must come back as that code, and the deliberately unknown
strings must come back unmapped.
"""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outcomes.errors import InputError
from outcomes.ingest.techniques import load_vocabulary, map_techniques, normalize_text, split_note
from outcomes.synthetic import text as txt

DOMAIN_CODES = {
    "pri_manual_ribcage", "pri_exhalation_breathing", "pri_repositioning", "pri_hiking_stick_gait",
    "pri_glute_reeducation", "pri_shoewear", "trad_hip_stretching", "trad_glute_strengthening",
    "trad_quad_strengthening", "trad_hamstring_strengthening", "trad_core_strengthening",
    "other_modalities",
}


@pytest.fixture(scope="module")
def vocab():
    return load_vocabulary()


def test_packaged_vocabulary_has_exactly_the_domain_codes(vocab):
    assert set(vocab.codes) == DOMAIN_CODES
    for code, family in vocab.families.items():
        expected = "pri" if code.startswith("pri_") else (
            "traditional" if code.startswith("trad_") else "other")
        assert family == expected, code


@pytest.mark.parametrize("code", sorted(txt.PHRASES))
def test_every_generator_phrasing_maps_to_its_code(vocab, code):
    phrases = pd.Series(txt.PHRASES[code])
    out = map_techniques(phrases, vocab)
    for row, phrase in phrases.items():
        got = out[out["row"] == row]
        assert code in set(got["technique_code"].dropna()), phrase
        assert got["technique_code"].notna().all(), f"unmapped fragment in {phrase!r}"
        # a phrasing may name a second technique of its own family ("w/ balloon"), never the other
        assert set(got["family"]) <= {txt.FAMILY[code], "other"}, phrase


def test_generator_unmapped_strings_come_back_unmapped(vocab):
    notes = pd.Series(txt.UNMAPPED + txt.UNMAPPED_MESSY)
    out = map_techniques(notes, vocab)
    assert out["technique_code"].isna().all()
    assert list(out["source_text"]) == list(notes)


def test_noise_produces_no_rows(vocab):
    notes = pd.Series([*txt.NOISE, *txt.EVAL_NOTES, "NPRS 7/10", "3x10 reps", "", "  "])
    assert map_techniques(notes, vocab).empty


def test_split_keeps_90_90_and_abbreviations_and_scores():
    note = "90/90 hip lift w/ balloon; ice/heat + HEP AND ITB foam roll\nNPRS 7/10, pt c/o pain"
    assert split_note(note) == ["90/90 hip lift w/ balloon", "ice", "heat", "HEP",
                                "ITB foam roll", "NPRS 7/10", "pt c/o pain"]
    assert split_note("clamshells/SLR / 9/a") == ["clamshells", "SLR", "9", "a"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([p for ps in txt.PHRASES.values() for p in ps]), min_size=1,
                max_size=5),
       st.sampled_from(txt.SEPARATORS), st.sampled_from([str, str.upper, str.lower]))
def test_joining_phrases_neither_creates_nor_loses_codes(phrases, sep, case):
    """Property: a note built from phrases maps to the union of what each phrase maps to."""
    vocab = load_vocabulary()
    note = case(sep.join(phrases))
    expected = set(map_techniques(pd.Series([case(p) for p in phrases]), vocab)["technique_code"])
    got = map_techniques(pd.Series([note]), vocab)
    assert set(got["technique_code"]) == expected
    assert got["technique_code"].notna().all()
    assert all(frag in note for frag in got["source_text"])


def test_one_fragment_can_name_two_codes(vocab):
    out = map_techniques(pd.Series(["90/90 hip lift w/ balloon"]), vocab)
    assert set(out["technique_code"]) == {"pri_repositioning", "pri_exhalation_breathing"}
    assert (out["source_text"] == "90/90 hip lift w/ balloon").all()


def test_case_and_punctuation_insensitive(vocab):
    notes = pd.Series(["GLUTE MED RE-ED!!!", "glute  med   re ed", "Glute-Med Re.Ed"])
    out = map_techniques(notes, vocab)
    assert list(out["technique_code"]) == ["pri_glute_reeducation"] * 3
    assert normalize_text("I.T.B. Stretch w/ strap") == "itb stretch with strap"


def test_codes_map_to_themselves(vocab):
    out = map_techniques(pd.Series(sorted(DOMAIN_CODES)), vocab)
    assert list(out["technique_code"]) == sorted(DOMAIN_CODES)


def test_row_labels_order_and_missing_notes(vocab):
    notes = pd.Series(["hiking poles; dry needling", None, "clamshells", "hiking poles; dry needling"],
                      index=["v9", "v3", "v1", "v7"])
    out = map_techniques(notes, vocab)
    assert list(out.columns) == ["row", "technique_code", "family", "source_text"]
    assert list(out["row"]) == ["v9", "v9", "v1", "v7", "v7"]
    assert out.loc[1, "technique_code"] is pd.NA and out.loc[1, "family"] is pd.NA
    assert out.loc[1, "source_text"] == "dry needling"
    assert str(out["technique_code"].dtype) == "string"


def test_empty_and_all_missing_input(vocab):
    for notes in (pd.Series([], dtype=object), pd.Series([None, None])):
        out = map_techniques(notes, vocab)
        assert out.empty and list(out.columns) == ["row", "technique_code", "family", "source_text"]


def test_input_is_not_mutated(vocab):
    notes = pd.Series(["ITB foam roll, ice"])
    copy = notes.copy()
    map_techniques(notes, vocab)
    pd.testing.assert_series_equal(notes, copy)


def test_custom_vocabulary_file(tmp_path):
    path = tmp_path / "v.toml"
    path.write_text('[codes.trad_calf_stretch]\nfamily = "traditional"\n'
                    'phrases = ["calf stretch", "gastroc stretch"]\n'
                    '[noise]\nphrases = ["hep"]\n', encoding="utf-8")
    vocab = load_vocabulary(path)
    out = map_techniques(pd.Series(["Gastroc stretch; HEP; hiking poles"]), vocab)
    assert list(out["technique_code"].astype(object).fillna("-")) == ["trad_calf_stretch", "-"]
    assert list(out["source_text"]) == ["Gastroc stretch", "hiking poles"]


@pytest.mark.parametrize("content, words", [
    ("not = [valid", "not valid TOML"),
    ('[codes.x]\nfamily = "magic"\nphrases = ["x"]\n', "family must be one of"),
    ('[codes.x]\nfamily = "pri"\nregex = ["(unclosed"]\n', "invalid regex"),
    ("version = 1\n", "no [codes.<code>] tables"),
])
def test_bad_vocabulary_files_are_rejected(tmp_path, content, words):
    path = tmp_path / "bad.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match="bad.toml") as err:
        load_vocabulary(path)
    assert words in str(err.value)


def test_missing_vocabulary_file(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_vocabulary(tmp_path / "nope.toml")


def test_synthetic_export_maps_cleanly(vocab):
    """Every unmapped fragment of a clean export is one of the generator's unknown strings."""
    from outcomes.synthetic import generate_export

    frame, _ = generate_export(300, seed=11)
    out = map_techniques(frame["technique_notes"], vocab)
    unmapped = {s.lower() for s in out.loc[out["technique_code"].isna(), "source_text"]}
    assert unmapped and unmapped <= {s.lower() for s in txt.UNMAPPED}
    assert out["row"].isin(frame.index).all()


_NOTE_PIECES = st.sampled_from(
    ["ice", "PRI", "90/90", "w/", "c/o", "7/10", "a", "1", " ", "  ", "\t", "\n", "\r", "\x0b",
     "\x1c", "\u00a0", "é", ";", ",", "+", "/", " and ", " AnD ", "and", "\n and \t",
     "a/b/c/d", "1/2/3/4", "w/w/", "_a/", "x1/", "\ue000", "HEP"])


def _split_notes(notes: list[str]) -> tuple[list[int], list[str]]:
    """Every non-empty fragment of every note by the bulk splitter, with its note position."""
    import pyarrow as pa

    from outcomes.ingest.techniques import _fragment_codes

    note, fcode, fragments = _fragment_codes(pa.array(notes, pa.large_string()))
    pairs = [(int(i), fragments[c]) for i, c in zip(note, fcode, strict=True)]
    return [i for i, f in pairs if f], [f for _, f in pairs if f]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_NOTE_PIECES, max_size=8).map("".join), min_size=1, max_size=8))
def test_bulk_split_is_split_note(notes):
    """Property: the bulk splitter used by ``map_techniques`` (Arrow for plain ASCII notes, the
    Python regex otherwise) gives exactly ``split_note`` of each note, in order."""
    note, fragments = _split_notes(notes)
    expected = [(i, f) for i, n in enumerate(notes) for f in split_note(n)]
    assert list(zip(note, fragments, strict=True)) == expected


def _reference_map(notes: pd.Series, vocab) -> list[tuple]:
    """Note by note, fragment by fragment: (row, code, family, fragment) as documented."""
    rows = []
    for row, note in notes.items():
        if pd.isna(note):
            continue
        for fragment in split_note(str(note)):
            codes = vocab.match(fragment)
            if codes:
                rows += [(row, c, vocab.families[c], fragment) for c in codes]
            elif not vocab.is_noise(fragment):
                rows.append((row, None, None, fragment))
    return rows


def _as_tuples(out: pd.DataFrame) -> list[tuple]:
    return [tuple(None if pd.isna(v) else v for v in r)
            for r in out[["row", "technique_code", "family", "source_text"]].itertuples(index=False)]


_PHRASE_PIECES = st.sampled_from(
    [p for ps in txt.PHRASES.values() for p in ps] + [*txt.UNMAPPED, *txt.NOISE, *txt.SEPARATORS]
    + ["w/", "90/90", "7/10", " / ", " and ", "\n", "é", "NPRS 7/10", "c/o pain"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.lists(_PHRASE_PIECES, max_size=6).map("".join)),
                max_size=12))
def test_map_techniques_matches_a_note_by_note_reference(notes):
    """Property: the bulk mapper (Arrow dedupe and split, distinct fragments, integer joins)
    gives exactly the rows of mapping each note's fragments one by one, in order."""
    vocab = load_vocabulary()
    series = pd.Series(notes, index=pd.RangeIndex(100, 100 + len(notes)) * 3, dtype=object)
    expected = _reference_map(series, vocab)
    for dtype in (object, "string[pyarrow]"):
        assert _as_tuples(map_techniques(series.astype(dtype), vocab)) == expected


@pytest.mark.parametrize("note", [
    "a/b/c/d/e/f/g", "1/2/3/4/5/6", "w/w/w/ balloon", "x a/1/2/b/c", "_a/b", "ab/c/d", "9/a/1",
    "c/o/s/p/h/o pain", "90/90/90 hip lift and w/ ball", "a /b/ c", "\tA/B\x0b/C\x1c",
])
def test_bulk_split_keeps_slash_chains(note):
    """The Arrow splitter protects kept "/" in two passes; chains longer than two still match."""
    note_pos, fragments = _split_notes([note, note.upper()])
    expected = [(i, f) for i, n in enumerate([note, note.upper()]) for f in split_note(n)]
    assert list(zip(note_pos, fragments, strict=True)) == expected
