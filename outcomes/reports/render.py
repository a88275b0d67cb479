"""Execute parameterised notebooks in warm kernels and export them to self-contained, inert HTML.

Private helpers of :mod:`outcomes.reports`. A :class:`KernelWorker` keeps one Jupyter kernel alive
and runs many notebooks in it: the heavy imports and the store load happen once per kernel, and the
user namespace is wiped (``%reset -f``, figures closed) before every notebook so that nothing from
one report can reach the next. A kernel that times out or dies is replaced by a fresh one.
"""

from __future__ import annotations

import base64
import html
import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from outcomes.errors import ReportError

#: Environment pinned in every kernel so numbers and text do not depend on the machine's
#: locale, time zone or hash seed.
KERNEL_ENV = {"TZ": "UTC", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
              "MPLBACKEND": "module://matplotlib_inline.backend_inline"}

#: Run once per kernel: the imports every report needs, and PNGs without text metadata.
WARMUP_CODE = """\
import warnings
import matplotlib
import outcomes
try:
    import outcomes.reports
except ImportError:
    pass
get_ipython().run_line_magic(
    "config", "InlineBackend.print_figure_kwargs = "
    "{'bbox_inches': 'tight', 'metadata': {'Software': None}}")
get_ipython().run_line_magic("config", "InlineBackend.figure_formats = ['png']")
"""

#: Run before every notebook: forget all user names, cached outputs and figures of the previous
#: report. (IPython's ``%reset -f`` does the same but runs two full garbage collections, which
#: cost half a second per notebook in a kernel holding the store.)
RESET_CODE = """\
def __outcomes_reset(ip):
    import warnings
    import matplotlib.pyplot as plt
    plt.close("all")
    warnings.resetwarnings()
    ip.user_ns["_oh"].clear()
    for name in [k for k in ip.user_ns if k[:1] == "_" and k[1:].isdigit()]:
        ip.user_ns.pop(name)
        ip.user_ns_hidden.pop(name, None)
    for name in ("_", "__", "___"):
        setattr(ip.displayhook, name, "")
    hidden = ip.user_ns_hidden
    for name in [k for k in ip.user_ns if k not in hidden]:
        del ip.user_ns[name]
    ip.user_ns.update({"_": "", "__": "", "___": ""})
__outcomes_reset(get_ipython())
"""


@dataclass
class Execution:
    """What happened when one notebook ran."""

    nb: Any
    ok: bool
    seconds: float
    cell: int | None = None  # 1-based index of the failing cell
    cell_id: str | None = None
    kind: str | None = None  # "error", "timeout", "dead kernel"
    ename: str | None = None
    extra: dict = field(default_factory=dict)

    def describe(self, notebook: str) -> str:
        """A one-line failure description naming notebook and cell, never data values."""
        where = f"cell {self.cell}" if self.cell else "before the first cell"
        if self.cell_id:
            where += f" (id {self.cell_id})"
        what = {"error": f"raised {self.ename or 'an exception'}",
                "timeout": "exceeded the cell timeout",
                "dead kernel": "killed the kernel"}.get(self.kind or "", "failed")
        return f"{notebook}: {where} {what}"


def prepare_notebook(text: str, parameters: dict[str, Any]) -> Any:
    """Read notebook JSON ``text`` and inject ``parameters`` after its ``parameters`` cell."""
    from papermill.parameterize import parameterize_notebook

    nb = nbformat.reads(text, as_version=4)
    nb.metadata.setdefault("papermill", {"parameters": {}, "default_parameters": {}})
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])
    nb = parameterize_notebook(nb, parameters, kernel_name="python3", language="python")
    for cell in nb.cells:  # papermill gives the injected cell a random id; keep output stable
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell["id"] = "injected-parameters"
    return nb


def _code_notebook(source: str) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


