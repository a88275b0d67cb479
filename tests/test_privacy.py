"""Tests of :mod:`outcomes.privacy`: PHI scanning and redaction, regimes, suppression, export safety."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phi_corpus import generate_phi_corpus, score_phi_scan

from outcomes.errors import InputError
from outcomes.privacy import (
    check_regime,
    escape_text,
    is_suppressed,
    neutralize_formulas,
    redact_phi,
    scan_phi,
    suppress_small_cells,
)
from outcomes.privacy.patterns import KINDS

# --------------------------------------------------------------------------------------------
# hand-written PHI cases (from the privacy brief)
# --------------------------------------------------------------------------------------------

PHI_CASES = [
    ("Pt John Smith reports less pain", "name", "John Smith"),
    ("patient Mary O'Neil arrived late", "name", "Mary O'Neil"),
    ("HEP reviewed per Dr. Okafor", "name", "Okafor"),
    ("Dr Okafor cleared her for running", "name", "Okafor"),
    ("Mrs. Lee tolerated well", "name", "Lee"),
    ("wife Anna drove her", "name", "Anna"),
    ("her husband Tom helps with HEP", "name", "Tom"),
    ("son Michael attended visit", "name", "Michael"),
    ("emergency contact mother, Jane Doe", "name", "Jane Doe"),
    ("call (555) 123-4567 to reschedule", "phone", "(555) 123-4567"),
    ("cell 555-123-4567", "phone", "555-123-4567"),
    ("ph 555.123.4567", "phone", "555.123.4567"),
    ("reach at +1 555 123 4567", "phone", "+1 555 123 4567"),
    ("number 5551234567 on file", "phone", "5551234567"),
    ("fax 555 123 4567 for records", "phone", "555 123 4567"),
    ("office 555-123-4567 ext. 12", "phone", "555-123-4567 ext. 12"),
    ("email jane.doe@example.com re HEP", "email", "jane.doe@example.com"),
    ("video at https://youtu.be/abc123 for HEP", "url", "https://youtu.be/abc123"),
    ("see www.example.org/hep", "url", "www.example.org/hep"),
    ("SSN 123-45-6789 on intake form", "ssn", "123-45-6789"),
    ("ss no 123 45 6789", "ssn", "123 45 6789"),
    ("SSN 123456789", "ssn", "123456789"),
    ("MRN 12345678", "mrn", "12345678"),
    ("MRN: A1234567", "mrn", "A1234567"),
    ("acct #998877 billing", "mrn", "998877"),
    ("account no. 123456", "mrn", "123456"),
    ("record number 55-1234", "mrn", "55-1234"),
    ("chart #4455 reviewed", "mrn", "4455"),
    ("DOB 04/12/1961", "dob", "04/12/1961"),
    ("born 1961-04-12 in Ohio", "dob", "1961-04-12"),
    ("date of birth: April 12, 1961", "dob", "April 12, 1961"),
    ("lives at 123 Main St, stairs to enter", "address", "123 Main St"),
    ("moved to 45 Oak Avenue Apt 3 last month", "address", "45 Oak Avenue Apt 3"),
    ("92 yo female, L knee", "age", "92 yo"),
    ("age 94, lives alone", "age", "94"),
    ("93-year-old male runner", "age", "93-year-old"),
    # beyond the brief's list: casing, post-cues, punctuation
    ("PT JOHN SMITH REPORTS LESS PAIN", "name", "JOHN SMITH"),
    ("MR GARCIA LATE TODAY", "name", "GARCIA"),
    ("pt john smith seen today", "name", "john smith"),
    ("Wei Hill called to reschedule", "name", "Wei Hill"),
    ("spoke with Nkechi Okafor re: schedule", "name", "Nkechi Okafor"),
    ("caregiver: Peter MacLeod. L hip", "name", "Peter MacLeod"),
    ("seen by Dr. Ana-Maria Smith-Jones", "name", "Ana-Maria Smith-Jones"),
    ("Aaliyah Smith-Jones 555.123.4567", "phone", "555.123.4567"),
    ("441-22-9876 (SSN) on file", "ssn", "441-22-9876"),
    ("Med Rec # 0033263", "mrn", "0033263"),
    ("D.O.B. 12-04-1961", "dob", "12-04-1961"),
    ("birthdate 10 Apr 1948", "dob", "10 Apr 1948"),
    ("address 3379 w 27th st", "address", "3379 w 27th st"),
    ("PO Box 442", "address", "PO Box 442"),
    ("AGE: 99. lives alone", "age", "99"),
    ("book with our specialists, Gina and Courtney!", "name", "Gina"),
]

CLINICAL_LOOKALIKES = [
    "L4-L5 disc bulge",
    "CPT 97110 x3 units",
    "dx M76.31",
    "NPRS 7/10 at eval",
    "3x10 reps bridges",
    "HEP 2x/wk",
    "90/90 hip lift w/ balloon",
    "R AIC pattern",
    "Left AIC pattern noted",
    "seen 3/14",
    "ROM 0-120 deg",
    "T4-T8 mobility",
    "S1 dermatome intact",
    "ICD M54.50, M22.2X1",
    "CPT 97162; 97140; 97530",
    "LEFS 45/80",
    "Dr. appt f/u next wk",
    "hip flexor tightness",
    "PT educated pt on HEP",
    "pt reports 6/10 pain",
    "Patient tolerated well",
    "Glute med re-ed in sidelying",
    "Postural Restoration techniques per Hruska",
    "Right BC pattern, Left AIC",
    "MS Pt reports fatigue",
    "10 reps each way",
    # beyond the brief's list: eponyms, brands, the disease MS, all-caps shorthand
    "Thomas test (+) bilat",
    "Dr. Scholl's inserts tried",
    "Hx of MS. Trendelenburg (+) L",
    "PT EDUCATED PT ON HEP, PATIENT TOLERATED WELL",
    "Hoka Bondi recommended; Brooks Adrenaline",
    "pt's son drove today, wife present",
    "squat 3x10 @ 95 lb, walked 100 yards",
    "Sx began 1/2/2026; x-ray 12/2025 neg",
    "HR 72 bpm, BP 120/80, SpO2 98%",
    "hx of ms. CPT 97162",
    "Allergies: NKDA; Meds: ibuprofen",
    "pt able to don/doff brace, don't push through pain",
    "ANA negative, TED hose on",
    "Wouldn't you build a house on a crooked foundation?",
]


@pytest.mark.parametrize(("text", "kind", "value"), PHI_CASES)
def test_scan_finds_hand_written_identifiers(text, kind, value):
    hits = scan_phi(pd.Series([text]), include_values=True)
    assert (kind, value) in set(zip(hits["kind"], hits["value"], strict=True)), hits


@pytest.mark.parametrize("text", CLINICAL_LOOKALIKES)
def test_scan_leaves_clinical_text_alone(text):
    assert scan_phi(pd.Series([text])).empty


def test_scan_output_has_no_values_by_default():
    hits = scan_phi(pd.Series(["Pt John Smith, MRN 12345678"], index=["r7"]))
    assert list(hits.columns) == ["row", "kind", "start", "end"]
    assert hits["row"].tolist() == ["r7", "r7"]
    assert "John" not in hits.to_string() and "12345678" not in hits.to_string()


def test_redact_replaces_spans_and_counts_by_row():
    texts = pd.Series(
        ["Pt John Smith, call 555-123-4567", None, "Pt John Smith, call 555-123-4567", "3x10"],
        index=[10, 11, 12, 13],
        name="technique_notes",
    )
    before = texts.copy()
    redacted, counts = redact_phi(texts)
    assert redacted.tolist()[0] == "Pt [NAME], call [PHONE]"
    assert redacted[11] is None and redacted[13] == "3x10"
    assert redacted.index.equals(texts.index) and redacted.name == "technique_notes"
    assert counts["name"] == 2 and counts["phone"] == 2 and counts["ssn"] == 0
    pd.testing.assert_series_equal(texts, before)


def test_redact_keeps_string_dtype():
    texts = pd.Series(["age 94", pd.NA], dtype="string")
    redacted, counts = redact_phi(texts)
    assert redacted.dtype == texts.dtype
    assert redacted[0] == "age [AGE>89]" and redacted.isna()[1]
    assert counts["age"] == 1


def test_scan_survives_text_pyarrow_cannot_encode():
    """A lone surrogate cannot go through pyarrow; the note is then scanned in Python only."""
    hits = scan_phi(pd.Series(["bad \ud800 byte, call 555-123-4567", "3x10"]))
    assert hits["kind"].tolist() == ["phone"]


def test_scan_accepts_categorical_and_non_string_values():
    texts = pd.Series(pd.Categorical(["age 94", "3x10", "age 94"]))
    assert scan_phi(texts)["row"].tolist() == [0, 2]
    assert scan_phi(pd.Series([5551234567, None, 3.5]))["kind"].tolist() == ["phone"]


def test_scan_rejects_non_series():
    with pytest.raises(InputError):
        scan_phi(["Pt John Smith"])


# --------------------------------------------------------------------------------------------
# the labelled planted-note corpus
# --------------------------------------------------------------------------------------------

#: The scanner was tuned on corpus seeds 0-3 and 20261125; this seed was never looked at while
#: tuning, so the rates below are an out-of-sample check of the patterns, not of the corpus.
TEST_SEED = 424242


@pytest.fixture(scope="module")
def corpus():
    notes, labels = generate_phi_corpus(n_phi=1000, n_clean=500, seed=TEST_SEED)
    hits = scan_phi(notes)
    return notes, labels, hits, score_phi_scan(notes, labels, hits)


def test_corpus_is_labelled_and_deterministic(corpus):
    notes, labels, _, _ = corpus
    again, again_labels = generate_phi_corpus(n_phi=1000, n_clean=500, seed=TEST_SEED)
    pd.testing.assert_series_equal(notes, again)
    pd.testing.assert_frame_equal(labels, again_labels)
    spans = [notes[r.row][r.start : r.end] for r in labels.itertuples()]
    assert spans == labels["value"].tolist()
    assert set(labels["kind"]) == set(KINDS)
    assert notes.index.difference(labels["row"].unique()).size == 500  # look-alike notes


@pytest.mark.parametrize("kind", ["phone", "email", "ssn", "mrn"])
def test_recall_is_complete_for_contact_and_record_numbers(corpus, kind):
    table = corpus[3]
    assert table.loc[kind, "planted"] >= 100
    assert table.loc[kind, "recall"] == 1.0, table


def test_name_recall_meets_target(corpus):
    table = corpus[3]
    assert table.loc["name", "planted"] >= 200
    assert table.loc["name", "recall"] >= 0.95, table


@pytest.mark.parametrize("kind", ["url", "dob", "address", "age"])
def test_recall_other_kinds(corpus, kind):
    """No stated target; a floor that catches a broken pattern (measured values ~0.97-1.0)."""
    assert corpus[3].loc[kind, "recall"] >= 0.9, corpus[3]


def test_false_positive_rate_on_clinical_lookalikes(corpus):
    table = corpus[3]
    assert table.loc["all", "clean_notes"] == 500
    assert table.loc["all", "fp_rate"] < 0.02, table


def test_prefilter_is_lossless(corpus):
    """The RE2 trigger must hit every note a detector would hit (checked on all 1,500 notes)."""
    from outcomes.privacy.phi import _scan_unique

    notes = corpus[0]
    _, _, fast = _scan_unique(notes, prefilter=True)
    _, _, slow = _scan_unique(notes, prefilter=False)
    assert fast == slow


def test_redaction_removes_detected_values(corpus):
    notes, labels, _, _ = corpus
    redacted, counts = redact_phi(notes)
    exact = labels[labels["kind"].isin(["phone", "email", "ssn", "mrn"])]
    for r in exact.itertuples():
        assert r.value not in redacted[r.row], (r.kind, r.row)
    hits = scan_phi(notes)
    assert counts == {k: int((hits["kind"] == k).sum()) for k in KINDS}


def test_synthetic_export_notes():
    """Out-of-sample look-alikes: the technique notes of ``outcomes.synthetic`` (another module's
    vocabulary, misspellings and casing, never used to tune the scanner). Every PHI snippet it
    plants is found, and notes without a snippet are flagged at under the 2 % target (measured:
    0 of about 3,500 distinct notes)."""
    from outcomes.synthetic import generate_export
    from outcomes.synthetic.text import PHI_SNIPPETS

    notes = generate_export(n_episodes=600, seed=3, messy=True)[0]["technique_notes"]
    notes = notes.dropna().astype(str).drop_duplicates()
    planted = notes.map(lambda t: any(snippet in t for snippet in PHI_SNIPPETS.values()))
    flagged = notes.index.isin(scan_phi(notes)["row"])
    assert planted.sum() >= len(PHI_SNIPPETS) and flagged[planted.to_numpy()].all()
    assert flagged[~planted.to_numpy()].mean() < 0.02


def test_redact_scans_each_distinct_note_once():
    texts = pd.Series(["call 555-123-4567"] * 1000 + ["3x10"] * 1000)
    redacted, counts = redact_phi(texts)
    assert counts["phone"] == 1000
    assert redacted.nunique() == 2


# --------------------------------------------------------------------------------------------
# export safety
# --------------------------------------------------------------------------------------------


def test_neutralize_formulas_quotes_text_only():
    """OWASP "CSV Injection": cells starting with = + - @, tab (0x09) or CR (0x0D) get a leading '."""
    data = pd.DataFrame(
        {
            "text": ["=HYPERLINK(\"x\")", "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "ok", None],
            "num": [-1.5, 2, -3, 4, 5, 6, 7, 8],
        }
    )
    out = neutralize_formulas(data)
    assert out["text"].tolist() == [
        "'=HYPERLINK(\"x\")", "'+1", "'-2+3", "'@SUM(A1)", "'\t=1", "'\r=1", "ok", None,
    ]
    pd.testing.assert_series_equal(out["num"], data["num"])
    assert data["text"][0] == "=HYPERLINK(\"x\")"  # input untouched


def test_neutralize_formulas_handles_fullwidth_categoricals_and_labels():
    data = pd.DataFrame({"=cmd": pd.Categorical(["\uff1dSUM(1)", "fine"])})
    out = neutralize_formulas(data)
    assert list(out.columns) == ["'=cmd"]
    assert out.iloc[0, 0] == "'\uff1dSUM(1)" and out.iloc[1, 0] == "fine"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ('<img src=x onerror="alert(1)">', "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"),
        ("{{7*7}}", "&#123;&#123;7*7&#125;&#125;"),
        ("{% include 'x' %}", "&#123;% include &#x27;x&#x27; %&#125;"),
        (None, ""),
        (float("nan"), ""),
        (3.5, "3.5"),
    ],
)
def test_escape_text(value, expected):
    """Expected strings are Python's html.escape(quote=True) entities plus &#123; / &#125;."""
    assert escape_text(value) == expected


