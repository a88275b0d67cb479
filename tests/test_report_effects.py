"""The comparative report's answer (outcomes.reports.effects): headline, effect modification,
sensitivity; and the rendered report's headline against primary_analysis on the same store."""

from __future__ import annotations

import html
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from outcomes import models
from outcomes import reports as rp
from outcomes.errors import ReportError

# the function, not the submodule of the same name that importing outcomes.models.evalues binds
from outcomes.models.evalues import evalue

PASS = SimpleNamespace(interpretable=True, label="interpretable")
FAIL = SimpleNamespace(interpretable=False, label="not interpretable: effective sample size")


def _result(estimate, ci_low, ci_high, n=300, se_method="jackknife"):
    effects = pd.DataFrame({"method": ["naive", "primary"], "term": "pri vs traditional",
                            "estimate": [0.0, estimate], "se": 0.2, "ci_low": [-1.0, ci_low],
                            "ci_high": [1.0, ci_high], "p": 0.01, "n": n})
    return SimpleNamespace(effects=effects, se_method=se_method)


def test_headline_nprs_reduction_in_points_and_against_the_mcid():
    lines = rp.headline(_result(-1.14, -1.52, -0.71), PASS, "nprs")
    assert lines[0] == ("Answer: PRI-style care reduced NPRS pain by 1.1 points more than "
                        "traditional PT (95 % CI 0.7 to 1.5 points more).")
    assert "MCID" in lines[1] and "is 2 points" in lines[1] and "below it" in lines[1]
    assert lines[2].startswith("Diagnostics gate: passed")
    assert "jackknife" in lines[3] and "300 episodes" in lines[3]
    assert not any(re.search(r"\bp\s*[=<]", s) for s in lines)  # never a p-value


def test_headline_lefs_interval_through_zero_and_at_least_the_mcid():
    lines = rp.headline(_result(9.6, -0.4, 19.5, se_method="bootstrap"), PASS, "lefs")
    assert lines[0] == ("Answer: PRI-style care improved LEFS function by 9.6 points more than "
                        "traditional PT (95 % CI from 0.4 points less to 19.5 points more: "
                        "compatible with no difference).")
    assert "is 9 points" in lines[1] and "at least it" in lines[1]
    assert "bootstrap" in lines[3]


def test_headline_worse_with_pri_reads_less():
    lines = rp.headline(_result(0.8, 0.3, 1.3), PASS, "nprs")
    assert "by 0.8 points less" in lines[0] and "(95 % CI 0.3 to 1.3 points less)" in lines[0]


def test_headline_failed_gate_says_not_interpretable_and_shows_no_number():
    lines = rp.headline(_result(-1.14, -1.52, -0.71, n=7), FAIL, "nprs")
    assert lines[0].startswith("Answer: not interpretable.")
    assert "1.1" not in " ".join(lines) and "1.5" not in " ".join(lines)
    assert lines[1].startswith("Diagnostics gate: failed (not interpretable: effective")
    assert "<11 episodes" in lines[2]


def _modification(counts_yes=(40, 30), counts_no=(50, 45), gate_yes=True):
    """A PrimaryResult-like object with one modifier: per-arm completer counts per stratum."""
    rows = []
    for value, (t1, t0) in ((1.0, counts_yes), (0.0, counts_no)):
        rows += [{"_modifier": value, "_t": 1.0}] * t1 + [{"_modifier": value, "_t": 0.0}] * t0
    data = pd.DataFrame(rows).assign(_w_modifier=1.0, nprs_change=-2.0)
    n_yes, n_no = sum(counts_yes), sum(counts_no)
    table = pd.DataFrame({
        "term": "pri vs traditional", "estimate": [-1.5, -0.5, -1.0], "se": 0.3,
        "ci_low": [-2.1, -1.1, -1.8], "ci_high": [-0.9, 0.1, -0.2], "p": [0.001, 0.1, 0.02],
        "n": [n_yes, n_no, n_yes + n_no],
        "stratum": ["prior_pt = yes", "prior_pt = no", "difference"]})
    gates = {"prior_pt = yes": SimpleNamespace(interpretable=gate_yes, label="x"),
             "prior_pt = no": PASS}
    return SimpleNamespace(modification=table, gates=gates, data=data, outcome="nprs")