class KernelWorker:
    """One warm Jupyter kernel executing notebooks one after another.

    Parameters
    ----------
    cell_timeout : float
        Seconds a single cell may run before the notebook fails.
    cwd : Path
        Working directory of the kernel (a scratch folder, never the report folder).
    warmup : str
        Code run once whenever a kernel starts.
    """

    def __init__(self, cell_timeout: float, cwd: Path, warmup: str = WARMUP_CODE) -> None:
        self.cell_timeout = cell_timeout
        self.cwd = Path(cwd)
        self.warmup = warmup
        self.km = None
        self.kc = None

    def _client(self, nb: Any, **kw: Any) -> Any:
        from nbclient import NotebookClient

        client = NotebookClient(nb, km=self.km, kernel_name="python3", timeout=self.cell_timeout,
                                allow_errors=False, record_timing=False, **kw)
        client.kc = self.kc
        return client

    def start(self) -> None:
        """Start a fresh kernel and run the warm-up code in it."""
        import os

        from jupyter_client.manager import AsyncKernelManager
        from nbclient import NotebookClient

        self.stop()
        env = {**os.environ, **KERNEL_ENV}
        # IPC sockets in the scratch folder: no TCP port, nothing reachable from the network.
        km = AsyncKernelManager(kernel_name="python3", transport="ipc",
                                ip=str(self.cwd / "k"))
        client = NotebookClient(_code_notebook(self.warmup), km=km, kernel_name="python3",
                                timeout=max(self.cell_timeout, 120), allow_errors=False)
        try:
            client.execute(cleanup_kc=False, cwd=str(self.cwd), env=env)
        except Exception as exc:
            self.km, self.kc = client.km, client.kc
            self.stop()
            raise ReportError(f"could not start a report kernel ({type(exc).__name__}); "
                              "check that the 'python3' kernel of this environment is installed"
                              ) from None
        self.km, self.kc = client.km, client.kc

    def stop(self) -> None:
        """Shut the kernel down (quietly: it may already be dead)."""
        from jupyter_core.utils import run_sync

        if self.kc is not None:
            try:
                self.kc.stop_channels()
            except Exception:  # noqa: BLE001 - best effort on a dying kernel
                pass
        if self.km is not None:
            try:
                run_sync(self.km.shutdown_kernel)(now=True)
            except Exception:  # noqa: BLE001
                pass
        self.km = self.kc = None

    def run(self, nb: Any) -> Execution:
        """Execute ``nb`` (already parameterised) in the warm kernel; never raises for cell faults."""
        from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

        if self.km is None:
            self.start()
        self._client(_code_notebook(RESET_CODE)).execute()
        state = {"cell": None}

        def on_cell_start(cell: Any, cell_index: int) -> None:
            state["cell"] = cell_index

        client = self._client(nb, on_cell_start=on_cell_start)
        t0 = time.perf_counter()
        kind, ename = None, None
        try:
            client.execute()
        except CellTimeoutError:
            kind = "timeout"
        except DeadKernelError:
            kind = "dead kernel"
        except CellExecutionError as exc:
            kind, ename = "error", exc.ename
        seconds = time.perf_counter() - t0
        if kind is None:
            return Execution(nb, True, seconds)
        if kind != "error":
            self.stop()  # a stuck or dead kernel is never reused
        index = state["cell"]
        cell_id = nb.cells[index].get("id") if index is not None else None
        return Execution(nb, False, seconds, cell=None if index is None else index + 1,
                         cell_id=cell_id, kind=kind, ename=ename)


# --------------------------------------------------------------------------------------------
# Output clean-up before export
# --------------------------------------------------------------------------------------------
_KEEP_CHUNKS = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"pHYs", b"sRGB", b"gAMA"}


def strip_png_metadata(data: bytes) -> bytes:
    """Return the PNG ``data`` without text, time and other ancillary chunks.

    Notes
    -----
    A PNG is an 8-byte signature followed by chunks ``length | type | data | crc``. Only the
    image chunks and colour information are kept; ``tEXt``/``zTXt``/``iTXt`` (where matplotlib
    writes ``Software`` and could write anything else) and ``tIME`` are dropped, so an embedded
    chart carries pixels and nothing else.
    """
    sig = b"\x89PNG\r\n\x1a\n"
    if not data.startswith(sig):
        raise ReportError("an embedded image is not a PNG; only PNG charts can be published")
    out, pos = [sig], len(sig)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        end = pos + 12 + length
        chunk = data[pos:end]
        if ctype in _KEEP_CHUNKS and zlib.crc32(chunk[4:-4]) == struct.unpack(">I", chunk[-4:])[0]:
            out.append(chunk)
        pos = end
        if ctype == b"IEND":
            break
    return b"".join(out)


def clean_outputs(nb: Any) -> Any:
    """A copy of ``nb`` ready to publish: no stderr streams, PNGs stripped, only safe mimetypes.

    Rich outputs are reduced to ``text/html`` (produced by pandas, which escapes), ``image/png``
    and ``text/plain``; ``text/markdown``, JavaScript, SVG and widget outputs are dropped because
    they can carry active content.
    """
    nb = nbformat.from_dict(nbformat.v4.upgrade(nb) if nb.nbformat < 4 else nb)
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.get("name") == "stderr":
                continue
            if out.output_type in ("display_data", "execute_result"):
                data = {k: v for k, v in out.data.items()
                        if k in ("text/html", "image/png", "text/plain")}
                if "image/png" in data:
                    raw = strip_png_metadata(base64.b64decode(data["image/png"]))
                    data = {"image/png": base64.b64encode(raw).decode("ascii")}
                elif "text/html" in data:
                    data = {"text/html": data["text/html"]}
                out.data = data
                out.metadata = {}
            kept.append(out)
        cell.outputs = kept
    return nb


# --------------------------------------------------------------------------------------------
# HTML export
# --------------------------------------------------------------------------------------------
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
       "script-src 'none'; base-uri 'none'; form-action 'none'")