# --------------------------------------------------------------------------------------------
# data regimes
# --------------------------------------------------------------------------------------------


def _visits(**extra) -> pd.DataFrame:
    data = pd.DataFrame(
        {
            "visit_id": ["v1", "v2"],
            "patient_id": ["p1", "p1"],
            "visit_date": pd.to_datetime(["2026-03-14", "2026-03-21"]),
            "age": [45.0, 45.0],
        }
    )
    return data.assign(**extra)


def test_limited_data_set_allows_day_dates_zip5_and_ages():
    assert check_regime(_visits(zip=["10001", "10001"], age=[93, 93])) == []


def test_safe_harbor_rejects_day_dates_naming_the_column_not_values():
    """45 CFR 164.514(b)(2)(i)(C): all elements of dates except the year are identifiers."""
    with pytest.raises(InputError, match="visit_date") as err:
        check_regime(_visits(), "safe_harbor", strict=True)
    assert "2026" not in str(err.value)


def test_safe_harbor_accepts_years_zip3_and_top_coded_age():
    data = _visits(visit_date=[2026, 2026], zip=["100", "100"], age=[90, 45])
    assert check_regime(data, "safe_harbor") == []
    jan1 = _visits(visit_date=pd.to_datetime(["2026-01-01", "2025-01-01"]))
    assert check_regime(jan1, "safe_harbor") == []


