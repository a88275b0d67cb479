"""Command-line interface: ``outcomes synth | ingest | status | episodes | report``.

Every :class:`~outcomes.errors.OutcomesError` becomes one line on stderr starting ``error:`` and
exit code 2. Each command's body is a thin call into the module that owns the work.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from outcomes.errors import OutcomesError


def default_db() -> str:
    """The store used when ``--db`` is not given: ``$OUTCOMES_DB`` or ``./outcomes.duckdb``."""
    from outcomes.store import resolve_db

    return str(resolve_db(None))


db_option = click.option(
    "--db", type=click.Path(dir_okay=False), default=default_db,
    help="DuckDB store (default: $OUTCOMES_DB or ./outcomes.duckdb).",
)


def fail(message: str) -> None:
    """Print one ``error:`` line and exit with code 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


class _Group(click.Group):
    """A click group that turns the toolkit's own errors into one line and exit code 2."""

    def invoke(self, ctx: click.Context):  # noqa: D102
        try:
            return super().invoke(ctx)
        except OutcomesError as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


@click.group(cls=_Group)
@click.version_option(package_name="outcomes")
def cli() -> None:
    """Physical-therapy outcomes toolkit: synthetic exports, ingest, episodes, reports."""


@cli.command()
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="CSV to write.")
@click.option("--episodes", "n_episodes", default=600, show_default=True, help="Episodes to generate.")
@click.option("--seed", default=2026, show_default=True, help="Random seed (deterministic output).")
@click.option("--messy", is_flag=True, help="Inject the defects listed in QUALITY.md and record them.")
@click.option("--effect-nprs", type=float, default=None, help="True PRI effect on NPRS change (points).")
@click.option("--effect-lefs", type=float, default=None, help="True PRI effect on LEFS change (points).")
def synth(out: str, n_episodes: int, seed: int, messy: bool,
          effect_nprs: float | None, effect_lefs: float | None) -> None:
    """Write a synthetic EMR export and, beside it, the truth used to make it (JSON)."""
    from outcomes.synthetic import write_export

    effects = {k: v for k, v in (("nprs", effect_nprs), ("lefs", effect_lefs)) if v is not None}
    info = write_export(out, n_episodes=n_episodes, seed=seed, messy=messy, effects=effects or None)
    click.echo(f"wrote {info['rows']} visit rows ({info['episodes']} episodes) to {out}")
    click.echo(f"truth: {info['truth_path']}")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@db_option
@click.option("--profile", type=click.Path(dir_okay=False), default=None,
              help="EMR profile (YAML or TOML) mapping the export to the canonical schema.")
@click.option("--dry-run", is_flag=True,
              help="Show what would load and what would be quarantined; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a summary.")
def ingest(paths: tuple[str, ...], db: str, profile: str | None, dry_run: bool,
           as_json: bool) -> None:
    """Validate an export, quarantine bad rows, and load the rest into the store.

    PATHS is one export file, the files of a multi-file export (the profile's [files] table
    says which is which), a folder or .zip holding them, or a FHIR Bulk Data folder (NDJSON).
    """
    from outcomes.ingest import ingest_export

    result = ingest_export(list(paths), db=db, profile=profile, dry_run=dry_run,
                           progress=not as_json)
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
    else:
        click.echo(result.summary())


@cli.group()
def profile() -> None:
    """EMR profiles: draft one from an export."""


@profile.command("draft")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the drafted TOML profile (must not exist yet).")
def profile_draft(paths: tuple[str, ...], out: str) -> None:
    """Guess a commented profile from an export's headers and a sample (every guess marked)."""
    from pathlib import Path

    from outcomes.ingest import draft_profile, expand_inputs

    target = Path(out)
    if target.exists():
        fail(f"{target} exists; choose another --out (a draft never overwrites a profile)")
    with expand_inputs([Path(p) for p in paths]) as files:
        text = draft_profile(files)
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {target}: review every line marked REVIEW, then "
               f"`outcomes ingest ... --profile {target} --dry-run`")


@cli.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(db: str, as_json: bool) -> None:
    """Summarise the store: episodes, visits, date range, quarantine by reason."""
    from outcomes.store import store_status

    info = store_status(db)
    if as_json:
        click.echo(json.dumps(info, default=str))
    else:
        for key, value in info.items():
            click.echo(f"{key}: {value}")


@cli.command()
@db_option
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the episode table (.csv, .xlsx or .parquet; spreadsheet cells are formula-safe).")
def episodes(db: str, out: str) -> None:
    """Export the episode table."""
    from outcomes.store import export_episodes

    n = export_episodes(db, Path(out))
    click.echo(f"wrote {n} episodes to {out}")


@cli.group()
def report() -> None:
    """Render the periodic reports (HTML) for a quarter; published atomically under --out."""


