"""Schema metadata: ``one_metadata`` holds what one-api writes, alfcache's record its own key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import one.alf.cache as reference
import pyarrow.parquet as pq
import pytest
from _helpers import index_quietly

import alfcache
from alfcache.synth import make_tree

TABLES = ("sessions.pqt", "datasets.pqt")


def _run(root: Path, out: Path, **kwargs: Any) -> alfcache.IndexReport:
    return index_quietly(root, out, n_jobs=1, **kwargs)


def _metadata(path: Path) -> dict[bytes, bytes]:
    metadata = pq.read_schema(path).metadata
    assert metadata is not None
    return metadata


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_tree(root, 4, empty_every=0, max_file_size=512)
    return root


@pytest.mark.parametrize("hash_algorithm", [None, "both"])
def test_one_metadata_has_exactly_one_api_keys(
    tree: Path, tmp_path: Path, hash_algorithm: str | None
) -> None:
    _run(tree, tmp_path / "out", hash_algorithm=hash_algorithm)
    expected = set(reference._metadata(str(tree)))
    for name in TABLES:
        meta = json.loads(_metadata(tmp_path / "out" / name)[b"one_metadata"])
        assert set(meta) == expected == {"date_created", "origin"}


def test_provenance_under_its_own_key(tree: Path, tmp_path: Path) -> None:
    _run(tree, tmp_path / "out", hash_algorithm="both", hash_ids=False, lab="cortexlab")
    for name in TABLES:
        record = json.loads(_metadata(tmp_path / "out" / name)[b"alfcache"])
        assert record["version"] == alfcache.__version__
        assert record["id_kind"] == "path"
        assert record["digests"] == ["md5", "xxh3"]
        assert record["options"]["hash_algorithm"] == "both"
        assert record["options"]["lab"] == "cortexlab"
        assert record["options"]["hash_ids"] is False


def _to_release_0_1_0(out: Path) -> None:
    """Rewrite the tables' metadata as alfcache 0.1.0 wrote it: its record inside one_metadata."""
    for name in TABLES:
        table = pq.read_table(out / name)
        metadata = dict(table.schema.metadata)
        record = json.loads(metadata.pop(b"alfcache"))
        meta = json.loads(metadata[b"one_metadata"])
        meta.update(alfcache_hash=record["digests"], alfcache_hash_ids=record["id_kind"])
        metadata[b"one_metadata"] = json.dumps(meta).encode()
        pq.write_table(table.replace_schema_metadata(metadata), out / name)


def test_tables_of_release_0_1_0_still_update(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(tree, out, hash_algorithm="both")
    _to_release_0_1_0(out)
    assert b"alfcache" not in _metadata(out / "datasets.pqt")
    # Without the old keys the update would see only the MD5 column (ONE-api's), not XXH3.
    report = _run(tree, out, update=True)
    assert report.hashing is not None
    assert report.hashing.algorithms == ("md5", "xxh3")
    assert report.hashing.files == 0
    assert json.loads(_metadata(out / "datasets.pqt")[b"alfcache"])["digests"] == ["md5", "xxh3"]
    assert set(json.loads(_metadata(out / "datasets.pqt")[b"one_metadata"])) == {
        "date_created",
        "origin",
    }
