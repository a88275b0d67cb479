"""Each kind of report opened in headless Chromium, as a person would open it.

Chromium (Debian's ``/usr/bin/chromium``, installed by ``make sysdeps``) is driven through the
DevTools protocol (``websocket-client``): no console error or CSP violation, every image loaded
(``naturalWidth > 0``), the key headings and tables visible; a full-page screenshot is saved.

Run as a script to refresh the README screenshots from a report folder::

    python tests/test_report_browser.py build/demo/reports/2026Q3 docs/screenshots
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_report import rendered, store  # noqa: F401 - shared session fixtures

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-port=0"]

PAGES = {
    "quarterly": ("quarterly_outcomes.html",
                  ["Quarterly outcomes report", "Volumes", "By arm", "Data quality"]),
    "therapist": ("therapists/T001.html",
                  ["Your caseload report", "Your episodes this quarter", "Your trend"]),
    "comparative": ("comparative_analysis.html",
                    ["Comparative analysis", "Cohort flow", "Primary analysis", "Limitations"]),
}

_PROBE = """JSON.stringify({
  images: [...document.images].map(i => ({complete: i.complete, width: i.naturalWidth})),
  headings: [...document.querySelectorAll('h1, h2, h3')]
      .filter(h => h.offsetHeight > 0).map(h => h.textContent.replace('\\u00b6', '').trim()),
  tables: [...document.querySelectorAll('table')].filter(t => t.offsetHeight > 0).length,
  scripts: document.scripts.length,
  height: document.documentElement.scrollHeight
})"""


class Browser:
    """A headless Chromium and one page, driven over the DevTools websocket."""

    def __init__(self) -> None:
        import websocket

        self.profile = tempfile.mkdtemp(prefix="outcomes-chromium-")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}",
                                      "about:blank"], stderr=subprocess.PIPE, text=True)
        url = self._devtools_url()
        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.ids = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def _devtools_url(self) -> str:
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match:
                return match.group(1)
        raise RuntimeError("Chromium did not start its DevTools endpoint")

    def call(self, method: str, session: bool = False, **params) -> dict:
        self.ids += 1
        msg = {"id": self.ids, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.ids:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def open(self, path: Path) -> dict:
        """Load ``path``; return the page probe (images, visible headings, tables)."""
        self.events.clear()
        self.call("Page.navigate", session=True, url=path.resolve().as_uri())
        deadline = time.time() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.time() > deadline:
                raise RuntimeError(f"{path.name} did not finish loading")
            self.events.append(json.loads(self.ws.recv()))
        result = self.call("Runtime.evaluate", session=True, expression=_PROBE,
                           returnByValue=True)
        return json.loads(result["result"]["value"])

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and CSP / network errors seen since ``open``."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append(str(params.get("args")))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                out.append(params["entry"].get("text", ""))
        return out

    def screenshot(self, png: Path, width: int = 1100, max_height: int | None = None) -> None:
        height = int(self.call("Runtime.evaluate", session=True, returnByValue=True,
                               expression="document.documentElement.scrollHeight")
                     ["result"]["value"])
        height = min(height, max_height) if max_height else height
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width,
                  height=height, deviceScaleFactor=1, mobile=False)
        data = self.call("Page.captureScreenshot", session=True, format="png",
                         captureBeyondViewport=False)["data"]
        png.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.kill()
            self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `make sysdeps`")
    b = Browser()
    yield b
    b.close()


@pytest.mark.browser
@pytest.mark.parametrize("kind", sorted(PAGES))
def test_report_opens_cleanly_in_chromium(kind, browser, rendered, tmp_path):  # noqa: F811
    name, headings = PAGES[kind]
    probe = browser.open(rendered.folder / name)
    assert browser.errors() == []
    assert probe["scripts"] == 0
    assert probe["images"], "every report has at least one chart"
    assert all(i["complete"] and i["width"] > 0 for i in probe["images"]), probe["images"]
    visible = " | ".join(probe["headings"])
    for heading in headings:
        assert heading in visible, heading
    assert probe["tables"] >= 2
    png = tmp_path / f"{kind}.png"
    browser.screenshot(png)
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000


_FOLD = """JSON.stringify((() => {
  const box = document.getElementById('glance');
  if (!box) return null;
  const r = box.getBoundingClientRect(), t = box.querySelector('table').getBoundingClientRect();
  const h = box.querySelector('h2').getBoundingClientRect();
  return {top: r.top, heading: h.bottom, table: t.bottom, shown: box.offsetHeight > 0,
          height: window.innerHeight, width: window.innerWidth};
})())"""


@pytest.mark.browser
@pytest.mark.parametrize("kind", ["quarterly", "therapist"])
def test_glance_box_is_above_the_fold_at_1280x800(kind, browser, rendered):  # noqa: F811
    """At 1280x800, without scrolling, the box's heading and its whole table of headline
    figures are on screen."""
    browser.call("Emulation.setDeviceMetricsOverride", session=True, width=1280, height=800,
                 deviceScaleFactor=1, mobile=False)
    browser.open(rendered.folder / PAGES[kind][0])
    box = json.loads(browser.call("Runtime.evaluate", session=True, expression=_FOLD,
                                  returnByValue=True)["result"]["value"])
    assert box is not None, "no glance box"
    assert (box["width"], box["height"]) == (1280, 800)
    assert box["shown"] and 0 <= box["top"] < box["heading"] < box["table"] <= 800, box


@pytest.mark.browser
def test_pdf_first_page_is_the_directors_summary(rendered, tmp_path):  # noqa: F811
    """--pdf prints with the report's own CSS: page one holds the title and the whole glance
    box (figures, items needing action, the rule and the markers), and nothing after it."""
    import pypdf

    from outcomes.reports.render import print_pdf

    for name in ("quarterly_outcomes.html", "therapists/T001.html"):
        pdf = tmp_path / "report.pdf"
        print_pdf(rendered.folder / name, pdf)
        pages = pypdf.PdfReader(pdf).pages
        first = " ".join(pages[0].extract_text().split())
        for text in ("This quarter at a glance", "this quarter last quarter", "Needs action",
                     "An arrow marks a change beyond chance", "a safe range shown instead"):
            assert text in first, (name, text)
        assert len(pages) > 1
        for later in ("How to read this report", "Your episodes this quarter", "Volumes"):
            assert later not in first, (name, later)


@pytest.mark.browser
def test_csp_blocks_an_injected_remote_image(browser, tmp_path):
    """The check can fail: a page pulling a remote image logs a CSP error in Chromium."""
    page = (tmp_path / "bad.html")
    from outcomes.reports.render import CSP

    page.write_text(f'<html><head><meta http-equiv="Content-Security-Policy" content="{CSP}">'
                    '</head><body><h1>x</h1><img src="https://example.invalid/x.png"></body>'
                    "</html>")
    probe = browser.open(page)
    assert any("Content Security Policy" in e for e in browser.errors())
    assert probe["images"][0]["width"] == 0


def capture_screenshots(folder: Path, dest: Path) -> None:
    """Write ``dest/{quarterly,therapist,comparative}.png`` from a published quarter folder."""
    dest.mkdir(parents=True, exist_ok=True)
    therapist = sorted((folder / "therapists").glob("*.html"))[0]
    b = Browser()
    try:
        for kind, (name, _) in PAGES.items():
            path = therapist if kind == "therapist" else folder / name
            b.open(path)
            b.screenshot(dest / f"{kind}.png", max_height=2400)
            print(dest / f"{kind}.png")
    finally:
        b.close()


if __name__ == "__main__":
    capture_screenshots(Path(sys.argv[1]), Path(sys.argv[2]))


@pytest.mark.browser
def test_pdf_option_prints_every_report(tmp_path, monkeypatch):
    from test_report_safety import job, write_notebook

    from outcomes.reports import render_reports

    nbs = tmp_path / "nbs"
    monkeypatch.setenv("OUTCOMES_NOTEBOOKS", str(nbs))
    write_notebook(nbs, "tiny", "import pandas as pd\npd.DataFrame({'n': [11, 12]})")
    db = tmp_path / "db"
    db.write_bytes(b"x")
    result = render_reports([job("tiny")], "2026Q3", db, tmp_path / "out", progress=False,
                            cell_timeout=60, pdf=True)
    pdf = result.folder / "tiny.pdf"
    assert pdf.read_bytes().startswith(b"%PDF-") and pdf.stat().st_size > 1000
    manifest = json.loads(result.manifest.read_text())
    assert manifest["reports"][0]["pdf"] == "tiny.pdf"