def _report_options(func):
    func = db_option(func)
    func = click.option("--out", "out", type=click.Path(file_okay=False), default="reports",
                        show_default=True, help="Report folder; the set goes to OUT/<quarter>/.")(func)
    func = click.option("--jobs", "n_jobs", type=click.IntRange(1, 64), default=1,
                        show_default=True, help="Notebooks rendered in parallel (warm kernels).")(func)
    func = click.option("--cell-timeout", type=float, default=600.0, show_default=True,
                        help="Seconds one notebook cell may run.")(func)
    func = click.option("--wait", is_flag=True,
                        help="Wait for another run on the same folder instead of refusing.")(func)
    func = click.option("--quiet", is_flag=True, help="No progress bar.")(func)
    func = click.option("--pdf", is_flag=True,
                        help="Also print each report to PDF (headless Chromium).")(func)
    return func


def _render(jobs, quarter, db, out, n_jobs, cell_timeout, wait, quiet, pdf=False) -> None:
    from outcomes.reports import render_reports

    result = render_reports(jobs, quarter, db, out, n_jobs=n_jobs, cell_timeout=cell_timeout,
                            progress=not quiet, wait=wait, pdf=pdf)
    for path in result.paths:
        click.echo(str(path))
    click.echo(f"manifest: {result.manifest}")


@report.command("quarterly")
@click.option("--quarter", required=True, help="Reporting quarter, e.g. 2026Q3, or 'latest'.")
@click.option("--clinic", default=None, help="One clinic id (default: all clinics).")
@_report_options
def report_quarterly(quarter, clinic, db, out, n_jobs, cell_timeout, wait, quiet, pdf) -> None:
    """The clinic director's quarterly outcomes report."""
    from outcomes.reports import plan_quarterly

    jobs = plan_quarterly(quarter, db, clinic)
    _render(jobs, jobs[0].parameters["quarter"], db, out, n_jobs, cell_timeout, wait, quiet, pdf)


@report.command("therapist")
@click.option("--quarter", required=True, help="Reporting quarter, e.g. 2026Q3, or 'latest'.")
@click.option("--therapist", "therapists", multiple=True, help="Therapist id (repeatable).")
@click.option("--all", "all_", is_flag=True, help="Every therapist active in the quarter.")
@_report_options
def report_therapist(quarter, therapists, all_, db, out, n_jobs, cell_timeout, wait,
                     quiet, pdf) -> None:
    """Caseload reports: one per therapist, their own patients only."""
    from outcomes.reports import plan_therapists

    if bool(therapists) == all_:
        raise click.UsageError("give --therapist ID (one or more) or --all")
    jobs = plan_therapists(quarter, db, None if all_ else list(therapists))
    _render(jobs, jobs[0].parameters["quarter"], db, out, n_jobs, cell_timeout, wait, quiet, pdf)


@report.command("comparative")
@click.option("--quarter", default=None, help="Quarter folder to file it under (default: latest).")
@click.option("--condition", default="itbs", show_default=True, help="Condition label.")
@click.option("--outcome", default="nprs", show_default=True, help="Primary outcome instrument.")
@click.option("--estimand", type=click.Choice(["ate", "att"]), default="ate", show_default=True)
@click.option("--exposure-rule", default="first3", show_default=True,
              help="Baseline window that sets the arm: firstN or firstN+eval.")
@click.option("--period", default="all", show_default=True,
              help="Evaluation quarters: all or YYYYQn-YYYYQn.")
@_report_options
def report_comparative(quarter, condition, outcome, estimand, exposure_rule, period, db, out,
                       n_jobs, cell_timeout, wait, quiet, pdf) -> None:
    """The researchers' comparative analysis (PRI-style vs traditional)."""
    from outcomes.reports import plan_comparative

    jobs = plan_comparative(quarter, db, condition=condition, outcome=outcome, estimand=estimand,
                            exposure_rule=exposure_rule, period=period)
    _render(jobs, jobs[0].parameters["quarter"], db, out, n_jobs, cell_timeout, wait, quiet, pdf)


@report.command("all")
@click.option("--quarter", required=True, help="Reporting quarter, e.g. 2026Q3, or 'latest'.")
@_report_options
def report_all(quarter, db, out, n_jobs, cell_timeout, wait, quiet, pdf) -> None:
    """Director's report, every therapist's report and the comparative analysis, as one set."""
    from outcomes.errors import ReportError
    from outcomes.reports import plan_comparative, plan_quarterly, plan_therapists

    jobs = plan_quarterly(quarter, db) + plan_therapists(quarter, db)
    try:
        jobs += plan_comparative(jobs[0].parameters["quarter"], db)
    except ReportError as exc:  # too little data for a comparison: the rest is still a set
        click.echo(f"note: {exc} - not rendered", err=True)
    _render(jobs, jobs[0].parameters["quarter"], db, out, n_jobs, cell_timeout, wait, quiet, pdf)


def main() -> None:
    """Entry point of the ``outcomes`` console script."""
    cli(prog_name="outcomes")


if __name__ == "__main__":
    main()
