"""Synthetic EMR export: shape, ranges, truth, determinism, messy defects, and the DGP contract.

The statistical checks use the generator's own potential outcomes as the reference (the truth it
writes) and ordinary least squares (statsmodels OLS) as the adjusted analysis; tolerances are in
multiples of the reported standard error.
"""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pandas as pd
import pytest

from outcomes.errors import InputError
from outcomes.ingest.techniques import map_techniques
from outcomes.schema import VISIT_COLUMNS, VISIT_TYPES, VisitSchema, condition_of
from outcomes.synthetic import DEFAULT_EFFECTS, generate_export, write_export
from outcomes.synthetic import text as txt

CONFOUNDERS = "prior_pt + prior_injection + surgery_recommended + np.log(symptom_duration_weeks / 8) + age"


@pytest.fixture(scope="module")
def small():
    return generate_export(400, seed=5)


@pytest.fixture(scope="module")
def large():
    """20,000 episodes (about 140k rows): big enough to see confounding and dropout by arm."""
    return generate_export(20_000, seed=7)


@pytest.fixture(scope="module")
def large_null():
    return generate_export(20_000, seed=7, effects={"nprs": 0, "lefs": 0})


def _episode_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Number each patient's episodes by counting evaluation visits in date order."""
    f = frame.sort_values(["patient_id", "visit_date", "visit_id"]).copy()
    f["ep_no"] = (f["visit_type"] == "evaluation").groupby(f["patient_id"]).cumsum()
    return f


def _completers(frame: pd.DataFrame, truth: dict, instr: str) -> pd.DataFrame:
    """Completed pri/traditional episodes with intake, discharge change and covariates."""
    f = _episode_rows(frame)
    key = ["patient_id", "ep_no"]
    intake = f[f["visit_type"] == "evaluation"].set_index(key)
    disch = f[f["visit_type"] == "discharge"].set_index(key)
    both = intake.join(disch[[instr]], rsuffix="_dc", how="inner")
    arm = truth["episodes"].set_index("first_visit_id")["arm"]
    both["arm"] = arm.reindex(both["visit_id"]).to_numpy()
    both = both[both["arm"].isin(["pri", "traditional"])].copy()
    both["pri"] = (both["arm"] == "pri").astype(int)
    both["change"] = both[f"{instr}_dc"].astype(float) - both[instr].astype(float)
    cols = ["age", "symptom_duration_weeks", "prior_pt", "prior_injection",
            "surgery_recommended", instr]
    both[cols] = both[cols].astype(float)
    return both.rename(columns={instr: "intake"})


def _naive_and_adjusted(frame, truth, instr):
    import statsmodels.formula.api as smf

    d = _completers(frame, truth, instr)
    naive = d.loc[d.pri == 1, "change"].mean() - d.loc[d.pri == 0, "change"].mean()
    fit = smf.ols(f"change ~ pri + intake + {CONFOUNDERS}", data=d).fit()
    return naive, fit.params["pri"], fit.bse["pri"]


# --- shape and ranges -------------------------------------------------------------------------

def test_columns_are_exactly_the_canonical_ones(small):
    frame, _ = small
    assert tuple(frame.columns) == VISIT_COLUMNS


def test_clean_values_in_range(small):
    frame, _ = small
    VisitSchema.validate(frame.assign(visit_date=pd.to_datetime(frame["visit_date"])))
    assert frame["visit_id"].is_unique
    dates = pd.to_datetime(frame["visit_date"], format="%Y-%m-%d")
    assert dates.min() >= pd.Timestamp("2025-01-01") and dates.max() <= pd.Timestamp("2026-09-30")
    assert (dates.dt.dayofweek != 6).all()  # clinics are closed on Sunday
    assert set(frame["visit_type"]) == set(VISIT_TYPES)
    assert frame["nprs"].notna().all() and frame["nprs"].between(0, 10).all()
    assert frame["lefs"].dropna().between(0, 80).all()
    assert frame["psfs"].dropna().between(0, 10).all()
    assert frame["groc"].dropna().between(-7, 7).all()
    assert frame["age"].between(14, 90).all()
    for col in ("prior_pt", "prior_injection", "surgery_recommended"):
        assert set(frame[col].unique()) <= {0, 1}
    assert set(frame["sex"]) <= {"F", "M", "X"}
    assert frame["technique_notes"].notna().all()


