"""The public surface: what ``alfcache`` exports, and that it matches ``one.alf.cache``."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import one.alf.cache as reference
import pandas as pd
import pyarrow as pa
import pytest

import alfcache
from alfcache._tables.arrow import cast_table, with_offsets

MakeFiles = Callable[[Path, Iterable[str]], Path]

PUBLIC = [
    "DATASETS_COLUMNS",
    "EMPTY_DATASETS_FRAME",
    "EMPTY_SESSIONS_FRAME",
    "NAMESPACE",
    "QC_TYPE",
    "SESSIONS_COLUMNS",
    "AlfcacheError",
    "BadArgument",
    "BadOutDir",
    "BadRoot",
    "Difference",
    "IndexReport",
    "InfoReport",
    "LabConflict",
    "MergeFailed",
    "MissingRoot",
    "OutDirLocked",
    "OutDirNotWritable",
    "RootNotReadable",
    "ScanFailed",
    "SchedulerUnreachable",
    "Terminated",
    "VerifyReport",
    "WriteFailed",
    "cast_index_object",
    "default_cache",
    "index",
    "info",
    "load_tables",
    "make_parquet_db",
    "merge_parts",
    "merge_tables",
    "patch_cache",
    "patch_tables",
    "remove_cache_table_files",
    "remove_missing_datasets",
    "remove_table_files",
    "verify",
]


def test_all_is_pinned() -> None:
    assert alfcache.__all__ == PUBLIC


def test_every_exception_is_public() -> None:
    # A caller catches what the library raises: an exception missing from __all__ is one a user
    # cannot name without reaching into a private module.
    raised = {
        name
        for name, value in vars(alfcache._exceptions).items()
        if isinstance(value, type) and issubclass(value, alfcache.AlfcacheError)
    }
    assert raised <= set(alfcache.__all__), raised - set(alfcache.__all__)


def test_exceptions_are_shown_by_their_public_name() -> None:
    errors = [
        value
        for value in vars(alfcache._exceptions).values()
        if isinstance(value, type) and issubclass(value, alfcache.AlfcacheError)
    ]
    for error in errors:
        assert f"{error.__module__}.{error.__qualname__}" == f"alfcache.{error.__name__}"
        # Workers hand errors back pickled, by the class's public name: it must lead back to
        # the class. (The class itself: distributed installs tblib's exception pickling, which
        # cannot rebuild an instance of two builtin bases such as SchedulerUnreachable.)
        assert pickle.loads(pickle.dumps(error)) is error
    # As a traceback shows it, rather than alfcache._exceptions.MissingRoot.
    code = "import alfcache; alfcache.index('/no/such/folder/alfcache')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].startswith("alfcache.MissingRoot: root folder ")


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(alfcache, name) is not None
    assert name in dir(alfcache)


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        alfcache.no_such_thing  # noqa: B018


def test_qc_type_equals_reference() -> None:
    assert alfcache.QC_TYPE == reference.QC_TYPE
    assert alfcache.QC_TYPE.ordered


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (alfcache.SESSIONS_COLUMNS, reference.SESSIONS_COLUMNS),
        (alfcache.DATASETS_COLUMNS, reference.DATASETS_COLUMNS),
    ],
)
def test_column_maps_equal_reference(ours: dict[str, object], theirs: dict[str, object]) -> None:
    assert list(ours) == list(theirs)
    for column in ours:
        assert pd.api.types.pandas_dtype(ours[column]) == pd.api.types.pandas_dtype(
            theirs[column]
        ), column


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (alfcache.EMPTY_SESSIONS_FRAME, reference.EMPTY_SESSIONS_FRAME),
        (alfcache.EMPTY_DATASETS_FRAME, reference.EMPTY_DATASETS_FRAME),
    ],
)
def test_empty_frames_equal_reference(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(ours, theirs)
    assert list(ours.index.names) == list(theirs.index.names)


def test_exceptions_refine_builtins() -> None:
    assert issubclass(alfcache.BadRoot, NotADirectoryError)
    assert issubclass(alfcache.BadOutDir, NotADirectoryError)
    assert issubclass(alfcache.OutDirNotWritable, PermissionError)
    assert issubclass(alfcache.RootNotReadable, PermissionError)
    assert issubclass(alfcache.BadArgument, ValueError)
    assert issubclass(alfcache.LabConflict, ValueError)
    assert issubclass(alfcache.LabConflict, AssertionError)  # as one-api's make_parquet_db
    assert issubclass(alfcache.ScanFailed, RuntimeError)
    assert issubclass(alfcache.WriteFailed, OSError)
    for name in PUBLIC:
        value = getattr(alfcache, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, alfcache.AlfcacheError)


@pytest.mark.parametrize(
    "module", ["alfcache._walk.scan", "alfcache._cli.main", "alfcache._index"]
)
def test_indexing_path_does_not_import_pandas_or_polars_early(module: str) -> None:
    """Workers import only the scanner; pandas must never be needed to index."""
    code = f"import sys, {module}; print('pandas' in sys.modules, 'polars' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_index_run_never_imports_pandas(tmp_path: Path, make_files: MakeFiles) -> None:
    root = make_files(tmp_path / "data", ["lab/Subjects/s1/2021-01-01/001/alf/spikes.times.npy"])
    code = (
        "import sys, alfcache; alfcache.index(sys.argv[1], n_jobs=1); "
        "print('pandas' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("hash_ids", [True, False])
def test_index_run_never_imports_pyarrow_compute(
    tmp_path: Path, make_files: MakeFiles, hash_ids: bool
) -> None:
    # Its import is a tenth of the start-up of a small run (issue 21): Arrow's casts and
    # Polars's conversion of string columns that are not large_string would pull it in.
    root = make_files(tmp_path / "data", ["lab/Subjects/s1/2021-01-01/001/alf/spikes.times.npy"])
    code = (
        f"import sys, alfcache; alfcache.index(sys.argv[1], n_jobs=1, hash_ids={hash_ids}); "
        "print('pyarrow.compute' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("to", [pa.string(), pa.large_string()])
def test_with_offsets_is_arrows_cast(to: pa.DataType) -> None:
    values = ["a", None, "", "ünïcode", "last"]
    for type_ in (pa.string(), pa.large_string()):
        array = pa.array(values, type_)
        for part in (array, array.slice(1, 3), array.slice(5), pa.array([], type_)):
            got = with_offsets(part, to)
            assert got.type == to
            got.validate(full=True)
            assert got.equals(part.cast(to))


def test_synth_is_a_public_module() -> None:
    # The README's example writes its tree with it: a public name, not alfcache._synth.
    import alfcache.synth

    assert alfcache.synth.__all__ == ["TreeSummary", "make_tree"]
    assert "alfcache._synth" not in (Path(__file__).parents[1] / "README.md").read_text()


def test_cast_table_is_arrows_cast() -> None:
    levels = pa.array(["NOT_SET", "PASS", "FAIL"], pa.large_string())
    qc = pa.DictionaryArray.from_arrays(pa.array([2, 0, 1], pa.uint8()), levels, ordered=True)
    table = pa.table(
        {
            "text": pa.chunked_array([pa.array(["a", None], pa.large_string()), ["ü"]]),
            "qc": qc,
            "size": pa.array([1, 2, 3], pa.uint64()),
            "number": pa.array([1, 2, 3], pa.int64()),  # no shortcut: Arrow's own cast
        }
    )
    schema = pa.schema(
        [
            ("text", pa.string()),
            ("qc", pa.dictionary(pa.int8(), pa.string(), ordered=True)),
            ("size", pa.uint64()),
            ("number", pa.uint16()),
        ],
        metadata={b"kept": b"yes"},
    )
    got = cast_table(table, schema)
    got.validate(full=True)
    assert got.equals(table.cast(schema))
    assert got.schema.equals(schema, check_metadata=True)
