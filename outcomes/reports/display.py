"""Display helpers of the report notebooks: escaped HTML tables, notes, readable tables, charts.

Re-exported by :mod:`outcomes.reports`. Every string from the data reaches the page escaped:
tables through :func:`frame_html` (pandas ``to_html(escape=True)``), sentences through
:class:`Notes` (:func:`outcomes.privacy.escape_text`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from outcomes.reports.quarterly import format_interval

__all__ = [
    "funnel_chart", "run_chart", "Notes", "setup_display", "frame_html", "parameter_table",
    "format_therapists", "therapist_notes", "format_oe", "format_trend", "glance_table",
    "GlanceBox", "glance_box", "in_words",
]


# --------------------------------------------------------------------------------------------
# Display helpers
# --------------------------------------------------------------------------------------------
def _placeholder(message: str, ax: Any = None) -> Any:
    import matplotlib.pyplot as plt

    if ax is None:
        ax = plt.subplots(figsize=(7, 1.2))[1]
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10, color="0.35",
            transform=ax.transAxes)
    return ax


def funnel_chart(estimates: pd.DataFrame, ax: Any = None) -> Any:
    """:func:`outcomes.plots.plot_funnel` of :func:`therapist_comparison`, or a notice when no
    therapist is publishable. Returns the Axes."""
    from outcomes.plots import plot_funnel

    if estimates.empty:
        return _placeholder("no therapist with 11 or more episodes in the window", ax)
    return plot_funnel(estimates, label="therapist_id", ax=ax)


def run_chart(trend: pd.DataFrame, value: str, ax: Any = None) -> Any:
    """:func:`outcomes.plots.plot_run_chart` of ``value``, or a notice when every point was
    blanked as a small cell. Returns the Axes."""
    from outcomes.plots import plot_run_chart

    if trend[value].notna().sum() == 0:
        return _placeholder("every quarter rests on fewer than 11 episodes: nothing to plot", ax)
    return plot_run_chart(trend, value, ax=ax)


class Notes:
    """Sentences shown as an HTML list; every sentence is escaped (data never becomes markup)."""

    def __init__(self, sentences: list[str], title: str | None = None) -> None:
        self.sentences = [str(s) for s in sentences]
        self.title = title

    def _repr_html_(self) -> str:
        from outcomes.privacy import escape_text

        head = f"<p><strong>{escape_text(self.title)}</strong></p>" if self.title else ""
        items = "".join(f"<li>{escape_text(s)}</li>" for s in self.sentences)
        return f'<div class="notes">{head}<ul>{items}</ul></div>'

    def __repr__(self) -> str:
        return "\n".join(self.sentences)


def setup_display() -> None:
    """Display settings of the report notebooks: full cell text, every row, escaped HTML tables.

    In an IPython kernel, DataFrames are shown through :func:`frame_html`.
    """
    pd.set_option("display.max_colwidth", None)
    pd.set_option("display.max_rows", 500)
    pd.set_option("display.max_columns", 50)
    pd.set_option("display.width", 200)
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - reports always run in IPython
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, frame_html)


def frame_html(frame: pd.DataFrame) -> str:
    """A DataFrame as an HTML table: every string escaped, missing values as ``-``.

    A named index moves into the header's corner cell, so the table has one header row.
    Tables holding sentences (a text cell longer than 30 characters) are wrapped in a
    ``prose-table`` block, which the report style left-aligns.
    """
    if frame.index.name is not None and frame.index.nlevels == 1 \
            and frame.columns.nlevels == 1 and frame.columns.name is None:
        frame = frame.rename_axis(None).rename_axis(frame.index.name, axis="columns")
    table = frame.to_html(escape=True, na_rep="-", max_rows=500, max_cols=50)
    prose = any(frame[c].astype(str).str.len().max() > 30 for c in frame.columns
                if frame[c].dtype == object and len(frame))
    return f'<div class="prose-table">{table}</div>' if prose else table


def parameter_table(**parameters: Any) -> pd.DataFrame:
    """The report's parameters as a one-column table (shown under the title)."""
    return pd.DataFrame({"value": {k.replace("_", " "): str(v) for k, v in parameters.items()}}
                        ).rename_axis("parameter")