def test_age_is_top_coded_at_90(large):
    frame, _ = large
    assert frame["age"].max() == 90


def test_score_schedule_and_cpt_codes(small):
    frame, _ = small
    vt = frame["visit_type"]
    assert frame.loc[vt != "discharge", "groc"].isna().all()
    assert frame.loc[vt == "discharge", "groc"].notna().all()
    assert frame.loc[vt == "treatment", "psfs"].isna().all()
    assert frame.loc[vt == "evaluation", "lefs"].notna().mean() > 0.9
    first_cpt = frame["cpt_codes"].str.split(";").str[0]
    assert first_cpt[vt == "evaluation"].isin(["97161", "97162", "97163"]).all()
    assert (first_cpt[vt == "re-evaluation"] == "97164").all()
    assert not frame.loc[vt.isin(["treatment", "discharge"]), "cpt_codes"].str.contains(
        "9716").any()


def test_conditions_itbs_largest(small):
    frame, _ = small
    counts = condition_of(frame.drop_duplicates("patient_id")["icd10"]).value_counts()
    assert counts.index[0] == "itbs"
    assert set(counts.index) == {"itbs", "pfps", "hip_pain", "lbp"}


def test_episodes_start_with_evaluation_and_have_no_long_gaps(small):
    frame, truth = small
    f = _episode_rows(frame)
    assert (f.groupby("patient_id")["visit_type"].first() == "evaluation").all()
    gaps = f.groupby(["patient_id", "ep_no"])["visit_date"].apply(
        lambda s: pd.to_datetime(s).diff().dt.days.max())
    assert gaps.dropna().max() < 60
    assert f.groupby(["patient_id", "ep_no"]).ngroups == truth["counts"]["episodes"]
    assert truth["counts"]["patients"] < truth["counts"]["episodes"]  # some second episodes


def test_therapists_and_clinics(small):
    frame, truth = small
    assert frame["clinic_id"].nunique() == 3
    assert 15 <= truth["n_therapists"] <= 25
    styles = {t["style"] for t in truth["therapists"]}
    assert styles == {"pri", "both", "traditional"}
    clinic_of = {t["therapist_id"]: t["clinic_id"] for t in truth["therapists"]}
    assert (frame["therapist_id"].map(clinic_of) == frame["clinic_id"]).all()


# --- the DGP contract ------------------------------------------------------------------------

def test_arm_is_the_families_of_the_first_three_treatment_visits(small):
    """The contract other modules rely on: arm = technique families in treatment visits 1-3."""
    frame, truth = small
    f = _episode_rows(frame)
    fam = map_techniques(f["technique_notes"]).dropna(subset=["family"])
    fam = fam[fam["family"] != "other"]
    f = f[f["visit_type"] == "treatment"]
    first3 = f[f.groupby(["patient_id", "ep_no"]).cumcount() < 3]
    fams = fam.merge(first3[["patient_id", "ep_no"]], left_on="row", right_index=True)
    seen = fams.groupby(["patient_id", "ep_no"])["family"].agg(lambda s: frozenset(s))
    first_visit = _episode_rows(frame).query("visit_type == 'evaluation'").set_index(
        ["patient_id", "ep_no"])["visit_id"]
    episodes = truth["episodes"].set_index("first_visit_id")
    arm = episodes["observed_arm"].reindex(first_visit.loc[seen.index])
    expected = {"pri": {"pri"}, "traditional": {"traditional"}, "mixed": {"pri", "traditional"}}
    got = [expected[a] == set(s) for a, s in zip(arm, seen, strict=True)]
    assert len(got) > 300 and all(got)
    # episodes with no attended treatment visit show no exposure, and only those
    no_tx = set(first_visit.to_numpy()) - set(first_visit.loc[seen.index])
    assert set(episodes.index[episodes["observed_arm"] == "none"]) == no_tx
    assert (episodes["observed_arm"] == "none").sum() > 0


