"""The package's house rules: layering, no private names across packages, thin notebooks on
public names, and a wheel that renders reports outside a clone.

The layering contracts live in ``pyproject.toml`` (``[tool.importlinter]``) and are checked by
import-linter's ``lint-imports``; docs/architecture.md draws the same picture.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "outcomes"
NOTEBOOKS = PACKAGE / "reports" / "notebooks"
SUBPACKAGES = ("ingest", "privacy", "reports", "synthetic", "models")


def _lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_layering_contracts_hold():
    run = _lint_imports(ROOT, ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_layering_check_fails_on_a_deliberate_violation(tmp_path):
    """A model that reads the store breaks the layering: the checker must say so."""
    shutil.copytree(PACKAGE, tmp_path / "outcomes",
                    ignore=shutil.ignore_patterns("__pycache__", "notebooks"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "outcomes" / "models" / "regression.py"
    target.write_text(target.read_text() + "\nfrom outcomes.store import load_episodes  # noqa\n")
    run = _lint_imports(tmp_path, tmp_path)
    assert run.returncode != 0
    assert "outcomes.models.regression -> outcomes.store" in run.stdout


def _package_of(path: Path, base: Path = ROOT) -> str:
    """Dotted name of the package (folder) a module file belongs to."""
    return ".".join(path.relative_to(base).parent.parts)


def _module_file(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def private_imports_across_packages(root: Path = PACKAGE) -> list[str]:
    """``from X import _name`` (or from a private module ``X._m``) where X lives in another folder.

    A private name is a promise kept inside its own folder; ``outcomes._lazy`` (the lazy public
    API every ``__init__`` uses) is the one shared piece of infrastructure.
    """
    bad = []
    for path in sorted(root.rglob("*.py")):
        here = _package_of(path, root.parent)
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module
                    and node.module.startswith("outcomes")) or node.module == "outcomes._lazy":
                continue
            source = _module_file(node.module)
            owner = _package_of(source) if source and source.name != "__init__.py" else node.module
            private_module = any(p.startswith("_") for p in node.module.split(".")[1:])
            private_names = [a.name for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
            if (private_module or private_names) and owner != here:
                bad.append(f"{path.relative_to(root.parent)}:{node.lineno} "
                           f"from {node.module} import {', '.join(a.name for a in node.names)}")
    return bad


def test_no_module_reaches_into_another_packages_private_names():
    assert private_imports_across_packages() == []


def test_private_name_check_catches_a_violation(tmp_path):
    bad = tmp_path / "outcomes" / "reports" / "x.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from outcomes.tables import _STAT_COLUMNS\n"
                   "from outcomes.models._results import tidy\n")
    found = private_imports_across_packages(tmp_path / "outcomes")
    assert len(found) == 2


def _notebook_names() -> list[tuple[str, str, str]]:
    """(notebook, module, name) for every ``alias.name`` a notebook uses on an outcomes module."""
    uses = []
    for nb_path in sorted(NOTEBOOKS.glob("*.ipynb")):
        cells = json.loads(nb_path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        tree = ast.parse("\n".join(line for line in code.splitlines()
                                   if not line.lstrip().startswith(("%", "!"))))
        aliases = {"outcomes": "outcomes"}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("outcomes"):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if importlib.util.find_spec(full.split(".")[0]) and _module_file(full):
                        aliases[a.asname or a.name] = full
                    else:
                        uses.append((nb_path.name, node.module, a.name))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    node.value.id in aliases:
                uses.append((nb_path.name, aliases[node.value.id], node.attr))
    return uses


def test_notebooks_use_only_public_names():
    uses = _notebook_names()
    assert len({nb for nb, _, _ in uses}) == 3 and len(uses) > 30
    bad = []
    for nb, module, name in uses:
        public = getattr(importlib.import_module(module), "__all__", ())
        if name.startswith("_") or name not in public:
            bad.append(f"{nb}: {module}.{name}")
    assert bad == []


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_each_subpackage_says_what_it_owns_and_may_import(sub):
    module = importlib.import_module(f"outcomes.{sub}")
    doc = module.__doc__ or ""
    assert "Owns" in doc and "May import" in doc, f"outcomes/{sub}/__init__.py docstring"


def test_top_level_notebooks_folder_is_the_shipped_one():
    top = ROOT / "notebooks"
    assert top.resolve() == NOTEBOOKS.resolve()
    assert sorted(p.name for p in top.glob("*.ipynb")) == sorted(
        p.name for p in NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.slow
def test_installed_wheel_renders_reports_outside_the_repository(tmp_path):
    """``pip install`` of the built wheel into a new venv, then synth -> ingest -> report all, run
    from a folder outside the clone: the notebooks must come from the installed package.

    The new venv reaches the test environment's third-party packages through a ``.pth`` file (a
    fresh download of jupyterlab & co. would take minutes and needs the registry); ``outcomes``
    itself comes only from the wheel (the editable install's finder is not loaded there), and
    so does the report kernel's (the new venv's own python; only nbconvert's templates are
    borrowed from the test environment's data files).
    """
    dist, venv, work, src = (tmp_path / n for n in ("dist", "venv", "work", "src"))
    work.mkdir()
    # build from a copy, so the build's egg-info never lands in the clone (where pip, run from
    # the clone, would take it for an installed outcomes and skip the wheel)
    shutil.copytree(PACKAGE, src / "outcomes", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(dist), str(src)], check=True, timeout=300, cwd=tmp_path)
    wheel = next(dist.glob("outcomes-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path("
                                "'purelib'))"], capture_output=True, text=True,
                               check=True).stdout.strip())
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (site / "test_deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    str(wheel)], check=True, timeout=300, cwd=tmp_path)
    # nbconvert's templates are data files its install put beside the borrowed packages; the
    # kernel must be the new venv's own python (no kernelspec pointing back at the test venv)
    jupyter = tmp_path / "jupyter"
    jupyter.mkdir()
    (jupyter / "nbconvert").symlink_to(Path(sys.prefix) / "share" / "jupyter" / "nbconvert")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "OUTCOMES_NOTEBOOKS", "OUTCOMES_DB", "JUPYTER_PATH")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               JUPYTER_PATH=str(jupyter), JUPYTER_DATA_DIR=str(jupyter))
    where = subprocess.run([str(py), "-c", "import outcomes; print(outcomes.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert str(ROOT) not in where.stdout and str(venv) in where.stdout
    spec = subprocess.run([str(py), "-c", "from jupyter_client.kernelspec import "
                           "KernelSpecManager as K; print(K().get_kernel_spec('python3').argv[0])"],
                          cwd=work, env=env, capture_output=True, text=True, check=True)
    assert spec.stdout.strip().startswith(str(venv)), spec.stdout

    def outcomes_cli(*args: str) -> str:
        run = subprocess.run([str(venv / "bin" / "outcomes"), *args], cwd=work, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        return run.stdout

    outcomes_cli("synth", "--out", "export.csv", "--episodes", "300", "--seed", "5")
    outcomes_cli("ingest", "export.csv", "--db", "o.duckdb")
    outcomes_cli("report", "all", "--quarter", "latest", "--db", "o.duckdb", "--out", "reports",
                 "--jobs", "1")
    quarter = next(p for p in (work / "reports").iterdir() if not p.name.startswith("."))
    assert (quarter / "quarterly_outcomes.html").stat().st_size > 10_000
    assert (quarter / "comparative_analysis.html").exists()


def test_no_public_name_is_shadowed_by_a_submodule():
    """Importing ``pkg.name`` binds the submodule as ``pkg.name``: a public function of the same
    name would silently become a module (it happened to ``models.evalue``)."""
    import pkgutil
    import types

    import outcomes

    packages = ["outcomes", *(f"outcomes.{m.name}" for m in pkgutil.iter_modules(outcomes.__path__)
                              if m.ispkg)]
    for name in packages:
        for sub in pkgutil.walk_packages(importlib.import_module(name).__path__, name + "."):
            importlib.import_module(sub.name)
    shadowed = [f"{p}.{n}" for p in packages for n in importlib.import_module(p).__all__
                if isinstance(getattr(importlib.import_module(p), n), types.ModuleType)]
    assert shadowed == []


def test_reports_gathers_each_public_name_from_one_module_only():
    """``outcomes.reports`` star-imports its modules: a name in two ``__all__`` lists would let
    the later module silently replace the earlier one's function in the notebooks."""
    from collections import Counter

    import outcomes.reports as rp

    names = Counter(n for m in ("data", "quarterly", "therapist", "comparative", "display",
                                "publish", "glance", "effects")
                    for n in importlib.import_module(f"outcomes.reports.{m}").__all__)
    assert [n for n, k in names.items() if k > 1] == []
    assert set(names) <= set(rp.__all__)
