"""Technique vocabulary: map free-text visit notes to canonical technique codes.

The vocabulary is an editable TOML file (``outcomes/data/techniques.toml`` ships with the package):
per canonical code its family (``pri`` / ``traditional`` / ``other``) and the phrases that name it.
:func:`map_techniques` splits each note into fragments, maps every fragment to zero or more codes,
and returns the fragments it cannot map so ingest can count and list them.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from outcomes.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["FAMILIES", "Vocabulary", "load_vocabulary", "map_techniques", "normalize_text",
           "split_note"]

#: Technique families, as written in the vocabulary and in ``map_techniques``' ``family`` column.
FAMILIES = ("pri", "traditional", "other")

_MAP_COLUMNS = ("row", "technique_code", "family", "source_text")

# "w/" is an abbreviation ("with"), never a fragment separator; "&" reads as "and".
_ABBREVIATIONS = ((re.compile(r"(?<![a-z0-9])w/", re.I), " with "), (re.compile("&"), " and "))
# Dots and apostrophes vanish so "I.T.B." -> "itb" and "rec's" -> "recs".
_DROP = re.compile(r"['’.`]")
_NON_WORD = re.compile(r"[^a-z0-9]+")
# Split on ; , + newline, " and ", and "/" unless it sits between digits ("90/90", "7/10") or
# follows a lone letter (abbreviations: "w/", "c/o", "s/p", "h/o").
_SPLIT = re.compile(r"[;,+\n\r]|/(?<!\b[A-Za-z]/)(?:(?<!\d/)|(?!\d))|\s+[aA][nN][dD]\s+")
_TRIVIAL_TOKEN = re.compile(r"^(\d+|\d*x\d*|[a-z])$")


def normalize_text(text: str) -> str:
    """Lower-case ``text``, expand ``w/`` and ``&``, drop dots/apostrophes, collapse the rest.

    Notes
    -----
    Vocabulary phrases and note fragments go through this same function, which is what makes
    matching case- and punctuation-insensitive: ``"Glute Med Re-Ed."`` -> ``"glute med re ed"``.
    """
    for pattern, repl in _ABBREVIATIONS:
        text = pattern.sub(repl, text)
    text = _DROP.sub("", text.lower())
    return _NON_WORD.sub(" ", text).strip()


def split_note(note: str) -> list[str]:
    """Split a note into stripped, non-empty fragments.

    Separators: ``;``, ``,``, ``+``, newlines, the word ``and``, and ``/`` except between digits
    (``90/90`` and ``7/10`` stay whole) or after a lone letter (``w/``, ``c/o``, ``s/p``).
    """
    return [part.strip() for part in _SPLIT.split(note) if part and part.strip()]


def _phrase_regex(phrases: list[str], extra: list[str]) -> re.Pattern[str] | None:
    words = sorted({normalize_text(p) for p in phrases} - {""}, key=len, reverse=True)
    parts = [re.escape(w) for w in words] + list(extra)
    if not parts:
        return None
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(parts) + r")(?![a-z0-9])")


@dataclass(frozen=True)
class Vocabulary:
    """A compiled technique vocabulary.

    Attributes
    ----------
    families : dict
        Canonical code -> family (``pri``, ``traditional`` or ``other``).
    patterns : dict
        Canonical code -> compiled regular expression searched in normalised fragments.
    noise : re.Pattern or None
        Routine words that are not techniques; fragments made only of them are dropped.
    source : str
        Where the vocabulary was read from.
    """

    families: dict[str, str]
    patterns: dict[str, re.Pattern[str]]
    noise: re.Pattern[str] | None = None
    source: str = ""
    _cache: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def codes(self) -> tuple[str, ...]:
        """The canonical codes, in vocabulary order."""
        return tuple(self.families)

    def match(self, fragment: str) -> tuple[str, ...]:
        """Codes named in one fragment (empty when it names none), in vocabulary order."""
        hit = self._cache.get(fragment)
        if hit is None:
            text = normalize_text(fragment)
            hit = tuple(c for c, p in self.patterns.items() if p.search(text))
            self._cache[fragment] = hit
        return hit

    def is_noise(self, fragment: str) -> bool:
        """True when ``fragment`` holds only noise words, numbers and single letters."""
        text = normalize_text(fragment)
        if self.noise is not None:
            text = self.noise.sub(" ", text)
        return all(_TRIVIAL_TOKEN.match(tok) for tok in text.split())


def load_vocabulary(path: str | Path | None = None) -> Vocabulary:
    """Read a technique vocabulary from TOML (default: the one packaged with ``outcomes``).

    Parameters
    ----------
    path : str or Path, optional
        A TOML file laid out like ``outcomes/data/techniques.toml``: ``[codes.<code>]`` tables with
        ``family`` and ``phrases`` (and optionally ``regex``), plus an optional ``[noise]`` table.

    Returns
    -------
    Vocabulary

    Raises
    ------
    InputError
        The file is missing or unreadable, not valid TOML, or a code has an unknown family,
        no phrases, or an invalid regular expression.
    """
    text, source = _read_vocabulary_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"technique vocabulary {source}: not valid TOML ({exc})") from None
    codes = data.get("codes")
    if not isinstance(codes, dict) or not codes:
        raise InputError(f"technique vocabulary {source}: no [codes.<code>] tables found")
    families, patterns = {}, {}
    for code, spec in codes.items():
        families[code], patterns[code] = _compile_code(code, spec, source)
    noise = _phrase_regex(list(data.get("noise", {}).get("phrases", [])), [])
    return Vocabulary(families=families, patterns=patterns, noise=noise, source=source)


def _read_vocabulary_text(path: str | Path | None) -> tuple[str, str]:
    if path is None:
        res = resources.files("outcomes").joinpath("data/techniques.toml")
        return res.read_text(encoding="utf-8"), "outcomes/data/techniques.toml"
    try:
        return Path(path).read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"technique vocabulary {path}: cannot read ({type(exc).__name__})") from None


def _compile_code(code: str, spec: object, source: str) -> tuple[str, re.Pattern[str]]:
    where = f"technique vocabulary {source}, code {code!r}"
    if not isinstance(spec, dict):
        raise InputError(f"{where}: expected a table with 'family' and 'phrases'")
    family = spec.get("family")
    if family not in FAMILIES:
        raise InputError(f"{where}: family must be one of {', '.join(FAMILIES)}")
    phrases = [str(p) for p in spec.get("phrases", [])] + [code]
    extra = [str(r) for r in spec.get("regex", [])]
    try:
        pattern = _phrase_regex(phrases, extra)
    except re.error as exc:
        raise InputError(f"{where}: invalid regex ({exc})") from None
    return family, pattern


def map_techniques(notes: pd.Series, vocabulary: Vocabulary | None = None) -> pd.DataFrame:
    """Map free-text technique notes to canonical technique codes.

    Parameters
    ----------
    notes : pandas.Series
        One note per visit (missing notes are allowed and produce no rows).
    vocabulary : Vocabulary, optional
        From :func:`load_vocabulary`; default the packaged vocabulary.

    Returns
    -------
    pandas.DataFrame
        One row per (fragment, code), in the order of ``notes`` then fragment order:
        ``row`` (the index label of the note in ``notes``), ``technique_code`` (string, NA for an
        unmapped fragment), ``family`` (``pri`` / ``traditional`` / ``other``, NA if unmapped),
        ``source_text`` (the fragment as written, stripped). Fragments that are pure noise
        ("HEP reviewed", "3x10") produce no row.

    Notes
    -----
    Each note is split by :func:`split_note`; each fragment is normalised by
    :func:`normalize_text` and searched for every code's phrases as whole words, so one fragment
    can name several codes ("90/90 hip lift w/ balloon" -> ``pri_repositioning`` and
    ``pri_exhalation_breathing``). Work is done once per *distinct* note and once per distinct
    fragment, then joined back, so repeated notes cost nothing. ``source_text`` echoes the note:
    redact identifiers before storing it. Checked in ``tests/test_techniques.py`` against every
    phrasing the synthetic generator writes.
    """
    vocab = vocabulary if vocabulary is not None else load_vocabulary()
    if not isinstance(notes, pd.Series):
        raise InputError("map_techniques: notes must be a pandas Series")
    text = notes.astype("string")
    present = text.notna().to_numpy()
    codes, uniques = pd.factorize(text[present])
    if len(uniques) == 0:
        return _empty_map(notes.index)
    per_note = _map_unique_notes(np.asarray(uniques, dtype=object).tolist(), vocab)
    if per_note.empty:
        return _empty_map(notes.index)
    positions = pd.DataFrame({"note": codes, "row": notes.index[present]})
    out = positions.reset_index(names="order").merge(per_note, on="note", how="inner")
    out = out.sort_values(["order", "seq"], kind="stable")
    return _finish_map(out)


def _map_unique_notes(uniques: list[str], vocab: Vocabulary) -> pd.DataFrame:
    """Rows (note, seq, technique_code, family, source_text) for each distinct note."""
    import pyarrow.compute as pc

    note, fragment = _split_notes(uniques)
    encoded = pc.dictionary_encode(fragment)
    frags = pd.DataFrame({"note": note, "fcode": encoded.indices.to_numpy(zero_copy_only=False)})
    frags["fseq"] = _rank_in_run(note)
    table = _map_fragments(encoded.dictionary.to_pylist(), vocab)
    out = frags.merge(table, on="fcode", how="inner", sort=False)
    out = out.sort_values(["note", "fseq", "cseq"], kind="stable", ignore_index=True)
    out["seq"] = _rank_in_run(out["note"].to_numpy())
    return out.rename(columns={"fragment": "source_text"})


def _rank_in_run(keys: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal consecutive ``keys`` (a cumcount of sorted keys)."""
    n = len(keys)
    starts = np.r_[0, np.flatnonzero(keys[1:] != keys[:-1]) + 1] if n else np.zeros(0, np.int64)
    return np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))


