"""The real reports, rendered once per session from a small synthetic store with planted data.

The store (``outcomes.synthetic`` -> ``outcomes.ingest``) is edited before ingest so the tests can
look for things that must never leak: a sentinel in the patient ids of one therapist (T004),
hostile strings in a therapist id, a patient id and technique notes, and a clinic of only two
therapists (T007, T008) whose "rest of clinic" benchmark would be one colleague.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from test_report_safety import job, write_notebook

from outcomes import reports as rp
from outcomes.errors import ReportError
from outcomes.reports import plan_comparative, plan_quarterly, plan_therapists, render_reports
from outcomes.reports.render import check_inert

SENTINEL = "ZQXSENTINEL"
SENTINEL_THERAPIST = "T004"
HOSTILE_THERAPIST = "T003<script>alert(9)</script>"
HOSTILE_PATIENT = "P{{7*7}}<img src=x onerror=alert(1)>"
HOSTILE_NOTES = ["<script>alert(1)</script>", "{{7*7}} <img src=x onerror=alert(2)>"]
QUARTER = "2026Q3"


def _planted_export(path: Path) -> None:
    from outcomes.synthetic import generate_export

    frame, _ = generate_export(n_episodes=400, seed=11, n_therapists=8, n_clinics=2)
    one = frame.groupby("patient_id")["therapist_id"].transform("nunique") == 1
    own = one & (frame["therapist_id"] == SENTINEL_THERAPIST)
    frame.loc[own, "patient_id"] = SENTINEL + frame.loc[own, "patient_id"]
    frame.loc[frame["therapist_id"].isin(["T007", "T008"]), "clinic_id"] = "CL99"
    frame.loc[frame["therapist_id"] == "T003", "therapist_id"] = HOSTILE_THERAPIST
    t1 = frame.index[one & (frame["therapist_id"] == "T001")]
    frame.loc[frame["patient_id"] == frame.loc[t1[-1], "patient_id"], "patient_id"] = HOSTILE_PATIENT
    t2 = frame.index[(frame["therapist_id"] == "T002") & (frame["visit_type"] == "treatment")]
    for k, note in enumerate(HOSTILE_NOTES):
        frame.loc[t2[12 * k:12 * (k + 1)], "technique_notes"] = note
    frame.to_csv(path, index=False)


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    """The planted store, built once per session (shared with tests/test_report_browser.py)."""
    from outcomes.ingest import ingest_file

    folder = tmp_path_factory.getbasetemp() / "report-store"
    db = folder / "store.duckdb"
    if not db.exists():
        folder.mkdir(parents=True, exist_ok=True)
        _planted_export(folder / "export.csv")
        ingest_file(folder / "export.csv", db=db)
    return db


@pytest.fixture(scope="session")
def rendered(store, tmp_path_factory) -> SimpleNamespace:
    """Every report of the quarter, rendered once per session (two warm kernels).

    The test modules that import this fixture each get their own copy of it; the published
    folder on disk is what they share, so the reports are rendered only once.
    """
    out = tmp_path_factory.getbasetemp() / "report-out"
    if not (out / QUARTER / "manifest.json").exists():
        jobs = (plan_quarterly(QUARTER, store) + plan_therapists(QUARTER, store)
                + plan_comparative(QUARTER, store))
        render_reports(jobs, QUARTER, store, out, n_jobs=2, progress=False)
    return SimpleNamespace(folder=out / QUARTER, manifest=out / QUARTER / "manifest.json")


def _page(rendered, name: str) -> str:
    return (rendered.folder / name).read_text(encoding="utf-8")


def _therapist_pages(rendered) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in (rendered.folder / "therapists").glob("*.html")}


def _all_bytes(page: bytes) -> bytes:
    """The page plus the decoded bytes of every embedded image."""
    images = re.findall(rb"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    return page + b"".join(base64.b64decode(i) for i in images)


# --------------------------------------------------------------------------- layout, manifest
def test_layout_manifest_and_audit(rendered, store):
    folder = rendered.folder
    assert folder.name == QUARTER
    assert (folder / "quarterly_outcomes.html").exists()
    assert (folder / "comparative_analysis.html").exists()
    therapists = sorted(p.stem for p in (folder / "therapists").glob("*.html"))
    assert "T001" in therapists and SENTINEL_THERAPIST in therapists
    manifest = json.loads(rendered.manifest.read_text())
    assert manifest["input"]["sha256"] == hashlib.sha256(store.read_bytes()).hexdigest()
    assert {"pandas", "numpy", "statsmodels", "outcomes"} <= set(manifest["packages"])
    assert {r["status"] for r in manifest["reports"]} == {"ok"}
    assert len(manifest["reports"]) == len(therapists) + 2
    assert all(r["seconds"] > 0 for r in manifest["reports"])
    assert not list(folder.rglob("*.ipynb")), "executed notebooks must stay out of the set"
    audit = list((folder.parent / ".audit" / QUARTER).rglob("*.ipynb"))
    assert len(audit) == len(manifest["reports"])


def test_reports_show_their_sections(rendered):
    quarterly = _page(rendered, "quarterly_outcomes.html")
    for heading in ("Quarterly outcomes report", "How to read this report", "Volumes",
                    "By arm", "By diagnosis", "Therapists (last four quarters)",
                    "observed minus expected", "Trend over the last eight quarters",
                    "Data quality", "Quarantined rows by reason", "not mapped"):
        assert heading in quarterly, heading
    therapist = _page(rendered, "therapists/T001.html")
    for heading in ("Your caseload report", "Your episodes this quarter",
                    "Episodes missing a discharge score", "rest of your clinic", "Your trend"):
        assert heading in therapist, heading
    comparative = _page(rendered, "comparative_analysis.html")
    for heading in ("Protocol (target trial)", "Cohort flow", "Table 1", "overlap and balance",
                    "Primary analysis", "Trajectories", "Responder analysis",
                    "Time to reaching the MCID", "sensitivity analysis",
                    "Therapist clustering", "Limitations", "diagnostics gate"):
        assert heading in comparative, heading
    assert comparative.count("data:image/png;base64,") >= 4


def test_no_code_in_reports(rendered):
    for page in [_page(rendered, "quarterly_outcomes.html"),
                 _page(rendered, "comparative_analysis.html")]:
        assert "rp.load_report_data" not in page and "import " not in page


# --------------------------------------------------------------------------- privacy
def test_therapist_reports_hold_no_other_therapists_patients(rendered):
    pages = _therapist_pages(rendered)
    assert SENTINEL.encode() in pages[SENTINEL_THERAPIST], "the sentinel was not planted"
    for name, page in pages.items():
        if name != SENTINEL_THERAPIST:
            assert SENTINEL.encode() not in _all_bytes(page), name
    assert SENTINEL.encode() not in _all_bytes(
        (rendered.folder / "quarterly_outcomes.html").read_bytes())
    assert SENTINEL not in rendered.manifest.read_text()


def test_two_therapist_clinic_hides_the_colleague_benchmark(rendered):
    page = _page(rendered, "therapists/T007.html")
    assert "not shown (fewer than 2 colleagues)" in page
    page = _page(rendered, "therapists/T001.html")
    assert "not shown (fewer than 2 colleagues)" not in page


def test_hostile_strings_are_inert_in_every_report(rendered):
    pages = [p for p in rendered.folder.rglob("*.html")]
    for path in pages:
        text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "",
                      path.read_text(encoding="utf-8"))
        check_inert(text)
        assert "<script>alert" not in text and "<img src=x" not in text, path.name
        assert "P49" not in text and "49 &lt;img" not in text  # no template evaluated
    quarterly = _page(rendered, "quarterly_outcomes.html")
    # unmapped technique notes (the vocabulary splits notes at "/"), escaped
    assert "&lt;script&gt;alert(1)&lt;" in quarterly
    assert "{{7*7}} &lt;img src=x onerror=alert(2)&gt;" in quarterly
    assert "T003&lt;script&gt;alert(9)&lt;/script&gt;" in quarterly  # therapist id, escaped
    hostile = [p for p in pages if p.parent.name == "therapists" and p.stem.startswith("T003")]
    assert len(hostile) == 1 and re.fullmatch(r"[A-Za-z0-9._-]+", hostile[0].stem)
    assert "{{7*7}}&lt;img src=x onerror=alert(1)&gt;" in _page(rendered, "therapists/T001.html")


class _Tables(HTMLParser):
    """Collect every table of a page as a list of rows of cell texts (stdlib parser only)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None and self.tables:
            self.tables[-1][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def _count_columns(tables: list[list[list[str]]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, rows in enumerate(tables):
        header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
        for j, name in enumerate(header):
            words = name.split()
            if words and (words[-1] in ("n", "ended", "missing", "rows", "mentions", "episodes")
                          or re.fullmatch(r"20\d\dQ[1-4]", name)):
                out[f"table {k}: {name}"] = [r[j] for r in body]
    return out


def test_published_counts_are_never_1_to_10(rendered):
    """Every count cell of the director's tables is 0, >= 11 or '<11' (CMS cell-size rule)."""
    parser = _Tables()
    parser.feed(_page(rendered, "quarterly_outcomes.html"))
    columns = _count_columns(parser.tables)
    assert len(columns) >= 8, sorted(columns)
    hidden = 0
    for name, cells in columns.items():
        for cell in cells:
            assert cell == "<11" or not re.fullmatch(r"([1-9]|10)(\.0)?", cell), (name, cell)
            hidden += cell == "<11"
    assert hidden > 0, "the planted small caseloads should have been suppressed somewhere"


def _glance(tables: list[list[list[str]]]) -> dict[str, list[str]]:
    rows = next(t for t in tables if t and t[0] == ["", "this quarter", "last quarter",
                                                       "change"])
    return {r[0]: r[1:] for r in rows[1:]}


def _lead(cell: str) -> float:
    """The number a cell starts with (``-2.6 (-2.8 to -2.3)`` -> -2.6, ``78%`` -> 78)."""
    return float(cell.split(" (")[0].rstrip("%"))


def test_glance_box_leads_and_repeats_only_what_the_tables_publish(rendered):
    """The box opens the quarterly report, and each figure of this quarter is the one *Volumes*
    and *By arm* publish (a number where they show it, the same marker where they do not), so
    the box cannot give away what a table withholds."""
    page = _page(rendered, "quarterly_outcomes.html")
    assert page.index("This quarter at a glance") < page.index("How to read this report") \
        < page.index("Volumes")
    parser = _Tables()
    parser.feed(page)
    glance = _glance(parser.tables)
    volumes = {r[0]: r[1:] for r in _table_with(parser.tables, "measure")[1:]}
    assert glance["episodes ended"][:2] == volumes["episodes ended"][::-1]
    for cell in glance["episodes ended"][:2]:
        assert cell == "<11" or not 1 <= int(cell) <= 10
    by_arm = next(t for t in parser.tables if t and t[0][0] == "arm")
    total = dict(zip(by_arm[0], next(r for r in by_arm if r[0] == "All episodes"), strict=True))
    for measure, column in (("% reaching the NPRS MCID", "NPRS pain: % reaching MCID (95% CI)"),
                            ("NPRS pain: mean change (negative = better)",
                             "NPRS pain: mean change (95% CI)")):
        shown, published = glance[measure][0], total[column]
        if published[0].isdigit() or published[0] == "-":
            assert _lead(shown) == pytest.approx(_lead(published)), (measure, shown, published)
        else:
            assert shown == published, (measure, shown, published)
    therapist = _page(rendered, "therapists/T001.html")
    assert therapist.index("This quarter at a glance") < therapist.index(
        "Your episodes this quarter")


def test_pngs_in_reports_carry_no_text_chunks(rendered):
    for path in rendered.folder.rglob("*.html"):
        for b64 in re.findall(rb"data:image/png;base64,([A-Za-z0-9+/=]+)", path.read_bytes()):
            raw = base64.b64decode(b64)
            assert b"tEXt" not in raw and b"iTXt" not in raw and b"Matplotlib" not in raw


# --------------------------------------------------------------------------- CLI errors
@pytest.mark.parametrize("args, message", [
    (["quarterly", "--quarter", "2026Q5"], "--quarter: expected a quarter like 2026Q3"),
    (["quarterly", "--quarter", "2019Q1"], "--quarter: no episodes in 2019Q1"),
    (["therapist", "--quarter", QUARTER, "--therapist", "T999"], "--therapist: 1 therapist"),
    (["therapist", "--quarter", QUARTER, "--therapist", SENTINEL], "--therapist: 1 therapist"),
    (["comparative", "--condition", "knee<script>"], "--condition: use one of"),
    (["comparative", "--exposure-rule", "last3"], "exposure_rule: expected 'firstN'"),
    (["comparative", "--period", "2026Q3-2025Q1"], "period: expected 'all'"),
])
def test_cli_rejects_bad_parameters_in_one_line(store, tmp_path, args, message):
    from click.testing import CliRunner

    from outcomes.cli import cli

    res = CliRunner().invoke(cli, ["report", *args, "--db", str(store), "--out",
                                   str(tmp_path / "out")])
    assert res.exit_code == 2
    assert res.output.startswith("error: " + message) and res.output.count("\n") == 1
    assert SENTINEL not in res.output
    assert not (tmp_path / "out" / QUARTER).exists()


def test_cli_needs_exactly_one_of_therapist_or_all(store, tmp_path):
    from click.testing import CliRunner

    from outcomes.cli import cli

    res = CliRunner().invoke(cli, ["report", "therapist", "--quarter", QUARTER, "--db",
                                   str(store), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--therapist ID" in res.output


@pytest.mark.slow
def test_same_numbers_under_other_locale_and_time_zone(store, tmp_path):
    """Two runs of one report, one under another TZ / locale: identical HTML bytes."""
    outs = []
    for k, extra in enumerate([{"TZ": "UTC", "LC_ALL": "C.UTF-8"},
                               {"TZ": "Pacific/Kiritimati", "LC_ALL": "de_DE.UTF-8",
                                "LANG": "de_DE.UTF-8"}]):
        out = tmp_path / f"run{k}"
        cmd = [sys.executable, "-m", "outcomes.cli", "report", "therapist", "--quarter", QUARTER,
               "--therapist", "T001", "--db", str(store), "--out", str(out), "--quiet"]
        subprocess.run(cmd, check=True, env={**os.environ, **extra}, capture_output=True)
        outs.append((out / QUARTER / "therapists" / "T001.html").read_bytes())
    assert outs[0] == outs[1]


# --------------------------------------------------------------------------- warm kernels
def test_warm_kernel_is_reused_and_wiped_between_notebooks(tmp_path, monkeypatch):
    nbs = tmp_path / "nbs"
    monkeypatch.setenv("OUTCOMES_NOTEBOOKS", str(nbs))
    # the value is built at run time, so the notebook's source (kept in In) does not hold it
    write_notebook(nbs, "first", "import os\nleak = 'secret' + '-of-the-first'\nleak",
                   "os.getpid()")
    # every value in the second notebook's namespace, but its own code history (In, _i*)
    write_notebook(nbs, "second", "import os\nassert 'leak' not in globals()",
                   "needle = 'secret' + '-of-the-first'\n"
                   "assert not [k for k, v in list(globals().items()) if needle in repr(v)\n"
                   "            and k not in ('needle', 'In', '_ih') and not k.startswith('_i')]",
                   "os.getpid()")
    db = tmp_path / "db"
    db.write_bytes(b"x")
    result = render_reports([job("first"), job("second")], QUARTER, db, tmp_path / "out",
                            progress=False, cell_timeout=60)
    pids = [re.findall(r"<pre>(\d+)</pre>", p.read_text()) for p in result.paths]
    assert pids[0] and pids[0] == pids[1], "both notebooks ran in the same (warm) kernel"
    assert "secret-of-the-first" in result.paths[0].read_text()
    assert "secret-of-the-first" not in result.paths[1].read_text()


# --------------------------------------------------------------------------- planning
def test_safe_name_keeps_plain_ids_and_hashes_the_rest():
    from outcomes.reports import safe_name

    assert safe_name("T001") == "T001"
    a, b = safe_name("T003<script>"), safe_name("T003<scripT>")
    assert a != b and re.fullmatch(r"[A-Za-z0-9._-]+", a)
    assert "/" not in safe_name("../../etc/passwd")


def test_parse_quarter_and_bounds():
    assert rp.parse_quarter("2026q3") == "2026Q3" == rp.parse_quarter(" 2026-Q3 ")
    for bad in ("2026Q0", "2026Q5", "Q3 2026", "2026", ""):
        with pytest.raises(ReportError, match="--quarter"):
            rp.parse_quarter(bad)
    start, end = rp.quarter_bounds("2024Q1")
    assert (str(start.date()), str(end.date())) == ("2024-01-01", "2024-03-31")
    assert rp.previous_quarters("2026Q1", 3) == ["2025Q3", "2025Q4", "2026Q1"]


# --------------------------------------------------------------------------- section functions
def _ep(i: int, therapist: str = "T1", clinic: str = "C1", end: str = "2026-08-15",
        start: str = "2026-07-01", status: str = "completed", arm: str = "pri",
        condition: str = "itbs", nprs: tuple = (6.0, 2.0), lefs: tuple = (40.0, 55.0)) -> dict:
    """One hand-built episode row with the columns the report functions read."""
    row = {"episode_id": f"E{i:03d}", "patient_id": f"P{i:03d}", "therapist_id": therapist,
           "clinic_id": clinic, "condition": condition, "arm": arm, "status": status,
           "start_date": pd.Timestamp(start), "end_date": pd.Timestamp(end), "n_visits": 6,
           "has_discharge_visit": status == "completed", "age": 40.0 + i % 7}
    for code, (intake, discharge) in (("nprs", nprs), ("lefs", lefs)):
        mcid = 2 if code == "nprs" else 9
        change = discharge - intake if discharge is not None else float("nan")
        good = -change if code == "nprs" else change
        row.update({f"{code}_intake": intake, f"{code}_last": discharge,
                    f"{code}_discharge": discharge if discharge is not None else float("nan"),
                    f"{code}_change": change,
                    f"{code}_responder": pd.NA if discharge is None else bool(good >= mcid),
                    f"{code}_ceiling": False})
    return row


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for code in ("nprs", "lefs"):
        df[f"{code}_responder"] = df[f"{code}_responder"].astype("boolean")
    return df


def test_mean_ci_matches_scipy_t_interval():
    """Reference: scipy.stats.t.interval(0.95, n-1, mean, sem); tolerance 1e-12."""
    from scipy import stats

    x = pd.Series([3.0, -1.0, 4.5, 2.0, float("nan"), 7.0, 0.5])
    n, m, lo, hi = rp.mean_ci(x)
    ref = stats.t.interval(0.95, 5, loc=x.mean(), scale=stats.sem(x.dropna()))
    assert n == 6 and m == pytest.approx(x.mean(), abs=1e-12)
    assert (lo, hi) == pytest.approx(ref, abs=1e-12)


def test_wilson_ci_matches_statsmodels():
    """Reference: statsmodels proportion_confint(method='wilson'); tolerance 1e-12."""
    from statsmodels.stats.proportion import proportion_confint

    for k, n in ((0, 12), (7, 12), (12, 12), (45, 113)):
        assert rp.wilson_ci(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"),
                                                    abs=1e-12)


def test_outcome_summary_numbers_by_group():
    rows = [_ep(i, arm="pri", nprs=(6.0, 6.0 - i % 4)) for i in range(14)]
    rows += [_ep(100 + i, arm="traditional", nprs=(5.0, 4.0)) for i in range(12)]
    summary = rp.outcome_summary(_frame(rows), "arm")
    assert list(summary.index) == ["pri", "traditional", "all"]
    pri = [-(i % 4) for i in range(14)]
    assert summary.loc["pri", "nprs_change"] == pytest.approx(sum(pri) / 14)
    assert summary.loc["pri", "nprs_responders"] == sum(1 for c in pri if -c >= 2)
    assert summary.loc["traditional", "nprs_responders"] == 0
    assert summary.loc["all", "episodes"] == 26


def test_suppression_hides_small_groups_and_their_complement():
    rows = [_ep(i, arm="pri") for i in range(30)] + [_ep(50 + i, arm="mixed") for i in range(5)]
    rows += [_ep(80 + i, arm="traditional") for i in range(20)]
    table = rp.summary_table(_frame(rows), "arm")
    assert table.index.tolist() == ["Mixed (PRI + traditional)", "PRI-style", "Traditional PT",
                                    "All episodes"]
    mixed = table.loc["Mixed (PRI + traditional)"]
    assert mixed["episodes ended"] == "<11"
    assert (mixed == "<11").all()
    # one hidden group next to a shown total would be recoverable: a second cell is withheld
    # too, and it reads "*" (its own count is not 1-10)
    assert (table["episodes ended"] == "*").sum() >= 1
    assert table.loc["All episodes", "episodes ended"] in (55, "<11")


def test_quarter_volumes_counts_and_hides_derivable_missing():
    rows = [_ep(i, start="2026-07-01", end="2026-08-01") for i in range(14)]
    rows += [_ep(20 + i, status="no_discharge_score", end="2026-08-01", nprs=(6.0, None))
             for i in range(12)]
    eps = _frame(rows)
    visits = pd.DataFrame({"visit_date": pd.to_datetime(["2026-07-02"] * 30 + ["2026-04-02"] * 3),
                           "clinic_id": "C1", "patient_id": [f"P{i % 15}" for i in range(33)]})
    table = rp.quarter_volumes(eps, visits, "2026Q3")
    assert table.loc["new episodes", "2026Q3"] == 26
    assert table.loc["episodes ended", "2026Q3"] == 26
    assert table.loc["ended without a discharge score", "2026Q3"] == 12
    assert table.loc["attended visits", "2026Q3"] == 30
    assert table.loc["attended visits", "2026Q2"] == "<11"
    eps2 = _frame(rows[:5] + rows[14:])  # 5 with a score: 17 - 12 would reveal them
    table2 = rp.quarter_volumes(eps2, visits, "2026Q3")
    # withheld, not "<11": its own count (12) is not small, the 5 with a score are
    assert table2.loc["ended without a discharge score", "2026Q3"] == "*"


def test_therapist_sections_hold_only_the_therapists_episodes():
    rows = [_ep(i, therapist="T1") for i in range(3)]
    rows += [_ep(10, therapist="T1", status="no_discharge_score", nprs=(7.0, None))]
    rows += [_ep(20 + i, therapist="T2") for i in range(15)]
    rows += [_ep(40 + i, therapist="T3", status="no_discharge_score", nprs=(7.0, None))
             for i in range(15)]
    eps = _frame(rows)
    case = rp.caseload_table(eps, QUARTER, "T1")
    assert sorted(case.index) == ["E000", "E001", "E002", "E010"]
    missing = rp.missing_discharge_list(eps, QUARTER, "T1")
    assert list(missing.index) == ["E010"]
    bench = rp.therapist_vs_clinic(eps, [QUARTER], "T1")
    assert bench.loc["episodes ended", "you"] == "4"
    assert bench.loc["episodes ended", "rest of clinic"] == "30"
    assert bench.loc["without discharge score (95% CI)", "rest of clinic"].startswith("50%")
    assert bench.loc["NPRS mean change (95% CI)", "you"].startswith("-4.0")


def test_rest_of_clinic_needs_two_colleagues():
    rows = [_ep(i, therapist="T1") for i in range(12)]
    rows += [_ep(20 + i, therapist="T2") for i in range(30)]
    rows += [_ep(60 + i, therapist="T9", clinic="C2") for i in range(30)]
    bench = rp.therapist_vs_clinic(_frame(rows), [QUARTER], "T1")
    assert set(bench["rest of clinic"]) == {"not shown (fewer than 2 colleagues)"}
    trend = rp.therapist_trend(_frame(rows), QUARTER, "T1", 2)
    assert trend["clinic_pct_mcid"].isna().all()


def test_quarter_trend_blanks_small_quarters():
    rows = [_ep(i, end="2026-08-01") for i in range(20)]
    rows += [_ep(50 + i, start="2026-04-01", end="2026-05-01") for i in range(4)]
    trend = rp.quarter_trend(_frame(rows), QUARTER, 4)
    assert list(trend["quarter"]) == ["2026Q2", "2026Q3"]  # leading empty quarters dropped
    q2, q3 = trend.iloc[0], trend.iloc[1]
    assert q2["suppressed"] and pd.isna(q2["change"]) and pd.isna(q2["episodes"])
    assert not q3["suppressed"] and q3["change"] == pytest.approx(-4.0)
    # 20 responders, 0 non-responders: the share may be shown (0 is not a small cell)
    assert not q3["pct_suppressed"] and q3["pct_mcid"] == 100
    rows[0]["nprs_discharge"], rows[0]["nprs_change"] = 6.0, 0.0
    rows[0]["nprs_responder"] = False  # 19 responders, 1 non-responder
    q3 = rp.quarter_trend(_frame(rows), QUARTER, 4).iloc[-1]
    assert q3["pct_suppressed"] and pd.isna(q3["pct_mcid"]) and not pd.isna(q3["change"])
    table = rp.format_trend(rp.quarter_trend(_frame(rows), QUARTER, 4))
    # 1 non-responder of 20: withheld as a safe band (it rests on 20 episodes, not 1-10)
    assert table.loc[QUARTER, "% reaching MCID (95% CI)"] == "over 50%"
    assert table.loc[QUARTER, "mean change (95% CI)"].startswith("-3.8")
    assert table.loc["2026Q2", "episodes ended"] == "<11"


def test_unmapped_table_lists_only_frequent_texts():
    unmapped = pd.DataFrame({"text": ["cupping", "rare one", "other rare", "IASTM"],
                             "n": [24, 3, 2, 11]})
    table = rp.unmapped_table(unmapped)
    assert list(table.index) == ["cupping", "IASTM", "(other texts: 2 distinct)"]
    assert table.loc["(other texts: 2 distinct)", "mentions"] == "<11"


def test_time_to_mcid_events_and_censoring():
    """Hand-computed: NPRS MCID is 2 points or 30 % of intake (Farrar 2001)."""
    cohort = _frame([_ep(1, nprs=(8.0, 5.0)), _ep(2, nprs=(3.0, 2.0)), _ep(3, nprs=(6.0, 5.0)),
                     _ep(4, nprs=(1.0, 1.0))])
    cohort.loc[3, "nprs_ceiling"] = True
    scores = pd.DataFrame({
        "episode_id": ["E001"] * 3 + ["E002"] * 2 + ["E003"] * 3 + ["E004"] * 2,
        "day": [0, 7, 14, 0, 10, 0, 5, 20, 0, 9],
        "nprs": [8, 7, 5, 3, 2, 6, 5, 5, 1, 0]})
    tt = rp.time_to_mcid(scores, cohort).set_index("episode_id")
    assert tt.loc["E001", ["days", "reached"]].tolist() == [14, 1]
    assert tt.loc["E002", ["days", "reached"]].tolist() == [10, 1]  # 1 point >= 30 % of 3
    assert tt.loc["E003", ["days", "reached"]].tolist() == [20, 0]  # censored at last score
    assert "E004" not in tt.index  # ceiling: cannot reach the MCID


def test_cohort_flow_counts_each_step():
    rows = [_ep(i, arm="pri") for i in range(12)] + [_ep(20 + i, arm="traditional")
                                                      for i in range(12)]
    rows += [_ep(40 + i, arm="mixed") for i in range(11)]
    rows += [_ep(60 + i, condition="lbp") for i in range(13)]
    rows += [_ep(80 + i, arm="pri", status="no_discharge_score", nprs=(6.0, None))
             for i in range(11)]
    eps = _frame(rows)
    flow = rp.cohort_flow(eps, "itbs", "all", "nprs")
    assert flow["remaining"].tolist() == [59, 46, 46, 46, 35, 35, 24]
    assert flow["excluded"].tolist() == [0, 13, 0, 0, 11, 0, 11]
    cohort = rp.analysis_cohort(eps, "itbs", "all", "nprs")
    assert len(cohort) == 35 and cohort["nprs_responder"].dtype == float
    with pytest.raises(ReportError, match="period"):
        rp.parse_period("2026Q3-2025Q1")
    assert rp.parse_period("2025Q1-2026Q2") == ("2025Q1", "2026Q2")


def test_gated_withholds_results_when_the_gate_fails():
    table = pd.DataFrame({"term": ["arm"], "estimate": [-1.2]})
    passed = SimpleNamespace(interpretable=True, label="interpretable")
    failed = SimpleNamespace(interpretable=False, label="not interpretable: equipoise 0.1 < 0.2")
    assert rp.gated(table, passed) is table
    withheld = rp.gated(table, failed)
    assert "-1.2" not in withheld.to_string() and "withheld" in withheld.iloc[0, 0]
    assert rp.gate_notice(failed).index[0].startswith("FAILED")


def test_format_tidy_keeps_the_treatment_term():
    tidy = pd.DataFrame({"term": ["Intercept", "C(arm)[T.pri]"], "estimate": [1.23456, -0.98765],
                         "se": [0.1, 0.2], "p": [0.00012, 0.0456], "warnings": ["", "x"]})
    out = rp.format_tidy(tidy, terms="arm")
    assert list(out.index) == ["C(arm)[T.pri]"] and "warnings" not in out.columns
    assert out.loc["C(arm)[T.pri]", "estimate"] == -0.99 and out.loc["C(arm)[T.pri]", "p"] == 0.046


def test_frame_html_escapes_and_uses_one_header_row():
    frame = pd.DataFrame({"n": [12.0, None]},
                         index=pd.Index(["<img src=x onerror=alert(1)>", "{{7*7}}"], name="arm"))
    page = rp.frame_html(frame)
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert page.count("<tr") == 3 and "<th>arm</th>" in page and "<td>-</td>" in page


def test_exposure_rule_rebuilds_the_arms(store):
    """The default rule reuses the stored episodes; another window reassigns arms only."""
    default = rp.episodes_for_rule(str(store), "first3")
    assert default is rp.load_report_data(store)["episodes"]
    one = rp.episodes_for_rule(str(store), "first1")
    assert sorted(one["episode_id"]) == sorted(default["episode_id"])
    merged = default.merge(one, on="episode_id", suffixes=("", "_1"))
    assert (merged["arm"] != merged["arm_1"]).any()  # mixed after 3 visits, pure after 1
    assert ((merged["arm"] == "mixed") | (merged["arm"] == merged["arm_1"])
            | (merged["arm"] == "none") | (merged["arm_1"] == "none")).all()
    assert (merged["nprs_change"].fillna(-99) == merged["nprs_change_1"].fillna(-99)).all()
    assert rp.parse_exposure_rule("First2+EVAL") == (2, True)
    with pytest.raises(ReportError, match="exposure_rule"):
        rp.parse_exposure_rule("first0")


def test_comparative_report_shows_effects_as_its_gate_says(rendered):
    """The planted store's ITBS cohort passes the primary analysis's gate: the answer and the
    effect tables are shown (the failing case: tests/test_report_effects.py)."""
    page = _page(rendered, "comparative_analysis.html")
    assert "PASSED: results may be interpreted" in page
    assert "withheld: the diagnostics gate failed" not in page
    assert "Answer: PRI-style care" in page and "Answer: not interpretable" not in page
    assert "Cohort flow" in page and "Limitations" in page and "estimate ranges from" in page


def test_every_effect_table_of_the_comparative_notebook_is_gated():
    nb = json.loads((Path(__file__).parent.parent / "notebooks" / "comparative_analysis.ipynb"
                     ).read_text())
    effect = re.compile(r"\.effect\(|responders\.coef|cox\.coef|trajectories\.coef|"
                        r"format_tidy\(sensitivity|primary_table|evalue|explain_away|"
                        r"negative_control")
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    shown = [c.splitlines()[-1] for c in cells if effect.search(c.splitlines()[-1])]
    assert len(shown) == 8
    assert all(line.startswith("rp.gated(") for line in shown), shown
    # the stratum effects withhold themselves (per stratum), given the overall gate
    assert any("rp.modification_table(" in c and "gate)" in c for c in cells)


def test_comparative_needs_enough_episodes_per_arm(store):
    with pytest.raises(ReportError, match="fewer than 20 pfps episodes"):
        plan_comparative(QUARTER, store, condition="pfps")


def test_limitations_quote_estimates_only_when_the_gate_passes():
    flow = pd.DataFrame({"remaining": [100, 80, 60]})
    sens = pd.DataFrame({"estimate": [-1.0, -1.5]})
    clus = pd.DataFrame({"icc": [0.1]})
    weighting = SimpleNamespace(equipoise=0.5, ess={"pri": 40.0, "traditional": 50.0})
    ok = SimpleNamespace(interpretable=True, label="interpretable")
    bad = SimpleNamespace(interpretable=False, label="not interpretable: equipoise 0.1 < 0.2")
    text = " ".join(rp.limitations(flow, ok, sens, clus, weighting))
    assert "25% of the analysis cohort" in text and "-1.50 to -1.00" in text
    assert "about 10% of the variance" in text
    text = " ".join(rp.limitations(flow, bad, sens, clus, weighting))
    assert "-1.50" not in text and "equipoise 0.1 < 0.2" in text


def test_one_clinic_report_sits_beside_the_all_clinics_report(store):
    (one,) = plan_quarterly(QUARTER, store, clinic="CL99")
    assert one.path == "quarterly_outcomes-CL99.html" and one.parameters["clinic"] == "CL99"
    (every,) = plan_quarterly(QUARTER, store)
    assert every.path == "quarterly_outcomes.html" and every.parameters["clinic"] == "all"
    with pytest.raises(ReportError, match="--clinic: no episodes"):
        plan_quarterly(QUARTER, store, clinic="<script>CL1</script>")


def test_quarantine_table_suppresses_and_says_none():
    q = pd.DataFrame({"reason_code": ["score_out_of_range", "impossible_date"], "n": [4, 25]})
    table = rp.quarantine_table(q)
    assert table.loc["score_out_of_range", "rows"] == "<11"
    assert table.loc["impossible_date", "rows"] == 25
    empty = rp.quarantine_table(q.iloc[:0])
    assert list(empty.index) == ["(none)"] and empty.iloc[0, 0] == 0


# --------------------------------------------------------------------------- notebooks as committed
@pytest.mark.parametrize("name", ["quarterly_outcomes", "therapist_caseload",
                                  "comparative_analysis"])
def test_notebooks_are_thin_and_committed_without_outputs(name):
    nb = json.loads((Path(__file__).parent.parent / "notebooks" / f"{name}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    for line in "".join(tagged[0]["source"]).splitlines():
        assert re.fullmatch(r"\w+: (str|int|float|bool) = .+  # .+", line), line
    source = "\n".join("".join(c["source"]) for c in code)
    assert not re.search(r"^\s*(def|class) ", source, re.M)
    assert "open(" not in source and ".duckdb" not in source.replace('"outcomes.duckdb"', "")


# --------------------------------------------------------------------------- more sections
def _clustered(n_therapists: int = 8, per: int = 25, seed: int = 3) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_therapists):
        effect = rng.normal(0, 1.0)
        for k in range(per):
            change = -3 + effect + rng.normal(0, 2.0)
            rows.append(_ep(t * 100 + k, therapist=f"T{t}", nprs=(7.0, 7.0 + round(change, 1))))
    return _frame(rows)


def test_therapist_clustering_matches_statsmodels_mixedlm():
    """Reference: statsmodels MixedLM (REML) random-intercept variance; tolerance 1e-3."""
    import statsmodels.formula.api as smf

    data = _clustered()
    out = rp.therapist_clustering(data).iloc[0]
    fit = smf.mixedlm("nprs_change ~ 1", data, groups=data["therapist_id"]).fit(reml=True)
    tau2, sigma2 = float(fit.cov_re.iloc[0, 0]), float(fit.scale)
    assert out["icc"] == pytest.approx(tau2 / (tau2 + sigma2), abs=1e-3)
    assert out["design_effect"] == pytest.approx(1 + (25 - 1) * out["icc"], abs=1e-9)
    assert out["therapists"] == 8 and out["episodes"] == 200


def test_therapist_comparison_lists_published_caseloads_by_id():
    data = _clustered()
    small = data[data["therapist_id"] == "T3"].head(6).index
    data = data.drop(data[data["therapist_id"] == "T3"].index.difference(small))
    est = rp.therapist_comparison(data)
    assert list(est["therapist_id"]) == sorted(set(est["therapist_id"])) and "T3" not in set(
        est["therapist_id"])
    assert est.attrs["n_hidden"] == 1 and est.attrs["n_therapists"] == 8
    table = rp.format_therapists(est)
    assert table.index.name == "therapist" and len(table) == 7
    assert "1 had fewer than 11" in " ".join(rp.therapist_notes(est).sentences)


def test_observed_minus_expected_hides_small_counts():
    data = _clustered(per=30)
    data["prior_pt"] = [i % 3 == 0 for i in range(len(data))]
    table = rp.observed_minus_expected(data)  # one condition: prior_pt carries the model
    for _, r in table.iterrows():
        k = round(r["observed"] / 100 * r["n"])
        assert r["n"] >= 11 and (k == 0 or k >= 11) and (r["n"] - k == 0 or r["n"] - k >= 11)
    assert table["observed"].between(0, 100).all()
    assert (table["o_minus_e"] - (table["observed"] - table["expected"])).abs().max() < 1e-9


def test_missing_discharge_counts_shares_and_complement():
    rows = [_ep(i, arm="pri") for i in range(20)]
    rows += [_ep(30 + i, arm="pri", status="no_discharge_score", nprs=(6.0, None))
             for i in range(12)]
    rows += [_ep(60 + i, arm="traditional") for i in range(15)]
    rows += [_ep(90 + i, arm="traditional", status="no_discharge_score", nprs=(6.0, None))
             for i in range(4)]
    rows += [_ep(95, arm="traditional", status="open")]
    table = rp.missing_discharge(_frame(rows), "arm")
    assert table.loc["PRI-style", "ended"] == 32 and table.loc["All episodes", "missing"] == 16
    assert table.loc["Traditional PT", "missing"] == "<11"
    # 16 - 12 would give the 4 away: a second cell of the column is withheld too ("*": 12 is
    # not a small count), and the share of 19 episodes is withheld, not "<11"
    assert table.loc["PRI-style", "missing"] == "*"
    assert table.loc["Traditional PT", "% without discharge score (95% CI)"] == "*"
    shown = rp.missing_discharge(_frame(rows[:32]), "arm")  # pri only: nothing to hide
    assert shown.loc["PRI-style", "% without discharge score (95% CI)"].startswith("38% (")
    shares = rp.missing_discharge(_frame(rows), "arm", counts=False)
    assert list(shares.columns) == ["% without discharge score (95% CI)"]


def test_table_one_display_hides_small_categories():
    rows = [_ep(i, arm="pri") for i in range(30)] + [_ep(50 + i, arm="traditional")
                                                      for i in range(30)]
    data = _frame(rows).assign(sex=["X" if i < 3 else "F" for i in range(60)], payer="commercial",
                               symptom_duration_weeks=6.0, prior_pt=[i % 2 for i in range(60)],
                               prior_injection=0.0, surgery_recommended=0.0)
    table = rp.table_one_display(data)
    x_row = [r for r in table.index if "sex = X" in r][0]
    assert table.loc[x_row, "pri"] == "<11" and table.loc[x_row, "traditional"].startswith("0")
    # complementary: "sex = F" 27 next to n = 30 would give the hidden 3 back; so would the SMD
    f_row = [r for r in table.index if "sex = F" in r][0]
    assert table.loc[f_row, "pri"] == "<11" and table.loc[f_row, "traditional"].startswith("30")
    assert table.loc[f_row, "SMD"] == "<11"
    assert table.loc["n", "pri"] == "30" and table.loc["prior_pt = 1, n (%)", "pri"] == "15 (50.0)"
    assert table.loc["prior_pt = 1, n (%)", "SMD"] == "0.000"


def test_table_one_display_complement_is_the_smallest_other_level():
    """Three levels 20/7/3: both small levels are hidden and nothing more; 24/3/3 +0: the
    smallest non-zero shown level (3) joins the hidden one."""
    rows = [_ep(i, arm="pri") for i in range(30)] + [_ep(50 + i, arm="traditional")
                                                      for i in range(30)]
    base = _frame(rows).assign(payer="commercial", symptom_duration_weeks=6.0, prior_pt=0.0,
                               prior_injection=0.0, surgery_recommended=0.0)
    sex = ["A"] * 20 + ["B"] * 7 + ["C"] * 3 + ["A"] * 30
    table = rp.table_one_display(base.assign(sex=sex))
    pri = table["pri"].filter(like="sex = ")
    assert pri.str.startswith("20").sum() == 1 and (pri == "<11").sum() == 2
    sex = ["A"] * 12 + ["B"] * 15 + ["C"] * 3 + ["A"] * 20 + ["B"] * 10
    table = rp.table_one_display(base.assign(sex=sex))
    assert table.loc["sex = A, n (%)", "pri"] == "<11"  # 12 < 15: the smaller one goes
    assert table.loc["sex = B, n (%)", "pri"].startswith("15")


def test_suppress_km_and_notes_escape():
    km = pd.DataFrame({"n": [40, 8], "events": [30, 5], "median": [14.0, 20.0],
                       "ci_low": [10.0, 12.0], "ci_high": [18.0, 30.0]},
                      index=pd.Index(["pri", "traditional"], name="arm"))
    out = rp.suppress_km(km)
    assert (out.loc["traditional"] == "<11").all() and out.loc["pri", "median"] == 14.0
    html = rp.Notes(["<script>x</script> {{7*7}}"], title="<b>t</b>")._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html and "&#123;&#123;7*7&#125;&#125;" in html


def test_protocol_and_parameter_tables_hold_the_parameters():
    table = rp.protocol_table("itbs", "2025Q1-2026Q2", "lefs", "first3", "att")
    assert "2025Q1-2026Q2" in table.loc["eligibility", "specification"]
    assert "MCID 9 points" in table.loc["outcome", "specification"]
    assert table.loc["estimand", "specification"].startswith("ATT")
    params = rp.parameter_table(quarter="2026Q3", comparison_window="x")
    assert params.loc["comparison window", "value"] == "x"


def test_charts_fall_back_to_a_notice_when_nothing_is_publishable():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    empty = rp.therapist_comparison(_frame([_ep(i) for i in range(5)]))
    assert empty.empty
    ax = rp.funnel_chart(empty)
    assert "no therapist" in ax.texts[0].get_text() and not ax.collections
    trend = rp.quarter_trend(_frame([_ep(i) for i in range(5)]), QUARTER, 2)
    ax = rp.run_chart(trend, "mean NPRS change")
    assert "fewer than 11" in ax.texts[0].get_text()
    plt.close("all")


@pytest.mark.slow
def test_small_clinic_report_renders_with_notices(store, tmp_path):
    """Two therapists, few episodes: every section says what it cannot show, nothing crashes."""
    result = render_reports(plan_quarterly(QUARTER, store, clinic="CL99"), QUARTER, store,
                            tmp_path, progress=False)
    page = result.paths[0].read_text()
    assert "no therapist with 11 or more episodes" in page
    assert page.count("data:image/png;base64,") == 2  # the two notices, as images


def test_empty_database_parameter_means_the_environment_store(tmp_path, monkeypatch):
    """A notebook opened in JupyterLab leaves ``database`` empty: $OUTCOMES_DB is used."""
    from outcomes.errors import ReportError
    from outcomes.reports import load_report_data

    monkeypatch.setenv("OUTCOMES_DB", str(tmp_path / "from_env.duckdb"))
    with pytest.raises(ReportError, match="from_env.duckdb"):
        load_report_data("")


# --------------------------------------------------------------------------- cross-table leaks
def test_observed_minus_expected_table_gives_no_caseload_next_to_the_therapist_table():
    """The O-E model drops ceiling cases and incomplete case mix: its ``n`` next to the
    therapist comparison's ``n`` (same therapist, same window) would give their number
    (1 in the 400-episode synthetic store: 14 vs 13)."""
    data = _clustered(per=30)
    data["prior_pt"] = [i % 3 == 0 for i in range(len(data))]
    table = rp.format_oe(rp.observed_minus_expected(data))
    assert len(table) and "episodes" not in table.columns
    assert not any(re.search(r"\bn\b|episodes", str(c)) for c in table.columns)


def test_suppress_km_hides_what_n_minus_events_and_the_arm_size_give_away():
    """n - events is the number censored; arm size (Table 1) - n is the number left out of the
    KM analysis (ceiling cases): either of 1-10 must not be recoverable."""
    km = pd.DataFrame({"n": [51, 57, 30], "events": [41, 44, 15], "median": [14.0, 17.0, 20.0],
                       "ci_low": [9.0, 13.0, 15.0], "ci_high": [18.0, 20.0, 30.0]},
                      index=pd.Index(["pri", "traditional", "other"], name="arm"))
    out = rp.suppress_km(km)
    assert out.loc["pri", "events"] == "<11"  # 51 - 41 = 10 censored
    assert out.loc["pri", "n"] == 51 and out.loc["pri", "median"] == 14.0
    assert out.loc["traditional", "events"] == 44  # 13 censored
    sizes = pd.Series({"pri": 55, "traditional": 60, "other": 30})
    out = rp.suppress_km(km, sizes)
    assert out.loc["pri", "n"] == "<11" and out.loc["traditional", "n"] == "<11"  # 4 and 3 out
    assert out.loc["other", "n"] == 30 and out.loc["other", "events"] == 15
    for arm in ("pri", "traditional"):
        shown = [v for v in out.loc[arm, ["n", "events"]] if v != "<11"]
        assert len(shown) <= 1


def test_cohort_flow_hides_a_small_exclusion_from_the_difference_of_remaining():
    """remaining[i-1] - remaining[i] = excluded[i]: a hidden exclusion needs a hidden neighbour."""
    rows = [_ep(i, arm="pri") for i in range(30)] + [_ep(40 + i, arm="traditional")
                                                      for i in range(30)]
    rows += [_ep(80 + i, arm="pri", status="open") for i in range(4)]
    rows += [_ep(90 + i, condition="lbp") for i in range(13)]
    flow = rp.cohort_flow(_frame(rows), "itbs", "all", "nprs")
    assert flow.loc["episode has ended (not open)", "excluded"] == "<11"
    rem = pd.to_numeric(flow["remaining"], errors="coerce").tolist()
    exc = pd.to_numeric(flow["excluded"], errors="coerce").tolist()
    for i in range(1, len(rem)):
        known = [v for v in (rem[i - 1], rem[i], exc[i]) if not pd.isna(v)]
        assert len(known) != 2, (i, flow)  # two shown cells of a relation give the third
    # the analysis cohort and the completers stay shown (Table 1 and the analyses give them)
    assert flow["remaining"].iloc[-2] == 60 and flow["remaining"].iloc[-1] == 60
    # no limitation sentence is built on a hidden cell
    gate = SimpleNamespace(interpretable=False, label="x")
    assert rp.limitations(flow, gate, None, None, None)


def test_format_tidy_hides_small_counts():
    tidy = pd.DataFrame({"method": ["completers", "mi"], "estimate": [1.0, 1.1],
                         "n": [40, 48], "n_missing": [8, 0]})
    out = rp.format_tidy(tidy)
    assert out.loc["completers", "n_missing"] == "<11" and out.loc["mi", "n_missing"] == 0
    assert out.loc["completers", "n"] == "<11" and out.loc["mi", "n"] == 48  # 48 - 40 = 8
    out = rp.format_tidy(tidy.assign(n=[40, 60]))
    assert out["n"].tolist() == [40, 60]


def test_format_tidy_sensitivity_n_gives_no_small_number_missing():
    """Completers and IPW fit the episodes with a discharge score, LOCF and MI all of them: two
    shown n 1-10 apart gave the number missing that n_missing hides."""
    tidy = pd.DataFrame({"method": ["completers", "locf", "ipw_dropout", "multiple_imputation"],
                         "term": "arm", "estimate": 1.0, "n": [52, 60, 52, 60],
                         "n_missing": 8})
    out = rp.format_tidy(tidy)
    shown = pd.to_numeric(out["n"], errors="coerce").dropna()
    assert not any(1 <= abs(a - b) <= 10 for a in shown for b in shown), out
    assert (out["n_missing"] == "<11").all() and out.loc["locf", "n"] == 60


def test_table_one_display_hides_a_small_number_missing():
    """Shares are of non-missing values: count / share gives that number, and the arm's n minus
    it the number missing. With 1-10 missing in an arm, no share of the variable is shown there,
    a level is hidden so the shown counts do not add up to it, and the SMD is hidden."""
    rows = [_ep(i, arm="pri") for i in range(30)] + [_ep(50 + i, arm="traditional")
                                                      for i in range(30)]
    sex = ["F"] * 14 + ["M"] * 13 + [None] * 3 + ["F"] * 15 + ["M"] * 15
    data = _frame(rows).assign(sex=sex, payer="commercial", symptom_duration_weeks=6.0,
                               prior_pt=[float(i % 2) for i in range(57)] + [None] * 3,
                               prior_injection=0.0, surgery_recommended=0.0)
    table = rp.table_one_display(data)
    pri = table["pri"].filter(like="sex = ")
    assert not pri.str.contains(r"\(", regex=True).any(), pri  # no share next to a count
    counts = pd.to_numeric(pri, errors="coerce")
    assert counts.isna().any() or counts.sum() != 27  # the shown levels do not sum to 27
    assert table.loc["sex = F, n (%)", "SMD"] == "<11"
    assert table.loc["sex = F, n (%)", "traditional"] == "15 (50.0)"
    assert "(" not in table.loc["prior_pt = 1, n (%)", "traditional"]  # 3 missing there
    assert table.loc["prior_pt = 1, n (%)", "SMD"] == "<11"


def test_missing_discharge_never_shows_ended_and_missing_around_a_small_complete():
    """ended = missing + with a score: ended 15 and missing 12 would give the 3 with a score."""
    rows = [_ep(i, arm="pri") for i in range(3)]
    rows += [_ep(10 + i, arm="pri", status="no_discharge_score", nprs=(6.0, None))
             for i in range(12)]
    rows += [_ep(40 + i, arm="traditional") for i in range(20)]
    rows += [_ep(70 + i, arm="traditional", status="no_discharge_score", nprs=(6.0, None))
             for i in range(15)]
    table = rp.missing_discharge(_frame(rows), "arm")
    for arm, r in table.iterrows():
        ended, missing = (pd.to_numeric(r[c], errors="coerce") for c in ("ended", "missing"))
        assert pd.isna(ended) or pd.isna(missing) or not 1 <= ended - missing <= 10, (arm, table)
    assert table.loc["Traditional PT", "ended"] == 35


def test_love_plot_balance_hides_the_unweighted_difference_of_hidden_table_one_cells():
    """Before weighting, a binary covariate's difference is p_pri - p_traditional: with
    'sex = X' 0 in one arm (shown) it is the other arm's hidden count over its n (1/60 in the
    400-episode synthetic store). Covariates whose Table 1 SMD is hidden lose it in the plot."""
    rows = [_ep(i, arm="pri") for i in range(30)] + [_ep(50 + i, arm="traditional")
                                                      for i in range(30)]
    cohort = _frame(rows).assign(sex=["X" if i < 3 else "F" for i in range(60)],
                                 payer="commercial", symptom_duration_weeks=6.0,
                                 prior_pt=[i % 2 for i in range(60)], prior_injection=0.0,
                                 surgery_recommended=0.0)
    balance = pd.DataFrame({"covariate": ["age", "C(sex)[F]", "C(sex)[X]", "prior_pt",
                                          "nprs_intake"],
                            "type": ["continuous", "binary", "binary", "binary", "continuous"],
                            "smd_before": [0.1, -0.1, 0.1, 0.0, 0.2],
                            "smd_after": [0.01, -0.01, 0.01, 0.0, 0.02]})
    out = rp.balance_display(balance, cohort).set_index("covariate")
    assert out.loc[["C(sex)[F]", "C(sex)[X]"], "smd_before"].isna().all()
    assert out.loc[["age", "prior_pt", "nprs_intake"], "smd_before"].notna().all()
    assert out["smd_after"].tolist() == balance["smd_after"].tolist()
    assert table_one_hidden_smd(rp.table_one_display(cohort)) == {"sex"}


def table_one_hidden_smd(table: pd.DataFrame) -> set[str]:
    return {r.split(" = ")[0].split(",")[0] for r in table.index[table["SMD"] == "<11"]}


def _table_with(tables: list[list[list[str]]], first: str) -> list[list[str]]:
    return next(t for t in tables if t and t[0] and t[0][0] == first)


def _num(cell: str) -> float:
    try:
        return float(cell.split(" (")[0])
    except ValueError:
        return float("nan")


def test_comparative_report_gives_no_small_count_as_a_difference_of_shown_counts(rendered):
    """Rendered comparative page: no relation between shown counts (cohort flow steps, KM n
    and events, Table 1 arm sizes and KM n) gives a number from 1 to 10."""
    parser = _Tables()
    parser.feed(_page(rendered, "comparative_analysis.html"))
    flow = _table_with(parser.tables, "step")[1:]
    for prev, row in zip(flow, flow[1:], strict=False):
        rem0, rem1, exc = _num(prev[1]), _num(row[1]), _num(row[2])
        if not (pd.isna(rem0) or pd.isna(rem1)):
            assert not 1 <= rem0 - rem1 <= 10 and not pd.isna(exc), (prev, row)
    table1 = {r[0]: r[1:] for r in _table_with(parser.tables, "")[1:]}
    arms = _table_with(parser.tables, "")[0][1:3]
    sizes = dict(zip(arms, (_num(c) for c in table1["n"][:2]), strict=True))
    km = _table_with(parser.tables, "arm")
    header = km[0]
    for row in km[1:]:
        r = dict(zip(header, row, strict=True))
        n, events = _num(r["n"]), _num(r["events"])
        assert pd.isna(n) or pd.isna(events) or not 1 <= n - events <= 10, r
        assert pd.isna(n) or not 1 <= sizes[r["arm"]] - n <= 10, (r, sizes)


def test_cohort_flow_shows_a_zero_exclusion_and_hides_both_counts_around_it():
    """With period "all" the period step excludes 0 by definition: showing it as ``<11`` did not
    hide it, so 'condition' remaining (64) minus 'ended' remaining (60) gave the 4 open episodes
    (and a 64 read as ``<11``). A zero stays 0; the counts on both sides of it are one number."""
    rows = [_ep(i, arm="pri") for i in range(30)] + [_ep(40 + i, arm="traditional")
                                                      for i in range(30)]
    rows += [_ep(80 + i, arm="pri", status="open") for i in range(4)]
    rows += [_ep(90 + i, condition="lbp") for i in range(13)]
    flow = rp.cohort_flow(_frame(rows), "itbs", "all", "nprs")
    assert flow.loc["evaluation in the study period", "excluded"] == 0
    rem = pd.to_numeric(flow["remaining"], errors="coerce").tolist()
    exc = pd.to_numeric(flow["excluded"], errors="coerce").tolist()
    for i in range(1, len(rem)):
        known = [v for v in (rem[i - 1], rem[i], exc[i]) if not pd.isna(v)]
        assert len(known) != 2, (i, flow)
    assert flow.loc["episode has ended (not open)", "excluded"] == "<11"
    assert flow["remaining"].iloc[-2] == 60


# --------------------------------------------------------------------------- instruments (issue 11)
def test_instruments_table_lists_stored_instruments_with_their_facts_and_hides_small_counts():
    berg = json.dumps({"name": "Berg Balance Scale", "low": 0, "high": 56,
                       "higher_is_better": True, "mcid": 5, "source": "clinic"})
    counts = pd.DataFrame({"instrument": ["nprs", "ndi", "berg", "womac"],
                           "scores": [500, 40, 12, 30], "patients": [120, 4, 12, 20],
                           "spec": [None, None, berg, None]})
    table = rp.instruments_table(counts)
    assert list(table.index) == ["NPRS pain", "NDI neck disability (raw 0-50)",
                                 "Berg Balance Scale", "womac"]
    assert table.loc["NPRS pain", ["range", "better", "MCID"]].tolist() == ["0-10", "lower", "2"]
    assert table.loc["Berg Balance Scale", ["range", "better", "source"]].tolist() == [
        "0-56", "higher", "clinic"]
    assert table.loc["NDI neck disability (raw 0-50)", ["scores", "patients"]].tolist() == [
        "<11", "<11"]  # 4 patients: hidden, and the scores computed over them too
    assert "not logged" in table.loc["womac", "source"]


def test_reported_instruments_are_those_with_intake_scores():
    episodes = pd.DataFrame({"nprs_intake": [5.0, 6.0], "lefs_intake": [float("nan")] * 2})
    assert rp.reported_instruments(episodes) == ("nprs",)
    assert rp.reported_instruments(episodes.assign(lefs_intake=[40.0, None])) == ("nprs", "lefs")


def test_in_words_shows_codes_as_labels_and_leaves_numbers_and_markers():
    table = pd.DataFrame({"traditional": ["566", "40 (7.1)"], "pri": ["319", "<11"],
                          "SMD": ["", "<11"]}, index=["n", "payer = self_pay, n (%)"])
    out = rp.in_words(table)
    assert list(out.columns) == ["Traditional PT", "PRI-style", "SMD"]
    assert list(out.index) == ["n", "payer = Self-pay, n (%)"]
    assert out.to_numpy().tolist() == table.to_numpy().tolist()
    km = pd.DataFrame({"arm": ["pri", "traditional", "mixed"], "n": [12, 30, "<11"]})
    assert rp.in_words(km)["arm"].tolist() == ["PRI-style", "Traditional PT",
                                               "Mixed (PRI + traditional)"]
    assert km["arm"].tolist() == ["pri", "traditional", "mixed"]  # the input is not changed