def test_modification_table_shows_strata_and_the_interaction():
    tab = rp.modification_table({"prior_pt": _modification()}, PASS)
    assert list(tab.index) == ["prior_pt: yes", "prior_pt: no", "prior_pt: difference"]
    assert tab["estimate"].tolist() == [-1.5, -0.5, -1.0]
    assert tab["p"].isna().tolist() == [True, True, False]  # p only for the interaction
    assert tab.loc["prior_pt: difference", "p"] == 0.02
    assert set(tab["shown"]) == {"yes"} and tab["n"].tolist() == [70, 95, 165]
    forest = rp.forest_rows(tab)
    assert forest["label"].tolist() == ["prior_pt: yes", "prior_pt: no"]


def test_modification_table_withholds_small_arms_and_their_interaction():
    tab = rp.modification_table({"prior_pt": _modification(counts_yes=(4, 5))}, PASS)
    assert tab["estimate"].isna().tolist() == [True, False, True] and tab["p"].isna().all()
    assert tab.loc["prior_pt: yes", "shown"] == "an arm has fewer than 11 episodes"
    assert tab.loc["prior_pt: difference", "shown"] == "a stratum is withheld"
    assert (tab["n"] == "<11").all()  # 9, and the others it could be worked out from


def test_modification_table_withholds_a_stratum_whose_gate_fails():
    tab = rp.modification_table({"prior_pt": _modification(gate_yes=False)}, PASS)
    assert np.isnan(tab.loc["prior_pt: yes", "estimate"])
    assert tab.loc["prior_pt: no", "estimate"] == -0.5
    assert tab.loc["prior_pt: yes", "shown"].startswith("stratum gate failed")
    assert np.isnan(tab.loc["prior_pt: difference", "estimate"])


def test_modification_table_withholds_everything_when_the_gate_fails():
    tab = rp.modification_table({"prior_pt": _modification()}, FAIL)
    assert tab["estimate"].isna().all()
    assert set(tab["shown"]) == {"diagnostics gate failed"}


def test_hypothesis_is_stated_and_multiplicity_only_with_several_modifiers():
    one = rp.modification_hypothesis(["failed_conservative_care"])
    assert one[0].startswith("Pre-specified hypothesis") and len(one) == 2
    two = rp.modification_hypothesis(["failed_conservative_care", "prior_pt"])
    assert "2 modifiers are shown" in two[-1] and "about 10 %" in two[-1]
    assert "exploratory" in two[-1]


def test_parse_modifiers():
    assert rp.parse_modifiers(" failed_conservative_care, chronic ") == [
        "failed_conservative_care", "chronic"]
    assert rp.parse_modifiers("") == []
    with pytest.raises(ReportError, match="not a pre-specified modifier"):
        rp.parse_modifiers("prior_pt,left_handed")


def test_evalue_display_matches_the_evalue_package_example():
    """EValue (R) documentation: ``evalues.MD(est = 0.5, se = 0.25)`` gives E-values 2.529142
    (point) and 1.110803 (lower limit)."""
    shown = rp.evalue_display(evalue(0.5, se=0.25, sd=1.0))
    assert list(shown.index) == ["point", "ci_low"]
    assert shown["E-value"].tolist() == [2.53, 1.11]


def _control(estimate, ci_low, ci_high, n=280):
    return _result(estimate, ci_low, ci_high, n).effects.assign(outcome="lefs_intake",
                                                                 expected=0.0)


