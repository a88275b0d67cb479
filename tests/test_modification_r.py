"""The interaction estimate against R (4.2.2, stats::lm).

The difference between the stratum effects of ``primary_analysis(modifier=...)`` must equal the
``arm:modifier`` coefficient of a fully interacted weighted least-squares fit in R,
``lm(nprs_change ~ (arm + nprs_intake + log_symptom_duration + prior_pt + prior_injection +
surgery_recommended + age + factor(therapist_id)) * modifier, weights = w)``, on the same rows
with the same stratum weights; and each stratum effect the coefficient of a weighted ``lm`` in
that stratum. Tolerance 1e-7 relative.
"""

import pytest
from test_weighting_r import run_r

from outcomes.models import primary_analysis

pytestmark = pytest.mark.r

LM_R = """
f <- nprs_change ~ (arm + nprs_intake + log_symptom_duration + prior_pt + prior_injection +
  surgery_recommended + age + factor(therapist_id)) * modifier
fit <- lm(f, data = d, weights = w)
g <- nprs_change ~ arm + nprs_intake + log_symptom_duration + prior_pt + prior_injection +
  surgery_recommended + age + factor(therapist_id)
yes <- coef(lm(g, data = d[d$modifier == 1, ], weights = w))[["arm"]]
no <- coef(lm(g, data = d[d$modifier == 0, ], weights = w))[["arm"]]
out <- data.frame(term = c("difference", "yes", "no"),
                  value = c(coef(fit)[["arm:modifier"]], yes, no))
write.csv(format(out, digits = 15), stdout(), row.names = FALSE)
"""


def test_interaction_matches_r_lm(small_synthetic, tmp_path):
    ep, v, _ = small_synthetic
    res = primary_analysis(ep, v, modifier="chronic")
    d = res.data[res.data["_w_modifier"].notna() & res.data["nprs_change"].notna()]
    d = d.rename(columns={"_t": "arm_t", "_modifier": "modifier", "_w_modifier": "w"})
    cols = ["nprs_change", "nprs_intake", "log_symptom_duration", "prior_pt",
            "prior_injection", "surgery_recommended", "age", "therapist_id", "modifier", "w"]
    data = d[cols].assign(arm=d["arm_t"])
    ref = run_r(LM_R, data, tmp_path).set_index("term")["value"]
    tab = res.modification.set_index("stratum")["estimate"]
    assert tab["difference"] == pytest.approx(ref["difference"], rel=1e-7)
    assert tab["chronic = yes"] == pytest.approx(ref["yes"], rel=1e-7)
    assert tab["chronic = no"] == pytest.approx(ref["no"], rel=1e-7)
