"""The ``default_revision`` column: one default per dataset, the revision one-api would pick.

Marked ``one``: ``scripts/test`` runs this module again under the newest one-api (pandas 3).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _helpers import index_quietly
from hypothesis import given, settings
from hypothesis import strategies as st
from one.api import One

import alfcache
from alfcache._tables.revisions import default_revisions

pytestmark = pytest.mark.one

SESSION = "lab1/Subjects/sub1/2024-01-01/001"
FILES = [
    "alf/spikes.times.npy",
    "alf/#2024-01-01#/spikes.times.npy",
    "alf/#2024-05-06#/spikes.times.npy",
    "alf/_ibl_trials.choice.npy",
    "alf/probe00/#2023-01-01#/clusters.depths.npy",
    "alf/probe00/clusters.depths.npy",
    "raw/#2023-01-01#/wheel.position.npy",
]
DEFAULTS = {
    "alf/#2024-05-06#/spikes.times.npy",
    "alf/_ibl_trials.choice.npy",
    "alf/probe00/#2023-01-01#/clusters.depths.npy",
    "raw/#2023-01-01#/wheel.position.npy",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for rel in FILES:
        for session in (SESSION, "sub2/2024-01-02/001"):
            (root / session / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / session / rel).write_bytes(b"x" * 8)
    return root


def _index(root: Path, **kwargs: object) -> None:
    index_quietly(root, root, n_jobs=1, **kwargs)


def _defaults(root: Path) -> dict[str, set[str]]:
    table = pq.read_table(root / "datasets.pqt")
    assert table.schema.field("default_revision").type == pa.bool_()
    found: dict[str, set[str]] = {}
    for row in table.to_pylist():
        if row["default_revision"]:
            found.setdefault(row["eid"], set()).add(row["rel_path"])
    return found


def test_rule_greatest_existing_revision() -> None:
    table = pa.table(
        {
            "eid": ["a", "a", "a", "a", "b", "b", "a", "a"],
            "rel_path": [
                "x/o.a.npy",
                "x/#2#/o.a.npy",
                "x/#3#/o.a.npy",  # greatest, but its file is gone
                "y/o.a.npy",  # another collection: its own group
                "x/#1#/o.a.npy",  # another session: its own group
                "x/#0#/o.a.npy",
                "z/#1#/o.b.npy",  # no file of the group exists: the greatest of all
                "z/#2#/o.b.npy",
            ],
            "exists": [True, True, False, True, True, True, False, False],
        }
    )
    assert default_revisions(table).tolist() == [
        False,
        True,
        False,
        True,
        True,
        False,
        False,
        True,
    ]


def _rule_on_text(datasets: pa.Table) -> list[bool]:
    """The rule as first written: a sort and a group-by of the text in Polars (ties in table
    order), the reference :func:`default_revisions` must agree with."""
    import polars as pl

    frame = pl.from_arrow(datasets)
    assert isinstance(frame, pl.DataFrame)
    pattern = r"#(.*)#/"
    chosen = (
        frame.with_row_index("row")
        .with_columns(
            pl.col("rel_path").str.replace(pattern, "").alias("dataset"),
            pl.col("rel_path").str.extract(pattern, 1).fill_null("").alias("revision"),
            pl.col("exists").fill_null(False),
        )
        .sort(["exists", "revision"], maintain_order=True)
        .group_by(["eid", "dataset"])
        .agg(pl.col("row").last())
    )
    rows = set(chosen["row"].to_list())
    return [i in rows for i in range(datasets.num_rows)]


_REL_PATHS = st.sampled_from(
    [
        "x/o.a.npy",
        "x/#1#/o.a.npy",
        "x/#2#/o.a.npy",
        "#1#/x/o.a.npy",  # the same dataset and revision as x/#1#/o.a.npy
        "x/#10#/o.a.npy",
        "x/#é#/o.a.npy",
        "y/o.a.npy",
        "o.a.npy",
        "#2#/o.a.npy",
        "x/#1#/#2#/o.a.npy",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), _REL_PATHS, st.sampled_from([True, False, None])),
        max_size=30,
    ),
    st.booleans(),
    st.booleans(),
)
def test_rule_agrees_with_a_sort_of_the_text(
    rows: list[tuple[str, str, bool | None]], revised: bool, by_session: bool
) -> None:
    """Integer codes and a stable NumPy sort pick the rows the text's sort and group-by do,
    with and without revision folders, duplicates and unknown ``exists`` included, in any
    order and in the tables' own (by ``eid``, whose codes are then its runs)."""
    if not revised:
        rows = [(eid, rel.replace("#", ""), exists) for eid, rel, exists in rows]
    if by_session:
        rows.sort(key=lambda row: row[0])
    table = pa.table(
        {
            "eid": pa.array([r[0] for r in rows], pa.string()),
            "rel_path": pa.array([r[1] for r in rows], pa.string()),
            "exists": pa.array([r[2] for r in rows], pa.bool_()),
        }
    )
    assert default_revisions(table).tolist() == _rule_on_text(table)


