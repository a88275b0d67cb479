"""Render the periodic reports: parameterised notebooks -> self-contained HTML, published atomically.

One run renders a *set* of reports for one quarter into a private staging folder, and only when
every notebook has succeeded swaps that folder into ``OUT/<quarter>`` in one atomic step. A run that
fails, is killed, times out or fills the disk leaves the previously published set untouched. The
executed notebooks (which hold row-level data) are kept for audit under ``OUT/.audit``, never in the
published folder. A lock file (``fcntl``) lets one run at a time write to a report folder.

Layout::

    OUT/2026Q3/quarterly_outcomes.html          (all clinics; -<clinic>.html for one clinic)
    OUT/2026Q3/therapists/<therapist_id>.html
    OUT/2026Q3/comparative_analysis.html
    OUT/2026Q3/manifest.json
    OUT/.audit/2026Q3/<run id>/*.ipynb, manifest.json
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import queue
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from outcomes.errors import ReportError, StoreBusyError

__all__ = [
    "ReportJob",
    "RunResult",
    "NOTEBOOKS",
    "notebook_dir",
    "safe_name",
    "plan_quarterly",
    "plan_therapists",
    "plan_comparative",
    "render_reports",
]

#: Report kinds -> notebook file stem.
NOTEBOOKS = {
    "quarterly": "quarterly_outcomes",
    "therapist": "therapist_caseload",
    "comparative": "comparative_analysis",
}

#: Packages whose versions are recorded in the manifest.
_VERSIONED = ("outcomes", "numpy", "pandas", "scipy", "statsmodels", "lifelines", "matplotlib",
              "duckdb", "papermill", "nbconvert", "nbclient", "ipykernel")


@dataclass(frozen=True)
class ReportJob:
    """One report to render.

    Attributes
    ----------
    name : str
        Unique name in the set (``quarterly_outcomes``, ``therapists/T01``).
    notebook : str
        Notebook file stem in the notebook folder.
    parameters : dict
        Injected after the notebook's ``parameters`` cell.
    path : str
        Output path relative to the quarter folder (``therapists/T01.html``).
    title : str
        HTML page title.
    """

    name: str
    notebook: str
    parameters: dict[str, Any]
    path: str
    title: str


@dataclass
class RunResult:
    """What a successful run published."""

    folder: Path
    paths: list[Path]
    manifest: Path
    seconds: float
    reports: list[dict[str, Any]] = field(default_factory=list)


def notebook_dir() -> Path:
    """Folder holding the report notebooks: ``$OUTCOMES_NOTEBOOKS`` or the package's own copy.

    The notebooks ship inside the package (``outcomes/reports/notebooks``, package data), so an
    installed wheel renders reports outside a clone; the repository's top-level ``notebooks/``
    is a link to the same folder, for JupyterLab.
    """
    env = os.environ.get("OUTCOMES_NOTEBOOKS")
    return Path(env) if env else Path(__file__).resolve().parent / "notebooks"


def safe_name(value: str) -> str:
    """A file name for an identifier from the data: safe characters kept, anything else hashed.

    ``T01`` stays ``T01``; ``<script>`` becomes ``_script_-1a2b3c4d`` so two identifiers never
    collide and no path separator or markup reaches the file system.
    """
    text = str(value)
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", text).strip("._") or "id"
    if clean == text:
        return clean
    return f"{clean[:40]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


# --------------------------------------------------------------------------------------------
# Planning: which reports a command renders (validates parameters against the store)
# --------------------------------------------------------------------------------------------
def _episodes(db: str | Path) -> Any:
    path = Path(db)
    if not path.exists():
        raise ReportError(f"store {db} does not exist; run 'outcomes ingest EXPORT --db {db}' first")
    stat = path.stat()
    return _load_episodes(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load_episodes(path: str, size: int, mtime: int) -> Any:
    """The store's episodes, read once per process for all the plans of a command."""
    from outcomes.store import load_episodes

    return load_episodes(path)