def test_effect_is_additive_on_the_observed_scale(small):
    _, truth = small
    ep = truth["episodes"]
    for instr, eff in DEFAULT_EFFECTS.items():
        diff = ep[f"{instr}_change_if_pri"] - ep[f"{instr}_change_if_traditional"]
        assert np.allclose(diff, eff), instr
        assert truth["sample_effects"][instr]["ate"] == pytest.approx(eff)
        assert truth["sample_effects"][instr]["att"] == pytest.approx(eff)
    mixed = truth["sample_effects"]["nprs"]["mixed_vs_traditional"]
    assert mixed == pytest.approx(-0.5, abs=0.1)  # half, rounded stochastically per patient


def test_zero_effect_is_possible():
    _, truth = generate_export(300, seed=3, effects={"nprs": 0.0, "lefs": 0.0})
    ep = truth["episodes"]
    for instr in ("nprs", "lefs", "psfs"):
        same = ep[f"{instr}_change_if_pri"] == ep[f"{instr}_change_if_traditional"]
        assert same.all() and truth["sample_effects"][instr]["ate"] == 0


@pytest.mark.slow
def test_confounding_naive_biased_adjusted_recovers(large):
    """Naive completer difference is biased; OLS on baseline + confounders recovers the truth.

    Reference: the generator's effects (-1 NPRS, +4 LEFS), exact on the observed scale. The
    adjusted estimate must lie within 4 standard errors of it; the naive one must miss it by more
    than 0.25 NPRS points / 1 LEFS point (chronic patients get PRI and improve less).
    """
    frame, truth = large
    for instr, min_bias in (("nprs", 0.25), ("lefs", 1.0)):
        naive, adjusted, se = _naive_and_adjusted(frame, truth, instr)
        eff = truth["effects"][instr]
        assert abs(naive - eff) > min_bias, (instr, naive)
        assert abs(adjusted - eff) < 4 * se, (instr, adjusted, se)


@pytest.mark.slow
def test_null_effect_comes_out_null_when_adjusted(large_null):
    frame, truth = large_null
    naive, adjusted, se = _naive_and_adjusted(frame, truth, "nprs")
    assert abs(naive) > 0.25
    assert abs(adjusted) < 4 * se


def test_dropout_depends_on_arm(large):
    _, truth = large
    share = truth["counts"]["dropout_share_by_arm"]
    n = truth["counts"]["episodes_by_arm"]
    p1, p0 = share["pri"], share["traditional"]
    pooled = (p1 * n["pri"] + p0 * n["traditional"]) / (n["pri"] + n["traditional"])
    se = np.sqrt(pooled * (1 - pooled) * (1 / n["pri"] + 1 / n["traditional"]))
    assert (p1 - p0) / se > 5  # two-proportion z-test
    assert 0.30 <= truth["counts"]["no_discharge_share"] <= 0.55
    assert truth["counts"]["status"]["open"] > 0


def test_dropout_depends_on_observed_pain(large):
    """Patients whose pain has not improved by visit 3 stop more often (MAR on observed NPRS)."""
    frame, truth = large
    f = _episode_rows(frame)
    f["k"] = f.groupby(["patient_id", "ep_no"]).cumcount()
    intake = f[f.k == 0].set_index(["patient_id", "ep_no"])["nprs"]
    v3 = f[f.k == 3].set_index(["patient_id", "ep_no"])
    worse = (v3["nprs"] >= intake.reindex(v3.index)).to_numpy()
    ends = f.groupby(["patient_id", "ep_no"])["k"].max().reindex(v3.index).to_numpy() == 3
    not_discharge = (v3["visit_type"] != "discharge").to_numpy()
    assert ends[worse & not_discharge].mean() > ends[~worse & not_discharge].mean()