@pytest.mark.parametrize("hash_ids", [True, False])
def test_index_marks_one_default_per_dataset(root: Path, hash_ids: bool) -> None:
    _index(root, hash_ids=hash_ids)
    assert list(_defaults(root).values()) == [DEFAULTS, DEFAULTS]


def test_update_recomputes_defaults(root: Path) -> None:
    _index(root)
    newer = root / SESSION / "alf/#2025-01-01#/spikes.times.npy"
    newer.parent.mkdir()
    newer.write_bytes(b"y")
    _index(root, update=True)
    sessions = pq.read_table(root / "sessions.pqt").to_pylist()
    eid = next(s["id"] for s in sessions if s["lab"] == "lab1")
    expected = DEFAULTS - {"alf/#2024-05-06#/spikes.times.npy"} | {
        "alf/#2025-01-01#/spikes.times.npy"
    }
    assert _defaults(root)[eid] == expected


def test_one_loads_the_default_without_a_warning(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """one-api in local mode: the right file, no warning, one row per dataset."""
    _index(root)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        one = One(cache_dir=root, mode="local")
        for session in (SESSION, "sub2/2024-01-02/001"):
            eid = one.path2eid(root / session)
            file = one.load_dataset(eid, "spikes.times.npy", collection="alf", download_only=True)
            assert Path(file) == root / session / "alf/#2024-05-06#/spikes.times.npy"
            listed = one.list_datasets(eid, default_revisions_only=True)
            assert sorted(listed) == sorted(DEFAULTS)
    relevant = [w for w in caught if "copy keyword is deprecated" not in str(w.message)]
    assert [str(w.message) for w in relevant] == []
    assert not [r for r in caplog.records if "default revision" in r.getMessage()]


def _set_defaults(root: Path, flags: list[bool] | None) -> None:
    """Rewrite the datasets table with other default_revision values (None: no column)."""
    table = pq.read_table(root / "datasets.pqt")
    position = table.schema.get_field_index("default_revision")
    if position < 0:
        position = table.num_columns
    else:
        table = table.remove_column(position)
    if flags is not None:
        table = table.add_column(position, "default_revision", pa.array(flags, pa.bool_()))
    pq.write_table(table, root / "datasets.pqt")


def test_info_warns_without_the_column_and_errors_on_other_than_one(root: Path) -> None:
    _index(root)
    assert not [m for m in alfcache.info(root).warnings if "default_revision" in m]
    flags = pq.read_table(root / "datasets.pqt")["default_revision"].to_pylist()

    _set_defaults(root, None)
    report = alfcache.info(root)
    assert report.ok
    assert [m for m in report.warnings if "no default_revision column" in m]

    _set_defaults(root, [True] * len(flags))  # every revision a default
    report = alfcache.info(root)
    assert not report.ok
    assert [m for m in report.errors if "4 datasets with no or several" in m], report


def test_verify_checks_the_column(root: Path) -> None:
    _index(root)
    assert alfcache.verify(root, n_jobs=1).ok
    flags = pq.read_table(root / "datasets.pqt")["default_revision"].to_pylist()
    first = flags.index(True)
    flags[first] = False
    _set_defaults(root, flags)
    report = alfcache.verify(root, n_jobs=1)
    assert [(d.kind, d.expected, d.found) for d in report.differences] == [
        ("default_revision_mismatch", False, True)
    ]


def test_shards_merged_mark_the_defaults(root: Path, tmp_path: Path) -> None:
    """Merging array-task parts writes the column too (test_shards and test_dask compare
    the merged and the Dask tables with a full run, column included)."""
    from alfcache import merge_parts

    parts = [tmp_path / "parts" / str(k) for k in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for k, part in enumerate(parts):
            alfcache.index(root, part, shard=(k, 2), n_jobs=1)
    merge_parts(parts, root)
    assert list(_defaults(root).values()) == [DEFAULTS, DEFAULTS]
