"""outcomes: an open toolkit for physical-therapy outcomes research.

Clean de-identified EMR visit exports, build episodes of care, compare techniques (PRI-style vs
traditional PT) honestly, and render the clinic's periodic reports.

Public names are loaded lazily on first use, so ``import outcomes`` does no work and stays fast.
"""

from __future__ import annotations

from outcomes._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    # errors
    "OutcomesError": "outcomes.errors",
    "InputError": "outcomes.errors",
    "ProfileError": "outcomes.errors",
    "StoreError": "outcomes.errors",
    "StoreBusyError": "outcomes.errors",
    "ModelError": "outcomes.errors",
    "ConvergenceError": "outcomes.errors",
    "ReportError": "outcomes.errors",
    # instruments and schema
    "INSTRUMENTS": "outcomes.instruments",
    "get_instrument": "outcomes.instruments",
    "condition_of": "outcomes.schema",
    # synthetic exports
    "generate_export": "outcomes.synthetic",
    "write_export": "outcomes.synthetic",
    # ingest, cleaning, techniques, store
    "ingest_file": "outcomes.ingest",
    "ingest_export": "outcomes.ingest",
    "read_export": "outcomes.ingest",
    "load_profile": "outcomes.ingest",
    "clean_visits": "outcomes.ingest",
    "map_techniques": "outcomes.ingest",
    "load_vocabulary": "outcomes.ingest",
    "open_store": "outcomes.store",
    "load_episodes": "outcomes.store",
    "load_visits": "outcomes.store",
    "load_quarantine_summary": "outcomes.store",
    "load_unmapped": "outcomes.store",
    "store_status": "outcomes.store",
    "export_episodes": "outcomes.store",
    # episodes
    "build_episodes": "outcomes.episodes",
    "visit_scores": "outcomes.episodes",
    "orphan_visits": "outcomes.episodes",
    # privacy
    "scan_phi": "outcomes.privacy",
    "redact_phi": "outcomes.privacy",
    "suppress_small_cells": "outcomes.privacy",
    "neutralize_formulas": "outcomes.privacy",
    "check_regime": "outcomes.privacy",
    "escape_text": "outcomes.privacy",
    # models
    "fit_mixed": "outcomes.models",
    "fit_ancova": "outcomes.models",
    "fit_responder": "outcomes.models",
    "km_table": "outcomes.models",
    "fit_cox": "outcomes.models",
    "iptw": "outcomes.models",
    "logrank_test": "outcomes.models",
    "missing_data_sensitivity": "outcomes.models",
    "diagnostics_gate": "outcomes.models",
    "primary_analysis": "outcomes.models",
    "therapist_estimates": "outcomes.models.therapist",
    "funnel_limits": "outcomes.models.therapist",
    "PrimaryResult": "outcomes.models",
    "MODIFIERS": "outcomes.models",
    "evalue": "outcomes.models",
    "EValueResult": "outcomes.models",
    "evalue_sentence": "outcomes.models",
    "negative_control": "outcomes.models",
    "dose_response": "outcomes.models",
    "analysis_protocol": "outcomes.models",
    # reports
    "render_reports": "outcomes.reports",
    "load_report_data": "outcomes.reports",
    # tables
    "table_one": "outcomes.tables",
    "format_table_one": "outcomes.tables",
    # plots
    "plot_trajectories": "outcomes.plots",
    "plot_change_distribution": "outcomes.plots",
    "plot_km": "outcomes.plots",
    "plot_ps_overlap": "outcomes.plots",
    "plot_love": "outcomes.plots",
    "plot_funnel": "outcomes.plots",
    "plot_run_chart": "outcomes.plots",
    "detect_run_signals": "outcomes.plots",
    "summarize_trajectories": "outcomes.plots",
}

__all__ = ["__version__", *_LAZY]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