@pytest.mark.parametrize(
    ("extra", "column"),
    [
        ({"zip": ["10001", "10002"]}, "zip"),
        ({"zip_code": ["036", "100"]}, "zip_code"),  # restricted ZIP3 (population under 20,000)
        ({"age": [93, 45]}, "age"),
        ({"intake_date": ["2026-03", "2026-04"]}, "intake_date"),
    ],
)
def test_safe_harbor_problems(extra, column):
    """45 CFR 164.514(b)(2)(i)(B) ZIP codes beyond 3 digits (and the 17 ZIP3s of <= 20,000 people,
    HHS de-identification guidance 2012), (C) ages over 89 and dates finer than the year."""
    data = _visits(visit_date=[2026, 2026], **extra)
    problems = check_regime(data, "safe_harbor")
    assert len(problems) == 1 and repr(column) in problems[0]
    for value in next(iter(extra.values())):
        assert str(value) not in problems[0]


def test_safe_harbor_on_raw_text_columns():
    """Ingest checks the raw frame, where every cell is still text."""
    raw = pd.DataFrame({"visit_date": ["2026-03-14"], "age": ["93"], "zip": ["021"]})
    problems = check_regime(raw, "safe_harbor")
    assert [p.split("'")[1] for p in problems] == ["visit_date", "age"]
    years = pd.DataFrame({"visit_date": ["2026", " 2025 "], "age": ["90", None]})
    assert check_regime(years, "safe_harbor") == []


