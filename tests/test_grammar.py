"""The ALF grammar: dataset file names and session folders, row by row.

Every row states its verdict explicitly (read off ``alf-layout.md``, not computed from the
code). A second pass checks that the reference (``one.alf.spec``) agrees on every row, except on
the rows listed as known departures, where our whole-folder-name rule is stricter than the
reference's unanchored search: there the departure itself is asserted, so the test fails if
either implementation changes.
"""

from __future__ import annotations

import pytest
from one.alf import spec
from one.alf.path import session_path_parts

from alfcache._alf.grammar import (
    SessionParts,
    is_dataset_name,
    is_real_date,
    is_session_path,
    session_parts,
)
from alfcache._alf.paths import session_folder

# --------------------------------------------------------------------------------------------
# Dataset file names
# --------------------------------------------------------------------------------------------

DATASET_NAMES: list[tuple[str, bool]] = [
    # plain object.attribute.extension
    ("spikes.times.npy", True),
    ("wheel.position.npy", True),
    ("trials.table.pqt", True),
    ("clusters.uuids.csv", True),
    ("a.b.c", True),
    ("OBJ.ATTR.NPY", True),
    ("obj1.attr2.ext3", True),
    # namespaces
    ("_ibl_trials.choice.npy", True),
    ("_ibl_wheel.timestamps.npy", True),
    ("_iblrig_leftCamera.raw.mp4", True),
    ("_ibl_experiment.description.yaml", True),
    ("_spikeglx_ephysData_g0_t0.imec0.ap.cbin", True),
    ("ibl_trials.choice.npy", True),  # no leading underscore: object 'ibl_trials'
    ("__trials.choice.npy", True),
    # _times / _intervals belong to the attribute
    ("_ibl_trials.stimOn_times.npy", True),
    ("trials.goCue_times.npy", True),
    ("trials.goCue_times_bpod.npy", True),
    ("_ibl_trials.intervals_bpod.npy", True),
    # timescales
    ("spikes.times_ephysClock.npy", True),
    ("spikes.times_ephys_clock.npy", True),
    ("spikes.Times_x.npy", True),
    # extra parts
    ("obj.attr.part1.part2.npy", True),
    ("_ns_obj.attr1.2622b17c-9408-4910-99cb-abf16d9225b9.metadata.json", True),
    ("spikes.times.npy.bak", True),
    ("obj.attr.tar.gz", True),
    ("obj.attr.extra-part.npy", True),
    # deprecated attribute-level namespace
    ("channels._phy_ids.csv", True),
    # unicode word characters are \w
    ("spïkes.times.npy", True),
    ("中文.times.npy", True),
    ("spikes.times.中文", True),
    # not datasets: too few dots
    ("README", False),
    ("raw_data", False),
    ("notes.txt", False),
    ("spike_train.npy", False),
    ("spikes.times", False),
    ("_ibl_trials.stimOn_times", False),
    ("", False),
    # hidden files and empty parts
    (".DS_Store", False),
    (".choice.npy", False),
    (".spikes.times.npy", False),
    ("trials..npy", False),
    ("spikes.times..npy", False),
    # trailing dot: no extension
    ("spikes.times.", False),
    ("spikes.times.npy.", False),
    # spaces anywhere
    ("my spikes.times.npy", False),
    ("spikes.times .npy", False),
    ("spikes.times.my file.npy", False),
    ("spikes.times.npy ", False),
    (" spikes.times.npy", False),
    # characters outside a part's pattern
    ("obj-1.attr.npy", False),
    ("spikes.times-v2.npy", False),
    ("spikes._times.npy", False),
    ("spikes.tïmes.npy", False),
    ("spikes.tim€s.npy", False),
    ("spikes.times.np-y", False),
    ("spikes.times_.npy", False),
]


def test_dataset_table_is_large_and_mixed() -> None:
    names = [name for name, _ in DATASET_NAMES]
    assert len(names) >= 40
    assert len(set(names)) == len(names), "duplicate rows"
    verdicts = [ok for _, ok in DATASET_NAMES]
    assert verdicts.count(True) >= 15 and verdicts.count(False) >= 15


@pytest.mark.parametrize(("name", "expected"), DATASET_NAMES, ids=repr)
def test_is_dataset_name(name: str, expected: bool) -> None:
    assert is_dataset_name(name) is expected


@pytest.mark.parametrize(("name", "expected"), DATASET_NAMES, ids=repr)
def test_is_dataset_name_matches_reference(name: str, expected: bool) -> None:
    assert bool(spec.is_valid(name)) is expected
    assert is_dataset_name(name) is bool(spec.is_valid(name))


# --------------------------------------------------------------------------------------------
# Session folders
# --------------------------------------------------------------------------------------------