def plan_quarterly(quarter: str, db: str | Path, clinic: str | None = None) -> list[ReportJob]:
    """The director's report for ``quarter``: ``quarterly_outcomes.html`` for all clinics,
    ``quarterly_outcomes-<clinic>.html`` for one."""
    from outcomes.reports.data import check_quarter

    quarter = check_quarter(_episodes(db), quarter, clinic=clinic)
    params = {"quarter": quarter, "clinic": clinic or "all", "database": str(Path(db).resolve())}
    title = f"Quarterly outcomes {quarter}" + (f" - clinic {clinic}" if clinic else "")
    # one clinic's report sits beside the all-clinics one instead of replacing it
    name = "quarterly_outcomes" + (f"-{safe_name(clinic)}" if clinic not in (None, "all") else "")
    return [ReportJob(name, NOTEBOOKS["quarterly"], params, f"{name}.html", title)]


def plan_therapists(quarter: str, db: str | Path,
                    therapists: Sequence[str] | None = None) -> list[ReportJob]:
    """One caseload report per therapist (``None``: every therapist active in ``quarter``)."""
    from outcomes.reports.data import active_therapists, check_quarter

    episodes = _episodes(db)
    quarter = check_quarter(episodes, quarter)
    active = active_therapists(episodes, quarter)
    if therapists is None:
        therapists = active
    unknown = [t for t in therapists if t not in set(active)]
    if unknown:
        raise ReportError(f"--therapist: {len(unknown)} therapist id(s) have no episodes in "
                          f"{quarter}; run 'outcomes report therapist --all' to render every one")
    database = str(Path(db).resolve())
    return [ReportJob(f"therapists/{safe_name(t)}", NOTEBOOKS["therapist"],
                      {"quarter": quarter, "therapist": str(t), "database": database},
                      f"therapists/{safe_name(t)}.html", f"Caseload {quarter}")
            for t in therapists]


def plan_comparative(quarter: str | None, db: str | Path, condition: str = "itbs",
                     outcome: str = "nprs", estimand: str = "ate",
                     exposure_rule: str = "first3", period: str = "all") -> list[ReportJob]:
    """The researchers' comparative analysis, filed under ``quarter`` (default: the latest)."""
    from outcomes.instruments import INSTRUMENTS
    from outcomes.reports.comparative import (
        comparison_problem,
        episodes_for_rule,
        parse_exposure_rule,
        parse_period,
    )
    from outcomes.reports.data import CONDITIONS_ALL, check_quarter, latest_quarter

    if condition not in CONDITIONS_ALL:
        raise ReportError(f"--condition: use one of {', '.join(CONDITIONS_ALL)}")
    if outcome not in ("nprs", "lefs") or outcome not in INSTRUMENTS:
        raise ReportError("--outcome: use nprs or lefs")
    if estimand not in ("ate", "att"):
        raise ReportError("--estimand: use ate or att")
    parse_exposure_rule(exposure_rule)
    parse_period(period)
    episodes = _episodes(db)
    quarter = check_quarter(episodes, quarter or latest_quarter(episodes))
    problem = comparison_problem(episodes_for_rule(str(db), exposure_rule), condition, period,
                                 outcome)
    if problem:
        raise ReportError(f"comparative analysis: {problem}")
    params = {"condition": condition, "period": period, "outcome": outcome,
              "exposure_rule": exposure_rule, "estimand": estimand, "quarter": quarter,
              "database": str(Path(db).resolve())}
    return [ReportJob("comparative_analysis", NOTEBOOKS["comparative"], params,
                      "comparative_analysis.html", f"Comparative analysis: {condition}")]