CSS = """
:root { color-scheme: light; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 0;
       color: #1d2733; background: #fff; line-height: 1.45; }
main { max-width: 1060px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 1.9em; border-bottom: 3px solid #2f6690; padding-bottom: .25em; }
h2 { font-size: 1.35em; margin-top: 1.8em; color: #2f6690; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1.1em; margin-top: 1.3em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .84em;
        font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: 4px 6px; text-align: right; vertical-align: top; }
th { background: #eef2f6; }
tbody tr:nth-child(even) { background: #f8fafc; }
td:first-child, th:first-child { text-align: left; }
.prose-table td, .prose-table th { text-align: left; }
img { max-width: 100%; height: auto; display: block; margin: .4em 0 1em; }
pre { white-space: pre-wrap; font-size: .85em; background: #f6f8fa; padding: 8px 12px; }
blockquote { margin: 1em 0; padding: .6em 1em; background: #f3f7fb; border-left: 4px solid #2f6690; }
.jp-InputArea, .jp-InputPrompt, .jp-OutputPrompt, .anchor-link { display: none; }
.jp-RenderedHTMLCommon table { margin-left: 0; }
/* a wide table scrolls inside its own box instead of running off the page */
.output_html, .jp-RenderedHTMLCommon { overflow-x: auto; max-width: 100%; }
.jp-Cell { margin: 0; }
footer { margin-top: 3em; font-size: .8em; color: #59636e; }
/* "This quarter at a glance": boxed on screen; printed, it ends page one (a page that stands
   alone for the director) */
.glance { border: 2px solid #2f6690; border-radius: 6px; padding: 2px 18px 8px;
          margin: .8em 0 1.4em; background: #f7fafd; }
.glance h2 { margin-top: .5em; border-bottom: none; }
.glance table { font-size: .9em; }
.glance ul.actions { margin: .2em 0 .6em; padding-left: 1.3em; }
.glance-notes { font-size: .76em; color: #59636e; margin: .3em 0; }
@media print {
  body { font-size: 10pt; }
  main { padding: 0 8px; }
  h1 { font-size: 1.5em; margin: 0 0 .3em; }
  table { margin: .3em 0 .6em; }
  .glance { padding: 0 12px 4px; margin: .4em 0 0; break-inside: avoid; break-after: page;
            page-break-after: always; }
  .glance h2 { margin: .3em 0; }
}
"""

_ACTIVE = re.compile(r"<\s*(script|iframe|object|embed|link|base|form|svg)\b"
                     r"|<[a-z][^>]*\son[a-z]+\s*="
                     r"|\b(src|href|action|srcset|style)\s*=\s*[\"']?\s*(javascript:|https?:|//)"
                     r"|url\(\s*[\"']?\s*(https?:|//)|@import|http-equiv\s*=\s*[\"']?refresh",
                     re.IGNORECASE)

_EXPORTER = None


def _exporter() -> Any:
    global _EXPORTER
    if _EXPORTER is None:
        from nbconvert import HTMLExporter

        ex = HTMLExporter(template_name="basic")
        ex.exclude_input = True
        ex.exclude_input_prompt = True
        ex.exclude_output_prompt = True
        ex.embed_images = True
        _EXPORTER = ex
    return _EXPORTER


def export_html(nb: Any, title: str, footer: str = "") -> str:
    """Render a cleaned notebook to one self-contained HTML page with no scripts.

    The page carries a Content-Security-Policy that forbids scripts and any remote resource,
    and is refused (``ReportError``) if anything active slipped into it.
    """
    body, _ = _exporter().from_notebook_node(clean_outputs(nb))
    check_inert(body)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"{body}\n<footer>{html.escape(footer)}</footer>\n</main>\n</body>\n</html>\n"
    )
    return page


def check_inert(page: str) -> None:
    """Raise ``ReportError`` if ``page`` holds a script, event handler or remote resource.

    The message gives the offset only: the offending text may come from the data.
    """
    match = _ACTIVE.search(page)
    if match:
        raise ReportError("refusing to publish: the rendered page contains active content "
                          f"(a script, event handler or remote resource at offset {match.start()})")


# --------------------------------------------------------------------------------------------
# PDF (optional): headless Chromium prints the HTML page
# --------------------------------------------------------------------------------------------
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-pdf-header-footer")


def print_pdf(html_path: Path, pdf_path: Path, timeout: float = 120.0) -> None:
    """Print ``html_path`` to ``pdf_path`` with headless Chromium (``--print-to-pdf``).

    Raises
    ------
    ReportError
        When Chromium is missing, fails or writes no PDF.
    """
    import shutil
    import subprocess
    import tempfile

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise ReportError("--pdf needs Chromium (Debian package 'chromium'; `make sysdeps`)")
    with tempfile.TemporaryDirectory(prefix="outcomes-pdf-") as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
               f"--print-to-pdf={pdf_path}", Path(html_path).resolve().as_uri()]
        try:
            subprocess.run(cmd, capture_output=True, timeout=timeout, check=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            raise ReportError(f"Chromium could not print {Path(html_path).name} to PDF") from None
    if not pdf_path.exists() or not pdf_path.read_bytes()[:5] == b"%PDF-":
        raise ReportError(f"Chromium wrote no PDF for {Path(html_path).name}")
