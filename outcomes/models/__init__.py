"""Statistical models behind the reports and the researchers' API.

Owns: mixed models (:mod:`.mixed`, engine in ``_lmm``), regression (ANCOVA, responders),
survival (KM, Cox, log-rank), propensity weighting and the primary analysis (:mod:`.weighting`),
missing-data sensitivity (:mod:`.missing`), the diagnostics gate (:mod:`.diagnostics`) and
therapist partial pooling (:mod:`.therapist`).

May import: ``errors``, ``schema`` and ``instruments`` only. DataFrame in, result out: models
never read the store or files, and never import ``ingest``, ``store``, ``reports`` or ``cli``
(a test checks this). Every fitting function returns tidy results (``term, estimate, se, ci_low,
ci_high, p`` plus ``n``, ``converged`` and ``warnings``). Submodules are imported on first use.
"""

from __future__ import annotations

from outcomes._lazy import lazy_exports

_LAZY: dict[str, str] = {
    "tidy": "outcomes.models._results",
    "pooled_sd": "outcomes.models._results",
    "fit_mixed": "outcomes.models.mixed",
    "MixedResult": "outcomes.models.mixed",
    "fit_ancova": "outcomes.models.regression",
    "fit_responder": "outcomes.models.regression",
    "km_table": "outcomes.models.survival",
    "fit_cox": "outcomes.models.survival",
    "iptw": "outcomes.models.weighting",
    "missing_data_sensitivity": "outcomes.models.missing",
    "diagnostics_gate": "outcomes.models.diagnostics",
    "logrank_test": "outcomes.models.survival",
    "primary_analysis": "outcomes.models.primary",
    "PrimaryResult": "outcomes.models.primary",
    "therapist_estimates": "outcomes.models.therapist",
    "funnel_limits": "outcomes.models.therapist",
    "MODIFIERS": "outcomes.models.modification",
    "evalue": "outcomes.models.evalue",
    "EValueResult": "outcomes.models.evalue",
    "evalue_sentence": "outcomes.models.evalue",
    "negative_control": "outcomes.models.sensitivity",
    "dose_response": "outcomes.models.dose",
    "analysis_protocol": "outcomes.models.protocol",
}

__all__ = list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