# --------------------------------------------------------------------------------------------
# Files: lock, staging, atomic publish
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked(out: Path, wait: bool) -> Iterator[None]:
    """Hold ``OUT/.lock`` (fcntl) for the run; refuse, or wait, if another run holds it."""
    import fcntl

    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ReportError(f"cannot use report folder {out}: {exc.strerror}; "
                          "choose another --out") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StoreBusyError(f"report folder {out} is being written by another run "
                                 f"(pid {holder}); wait for it to finish or use --wait") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (inside staging) through a temporary name, then fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _exchange(a: Path, b: Path) -> None:
    """Atomically swap two directories (Linux ``renameat2(RENAME_EXCHANGE)``)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    at_fdcwd, rename_exchange = -100, 2
    if fn is None or fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange):
        raise OSError(ctypes.get_errno() if fn else errno.ENOSYS, "renameat2 failed")


def _publish(staging: Path, target: Path) -> None:
    """Make ``staging`` the published ``target`` in one step; the old set goes back to staging."""
    if not target.exists():
        os.rename(staging, target)
        return
    try:
        _exchange(staging, target)
    except OSError:
        # No atomic exchange on this system: two renames, the shortest window we can offer.
        old = staging.with_name(staging.name + ".old")
        os.rename(target, old)
        os.rename(staging, target)
        os.rename(old, staging)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in _VERSIONED:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def _carry_over(previous: Path, staging: Path, rendered: set[str]) -> list[dict[str, Any]]:
    """Hard-link the previous set's reports not re-rendered now; return their manifest entries."""
    manifest = previous / "manifest.json"
    if not manifest.exists():
        return []
    entries = json.loads(manifest.read_text()).get("reports", [])
    kept = []
    for entry in entries:
        if entry.get("name") in rendered or entry.get("status") != "ok":
            continue
        paths = [entry["path"], *([entry["pdf"]] if entry.get("pdf") else [])]
        if not (previous / entry["path"]).exists():
            continue
        for rel in paths:
            src, dst = previous / rel, staging / rel
            if src.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
        kept.append(entry)
    return kept