def test_ceiling_cases_exist(small):
    _, truth = small
    assert truth["counts"]["ceiling_nprs_intake"] > 0


# --- determinism, truth file, writing ----------------------------------------------------------

def test_deterministic_frames():
    a, ta = generate_export(150, seed=9)
    b, tb = generate_export(150, seed=9)
    c, _ = generate_export(150, seed=10)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(ta["episodes"], tb["episodes"])
    assert not a.equals(c)


@pytest.mark.parametrize("messy", [False, True])
def test_write_export_is_byte_identical(tmp_path, messy):
    out = []
    for name in ("a", "b"):
        info = write_export(tmp_path / name / "x.csv", 120, seed=4, messy=messy)
        out.append((tmp_path / name / "x.csv").read_bytes() + b"|" +
                   (tmp_path / name / "x.truth.json").read_bytes())
        assert info["truth_path"].endswith("x.truth.json")
    assert out[0] == out[1]
    assert out[0].startswith(b"\xef\xbb\xbf") == messy


def test_truth_json(tmp_path):
    info = write_export(tmp_path / "e.csv", 200, seed=2)
    truth = json.loads((tmp_path / "e.truth.json").read_text(encoding="utf-8"))
    for key in ("seed", "n_episodes", "start", "end", "effects", "mechanism", "counts",
                "therapists", "contract", "sample_effects", "episodes"):
        assert key in truth, key
    assert truth["seed"] == 2 and truth["n_episodes"] == 200
    assert truth["effects"] == DEFAULT_EFFECTS
    counts = truth["counts"]
    assert counts["rows"] == info["rows"] == len(pd.read_csv(tmp_path / "e.csv"))
    assert sum(counts["episodes_by_arm"].values()) == counts["episodes"] == 200
    assert sum(counts["status"].values()) == 200
    assert len(truth["episodes"]["arm"]) == 200
    frame = pd.read_csv(tmp_path / "e.csv", dtype=str)
    evals = set(frame.loc[frame["visit_type"] == "evaluation", "visit_id"])
    assert set(truth["episodes"]["first_visit_id"]) == evals


@pytest.mark.parametrize("suffix", [".xlsx", ".parquet"])
@pytest.mark.parametrize("messy", [False, True])
def test_other_formats(tmp_path, suffix, messy):
    path = tmp_path / f"e{suffix}"
    info = write_export(path, 40, seed=1, messy=messy)
    back = pd.read_excel(path) if suffix == ".xlsx" else pd.read_parquet(path)
    assert tuple(back.columns) == VISIT_COLUMNS and len(back) == info["rows"]
    if messy:
        rec = json.loads(path.with_name("e.truth.json").read_text(encoding="utf-8"))["messy"]
        assert rec["bom"]["written"] is False and rec["ragged_row"]["written"] is False
        assert back.iloc[-1]["visit_id"] == "TOTAL"