# ASCII notes are split in Arrow unless a "/" follows a letter or digit: only then do _SPLIT's
# look-behinds (which RE2 lacks) decide; any other "/" always splits. The whitespace class is
# exactly what Python's ``\s`` and ``str.strip`` mean on ASCII text.
_ASCII_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
_RE2_SPLIT = rf"[;,+\n\r/]|[{_ASCII_SPACE}]+[aA][nN][dD][{_ASCII_SPACE}]+"
_RE2_SLASH_AFTER_WORD = "[A-Za-z0-9]/"


def _split_notes(notes: list[str]) -> tuple[np.ndarray, pa.Array]:
    """All fragments of all notes (as :func:`split_note` gives them), with each one's note.

    Returns the note positions (sorted, int64) and the fragments (Arrow strings), in note
    order then fragment order. Checked against :func:`split_note` in tests/test_techniques.py.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(notes, pa.large_string())
    simple = pc.and_(pc.invert(pc.match_substring_regex(arr, _RE2_SLASH_AFTER_WORD)),
                     pc.string_is_ascii(arr))
    simple = simple.to_numpy(zero_copy_only=False)
    parts = pc.split_pattern_regex(arr.filter(simple), _RE2_SPLIT)
    fast_note = np.flatnonzero(simple)[pc.list_parent_indices(parts).to_numpy()]
    fast = pc.utf8_trim(pc.list_flatten(parts), characters=_ASCII_SPACE)
    rest = np.flatnonzero(~simple)
    slow = [split_note(notes[i]) for i in rest]
    slow_note = np.repeat(rest, [len(f) for f in slow])
    note = np.concatenate([fast_note, slow_note]).astype(np.int64)
    fragment = pa.concat_arrays([fast, pa.array([f for fs in slow for f in fs], pa.large_string())])
    keep = pc.greater(pc.utf8_length(fragment), 0).to_numpy(zero_copy_only=False)
    order = np.argsort(note[keep], kind="stable")
    return note[keep][order], fragment.filter(keep).take(order)


def _map_fragments(fragments: list[str], vocab: Vocabulary) -> pd.DataFrame:
    """Per distinct fragment (``fcode`` = its position): its codes, or one unmapped row.

    Noise fragments give no row.
    """
    rows = []
    for i, frag in enumerate(fragments):
        hits = vocab.match(frag)
        if hits:
            rows.extend((i, frag, j, c, vocab.families[c]) for j, c in enumerate(hits))
        elif not vocab.is_noise(frag):
            rows.append((i, frag, 0, None, None))
    return pd.DataFrame(rows, columns=["fcode", "fragment", "cseq", "technique_code", "family"])


def _finish_map(out: pd.DataFrame) -> pd.DataFrame:
    result = out[list(_MAP_COLUMNS)].reset_index(drop=True)
    for col in ("technique_code", "family", "source_text"):
        result[col] = result[col].astype("string")
    return result


def _empty_map(index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame({
        "row": pd.Series([], dtype=index.dtype),
        "technique_code": pd.Series([], dtype="string"),
        "family": pd.Series([], dtype="string"),
        "source_text": pd.Series([], dtype="string"),
    })