SESSION_PATHS: list[tuple[str, bool]] = [
    # with and without lab
    ("lab/Subjects/s1/2021-01-01/001", True),
    ("s1/2021-01-01/001", True),
    ("Subjects/s1/2021-01-01/001", True),
    ("lab/subjects/s1/2021-01-01/001", True),  # lower-case: 'subjects' is just a folder
    ("/mnt/s0/Data/lab/Subjects/s1/2021-01-01/001", True),
    ("data/s1/2021-01-01/001", True),
    # numbers
    ("s1/2021-01-01/1", True),
    ("s1/2021-01-01/01", True),
    ("s1/2021-01-01/000", True),
    ("s1/2021-01-01/999", True),
    ("s1/2021-01-01/0001", False),
    ("s1/2021-01-01/1000", False),
    ("s1/2021-01-01/abc", False),
    ("s1/2021-01-01/00a", False),
    ("s1/2021-01-01/-1", False),
    ("s1/2021-01-01/ 001", False),
    ("s1/2021-01-01/001 ", False),
    # dates: syntax only (an impossible date is still a session path)
    ("s1/2021-02-30/001", True),
    ("s1/21-01-01/001", False),
    ("s1/2021-1-01/001", False),
    ("s1/2021-01-1/001", False),
    ("s1/2021_01_01/001", False),
    ("s1/20210101/001", False),
    ("s1/2021-01-01x/001", False),
    ("s1/x2021-01-01/001", False),
    ("s1/12021-01-01/001", False),
    # leading and trailing slashes
    ("/lab/Subjects/s1/2021-01-01/001", True),
    ("lab/Subjects/s1/2021-01-01/001/", True),
    ("/s1/2021-01-01/001/", True),
    ("s1//2021-01-01/001", False),
    # subjects
    ("SW.001-a/2021-01-01/001", True),
    ("lab/Subjects/SW.001-a/2021-01-01/002", True),
    ("ünïcode/2021-01-01/001", True),
    ("subj(1)/2021-01-01/001", False),
    # a lab folder outside \w+ does not stop the session (it just has no lab)
    ("my-lab/Subjects/s1/2021-01-01/001", True),
    ("my lab/Subjects/s1/2021-01-01/001", True),
    # not a session folder (too short, or below/above one)
    ("2021-01-01/001", False),
    ("s1/2021-01-01", False),
    ("lab/Subjects/s1/2021-01-01", False),
    ("lab/Subjects/s1/2021-01-01/001/alf", False),
    ("lab/Subjects/s1/2021-01-01/001/alf/spikes.times.npy", False),
    ("s1\\2021-01-01\\001", False),
    ("", False),
    ("/", False),
]

# Our rule matches whole folder names; the reference searches its pattern in the joined path,
# so it accepts a subject folder whose *tail* matches, and ``$`` also matches before a final
# newline. Each row: (path, our verdict, the reference's verdict).
SESSION_DEPARTURES: list[tuple[str, bool, bool]] = [
    ("foo bar/2021-01-01/001", False, True),
    ("a b/2021-01-01/001", False, True),
    ("lab/Subjects/foo bar/2021-01-01/001", False, True),
    ("foo+bar/2021-01-01/001", False, True),
    ("s1/2021-01-01/001\n", False, True),
]


def test_session_table_is_large_and_mixed() -> None:
    paths = [path for path, _ in SESSION_PATHS]
    assert len(paths) >= 25
    assert len(set(paths)) == len(paths), "duplicate rows"
    assert not set(paths) & {path for path, *_ in SESSION_DEPARTURES}
    verdicts = [ok for _, ok in SESSION_PATHS]
    assert verdicts.count(True) >= 10 and verdicts.count(False) >= 10


@pytest.mark.parametrize(("path", "expected"), SESSION_PATHS, ids=repr)
def test_is_session_path(path: str, expected: bool) -> None:
    assert is_session_path(path) is expected
    assert (session_parts(path.strip("/").split("/")) is not None) is expected


@pytest.mark.parametrize(("path", "expected"), SESSION_PATHS, ids=repr)
def test_is_session_path_matches_reference(path: str, expected: bool) -> None:
    assert bool(spec.is_session_path(path)) is expected
    assert is_session_path(path) is bool(spec.is_session_path(path))


@pytest.mark.parametrize(("path", "ours", "reference"), SESSION_DEPARTURES, ids=repr)
def test_known_departures_from_reference(path: str, ours: bool, reference: bool) -> None:
    assert is_session_path(path) is ours
    assert bool(spec.is_session_path(path)) is reference


# --------------------------------------------------------------------------------------------
# Session parts, ALF path and path id
# --------------------------------------------------------------------------------------------

