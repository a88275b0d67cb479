"""The protocol table (outcomes.models.protocol)."""

import pytest

from outcomes.errors import ModelError
from outcomes.models import MODIFIERS
from outcomes.models.protocol import analysis_protocol


def test_protocol_states_the_choices():
    tab = analysis_protocol().set_index("item")["choice"]
    assert list(tab.index[:3]) == ["question", "arm rule", "mixed episodes"]
    assert "excluded from the primary comparison" in tab["mixed episodes"]
    assert "first 3 treatment visits" in tab["arm rule"]
    assert tab["estimand"].startswith("ATE")
    assert "jackknife" in tab["standard error"]
    for name in MODIFIERS:
        assert name in tab["effect modifiers (pre-specified)"]
    assert "descriptive only" in tab["dose"]


def test_protocol_follows_the_arguments():
    tab = analysis_protocol(se="bootstrap", n_boot=500, seed=1, estimand="ATT",
                         modifier="failed_conservative_care",
                         therapist_effects="cluster").set_index("item")["choice"]
    assert "500 replicates (seed 1)" in tab["standard error"]
    assert tab["estimand"].startswith("ATT") and "ps/(1-ps)" in tab["propensity model"]
    assert tab["effect modifier in this run"] == "failed_conservative_care"
    assert "fixed effects" not in tab["outcome model"]
    custom = analysis_protocol(modifier="smoker").set_index("item")["choice"]
    assert "not one of the pre-specified" in custom["effect modifier in this run"]
    with pytest.raises(ModelError, match="se='robust'"):
        analysis_protocol(se="robust")
