"""E-values, the negative control (outcomes.models.sensitivity).

References: the ``EValue`` R package (Mathur, Ding, Smith, VanderWeele; github
mayamathur/evalue_package, man pages / pkgdown reference as printed there, 6-7 significant
digits): ``evalues.RR(0.80, 0.71, 0.91)``: E 1.809017 (point), 1.428571 (upper limit);
``evalues.MD(.5, .25)``: RR 1.576173 (1.010050, 2.459603), E 2.529142 / 1.110803;
``evalues.OR(0.86, 0.75, 0.99, rare = FALSE)``: RR 0.9273618, E 1.3689529 / 1.0761939;
``evalues.HR(0.56, 0.46, 0.69, rare = FALSE)``: RR 0.670084, E 2.349531 / 1.9080039.
Tolerance 5e-6 absolute (the printed precision).
"""

import numpy as np
import pandas as pd
import pytest

from outcomes.errors import ModelError
from outcomes.models.sensitivity import evalue, evalue_sentence

TOL = 5e-6


def test_rr_leukemia_example():
    """VanderWeele & Ding 2017's leukemia example, via evalues.RR(0.80, 0.71, 0.91)."""
    ev = evalue(0.80, 0.71, 0.91, measure="RR")
    assert ev.point == pytest.approx(1.809017, abs=TOL)
    assert ev.ci == pytest.approx(1.428571, abs=TOL)
    tab = ev.table.set_index("quantity")
    assert np.isnan(tab.loc["ci_low", "evalue"]) and tab.loc["ci_high", "evalue"] == ev.ci
    # symmetry: evalues.RR(1/0.80) prints the same 1.809017
    assert evalue(1 / 0.80, measure="RR").point == pytest.approx(1.809017, abs=TOL)
    assert evalue(0.80, measure="RR").ci is None


def test_md_example_with_se():
    ev = evalue(0.5, sd=1, se=0.25)
    assert (ev.rr, ev.rr_low, ev.rr_high) == pytest.approx((1.576173, 1.010050, 2.459603),
                                                           abs=TOL)
    assert ev.point == pytest.approx(2.529142, abs=TOL)
    assert ev.ci == pytest.approx(1.110803, abs=TOL)


def test_md_uses_d_equal_estimate_over_sd_and_the_limits():
    """An NPRS difference of -1.0 with SD 2 is d = -0.5: the same E-value as d = 0.5; limits
    given directly are converted with exp(0.91 ci / sd)."""
    ev = evalue(-1.0, -1.6, -0.4, sd=2.0)
    assert ev.point == pytest.approx(2.529142, abs=TOL)
    assert ev.rr_high == pytest.approx(np.exp(0.91 * -0.2))
    rr = 1 / np.exp(0.91 * -0.2)
    assert ev.ci == pytest.approx(rr + np.sqrt(rr * (rr - 1)))


def test_or_and_hr_common_outcome_examples():
    ev = evalue(0.86, 0.75, 0.99, measure="OR", rare=False)
    assert ev.rr == pytest.approx(0.9273618, abs=TOL)
    assert ev.point == pytest.approx(1.3689529, abs=TOL)
    assert ev.ci == pytest.approx(1.0761939, abs=TOL)
    ev = evalue(0.56, 0.46, 0.69, measure="HR", rare=False)
    # the risk ratios are EValue's common-outcome conversion of each HR (VanderWeele 2020):
    # (1 - 0.5^sqrt(HR)) / (1 - 0.5^sqrt(1/HR)) of 0.56, 0.46 and 0.69, worked by hand; the
    # E-values below are evalues.HR's printed output
    assert (ev.rr, ev.rr_low, ev.rr_high) == pytest.approx((0.670084, 0.585935, 0.7735267),
                                                           abs=TOL)
    assert ev.point == pytest.approx(2.349531, abs=TOL)
    assert ev.ci == pytest.approx(1.9080039, abs=TOL)
    # rare outcome: the ratio is taken as a risk ratio
    assert evalue(0.80, measure="HR").point == pytest.approx(1.809017, abs=TOL)


def test_interval_including_null_has_ci_evalue_one():
    ev = evalue(-0.5, -1.2, 0.2, sd=2.5)
    assert ev.ci == 1.0 and ev.point > 1
    assert evalue(1.0, 0.8, 1.2, measure="RR").point == 1.0


