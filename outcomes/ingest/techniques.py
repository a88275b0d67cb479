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

__all__ = ["FAMILIES", "NoteMap", "Vocabulary", "load_vocabulary", "map_note_array",
           "map_techniques", "normalize_text", "split_note"]

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
    ``pri_exhalation_breathing``). Notes are deduplicated and split in Arrow, only the distinct
    fragments are matched in Python, and rows are joined back by integer codes
    (:func:`map_note_array`), so repeated notes cost nothing. ``source_text`` echoes the note:
    redact identifiers before storing it. Checked in ``tests/test_techniques.py`` against every
    phrasing the synthetic generator writes, and against mapping each note's fragments one by
    one on random notes.
    """
    vocab = vocabulary if vocabulary is not None else load_vocabulary()
    if not isinstance(notes, pd.Series):
        raise InputError("map_techniques: notes must be a pandas Series")
    import pyarrow as pa

    text = notes if isinstance(notes.array, pd.arrays.ArrowStringArray) else notes.astype("string")
    mapped = map_note_array(pa.array(text.array, type=pa.large_string()), vocab)
    if len(mapped.entry) == 0:
        return _empty_map(notes.index)
    return _finish_map(pd.DataFrame({
        "row": notes.index[mapped.row],
        **{c: mapped.table.column(c).take(mapped.entry).to_numpy(zero_copy_only=False)
           for c in _MAP_COLUMNS[1:]},
    }))


@dataclass(frozen=True)
class NoteMap:
    """The mapping of an Arrow array of notes, as integer positions into a small table.

    Attributes
    ----------
    row : numpy.ndarray
        For each mapped row, the position of its note in the input (ascending).
    entry : numpy.ndarray
        For each mapped row, its row in ``table``.
    table : pyarrow.RecordBatch
        One row per (distinct fragment, code): ``technique_code``, ``family``, ``source_text``
        (large_string; the code and family are null for an unmapped fragment).
    """

    row: np.ndarray
    entry: np.ndarray
    table: pa.RecordBatch


def map_note_array(notes: pa.Array | pa.ChunkedArray, vocabulary: Vocabulary | None = None) -> NoteMap:
    """:func:`map_techniques` on an Arrow string array, returned as integer codes.

    Parameters
    ----------
    notes : pyarrow.Array or pyarrow.ChunkedArray
        Notes (string or large_string; nulls produce no rows).
    vocabulary : Vocabulary, optional
        Default the packaged vocabulary.

    Returns
    -------
    NoteMap
        ``table.take(entry)`` with ``row`` is :func:`map_techniques`' result, in the same order.

    Notes
    -----
    Notes are deduplicated and split in Arrow (C++); only the distinct *fragments* (a few
    hundred in a million-row export) are matched in Python, and the rows are joined back by
    integer codes, so the cost grows with the number of notes only through Arrow kernels.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    vocab = vocabulary if vocabulary is not None else load_vocabulary()
    if isinstance(notes, pa.ChunkedArray):
        notes = notes.combine_chunks()
    encoded = pc.dictionary_encode(notes)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    note, fcode, fragments = _fragment_codes(encoded.dictionary)
    table = _map_fragments(fragments, vocab)
    per_fragment = np.bincount(table["fcode"].to_numpy(dtype=np.int64), minlength=len(fragments))
    occurrence, entry = _expand_runs(fcode, per_fragment)
    per_note = np.bincount(note[occurrence], minlength=len(encoded.dictionary))
    row, note_row = _expand_runs(codes, per_note)
    arrow = pa.record_batch({
        "technique_code": pa.array(table["technique_code"], pa.large_string()),
        "family": pa.array(table["family"], pa.large_string()),
        "source_text": pa.array(table["fragment"], pa.large_string()),
    })
    return NoteMap(row=row, entry=entry[note_row], table=arrow)