def test_direct_identifier_column_is_a_problem_in_every_regime():
    data = _visits(patient_name=["x", "y"])
    assert len(check_regime(data)) == 1 and "patient_name" in check_regime(data)[0]


def test_unknown_regime_is_an_input_error():
    with pytest.raises(InputError, match="regime"):
        check_regime(_visits(), "anonymous")


# --------------------------------------------------------------------------------------------
# small-cell suppression (CMS cell-size rule)
# --------------------------------------------------------------------------------------------


def test_counts_one_to_ten_and_their_derived_cells_are_hidden():
    """CMS cell-size suppression policy: no count 1-10 shown, nor figures derived from it."""
    table = pd.DataFrame(
        {"n": [0, 1, 10, 11, 50], "pct": [0.0, 1.0, 0.3, 0.5, 0.6], "label": list("abcde")}
    )
    before = table.copy()
    out = suppress_small_cells(table, "n", derived={"n": ["pct"]})
    assert out["n"].tolist() == [0, "<11", "<11", 11, 50]
    assert out["pct"].tolist() == [0.0, "<11", "<11", 0.5, 0.6]
    assert out["label"].tolist() == list("abcde")
    assert [is_suppressed(v) for v in out["n"]] == [False, True, True, False, False]
    pd.testing.assert_frame_equal(table, before)