def format_therapists(estimates: pd.DataFrame) -> pd.DataFrame:
    """Readable :func:`therapist_comparison` table: raw and pooled percentages with intervals."""
    scale = 100 if estimates.attrs.get("kind") == "proportion" else 1
    unit = "%" if scale == 100 else ""
    out = pd.DataFrame({
        "therapist": estimates["therapist_id"], "episodes": estimates["n"],
        "own result": [f"{scale * v:.0f}{unit}" if unit else f"{v:.1f}"
                       for v in estimates["raw"]],
        "partially pooled (95% interval)": [
            format_interval(scale * e, scale * lo, scale * hi, 0 if unit else 1, unit)
            for e, lo, hi in zip(estimates["estimate"], estimates["ci_low"],
                                 estimates["ci_high"], strict=True)],
        "reliability": estimates["reliability"].round(2),
        "funnel": estimates["funnel_flag"]})
    return out.set_index("therapist")


def therapist_notes(estimates: pd.DataFrame) -> Notes:
    """What the therapist table leaves out and how to read it."""
    hidden = int(estimates.attrs.get("n_hidden", 0))
    total = int(estimates.attrs.get("n_therapists", len(estimates)))
    return Notes([
        f"{total - hidden} of {total} therapists are shown; {hidden} had fewer than 11 "
        "episodes with a known result in the window and are not shown (their numbers would "
        "be small cells).",
        "Therapists are listed by id, not ranked: intervals overlap for most of them.",
        "Partially pooled estimates pull small caseloads toward the clinic value; a point "
        "outside the 99.8% funnel limits is the signal worth a conversation.",
    ])


def format_oe(table: pd.DataFrame) -> pd.DataFrame:
    """Readable :func:`observed_minus_expected` table (percentages, interval as text).

    The model's number of episodes is left out on purpose: the risk model drops ceiling cases
    and incomplete case mix, so next to the caseloads of the therapist comparison (same
    therapists, same window) it would give away how many were dropped, often 1-10.
    """
    if "note" in table.columns:
        return pd.DataFrame({"result": [table["note"].iloc[0]]}, index=pd.Index([""]))
    if table.empty:
        return pd.DataFrame({"result": ["no therapist with 11 or more episodes, responders and "
                                        "non-responders in the window"]}, index=pd.Index([""]))
    return pd.DataFrame({
        "therapist": table["therapist"],
        "observed %": table["observed"].round(0), "expected %": table["expected"].round(0),
        "observed - expected (95% CI), points": [
            format_interval(e, lo, hi, 0) for e, lo, hi in
            zip(table["o_minus_e"], table["ci_low"], table["ci_high"], strict=True)],
    }).set_index("therapist")