def test_explain_away_words_the_evalue_and_the_negative_control():
    ev = evalue(-1.0, -1.5, -0.5, sd=2.0)
    crossing = rp.explain_away(ev, "nprs", _control(0.1, -0.2, 0.4))
    assert "risk ratio of at least" in crossing[0] and "NPRS pain" in crossing[0]
    assert "lefs_intake (measured before treatment)" in crossing[1]
    assert "gives 0.10 (95 % CI -0.20 to 0.40): compatible with no effect" in crossing[1]
    biased = rp.explain_away(ev, "nprs", _control(0.5, 0.2, 0.8))
    assert "some bias survives" in biased[1]
    assert len(rp.explain_away(ev, "nprs")) == 2


def test_negative_control_table_sits_beside_the_primary_estimate():
    tab = rp.negative_control_table(_result(-1.234, -1.6, -0.9), _control(0.05, -0.3, 0.4, n=8),
                                    "nprs")
    assert list(tab.index) == ["primary: nprs change",
                               "negative control: lefs_intake (measured before treatment)"]
    assert tab["estimate"].tolist() == [-1.23, 0.05]
    assert tab["n"].tolist() == [300, "<11"]


def test_dose_display_hides_small_bands_and_what_gives_them_away():
    table = pd.DataFrame({"band": ["0", "1-3", "4-6", "7+"], "term": "mean change",
                          "estimate": [-2.5, -1.3, -2.7, -2.9], "se": 0.1,
                          "ci_low": [-2.7, -1.7, -3.0, -3.1], "ci_high": [-2.3, -0.9, -2.4, -2.7],
                          "n": [415, 5, 100, 343], "n_episodes": [420, 9, 150, 402],
                          "mean_pri_visits": [0.0, 1.7, 5.1, 9.1]})
    cohort = pd.DataFrame({"status": ["completed"] * 981 + ["open"] * 30})
    out = rp.dose_display(table, cohort)
    assert out.loc["1-3"].tolist() == ["<11"] * 6  # 9 episodes: nothing shown
    # complement: 981 minus the shown bands must not give the 9 away; the smallest goes too
    assert out.loc["4-6", "n_episodes"] == "<11" and out.loc["4-6", "estimate"] == "<11"
    assert out.loc["0", "n"] == "<11" and out.loc["0", "estimate"] == -2.5  # 420 - 415 = 5
    assert out.loc["all finished episodes", "n_episodes"] == 981
    assert out.loc["7+", "n"] == 343 and out.loc["7+", "estimate"] == -2.9


# ----------------------------------------------------------- the rendered report, end to end
@pytest.fixture(scope="module")
def passing_store(tmp_path_factory) -> Path:
    """1,200 synthetic episodes whose ITBS cohort passes the gate (its CI includes 0)."""
    from outcomes.ingest import ingest_file
    from outcomes.synthetic import write_export

    folder = tmp_path_factory.mktemp("passing")
    write_export(folder / "e.csv", 1200, seed=11, n_therapists=12)
    ingest_file(folder / "e.csv", db=folder / "s.duckdb", progress=False)
    return folder / "s.duckdb"