@pytest.mark.parametrize("kwargs, words", [
    ({"n_episodes": 0}, "n_episodes"),
    ({"effects": {"odi": 1.0}}, "unknown instrument"),
    ({"start": "2026-01-01", "end": "2025-01-01"}, "end must be after start"),
    ({"start": "yesterday"}, "ISO dates"),
    ({"messy": 2.0}, "messy"),
    ({"n_therapists": 2, "n_clinics": 3}, "at least n_clinics"),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(InputError, match=words):
        generate_export(**kwargs)


def test_bad_output_suffix(tmp_path):
    with pytest.raises(InputError, match="must end in"):
        write_export(tmp_path / "x.json", 10)


def test_cli_synth(tmp_path):
    from click.testing import CliRunner

    from outcomes.cli import cli

    out = tmp_path / "s.csv"
    res = CliRunner().invoke(cli, ["synth", "--out", str(out), "--episodes", "50",
                                   "--effect-nprs", "0"])
    assert res.exit_code == 0, res.output
    truth = json.loads((tmp_path / "s.truth.json").read_text(encoding="utf-8"))
    assert truth["effects"]["nprs"] == 0 and truth["effects"]["lefs"] == 4.0


# --- messy ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    path = tmp_path_factory.mktemp("messy") / "m.csv"
    write_export(path, 300, seed=21, messy=True)
    truth = json.loads(path.with_name("m.truth.json").read_text(encoding="utf-8"))
    frame, _ = generate_export(300, seed=21, messy=True)
    clean, _ = generate_export(300, seed=21)
    return path, truth["messy"], frame, clean


def test_messy_every_kind_recorded(messy):
    _, rec, frame, clean = messy
    kinds = {"bom", "exact_duplicate", "conflicting_duplicate", "blank_row", "mixed_date_format",
             "impossible_date", "out_of_range_score", "text_score", "whitespace_id",
             "unmapped_technique", "phi_in_note", "markup_in_note", "ragged_row", "totals_row"}
    assert kinds <= set(rec)
    assert all(rec[k]["count"] >= 1 for k in kinds)
    row_level = sum(rec[k]["count"] for k in kinds - {"bom", "totals_row"})
    assert row_level >= 0.02 * len(clean)
    phi = {d["phi_kind"] for d in rec["phi_in_note"]["details"]}
    assert phi == set(txt.PHI_SNIPPETS)
    assert {d["value"] for d in rec["text_score"]["details"]} == set(txt.TEXT_SCORES)


def test_messy_rows_show_their_defect(messy):
    _, rec, frame, _ = messy
    for orig, copy in zip(rec["exact_duplicate"]["original_rows"], rec["exact_duplicate"]["rows"],
                          strict=True):
        assert orig != copy and frame.loc[orig].equals(frame.loc[copy])
    for orig, copy in zip(rec["conflicting_duplicate"]["original_rows"],
                          rec["conflicting_duplicate"]["rows"], strict=True):
        a, b = frame.loc[orig], frame.loc[copy]
        assert a["visit_id"] == b["visit_id"] and a["nprs"] != b["nprs"]
        assert a.drop("nprs").equals(b.drop("nprs"))
    dup_ids = rec["exact_duplicate"]["visit_ids"]
    for vid in dup_ids:
        rows = frame[frame["visit_id"] == vid]
        assert len(rows) == 2 and rows.iloc[0].equals(rows.iloc[1])
    for vid in rec["conflicting_duplicate"]["visit_ids"]:
        rows = frame[frame["visit_id"] == vid]
        assert len(rows) == 2 and rows["nprs"].nunique() == 2
    for d in rec["mixed_date_format"]["details"] + rec["impossible_date"]["details"]:
        value = frame.loc[d["row"], "visit_date"]
        assert value == d["value"]
        if d.get("form") != "future":
            assert pd.to_datetime(value, format="%Y-%m-%d", errors="coerce") is pd.NaT
    for d in rec["out_of_range_score"]["details"] + rec["text_score"]["details"]:
        assert frame.loc[d["row"], d["column"]] == d["value"]
    for d in rec["phi_in_note"]["details"] + rec["markup_in_note"]["details"]:
        assert d["value"] in frame.loc[d["row"], "technique_notes"]
    for d in rec["whitespace_id"]["details"]:
        value = frame.loc[d["row"], d["column"]]
        assert value != value.strip() or "\u200b" in value
    assert frame.loc[rec["blank_row"]["rows"]].isna().all().all()
    assert frame.iloc[-1]["visit_id"] == "TOTAL" and rec["totals_row"]["rows"] == [len(frame) - 1]


def test_messy_is_clean_plus_recorded_defects(messy):
    _, rec, frame, clean = messy
    touched = set()
    for kind, entry in rec.items():
        if isinstance(entry, dict) and kind not in ("bom",):
            touched |= set(entry.get("rows", []))
    untouched = frame.drop(index=sorted(touched))
    merged = clean.astype("string").astype(object).where(clean.notna(), None)
    expected = merged[merged["visit_id"].isin(untouched["visit_id"])]
    assert len(untouched) == len(expected)
    assert untouched.reset_index(drop=True).equals(expected.reset_index(drop=True))


def test_messy_csv_file_level_defects(messy):
    path, rec, frame, _ = messy
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        records = list(csv.reader(fh))
    header, body = records[0], records[1:]
    assert header[0] == "visit_id"
    assert len(body) == len(frame)
    for row in rec["ragged_row"]["rows"]:
        assert len(body[row]) == len(header) + 1
    for row, form in zip(rec["blank_row"]["rows"], rec["blank_row"]["forms"], strict=True):
        assert body[row] == ([] if form == "empty_line" else [""] * len(header))
    width_ok = [len(r) == len(header) for i, r in enumerate(body)
                if i not in set(rec["ragged_row"]["rows"]) | set(rec["blank_row"]["rows"])]
    assert all(width_ok)


def test_messy_unmapped_and_markup_text_is_unmapped(messy):
    _, rec, frame, _ = messy
    rows = rec["unmapped_technique"]["rows"]
    out = map_techniques(frame.loc[rows, "technique_notes"])
    unmapped = set(out.loc[out["technique_code"].isna(), "source_text"])
    assert {d["value"] for d in rec["unmapped_technique"]["details"]} <= unmapped
    assert re.search(r"<script>", " ".join(frame["technique_notes"].dropna()))


def test_messy_notes_map_like_the_clean_ones(messy):
    """Planted PHI, markup and unknown text never adds or removes a technique code."""
    _, rec, frame, clean = messy
    rows = sorted({r for k in ("phi_in_note", "markup_in_note", "unmapped_technique")
                   for r in rec[k]["rows"]})
    ids = frame.loc[rows, "visit_id"]
    dirty = map_techniques(frame.loc[rows, "technique_notes"]).dropna(subset=["technique_code"])
    base = clean.set_index("visit_id").loc[ids, "technique_notes"].set_axis(rows)
    ref = map_techniques(base).dropna(subset=["technique_code"])
    key = ["row", "technique_code"]
    assert dirty[key].reset_index(drop=True).equals(ref[key].reset_index(drop=True))


def _episode_covariates(frame: pd.DataFrame, truth: dict) -> pd.DataFrame:
    ep = truth["episodes"]
    ev = frame[frame["visit_type"] == "evaluation"].set_index("visit_id")
    cols = ["age", "symptom_duration_weeks", "prior_pt", "prior_injection", "surgery_recommended"]
    cov = ev.loc[ep["first_visit_id"], cols].astype(float).reset_index(drop=True)
    return pd.concat([ep.reset_index(drop=True), cov], axis=1)


@pytest.mark.slow
def test_therapist_effect_is_about_a_tenth_of_the_variance(large):
    """One-way ANOVA intraclass correlation (Searle 1971, unbalanced groups) of the covariate-
    adjusted NPRS change under traditional care, by therapist: about 0.1 (0.05-0.2)."""
    import statsmodels.formula.api as smf

    d = _episode_covariates(*large)
    d["y"] = d["nprs_change_if_traditional"]
    fit = smf.ols(f"y ~ nprs_intake + {CONFOUNDERS}", data=d).fit()
    r = fit.resid
    g = r.groupby(d["therapist_id"])
    n, k, total = g.size(), g.ngroups, len(r)
    msb = (n * (g.mean() - r.mean()) ** 2).sum() / (k - 1)
    msw = ((r - g.transform("mean")) ** 2).sum() / (total - k)
    n0 = (total - (n**2).sum() / total) / (k - 1)
    s2b = (msb - msw) / n0
    assert 0.05 < s2b / (s2b + msw) < 0.2


def test_pri_training_drives_pri_care(large):
    frame, truth = large
    d = _episode_covariates(frame, truth)
    style = {t["therapist_id"]: t["style"] for t in truth["therapists"]}
    share = (d["arm"] == "pri").groupby(d["therapist_id"].map(style)).mean()
    assert share["pri"] > 0.7 and share["traditional"] < 0.2
    assert share["traditional"] < share["both"] < share["pri"]
    chronic = d["prior_pt"].eq(1) & d["surgery_recommended"].eq(1)
    assert (d.loc[chronic, "arm"] == "pri").mean() > (d.loc[~chronic, "arm"] == "pri").mean() + 0.1


# --- scenarios: data that can be wrong in the ways real data are -------------------------------

def test_scenario_defaults_leave_the_truth_unchanged():
    _, plain = generate_export(150, seed=9)
    _, explicit = generate_export(150, seed=9, therapist_shift=0.0, effect_subgroup=None,
                                  secular_trend=0.0, mnar_dropout=0.0)
    assert "scenario" not in plain and "scenario" not in explicit
    assert list(plain["episodes"].columns) == list(explicit["episodes"].columns)


@pytest.fixture(scope="module")
def subgroup():
    return generate_export(3000, seed=12, effects={"nprs": -2.0, "lefs": 8.0},
                           effect_subgroup="prior_pt")


def test_subgroup_effect_is_confined_to_the_subgroup(subgroup):
    frame, truth = subgroup
    ep = truth["episodes"]
    d = ep["nprs_change_if_pri"] - ep["nprs_change_if_traditional"]
    assert set(d[ep["in_subgroup"]]) == {-2.0} and set(d[~ep["in_subgroup"]]) == {0.0}
    # the subgroup is the export's prior_pt flag on the episode's evaluation row
    flag = frame.set_index("visit_id").loc[ep["first_visit_id"], "prior_pt"].to_numpy()
    assert (flag.astype(int) == ep["in_subgroup"].astype(int)).all()


def test_subgroup_truth_records_overall_and_stratum_effects(subgroup):
    _, truth = subgroup
    assert truth["scenario"]["effect_subgroup"] == "prior_pt"
    assert "prior_pt = 1" in truth["scenario"]["mechanism"]["effect_subgroup"]
    nprs = truth["sample_effects"]["nprs"]
    assert nprs["by_stratum"] == {"yes": -2.0, "no": 0.0, "difference": -2.0}
    share = truth["episodes"]["in_subgroup"].mean()
    assert nprs["ate"] == pytest.approx(-2.0 * share, abs=1e-4)
    assert "prior_pt = 1" in truth["contract"]["effect"]


def test_subgroup_names_match_the_models_modifiers():
    from outcomes.models import MODIFIERS
    from outcomes.synthetic import SUBGROUPS

    assert set(SUBGROUPS) == set(MODIFIERS)


@pytest.mark.parametrize("name", ["prior_pt", "prior_injection", "surgery_recommended",
                                  "chronic", "failed_conservative_care"])
def test_subgroup_is_the_episodes_the_models_modifier_selects(name):
    """synthetic may not import models, so it restates each definition: check they agree
    (``chronic`` is > 12 weeks in both, the composite is any of the three flags)."""
    from outcomes.models.modification import modifier_indicator

    frame, truth = generate_export(300, seed=1, effect_subgroup=name)
    ep = truth["episodes"]
    cols = ["prior_pt", "prior_injection", "surgery_recommended", "symptom_duration_weeks"]
    rows = frame.set_index("visit_id").loc[ep["first_visit_id"], cols].apply(pd.to_numeric)
    selected = modifier_indicator(rows.reset_index(drop=True), name)
    assert selected.notna().all() and 0 < selected.mean() < 1
    assert (selected.to_numpy() == ep["in_subgroup"].astype(float).to_numpy()).all()


def test_therapist_shift_makes_pri_trained_therapists_better():
    _, truth = generate_export(400, seed=3, therapist_shift=-0.8)
    _, base = generate_export(400, seed=3)
    th, th0 = pd.DataFrame(truth["therapists"]), pd.DataFrame(base["therapists"])
    moved = th["nprs_change_intercept"] - th0["nprs_change_intercept"]
    assert np.allclose(moved[th["pri_trained"]], -0.8, atol=1e-4)
    assert (moved[~th["pri_trained"]] == 0).all() and (~th["pri_trained"]).any()
    ep, ep0 = truth["episodes"], base["episodes"]
    trained = ep["therapist_id"].map(th.set_index("therapist_id")["pri_trained"]).astype(bool)
    shift = ep["nprs_change_if_traditional"] - ep0["nprs_change_if_traditional"]
    assert -0.85 < shift[trained].mean() < -0.5  # rounding, and clipping at the floor shrinks it
    assert shift[~trained].abs().max() == 0
    assert truth["scenario"]["therapist_shift"] == -0.8
    assert "therapist style" in truth["contract"]["confounders"]


def test_secular_trend_raises_pri_adoption_and_shifts_outcomes():
    _, truth = generate_export(6000, seed=3, secular_trend=-1.5)
    ep = truth["episodes"]
    late = ep["calendar"] > 0.5
    pri = ep["arm"].eq("pri")
    assert pri[late].mean() > pri[~late].mean() + 0.1
    trad = ep["nprs_change_if_traditional"]
    assert trad[late].mean() < trad[~late].mean() - 0.4  # about -0.75 expected
    start = pd.to_datetime(ep["start_date"]).astype("int64")
    assert np.corrcoef(start, ep["calendar"])[0, 1] > 0.9  # the dates show the trend
    assert truth["scenario"]["secular_trend"] == -1.5


def test_mnar_dropout_depends_on_the_unobserved_discharge_change():
    """Among patients with the same pain at their last visit, dropout tracks the final change."""
    mar, mnar = (generate_export(6000, seed=4, mnar_dropout=m)[1]["episodes"] for m in (0.0, 1.5))

    def gap(ep):
        worse = ep["nprs_change_if_" + "traditional"] > -2
        dropped = ep["status"].eq("dropout")
        return dropped[worse].mean() - dropped[~worse].mean()

    assert gap(mnar) > gap(mar) + 0.1
    _, truth = generate_export(100, seed=4, mnar_dropout=1.5)
    assert truth["contract"]["dropout"].startswith("MNAR")


@pytest.mark.parametrize("kwargs, words", [
    ({"effect_subgroup": "left_handed"}, "effect_subgroup"),
    ({"mnar_dropout": float("nan")}, "mnar_dropout"),
    ({"therapist_shift": "big"}, "therapist_shift"),
])
def test_bad_scenario_arguments(kwargs, words):
    with pytest.raises(InputError, match=words):
        generate_export(50, **kwargs)


def test_cli_synth_scenarios(tmp_path):
    from click.testing import CliRunner

    from outcomes.cli import cli

    out = tmp_path / "s.csv"
    res = CliRunner().invoke(cli, ["synth", "--out", str(out), "--episodes", "80",
                                   "--effect-subgroup", "failed_conservative_care",
                                   "--therapist-shift", "0.5", "--secular-trend", "-1",
                                   "--mnar-dropout", "0.7"])
    assert res.exit_code == 0, res.output
    sc = json.loads((tmp_path / "s.truth.json").read_text(encoding="utf-8"))["scenario"]
    assert sc == {**sc, "effect_subgroup": "failed_conservative_care", "therapist_shift": 0.5,
                  "secular_trend": -1.0, "mnar_dropout": 0.7}
    assert set(sc["mechanism"]) == {"effect_subgroup", "therapist_shift", "secular_trend",
                                    "mnar_dropout"}
    bad = CliRunner().invoke(cli, ["synth", "--out", str(out), "--effect-subgroup", "x"])
    assert bad.exit_code == 2 and "error: effect_subgroup" in bad.output
