"""Property-based tests (hypothesis): the grammar against ONE-api's regular expressions, and
the pipeline against itself with one and with two workers.

Names and session paths are generated from ``one.alf.spec``'s own patterns, then mutated one
character at a time (dots, slashes, spaces, newlines, non-ASCII digits and letters), so the
examples sit on both sides of every boundary of the grammar. Our grammar must agree with
``spec.is_valid`` everywhere, and with ``spec.is_session_path`` except for the documented
departure (docs/rules.md): we match whole folder names, the reference searches its pattern
anywhere in the joined path (and lets ``$`` match before a final newline).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from _helpers import index_quietly, read_tables
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from one.alf import spec

import alfcache
import alfcache._walk.local
from alfcache._alf.grammar import is_dataset_name, is_session_path, session_parts
from alfcache._tables.arrow import string_array

GRAMMAR = settings(max_examples=100, deadline=None, database=None)
TREES = settings(
    max_examples=15,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FILE_RE = spec.regex(spec.FILE_SPEC)
SESSION_RE = spec.regex(spec.SESSION_SPEC)
REFERENCE_SESSION = re.compile(SESSION_RE.pattern + "$")  # what spec.is_session_path searches
# Our rule, written as the reference's pattern: the match must start at a folder boundary and
# end at the very end (\Z, not $).
WHOLE_FOLDERS = re.compile(r"(?:^|/)" + SESSION_RE.pattern + r"\Z")

# Characters that sit on a boundary of some part of the grammar.
EDGE_CHARS = [*"._-#/ \n0aZ", "\u00e9", "\u0661", "\u00a0", "\ufffd", "\u4e2d"]


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """``base`` with one to three characters inserted, deleted or replaced."""
    text = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.sampled_from(EDGE_CHARS))
        if op == "insert":
            text = text[:at] + char + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + char + text[at + 1 :]
    return text


FILE_NAMES = st.from_regex(FILE_RE, fullmatch=True)
SESSION_PATHS = st.from_regex(SESSION_RE, fullmatch=True)
FOLDERS = st.from_regex(r"[\w .#-]{1,8}", fullmatch=True)
PREFIXED_SESSION_PATHS = st.builds(
    lambda head, path: "/".join([*head, path]), st.lists(FOLDERS, max_size=3), SESSION_PATHS
)


# --------------------------------------------------------------------------------------------
# dataset file names
# --------------------------------------------------------------------------------------------


@GRAMMAR
@given(FILE_NAMES)
def test_generated_file_names_are_datasets(name: str) -> None:
    assert is_dataset_name(name)
    assert spec.is_valid(name)


@GRAMMAR
@given(st.one_of(mutated(FILE_NAMES), st.text(max_size=30)))
def test_file_names_agree_with_reference(name: str) -> None:
    assert is_dataset_name(name) is bool(spec.is_valid(name))


# --------------------------------------------------------------------------------------------
# session paths
# --------------------------------------------------------------------------------------------


@GRAMMAR
@given(PREFIXED_SESSION_PATHS)
def test_generated_session_paths_are_sessions(path: str) -> None:
    assert is_session_path(path)
    assert spec.is_session_path(path)


@GRAMMAR
@given(st.one_of(mutated(PREFIXED_SESSION_PATHS), mutated(SESSION_PATHS)))
def test_session_paths_agree_with_reference_but_for_whole_folder_names(path: str) -> None:
    ours = is_session_path(path)
    assert ours is (WHOLE_FOLDERS.search(path.strip("/")) is not None)
    # the departure goes one way only: we never accept what the reference rejects
    if ours:
        assert spec.is_session_path(path)


@GRAMMAR
@given(st.one_of(PREFIXED_SESSION_PATHS, mutated(PREFIXED_SESSION_PATHS)))
def test_session_parts_agree_with_reference_but_for_partial_lab_names(path: str) -> None:
    names = path.strip("/").split("/")
    ours = session_parts(names)
    if ours is None:
        return
    ref = REFERENCE_SESSION.search(path.strip("/"))
    assert ref is not None
    assert (ours.subject, ours.date, ours.number) == ref.group("subject", "date", "number")
    # the reference takes the tail of a lab folder such as 'my-lab'; we take whole names only
    whole_lab = len(names) >= 5 and names[-4] == "Subjects" and ref.group("lab") == names[-5]
    assert ours.lab == (ref.group("lab") if whole_lab else "")


# --------------------------------------------------------------------------------------------
# the pipeline: one worker or two, the same tables
# --------------------------------------------------------------------------------------------

LABS = ["", "lab/Subjects/", "my-lab/Subjects/", "x/y/"]
SUBJECTS = ["s1", "s.2", "foo bar"]
DATES = ["2021-01-01", "2021-01-02", "2021-02-30"]
NUMBERS = ["1", "001", "002", "0001"]
INNER = ["", "alf/", "alf/probe00/", "alf/#2024-01-01#/", "sub/s9/2021-03-03/003/", "a/b/c/d/"]
FILES = ["spikes.times.npy", "_ibl_trials.choice.npy", "notes.txt", "obj.attr.x.y", "e.empty.npy"]
LINKS = [  # (link, target): relative to the root, or 'OUT/...' for the folder outside it
    ("s1/2021-01-01/001/ext", "OUT/collection"),
    ("s.2/2021-01-02/001/ext", "OUT/collection"),
    ("lab/Subjects/s1/2021-01-02/002", "OUT/session"),
    ("s1/2021-01-02/001/twin", "s1"),
]

ENTRIES = st.tuples(
    st.sampled_from(LABS),
    st.sampled_from(SUBJECTS),
    st.sampled_from(DATES),
    st.sampled_from(NUMBERS),
    st.sampled_from(INNER),
    st.sampled_from(FILES),
)


def _make_tree(base: Path, entries: list[tuple[str, ...]], links: list[tuple[str, str]]) -> Path:
    root = base / "data"
    outside = base / "outside"
    for rel in ("session/alf/wheel.position.npy", "collection/probe.x.npy"):
        (outside / rel).parent.mkdir(parents=True, exist_ok=True)
        (outside / rel).write_bytes(b"o")
    (outside / "collection/up").symlink_to(outside)
    for lab, subject, date, number, inner, name in entries:
        path = root / f"{lab}{subject}/{date}/{number}/{inner}{name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"" if name.startswith("e.") else b"data")
    for link, target in links:
        path = root / link
        if path.exists() or path.is_symlink():
            continue  # a folder of the tree already has that name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(outside / target[4:] if target.startswith("OUT/") else root / target)
    return root


def _index(root: Path, out: Path, n_jobs: int, follow_symlinks: bool) -> tuple[object, ...]:
    report = index_quietly(root, out, n_jobs=n_jobs, follow_symlinks=follow_symlinks)
    return (
        *read_tables(out),
        report.skipped,
        (report.sessions, report.datasets, report.bytes, report.ignored),
    )


@TREES
@given(
    entries=st.lists(ENTRIES, min_size=1, max_size=25, unique=True),
    links=st.lists(st.sampled_from(LINKS), max_size=4, unique=True),
    follow_symlinks=st.booleans(),
)
def test_one_and_two_workers_give_identical_tables(
    entries: list[tuple[str, ...]], links: list[tuple[str, str]], follow_symlinks: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        base = Path(tmp)
        root = _make_tree(base, entries, links)
        one = _index(root, base / "out1", 1, follow_symlinks)
        # the worker process starts at once, so that it may take part even in these small walks
        mp.setattr(alfcache._walk.local, "LATE_START_SECONDS", 0.0)
        two = _index(root, base / "out2", 2, follow_symlinks)
    sessions1, datasets1, skipped1, counts1 = one
    sessions2, datasets2, skipped2, counts2 = two
    assert sessions1.equals(sessions2)
    assert datasets1.equals(datasets2)
    assert skipped1 == skipped2
    assert counts1 == counts2


@GRAMMAR
@given(
    st.lists(
        st.one_of(st.none(), st.text(alphabet=st.sampled_from("ab/._#é€😀"), max_size=8)),
        max_size=30,
    )
)
def test_text_laid_out_by_hand_equals_arrows(values: list[str | None]) -> None:
    """The walk's text columns (ASCII laid out at once, the rest value by value, nulls) hold
    what ``pyarrow.array`` makes of the same values."""
    expected = pa.array(values, pa.large_string())
    assert string_array(values).equals(expected)
    ascii_only = [v.encode("ascii", "ignore").decode() for v in values if v is not None]
    assert string_array(ascii_only).equals(pa.array(ascii_only, pa.large_string()))
