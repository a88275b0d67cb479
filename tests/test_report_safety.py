"""Report safety (QUALITY.md "Faults" and "Privacy"): atomic publish under every failure we can
provoke, the folder lock, inert HTML, and PNGs stripped of metadata.

The rendering machinery is exercised with tiny notebooks here; the real reports are checked in
tests/test_report.py.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from outcomes.errors import ReportError, StoreBusyError
from outcomes.reports import ReportJob, render_reports
from outcomes.reports import publish as report_mod
from outcomes.reports.render import check_inert, export_html, strip_png_metadata

SECRET = "PATIENT-SECRET-4711"


def write_notebook(folder: Path, stem: str, *cells: str, parameters: str = "x: int = 0  # a number"
                   ) -> Path:
    """Write ``folder/stem.ipynb``: a markdown title, a ``parameters`` cell, then code ``cells``."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {stem}"), params,
                *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.ipynb"
    nbformat.write(nb, path)
    return path


def job(stem: str, name: str | None = None, **parameters) -> ReportJob:
    """A job rendering notebook ``stem`` to ``<name>.html``."""
    name = name or stem
    return ReportJob(name, stem, parameters, f"{name}.html", name)


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """Notebook folder, a stand-in database file, and a published first set (``good``)."""
    nbs = tmp_path / "nbs"
    monkeypatch.setenv("OUTCOMES_NOTEBOOKS", str(nbs))
    write_notebook(nbs, "good", "print('report body', x)")
    db = tmp_path / "store.duckdb"
    db.write_bytes(b"not really a store")
    out = tmp_path / "out"
    render_reports([job("good", x=1)], "2026Q3", db, out, progress=False, cell_timeout=60)
    return nbs, db, out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _assert_untouched(out: Path, before: dict[str, bytes]) -> None:
    assert _snapshot(out / "2026Q3") == before
    assert not (out / ".staging").exists()
    assert not list((out / "2026Q3").rglob("*.part"))


def test_failing_cell_names_notebook_and_cell_and_keeps_previous_set(env):
    nbs, db, out = env
    before = _snapshot(out / "2026Q3")
    write_notebook(nbs, "bad", "y = 1", f"raise ValueError('{SECRET}')")
    with pytest.raises(ReportError) as err:
        render_reports([job("good", x=2), job("bad")], "2026Q3", db, out, progress=False,
                       cell_timeout=60)
    message = str(err.value)
    # cells: 1 markdown, 2 parameters, 3 injected parameters, 4 "y = 1", 5 raise
    assert "bad.ipynb: cell 5" in message and "ValueError" in message
    assert SECRET not in message
    _assert_untouched(out, before)
    audit = json.loads(_latest_audit(out).read_text())
    assert {r["name"]: r["status"] for r in audit["reports"]}["bad"] == "failed"
    assert SECRET not in json.dumps(audit)


def _latest_audit(out: Path) -> Path:
    runs = sorted((out / ".audit" / "2026Q3").iterdir())
    return runs[-1] / "manifest.json"


@pytest.mark.slow
def test_cell_timeout_fails_the_set(env):
    nbs, db, out = env
    before = _snapshot(out / "2026Q3")
    write_notebook(nbs, "slow", "import time\ntime.sleep(60)")
    with pytest.raises(ReportError, match=r"slow.ipynb: cell 4 .*exceeded the cell timeout"):
        render_reports([job("slow")], "2026Q3", db, out, progress=False, cell_timeout=2)
    _assert_untouched(out, before)


def test_dead_kernel_fails_the_set(env):
    nbs, db, out = env
    before = _snapshot(out / "2026Q3")
    write_notebook(nbs, "crash", "import os\nos._exit(3)")
    with pytest.raises(ReportError, match=r"crash.ipynb: cell 4 .*killed the kernel"):
        render_reports([job("crash")], "2026Q3", db, out, progress=False, cell_timeout=30)
    _assert_untouched(out, before)


def test_disk_full_leaves_no_half_written_report(env, monkeypatch):
    nbs, db, out = env
    before = _snapshot(out / "2026Q3")
    real = report_mod._write_bytes

    def full_disk(path: Path, data: bytes) -> None:
        if path.suffix in (".html", ".json") and ".audit" not in path.parts:
            part = path.with_name(path.name + ".part")
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(report_mod, "_write_bytes", full_disk)
    with pytest.raises(ReportError, match="disk full"):
        render_reports([job("good", x=5)], "2026Q3", db, out, progress=False, cell_timeout=60)
    _assert_untouched(out, before)


_KILL_SCRIPT = """
import sys
from outcomes.reports import ReportJob, render_reports
jobs = [ReportJob(f"s{i}", "sleepy", {}, f"s{i}.html", "s") for i in range(3)]
render_reports(jobs, "2026Q3", sys.argv[1], sys.argv[2], progress=False, cell_timeout=120)
"""