# --------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------
class _Batch:
    """Run jobs on ``n_jobs`` warm kernels; stop handing out work after the first failure."""

    def __init__(self, jobs: list[ReportJob], staging: Path, audit: Path, scratch: Path,
                 cell_timeout: float, progress: bool, warmup: str, pdf: bool = False) -> None:
        self.jobs, self.staging, self.audit, self.scratch = jobs, staging, audit, scratch
        self.cell_timeout, self.warmup, self.pdf = cell_timeout, warmup, pdf
        self.results: dict[str, dict[str, Any]] = {}
        self.failures: list[str] = []
        self.texts: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.bar = _progress(len(jobs), progress)

    def run(self, n_jobs: int) -> None:
        work: queue.Queue[ReportJob] = queue.Queue()
        for job in self.jobs:
            work.put(job)
        threads = [threading.Thread(target=self._worker, args=(work, i), daemon=True)
                   for i in range(max(1, min(n_jobs, len(self.jobs))))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.bar.close()

    def _text(self, stem: str) -> str:
        with self.lock:
            if stem not in self.texts:
                path = notebook_dir() / f"{stem}.ipynb"
                if not path.exists():
                    raise ReportError(f"notebook {path} not found (set OUTCOMES_NOTEBOOKS)")
                self.texts[stem] = path.read_text(encoding="utf-8")
            return self.texts[stem]

    def _worker(self, work: queue.Queue[ReportJob], index: int) -> None:
        from outcomes.reports.render import KernelWorker

        scratch = self.scratch / f"w{index}"
        scratch.mkdir(parents=True, exist_ok=True)
        worker = KernelWorker(self.cell_timeout, scratch, self.warmup)
        try:
            while not self.stop.is_set():
                try:
                    job = work.get_nowait()
                except queue.Empty:
                    return
                self._one(worker, job)
                self.bar.update(1)
        except BaseException as exc:  # noqa: BLE001 - reported as a failure of the run
            self._fail("(batch)", {"status": "failed", "error": _safe_error(exc)})
        finally:
            worker.stop()

    def _one(self, worker: Any, job: ReportJob) -> None:
        import nbformat

        from outcomes.reports.render import export_html, prepare_notebook

        nb = prepare_notebook(self._text(job.notebook), job.parameters)
        run = worker.run(nb)
        entry: dict[str, Any] = {"name": job.name, "notebook": f"{job.notebook}.ipynb",
                                 "parameters": _public_parameters(job.parameters),
                                 "path": job.path, "seconds": round(run.seconds, 3)}
        audit_path = self.audit / f"{job.name}.ipynb"
        _write_bytes(audit_path, nbformat.writes(run.nb).encode("utf-8"))
        if not run.ok:
            entry.update(status="failed", error=run.describe(f"{job.notebook}.ipynb"),
                         audit=str(audit_path))
            self._fail(job.name, entry)
            return
        try:
            page = export_html(run.nb, job.title, footer=_footer(job))
            _write_bytes(self.staging / job.path, page.encode("utf-8"))
            if self.pdf:
                from outcomes.reports.render import print_pdf

                print_pdf(self.staging / job.path, (self.staging / job.path).with_suffix(".pdf"))
                entry["pdf"] = str(Path(job.path).with_suffix(".pdf"))
        except (ReportError, OSError) as exc:
            entry.update(status="failed", error=f"{job.notebook}.ipynb: {_safe_error(exc)}")
            self._fail(job.name, entry)
            return
        entry["status"] = "ok"
        with self.lock:
            self.results[job.name] = entry

    def _fail(self, name: str, entry: dict[str, Any]) -> None:
        with self.lock:
            self.results[name] = entry
            self.failures.append(entry.get("error", name))
        self.stop.set()


def _safe_error(exc: BaseException) -> str:
    """Describe an infrastructure error without echoing data: our messages, or the type only."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "disk full while writing the report"
    if isinstance(exc, ReportError):
        return str(exc).splitlines()[0]
    if isinstance(exc, OSError):
        return f"could not write a report file ({errno.errorcode.get(exc.errno or 0, 'OSError')})"
    return f"{type(exc).__name__} while rendering"


def _public_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as recorded in the manifest: the database by file name only."""
    return {k: (Path(v).name if k == "database" else v) for k, v in params.items()}


def _footer(job: ReportJob) -> str:
    from outcomes import __version__

    shown = {k: v for k, v in _public_parameters(job.parameters).items() if k != "database"}
    text = ", ".join(f"{k}={v}" for k, v in shown.items())
    return f"outcomes {__version__} - {job.notebook} ({text}). Counts of 1-10 are shown as <11; * marks a figure withheld so that one cannot be worked out."


class _NoBar:
    def update(self, n: int) -> None:  # noqa: D102
        pass

    def close(self) -> None:  # noqa: D102
        pass


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, unit="report", desc="rendering", leave=True)


def _warmup(db: Path) -> str:
    from outcomes.reports.render import WARMUP_CODE

    return WARMUP_CODE + (
        "try:\n"
        f"    outcomes.reports.load_report_data({str(Path(db).resolve())!r})\n"
        "except Exception:\n"
        "    pass\n"
    )


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
def render_reports(jobs: Sequence[ReportJob], quarter: str, db: str | Path, out: str | Path,
                   *, n_jobs: int = 1, cell_timeout: float = 600.0, progress: bool = True,
                   wait: bool = False, pdf: bool = False) -> RunResult:
    """Render ``jobs`` and publish them together as ``out/<quarter>``.

    Parameters
    ----------
    jobs : sequence of ReportJob
        Reports to render (see :func:`plan_quarterly` and friends).
    quarter : str
        Quarter folder the set is published under (``2026Q3``).
    db : path
        The store the reports read; its SHA-256 goes into the manifest.
    out : path
        Report root folder.
    n_jobs : int
        Worker kernels run in parallel; each executes many notebooks, warm.
    cell_timeout : float
        Seconds one cell may run.
    progress : bool
        Show a progress bar on stderr.
    wait : bool
        Wait for another run holding the folder's lock instead of refusing.
    pdf : bool
        Also print each page to PDF (same path, ``.pdf``) with headless Chromium.

    Returns
    -------
    RunResult
        Published folder, paths of the reports rendered now, and the manifest path.

    Raises
    ------
    ReportError
        When any notebook fails (names notebook and cell; the published set is left unchanged).
    StoreBusyError
        When another run holds the folder and ``wait`` is false.

    Notes
    -----
    Reports are written to ``out/.staging/<run>``; reports of the previous set for the same
    quarter that are not re-rendered are carried over, and the folder is swapped into place with
    ``renameat2(RENAME_EXCHANGE)``, so a reader sees either the old set or the new one.
    """
    jobs = list(jobs)
    if not jobs:
        raise ReportError("nothing to render: the selection holds no reports")
    out, db = Path(out), Path(db)
    t0 = time.perf_counter()
    with _locked(out, wait):
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + f"-{os.getpid()}"
        shutil.rmtree(out / ".staging", ignore_errors=True)  # leftovers of killed runs
        staging = out / ".staging" / f"{quarter}-{run_id}"
        audit = out / ".audit" / quarter / run_id
        staging.mkdir(parents=True)
        try:
            return _run(jobs, quarter, db, out, staging, audit, n_jobs, cell_timeout,
                        progress, t0, run_id, pdf)
        finally:
            shutil.rmtree(out / ".staging", ignore_errors=True)