def _text(page: str) -> str:
    page = re.sub(r"<(style|script)\b.*?</\1>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def _render(store: Path, out: Path, **kw) -> str:
    from outcomes.reports import plan_comparative, render_reports

    jobs = plan_comparative(None, store, **kw)
    quarter = jobs[0].parameters["quarter"]
    render_reports(jobs, quarter, store, out, n_jobs=1, progress=False)
    return (out / quarter / "comparative_analysis.html").read_text(encoding="utf-8")


def test_rendered_headline_equals_primary_analysis_on_the_same_store(passing_store, tmp_path):
    page = _render(passing_store, tmp_path)
    text = _text(page)

    data = rp.load_report_data(str(passing_store))
    cohort = rp.analysis_cohort(data["episodes"], "itbs", "all", "nprs")
    res = models.primary_analysis(cohort, data["visits"], "nprs", progress=False)
    assert models.diagnostics_gate(res.iptw).interpretable
    est, lo, hi = res.effects.set_index("method").loc["primary", ["estimate", "ci_low", "ci_high"]]
    assert lo < 0 < hi  # this store's interval crosses zero: the sentence must say so
    answer = re.search(r"Answer: PRI-style care reduced NPRS pain by ([\d.]+) points? (more|less) "
                       r"than traditional PT \(95 % CI from ([\d.]+) points? less to ([\d.]+) "
                       r"points? more: compatible with no difference\)", text)
    assert answer, text[:3000]
    assert answer.group(1) == f"{abs(est):.1f}" and answer.group(2) == ("more" if est < 0 else "less")
    assert answer.group(3) == f"{hi:.1f}" and answer.group(4) == f"{-lo:.1f}"
    # the headline comes before any other result, the hypothesis before the stratum effects
    assert text.index("Answer: PRI-style care") < text.index("Cohort flow")
    section = text[text.index("Does PRI-style care help patients whom earlier care did not?"):]
    assert section.index("Pre-specified hypothesis") < section.index("failed_conservative_care: yes")
    assert "2 modifiers are shown" in section
    mod = models.primary_analysis(cohort, data["visits"], "nprs", modifier="prior_pt",
                                  progress=False)
    for r in mod.modification.itertuples():
        if r.stratum == "difference":
            continue
        word = r.stratum.rsplit("= ", 1)[-1]
        if mod.gates[r.stratum].interpretable:  # numbers as primary_analysis gives them
            shown = rf"prior_pt: {word} {r.estimate:.2f} {r.ci_low:.2f} {r.ci_high:.2f} - {r.n} yes"
            assert re.search(shown.replace("-", "[-−]"), section), shown
        else:  # on this small store a stratum can fail its own gate: withheld, and said why
            assert f"prior_pt: {word} - - - - {r.n} stratum gate failed" in section
    ev = res.evalue()
    control = models.negative_control(cohort, data["visits"], "nprs", progress=False)
    assert f"risk ratio of at least {ev.point:.2f}" in text
    assert "mixed episodes excluded from the primary comparison" in text  # analysis protocol
    assert "Dose: PRI-style visits per episode (descriptive, not causal)" in text
    nc = control.set_index("method").loc["primary"]
    assert f"gives {nc['estimate']:.2f} (95 % CI {nc['ci_low']:.2f} to {nc['ci_high']:.2f})" in text
    assert page.count("data:image/png;base64,") >= 5  # the forest plot among them


def test_rendered_report_says_not_interpretable_when_the_gate_fails(passing_store, tmp_path):
    """The LBP cohort of the same store fails the gate (balance): the answer is "not
    interpretable", and no effect, stratum effect or E-value is shown."""
    data = rp.load_report_data(str(passing_store))
    cohort = rp.analysis_cohort(data["episodes"], "lbp", "all", "nprs")
    res = models.primary_analysis(cohort, data["visits"], "nprs", progress=False)
    gate = models.diagnostics_gate(res.iptw)
    assert not gate.interpretable
    text = _text(_render(passing_store, tmp_path, condition="lbp"))
    assert "Answer: not interpretable." in text and "Answer: PRI-style care" not in text
    assert "Diagnostics gate: failed (" + gate.label in text
    assert "FAILED: effect estimates are withheld" in text
    # one notice per cell the notebook wraps in rp.gated(...) (primary table, E-value, negative
    # control, explain-away, trajectories, responders, Cox, missing-data sensitivity)
    notebook = (Path(rp.__file__).parent / "notebooks" / "comparative_analysis.ipynb").read_text()
    assert notebook.count("rp.gated(") == 8
    assert text.count("withheld: the diagnostics gate failed") == notebook.count("rp.gated(")
    assert "risk ratio of at least" not in text
    section = text[text.index("Does PRI-style care help"):text.index("Sensitivity to unmeasured")]
    assert section.count("diagnostics gate failed") == 6  # 2 modifiers x (2 strata + difference)
    assert not re.search(r"failed_conservative_care: yes [-−]?\d", section)