def test_complementary_suppression_against_total_row():
    """One hidden cell in a column with a shown total: the next-smallest is hidden too."""
    table = pd.DataFrame({"n": [25, 7, 30, 62]}, index=["A", "B", "C", "Total"])
    out = suppress_small_cells(table, "n", total_row="Total")
    assert out["n"].tolist() == ["<11", "<11", 30, 62]


def test_complementary_suppression_against_total_column():
    table = pd.DataFrame({"pri": [12, 3, 0], "trad": [20, 15, 0], "all": [32, 18, 0]})
    out = suppress_small_cells(table, ["pri", "trad"], total_column="all")
    assert out.loc[1].tolist() == ["<11", "<11", 18]
    assert out.loc[0].tolist() == [12, 20, 32] and out.loc[2].tolist() == [0, 0, 0]


def test_complement_label_marks_what_is_withheld_for_another_cell():
    """<11 only where a count is 1-10 (or a figure rests on such a count); the complement,
    and a share hidden because of a count other than its base, read the second marker."""
    table = pd.DataFrame({"n": [25, 7, 30, 62], "bad": [3, 0, 12, 15],
                          "pct": [0.88, 1.0, 0.6, 0.76]}, index=["A", "B", "C", "Total"])
    out = suppress_small_cells(table, ["n", "bad"], derived={"n": ["pct"], "bad": ["pct"]},
                               total_row="Total", complement_label="*")
    assert out["n"].tolist() == ["*", "<11", 30, 62]
    assert out["bad"].tolist() == ["<11", 0, "*", 15]
    # A: its base n (25) is a complement, its bad count is small -> withheld, not "<11"
    assert out["pct"].tolist() == ["*", "<11", "*", 0.76]
    assert [is_suppressed(v) for v in out["pct"]] == [True, True, True, False]
    same = suppress_small_cells(table, "n", total_row="Total")
    assert same["n"].tolist() == ["<11", "<11", 30, 62]  # default: one marker, as before