# (path, (lab, subject, date, number), alf_path, path_id)
PARTS: list[tuple[str, tuple[str, str, str, str], str, str]] = [
    (
        "lab/Subjects/s1/2021-01-01/001",
        ("lab", "s1", "2021-01-01", "001"),
        "lab/Subjects/s1/2021-01-01/001",
        "lab/s1/2021-01-01/001",
    ),
    (
        "/mnt/s0/Data/cortexlab/Subjects/KS022/2019-12-10/1",
        ("cortexlab", "KS022", "2019-12-10", "1"),
        "cortexlab/Subjects/KS022/2019-12-10/1",
        "cortexlab/KS022/2019-12-10/1",
    ),
    (
        "s1/2021-01-01/01",
        ("", "s1", "2021-01-01", "01"),
        "s1/2021-01-01/01",
        "s1/2021-01-01/01",
    ),
    (
        "data/SW.001-a/2024-02-29/002",
        ("", "SW.001-a", "2024-02-29", "002"),
        "SW.001-a/2024-02-29/002",
        "SW.001-a/2024-02-29/002",
    ),
    (
        "Subjects/s1/2021-01-01/001",
        ("", "s1", "2021-01-01", "001"),
        "s1/2021-01-01/001",
        "s1/2021-01-01/001",
    ),
    (
        "a/b/Subjects/s1/2021-01-01/003",
        ("b", "s1", "2021-01-01", "003"),
        "b/Subjects/s1/2021-01-01/003",
        "b/s1/2021-01-01/003",
    ),
    (
        "lab/subjects/s1/2021-01-01/001",
        ("", "s1", "2021-01-01", "001"),
        "s1/2021-01-01/001",
        "s1/2021-01-01/001",
    ),
]

# Lab folders outside \w+: we take no lab, the reference takes the tail of the folder name.
# (path, our parts, the reference's lab)
PARTS_DEPARTURES: list[tuple[str, tuple[str, str, str, str], str]] = [
    ("my-lab/Subjects/s1/2021-01-01/001", ("", "s1", "2021-01-01", "001"), "lab"),
    ("/d/my lab/Subjects/s1/2021-01-01/001", ("", "s1", "2021-01-01", "001"), "lab"),
    ("x.lab2/Subjects/s1/2021-01-01/001", ("", "s1", "2021-01-01", "001"), "lab2"),
]


def _names(path: str) -> list[str]:
    return path.strip("/").split("/")


def _reference_parts(path: str) -> tuple[str, str, str, str]:
    lab, subject, date, number = session_path_parts(path, assert_valid=True)
    return lab or "", subject, date, number


@pytest.mark.parametrize(("path", "parts", "alf_path", "path_id"), PARTS, ids=repr)
def test_session_parts(
    path: str, parts: tuple[str, str, str, str], alf_path: str, path_id: str
) -> None:
    got = session_parts(_names(path))
    assert got == SessionParts(*parts)
    assert got is not None
    assert (got.lab, got.subject, got.date, got.number) == parts
    assert session_folder(*got) == alf_path
    assert got.path_id == path_id
    # a tuple of names works as well as a list
    assert session_parts(tuple(_names(path))) == got


@pytest.mark.parametrize(("path", "parts", "alf_path", "path_id"), PARTS, ids=repr)
def test_session_parts_match_reference(
    path: str, parts: tuple[str, str, str, str], alf_path: str, path_id: str
) -> None:
    assert _reference_parts(path) == parts
    got = session_parts(_names(path))
    assert got is not None
    assert tuple(got) == _reference_parts(path)


@pytest.mark.parametrize(("path", "parts", "reference_lab"), PARTS_DEPARTURES, ids=repr)
def test_session_parts_lab_departures(
    path: str, parts: tuple[str, str, str, str], reference_lab: str
) -> None:
    got = session_parts(_names(path))
    assert got is not None
    assert tuple(got) == parts
    assert session_folder(*got) == "s1/2021-01-01/001"
    assert got.path_id == "s1/2021-01-01/001"
    assert _reference_parts(path) == (reference_lab, *parts[1:])


@pytest.mark.parametrize(
    "names",
    [
        [],
        ["001"],
        ["2021-01-01", "001"],
        ["s1", "2021-01-01", "001", "alf"],
        ["s1", "2021-01-01", "0001"],
        ["foo bar", "2021-01-01", "001"],
        ["", "2021-01-01", "001"],
    ],
    ids=repr,
)
def test_session_parts_rejects(names: list[str]) -> None:
    assert session_parts(names) is None


def test_session_parts_looks_only_at_the_tail() -> None:
    deep = ["x"] * 50 + ["lab", "Subjects", "s1", "2021-01-01", "001"]
    assert session_parts(deep) == SessionParts("lab", "s1", "2021-01-01", "001")


# --------------------------------------------------------------------------------------------
# Calendar dates
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("2021-02-28", True),
        ("2020-02-29", True),
        ("2000-02-29", True),
        ("2024-12-31", True),
        ("9999-12-31", True),
        ("0001-01-01", True),
        ("2021-02-29", False),
        ("1900-02-29", False),
        ("2021-02-30", False),
        ("2021-04-31", False),
        ("2021-13-01", False),
        ("2021-00-10", False),
        ("2021-01-00", False),
        ("2021-01-32", False),
        ("0000-01-01", False),
        # Arabic-Indic digits match \d but make no ISO date
        ("\u0662\u0660\u0662\u0661-\u0660\u0661-\u0660\u0661", False),
        ("", False),
    ],
    ids=repr,
)
def test_is_real_date(date: str, expected: bool) -> None:
    assert is_real_date(date) is expected