def test_errors_name_the_parameter():
    with pytest.raises(ModelError, match="sd="):
        evalue(-1.0, -1.5, -0.5)
    with pytest.raises(ModelError, match="measure="):
        evalue(1.2, measure="RD")
    with pytest.raises(ModelError, match="ci_low"):
        evalue(1.2, 1.5, 1.1, measure="RR")
    with pytest.raises(ModelError, match="positive"):
        evalue(-0.2, measure="RR")


def test_sentence_states_what_would_have_to_be_true():
    ev = evalue(0.5, sd=1, se=0.25)
    text = evalue_sentence(ev, outcome="the change in pain")
    assert "risk ratio of at least 2.53 each" in text
    assert "PRI-style care" in text and "traditional PT" in text
    assert "the change in pain" in text
    assert "a risk ratio of 1.11 each would suffice" in text
    crossing = evalue_sentence(evalue(-0.5, -1.2, 0.2, sd=2.5))
    assert "already includes no difference" in crossing
    assert "suffice" not in crossing
    assert "suffice" not in evalue_sentence(evalue(0.8, measure="RR"))


def test_negative_control_is_the_primary_estimator(small_synthetic):
    """With a copy of the outcome's own change as 'control' it reproduces primary_analysis
    exactly: same rows, weights, adjustment and jackknife."""
    from outcomes.models import primary_analysis
    from outcomes.models.sensitivity import negative_control

    ep, v, _ = small_synthetic
    ref = primary_analysis(ep, v, therapist_effects="cluster").effects
    same = negative_control(ep.assign(copy=ep["nprs_change"]), v, control="copy",
                            therapist_effects="cluster")
    cols = ["method", "estimate", "se", "ci_low", "ci_high", "p", "n"]
    pd.testing.assert_frame_equal(same[cols], ref[cols])
    assert same["outcome"].eq("copy").all() and same["expected"].eq(0).all()


def test_negative_control_detects_a_baseline_imbalance_and_not_noise(small_synthetic):
    """A pre-treatment quantity that tracks the arm (as an unmeasured severity would) shows up;
    pure noise does not (seeded)."""
    from outcomes.models.sensitivity import negative_control

    ep, v, _ = small_synthetic
    rng = np.random.default_rng(3)
    ep = ep.assign(noise=rng.normal(size=len(ep)),
                   tracks_arm=rng.normal(size=len(ep)) + 1.0 * ep["arm"].eq("pri"))
    prim = negative_control(ep, v, control="noise").set_index("method").loc["primary"]
    assert prim["ci_low"] < 0 < prim["ci_high"]
    prim = negative_control(ep, v, control="tracks_arm").set_index("method").loc["primary"]
    assert prim["ci_low"] > 0.5
    default = negative_control(ep, v)
    assert default["outcome"].eq("lefs_intake").all()
    with pytest.raises(ModelError, match="adjusted for"):
        negative_control(ep, v, control="nprs_intake")
    with pytest.raises(ModelError, match="adjusted for"):
        negative_control(ep, v, control="age")
    with pytest.raises(ModelError, match="lacks column 'smoker'"):
        negative_control(ep, v, control="smoker")


def test_primary_result_evalue_uses_pooled_sd_of_the_change(small_synthetic):
    """d = estimate / sqrt((s1^2 + s0^2) / 2) of the analysed completers' change scores."""
    from outcomes.models import primary_analysis

    ep, v, _ = small_synthetic
    res = primary_analysis(ep, v)
    used = res.data[res.data["_w"].notna() & res.data["nprs_change"].notna()]
    s1 = used.loc[used["_t"] == 1, "nprs_change"].std(ddof=1)
    s0 = used.loc[used["_t"] == 0, "nprs_change"].std(ddof=1)
    row = res.effects.set_index("method").loc["primary"]
    ev = res.evalue()
    ref = evalue(row["estimate"], row["ci_low"], row["ci_high"], sd=np.sqrt((s1**2 + s0**2) / 2))
    assert ev == ref
    assert ev.rr == pytest.approx(np.exp(0.91 * row["estimate"] / np.sqrt((s1**2 + s0**2) / 2)))
    assert res.evalue(sd=1.0).point != ev.point


def test_models_evalue_stays_the_function_after_its_module_is_imported():
    """A submodule named like a public function would replace it on the package once imported."""
    import importlib

    import outcomes.models as models

    importlib.import_module("outcomes.models.evalues")
    importlib.import_module("outcomes.models.sensitivity")
    assert callable(models.evalue) and models.evalue(0.80, 0.71, 0.91, measure="RR").point > 1
    for name in models.__all__:
        assert not isinstance(getattr(models, name), type(models)), name