def test_lone_hidden_cell_hides_the_total_when_nothing_else_can_be():
    table = pd.DataFrame({"n": [4, 4]}, index=["A", "Total"])
    out = suppress_small_cells(table, "n", total_row="Total")
    assert out["n"].tolist() == ["<11", "<11"]
    table = pd.DataFrame({"n": [4, 0, 40]}, index=["A", "B", "Total"])
    assert suppress_small_cells(table, "n", total_row="Total")["n"].tolist() == ["<11", "<11", 40]


def test_suppression_argument_errors():
    table = pd.DataFrame({"n": [1, 2], "x": ["a", "b"]})
    with pytest.raises(InputError, match="'m'"):
        suppress_small_cells(table, "m")
    with pytest.raises(InputError, match="'x'"):
        suppress_small_cells(table, "x")
    with pytest.raises(InputError, match="negative"):
        suppress_small_cells(pd.DataFrame({"n": [-1]}), "n")
    with pytest.raises(InputError, match="total_row"):
        suppress_small_cells(table, "n", total_row="Total")


@st.composite
def _count_tables(draw):
    n_rows = draw(st.integers(1, 6))
    n_cols = draw(st.integers(1, 4))
    cells = st.integers(0, 40)
    body = np.array(draw(st.lists(cells, min_size=n_rows * n_cols, max_size=n_rows * n_cols)))
    body = body.reshape(n_rows, n_cols)
    table = pd.DataFrame(body, columns=[f"c{j}" for j in range(n_cols)])
    table["total"] = table.sum(axis=1)
    table.loc["Total"] = table.sum(axis=0)
    return table


@settings(max_examples=100, deadline=None)
@given(_count_tables())
def test_suppression_invariants(table):
    """No count 1-10 is shown, and no hidden cell is the only hidden one against a shown total."""
    counts = [c for c in table.columns if c != "total"]
    out = suppress_small_cells(table, counts, total_row="Total", total_column="total")
    hidden = out.map(is_suppressed)
    shown = table.where(~hidden)
    assert not ((shown >= 1) & (shown <= 10)).any().any()
    for column in table.columns:  # column groups against the total row
        if not hidden.loc["Total", column]:
            assert hidden[column].drop("Total").sum() != 1
    for row in table.index:  # row groups against the total column
        if not hidden.loc[row, "total"]:
            assert hidden.loc[row, counts].sum() != 1
    shown_cells = ~hidden.to_numpy()
    assert (out.to_numpy()[shown_cells] == table.to_numpy()[shown_cells]).all()
