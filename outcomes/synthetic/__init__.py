"""Synthetic EMR exports with a known truth, for demos, tests and the recovery benchmark.

Owns: the data-generating process (:mod:`.dgp`: patients, therapists, confounding, effects,
dropout), visit schedules and scores (:mod:`.visits`), free-text notes (:mod:`.text`), the defects
a real export has (:mod:`.messy`), and writing the export and its truth JSON (:mod:`.io`).
:func:`generate_export` / :func:`write_export` in :mod:`.export` tie them together.

May import: ``errors`` and ``schema`` only. It writes files the way an EMR would, so nothing
downstream (ingest, store, models, reports) is imported here.
"""

from __future__ import annotations

from outcomes.synthetic.export import DEFAULT_EFFECTS, generate_export, write_export

__all__ = ["DEFAULT_EFFECTS", "generate_export", "write_export"]