def format_trend(trend: pd.DataFrame) -> pd.DataFrame:
    """Readable :func:`quarter_trend` table; cells of 1-10 episodes read ``<11``, a share
    withheld because its responders or non-responders number 1-10 shows its safe band, else
    ``*``."""
    from outcomes.privacy import SUPPRESSED, WITHHELD

    rows = {}
    for _, r in trend.iterrows():
        rows[r["quarter"]] = {
            "episodes ended": SUPPRESSED if pd.isna(r["episodes"]) else int(r["episodes"]),
            "mean change (95% CI)": SUPPRESSED if r["suppressed"] else format_interval(
                r["change"], r["change_low"], r["change_high"]),
            "% reaching MCID (95% CI)": SUPPRESSED if r["suppressed"] else
            (r.get("pct_band") or WITHHELD) if r["pct_suppressed"]
            else format_interval(r["pct_mcid"], r["pct_low"], r["pct_high"], 0, "%"),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("quarter")


# --------------------------------------------------------------------------------------------
# This quarter at a glance
# --------------------------------------------------------------------------------------------
_ARROWS = {"better": "better", "worse": "worse", "up": "more", "down": "fewer"}


def _glance_value(value: Any, unit: str) -> str:
    if isinstance(value, str):
        return value  # a marker (<11, *) or a safe band, as the tables show it
    if pd.isna(value):
        return "-"
    if unit == "episodes":
        return f"{int(value)}"
    return f"{value:.0f}%" if unit == "% points" else f"{value:+.1f}"


def _glance_change(row: pd.Series) -> str:
    if pd.isna(row["difference"]):
        return "not compared (a value is withheld or missing)"
    digits = 0 if row["unit"] in ("episodes", "% points") else 1
    unit = "percentage points" if row["unit"] == "% points" else row["unit"]
    text = f"{row['difference']:+.{digits}f} {unit}"
    if not row["beyond_chance"]:
        return f"{text}, within chance"
    arrow = "\u25b2" if row["difference"] > 0 else "\u25bc"
    return f"{arrow} {text}, {_ARROWS[row['direction']]}"


def glance_table(figures: pd.DataFrame) -> pd.DataFrame:
    """Readable :func:`glance_figures`: ``this quarter, last quarter, change`` per figure; an
    arrow (and ``better``/``worse``) only for a change beyond chance."""
    return pd.DataFrame({
        "this quarter": [_glance_value(v, u) for v, u in
                         zip(figures["this_text"], figures["unit"], strict=True)],
        "last quarter": [_glance_value(v, u) for v, u in
                         zip(figures["last_text"], figures["unit"], strict=True)],
        "change": [_glance_change(r) for _, r in figures.iterrows()],
    }, index=pd.Index(figures["measure"], name=""))


class GlanceBox:
    """The "This quarter at a glance" box: headline table, items needing action, footnotes.

    Every string is escaped; the box carries the class ``glance`` (boxed on screen, and the
    end of the first page when printed, so page one stands alone)."""

    def __init__(self, figures: pd.DataFrame, actions: list[str], title: str) -> None:
        self.table = glance_table(figures)
        self.actions = [str(a) for a in actions]
        self.title = title

    def _repr_html_(self) -> str:
        from outcomes.privacy import WITHHELD_NOTE, escape_text
        from outcomes.reports.glance import CHANGE_RULE

        items = "".join(f"<li>{escape_text(a)}</li>" for a in self.actions)
        notes = " ".join(escape_text(n) for n in (
            CHANGE_RULE, "<11: a count of 1-10 episodes, or a figure resting on one.",
            WITHHELD_NOTE + "; \u201cover/under X%\u201d: a safe range shown instead."))
        return (f'<section class="glance" id="glance"><h2>{escape_text(self.title)}</h2>'
                f"{frame_html(self.table)}<p><strong>Needs action</strong></p>"
                f'<ul class="actions">{items}</ul><p class="glance-notes">{notes}</p>'
                "</section>")

    def __repr__(self) -> str:
        return f"{self.title}\n{self.table.to_string()}\n" + "\n".join(self.actions)


def glance_box(figures: pd.DataFrame, actions: list[str],
               title: str = "This quarter at a glance") -> GlanceBox:
    """:class:`GlanceBox` of :func:`glance_figures` and :func:`glance_actions` (or their
    therapist versions)."""
    return GlanceBox(figures, actions, title)


def in_words(table: pd.DataFrame, kinds: tuple[str, ...] = ("arm", "payer", "condition"),
              ) -> pd.DataFrame:
    """A copy of ``table`` with codes shown in words (:data:`outcomes.schema.LABELS`).

    Relabels the column headers and the index entries that are codes (``pri`` -> "PRI-style"),
    the values of a column named after a kind (an ``arm`` column), and the level in Table 1 row
    labels (``payer = self_pay, n (%)`` -> ``payer = Self-pay, n (%)``). Display only: the
    numbers and the suppression markers are untouched, so run it last, on a published table.
    """
    from outcomes.schema import LABELS, label_of

    def word(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        for kind in kinds:
            if value in LABELS[kind]:
                return label_of(kind, value)
        variable, sep, rest = value.partition(" = ")
        level, comma, stat = rest.partition(", ")
        if sep and variable in kinds:
            return f"{variable} = {label_of(variable, level)}{comma}{stat}"
        return value

    out = table.copy()
    out.columns = [word(c) for c in out.columns]
    out.index = out.index.map(word)
    for kind in kinds:
        if kind in out.columns:
            out[kind] = out[kind].map(word)
    return out