@pytest.mark.slow
def test_killed_run_keeps_previous_set_and_next_run_completes(env):
    nbs, db, out = env
    before = _snapshot(out / "2026Q3")
    write_notebook(nbs, "sleepy", "import time\ntime.sleep(2)")
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(db), str(out)],
                            env={**os.environ, "OUTCOMES_NOTEBOOKS": str(nbs)},
                            start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    # wait until the run has rendered at least one report into staging, then kill it
    while time.time() < deadline and not list((out / ".staging").rglob("s*.html")):
        time.sleep(0.1)
    assert list((out / ".staging").rglob("s*.html")), "the run never reached staging"
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert _snapshot(out / "2026Q3") == before
    assert not (out / "2026Q3" / "s0.html").exists()
    # the lock died with the process; the next run cleans the staging leftovers and publishes
    result = render_reports([job("good", x=7)], "2026Q3", db, out, progress=False,
                            cell_timeout=60)
    assert "7" in result.paths[0].read_text()
    assert not (out / ".staging").exists()


def test_second_run_is_refused_while_the_folder_is_locked(env):
    nbs, db, out = env
    fd = os.open(out / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(StoreBusyError, match="being written by another run"):
            render_reports([job("good")], "2026Q3", db, out, progress=False)
        threading.Timer(1.0, lambda: fcntl.flock(fd, fcntl.LOCK_UN)).start()
        result = render_reports([job("good", x=9)], "2026Q3", db, out, progress=False,
                                wait=True, cell_timeout=60)
    finally:
        os.close(fd)
    assert result.paths[0].exists()


# ------------------------------------------------------------------------------ inert HTML
HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "{{7*7}}",
           "javascript:alert(3)"]


def test_hostile_strings_render_inert(env):
    nbs, db, out = env
    cells = [
        "import pandas as pd\nfrom IPython.display import display, Markdown, HTML",
        f"hostile = {HOSTILE!r}",
        "display(pd.DataFrame({'technique': hostile, 'n': [11, 12, 13, 14]}))",
        "print(hostile)",
        # a markdown output would be rendered with raw HTML passed through: it must be dropped
        "display(Markdown(hostile[1]))",
    ]
    write_notebook(nbs, "hostile", *cells)
    result = render_reports([job("hostile")], "2026Q3", db, out, progress=False, cell_timeout=60)
    page = result.paths[0].read_text()
    check_inert(page)
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "{{7*7}}" in page and ">49<" not in page
    assert "Content-Security-Policy" in page and "script-src 'none'" in page


def test_check_inert_refuses_active_content():
    for bad in ('<p><script>x()</script></p>', '<img src="a.png" onerror="x()">',
                '<a href="javascript:x()">', '<img src="https://cdn.example/x.png">',
                '<link rel="stylesheet" href="//cdn/x.css">'):
        with pytest.raises(ReportError, match="active content"):
            check_inert(bad)
    check_inert("<p>&lt;script&gt; onerror= {{7*7}}</p>")


def test_page_is_self_contained_without_remote_resources(env):
    nbs, db, out = env
    write_notebook(nbs, "plot", "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
    page = render_reports([job("plot")], "2026Q3", db, out, progress=False,
                          cell_timeout=60).paths[0].read_text()
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", page)
    assert "require.js" not in page and "mathjax" not in page.lower()
    assert page.count("data:image/png;base64,") == 1


def test_embedded_pngs_carry_no_text_metadata(env):
    nbs, db, out = env
    cell = ("import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2])\n"
            "from IPython.display import Image, display\nimport io\nbuf = io.BytesIO()\n"
            f"fig.savefig(buf, format='png', metadata={{'Title': '{SECRET}'}})\n"
            "display(Image(buf.getvalue()))")
    write_notebook(nbs, "meta", cell)
    page = render_reports([job("meta")], "2026Q3", db, out, progress=False,
                          cell_timeout=60).paths[0].read_text()
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) >= 1
    for b64 in images:
        raw = base64.b64decode(b64)
        assert SECRET.encode() not in raw and b"tEXt" not in raw and b"Matplotlib" not in raw


def test_strip_png_metadata_keeps_the_image():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Author": SECRET})
    plt.close(fig)
    raw = buf.getvalue()
    assert SECRET.encode() in raw
    clean = strip_png_metadata(raw)
    assert SECRET.encode() not in clean and b"tEXt" not in clean
    before, after = Image.open(io.BytesIO(raw)), Image.open(io.BytesIO(clean))
    assert before.size == after.size and before.tobytes() == after.tobytes()


def test_export_html_escapes_title_and_footer():
    import nbformat

    nb = nbformat.v4.new_notebook()
    page = export_html(nb, "<script>t()</script>", footer="{{7*7}} <b>")
    check_inert(page)
    assert "&lt;script&gt;t()&lt;/script&gt;" in page and "{{7*7}} &lt;b&gt;" in page
