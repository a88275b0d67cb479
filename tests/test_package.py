"""The public API: every name in ``__all__`` resolves, and importing does no work."""

import subprocess
import sys

import outcomes
import outcomes.models


def test_all_names_resolve():
    for name in outcomes.__all__:
        assert getattr(outcomes, name) is not None, name


def test_models_names_resolve():
    for name in outcomes.models.__all__:
        assert getattr(outcomes.models, name) is not None, name


def test_import_is_lazy():
    """``import outcomes`` must not pull in statsmodels or matplotlib (no work at import time)."""
    code = "import sys, outcomes; print('statsmodels' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