def _run(jobs: list[ReportJob], quarter: str, db: Path, out: Path, staging: Path, audit: Path,
         n_jobs: int, cell_timeout: float, progress: bool, t0: float, run_id: str,
         pdf: bool = False) -> RunResult:
    # longest notebooks first, so that parallel workers finish together
    order = {"comparative_analysis": 0, "quarterly_outcomes": 1}
    jobs = sorted(jobs, key=lambda j: order.get(j.notebook, 2))
    import tempfile

    # kernels' working folder and IPC sockets: short path (socket names are limited to ~100 bytes)
    with tempfile.TemporaryDirectory(prefix="outcomes-k") as scratch:
        batch = _Batch(jobs, staging / "reports", audit, Path(scratch), cell_timeout,
                       progress, _warmup(db), pdf)
        batch.run(n_jobs)
    manifest = {
        "quarter": quarter, "run_id": run_id, "created_utc": datetime.now(UTC).isoformat(),
        "input": {"database": db.name, "sha256": _hash_file(db) if db.exists() else None},
        "packages": _versions(), "n_jobs": n_jobs, "cell_timeout": cell_timeout,
        "seconds": round(time.perf_counter() - t0, 3),
        "reports": [batch.results.get(j.name, {"name": j.name, "status": "not run"}) for j in jobs],
    }
    try:
        _write_bytes(audit / "manifest.json", _dumps(manifest))
        _prune_audit(audit.parent, keep=5)
    except OSError:
        pass  # the audit copy is best effort; the error below is what matters
    if batch.failures:
        raise ReportError(f"{batch.failures[0]}; nothing was published (executed notebooks in "
                          f"{audit})")
    return _finish(jobs, manifest, quarter, out, staging / "reports", t0)


def _finish(jobs: list[ReportJob], manifest: dict[str, Any], quarter: str, out: Path,
            ready: Path, t0: float) -> RunResult:
    target = out / quarter
    carried = _carry_over(target, ready, {j.name for j in jobs}) if target.exists() else []
    manifest["reports"] = sorted(carried + manifest["reports"], key=lambda e: e["name"])
    try:
        _write_bytes(ready / "manifest.json", _dumps(manifest))
        _publish(ready, target)
    except OSError as exc:
        raise ReportError(f"{_safe_error(exc)}; nothing was published") from None
    return RunResult(target, [target / j.path for j in jobs], target / "manifest.json",
                     time.perf_counter() - t0, manifest["reports"])


def _prune_audit(folder: Path, keep: int) -> None:
    """Keep the audit folders of the last ``keep`` runs of a quarter."""
    runs = sorted(p for p in folder.iterdir() if p.is_dir())
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")