def _expand_runs(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions joining ``keys`` (-1 = none) to runs of rows, ``counts[k]`` rows for key ``k``.

    The rows of key ``k`` are the run starting at ``counts[:k].sum()``. Returns
    ``(parent, index)``: for each output row, the position in ``keys`` it came from and its row,
    in ``keys`` order then run order (an inner merge on the key, without hashing).
    """
    starts = np.cumsum(counts) - counts
    parents = np.flatnonzero(keys >= 0)
    kept = keys[parents]
    reps = counts[kept]
    within = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    return np.repeat(parents, reps), np.repeat(starts[kept], reps) + within


# ASCII notes are split in Arrow. RE2 has no look-behind, so the "/" that _SPLIT keeps (after a
# lone letter, or between digits) are first replaced by a character an ASCII note cannot hold,
# in two passes (a match consumes the left context of the next slash: "a/b/c", "1/2/3"); then
# every remaining "/" splits. The whitespace class is exactly what Python's ``\s`` and
# ``str.strip`` mean on ASCII text.
_ASCII_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
_RE2_SPLIT = rf"[;,+\n\r/]|[{_ASCII_SPACE}]+[aA][nN][dD][{_ASCII_SPACE}]+"
_KEPT_SLASH = "\ue000"
_RE2_KEEP = r"(^|[^A-Za-z0-9_])([A-Za-z])/|([0-9])/([0-9])"
_RE2_KEEP_AS = r"\1\2\3" + _KEPT_SLASH + r"\4"


def _fragment_codes(notes: pa.Array) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every fragment of every note, as (note position, fragment code) and the fragment texts.

    The returned ``note`` is sorted (note order, then fragment order within a note); ``fcode``
    indexes ``fragments``, which may hold empty strings (no fragment) and repeated texts.
    ASCII notes are split in Arrow and their fragments deduplicated there; other notes (rare)
    by :func:`split_note`.
    """
    import pyarrow.compute as pc

    simple = pc.string_is_ascii(notes).to_numpy(zero_copy_only=False)
    every = bool(simple.all())
    note, raw = _split_ascii(notes if every else notes.filter(simple))
    encoded = pc.dictionary_encode(raw)
    trimmed = pc.utf8_trim(encoded.dictionary, characters=_ASCII_SPACE)
    fragments = pc.replace_substring(trimmed, _KEPT_SLASH, "/").to_pylist()
    fcode = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    if every:
        return note.astype(np.int64), fcode, fragments
    seen: dict[str, int] = {}
    slow_note, slow_code = [], []
    for i, text in zip(np.flatnonzero(~simple), notes.filter(~simple).to_pylist(), strict=True):
        for fragment in split_note(text):
            slow_note.append(i)
            slow_code.append(seen.setdefault(fragment, len(fragments) + len(seen)))
    note = np.concatenate([np.flatnonzero(simple)[note], np.asarray(slow_note, np.int64)])
    fcode = np.concatenate([fcode, np.asarray(slow_code, np.int64)])
    order = np.argsort(note, kind="stable")  # two sorted runs: a linear merge
    return note[order], fcode[order], fragments + list(seen)


def _split_ascii(notes: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Raw (unstripped) fragments of ASCII notes and each one's note; kept "/" as _KEPT_SLASH."""
    import pyarrow.compute as pc

    maybe = pc.match_substring_regex(notes, "[A-Za-z0-9]/")
    if pc.any(maybe).as_py():
        kept = notes.filter(maybe)
        for _ in range(2):
            kept = pc.replace_substring_regex(kept, _RE2_KEEP, _RE2_KEEP_AS)
        notes = pc.replace_with_mask(notes, maybe, kept)
    parts = pc.split_pattern_regex(notes, _RE2_SPLIT)
    return pc.list_parent_indices(parts).to_numpy(), pc.list_flatten(parts)


def _map_fragments(fragments: list[str], vocab: Vocabulary) -> pd.DataFrame:
    """Per distinct fragment (``fcode`` = its position): its codes, or one unmapped row.

    Empty and noise fragments give no row. Rows are in ``fcode`` order, then code order.
    """
    rows = []
    for i, frag in enumerate(fragments):
        if not frag:
            continue
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
