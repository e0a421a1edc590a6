"""alfcache's tables through the real ONE-api client, ``One(cache_dir=root, mode='local')``.

Every test here is marked ``one``: ``scripts/test`` runs them again under the newest one-api with
pandas 3. The expected answers come from walking the disk independently with ``os.walk`` and the
ALF grammar of ``one.alf.spec``, never from the tables themselves. Keep the code independent of
the one-api and pandas versions; where behaviour truly differs, say so next to the check.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from one.alf import spec
from one.api import One

import alfcache
from alfcache.synth import make_tree

pytestmark = [
    pytest.mark.one,
    # one-api's own chatter: one-api 3.6 calls a pandas-3-deprecated argument.
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]

SESSION_RE = spec.regex(spec.SESSION_SPEC)
FILE_RE = spec.regex(spec.FILE_SPEC)


@dataclass(frozen=True)
class DiskSession:
    path: Path
    lab: str
    subject: str
    date: str
    number: int
    datasets: frozenset[str]  # rel_paths, POSIX


def walk_sessions(root: Path) -> dict[Path, DiskSession]:
    """Session folders below ``root`` and the ALF files in each, found with ``os.walk``."""
    found: dict[Path, DiskSession] = {}
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        match = SESSION_RE.fullmatch(here.relative_to(root).as_posix())
        if not match:
            continue
        dirnames.clear()  # sessions do not nest
        datasets = frozenset(
            (Path(sub, name).relative_to(here)).as_posix()
            for sub, _, names in os.walk(here)
            for name in names
            if FILE_RE.match(name)
        )
        parts = match.groupdict()
        found[here] = DiskSession(
            here,
            parts["lab"] or "",
            parts["subject"],
            parts["date"],
            int(parts["number"]),
            datasets,
        )
    return found


@dataclass
class Catalog:
    root: Path
    one: One
    sessions: dict[Path, DiskSession]
    eids: dict[Path, str]  # session folder -> eid as text, found through path2eid

    def items(self) -> Iterator[tuple[DiskSession, str]]:
        for path, ses in sorted(self.sessions.items()):
            yield ses, self.eids[path]


def _catalog(root: Path, **index_kwargs: object) -> Catalog:
    alfcache.make_parquet_db(root, **index_kwargs)  # into the data root, hash_ids=True
    assert (root / "sessions.pqt").exists() and (root / "datasets.pqt").exists()
    one = One(cache_dir=root, mode="local")
    sessions = walk_sessions(root)
    eids = {}
    for path in sessions:
        eid = one.path2eid(path)
        assert eid is not None, f"path2eid found no session for {path}"
        eids[path] = str(eid)
    return Catalog(root, one, sessions, eids)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """36 sessions (labs and no labs, 3 empty sessions, junk files), indexed with 2 workers."""
    root = tmp_path_factory.mktemp("one-client") / "data"
    tree = make_tree(root, 36, empty_every=10, no_lab_every=3)
    cat = _catalog(root.resolve(), n_jobs=2)
    assert len(cat.sessions) == tree.sessions
    assert sum(len(s.datasets) for s in cat.sessions.values()) == tree.datasets
    assert any(not s.datasets for s in cat.sessions.values()), "the tree has empty sessions"
    assert {bool(s.lab) for s in cat.sessions.values()} == {True, False}
    return cat


@pytest.fixture(scope="module")
def hashed_catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """A small tree indexed with ``hash_files=True`` (MD5 of every file in the table)."""
    root = tmp_path_factory.mktemp("one-client-hashed") / "data"
    make_tree(root, 24, files_per_session=4, empty_every=0, no_lab_every=2, seed=1)
    return _catalog(root.resolve(), n_jobs=1, hash_files=True)


def _ids(eids) -> set[str]:
    return {str(e) for e in eids}


def _rel_paths(listed) -> list[str]:
    """``list_datasets(eid)``'s answer as a list: one-api returns an empty *frame* (not a list)
    for a session that has no datasets, whatever ``details`` says."""
    if isinstance(listed, pd.DataFrame):
        return list(listed["rel_path"])
    return list(listed)


def test_tables_load_with_uuid_ids(catalog: Catalog):
    """ONE-api casts v3/v4 UUID indices to uuid.UUID; both tables loaded, nothing skipped."""
    ses = catalog.one._cache["sessions"]
    dsets = catalog.one._cache["datasets"]
    assert len(ses) == len(catalog.sessions)
    assert len(dsets) == sum(len(s.datasets) for s in catalog.sessions.values())
    assert {type(i) for i in ses.index} == {uuid.UUID}
    assert {type(i) for i in dsets.index.get_level_values("eid")} == {uuid.UUID}
    assert {type(i) for i in dsets.index.get_level_values("id")} == {uuid.UUID}
    assert catalog.one._cache["_meta"]["loaded_time"] is not None


def test_search_finds_every_session(catalog: Catalog):
    eids = catalog.one.search()
    assert len(eids) == len(set(_ids(eids))) == len(catalog.sessions)
    assert _ids(eids) == set(catalog.eids.values())


def test_eid2path_and_path2eid_round_trip(catalog: Catalog):
    for ses, eid in catalog.items():
        path = catalog.one.eid2path(eid)
        assert path is not None, eid
        assert Path(path) == ses.path
        assert str(catalog.one.path2eid(str(path))) == eid
        assert str(catalog.one.path2eid(ses.path)) == eid
    # ...and from the search results back.
    for eid in catalog.one.search():
        assert str(catalog.one.path2eid(catalog.one.eid2path(eid))) == str(eid)


def test_list_datasets_equals_files_on_disk(catalog: Catalog):
    for ses, eid in catalog.items():
        listed = _rel_paths(catalog.one.list_datasets(eid))
        assert len(listed) == len(set(listed)), ses.path
        assert set(listed) == ses.datasets, ses.path
    everything = set().union(*(s.datasets for s in catalog.sessions.values()))
    assert set(catalog.one.list_datasets()) == everything


def test_list_datasets_details_match_disk(catalog: Catalog):
    for ses, eid in catalog.items():
        details = catalog.one.list_datasets(eid, details=True)
        assert set(details["rel_path"]) == ses.datasets
        if not ses.datasets:
            continue
        sizes = {rel: (ses.path / rel).stat().st_size for rel in ses.datasets}
        assert details["rel_path"].is_unique
        listed = zip(details["rel_path"], details["file_size"].astype(int), strict=True)
        assert dict(listed) == sizes
        assert details["exists"].all()
        assert (details["qc"].astype(str) == "NOT_SET").all()
        assert details["hash"].isna().all()  # not hashed: null, not ''


def test_load_dataset_returns_the_existing_file(catalog: Catalog):
    sessions = [(s, e) for s, e in catalog.items() if s.datasets]
    with_lab = next(x for x in sessions if x[0].lab)
    without_lab = next(x for x in sessions if not x[0].lab)
    checks = [(ses, eid, rel) for ses, eid in (with_lab, without_lab) for rel in ses.datasets]
    # Every other session: its deepest dataset (collection and revision folders).
    checks += [(s, e, max(s.datasets, key=lambda r: (r.count("/"), r))) for s, e in sessions]
    for ses, eid, rel in checks:
        # check_hash=False: one-api MD5s through a fresh 256 MB buffer per file (~0.3 s each),
        # which under pandas 3 it does even for null hashes; the MD5 tests below cover hashes.
        file = catalog.one.load_dataset(eid, rel, download_only=True, check_hash=False)
        assert file is not None, (eid, rel)
        assert Path(file) == ses.path / rel
        assert Path(file).is_file()


def test_load_dataset_by_collection_and_revision(catalog: Catalog):
    ses, eid = next(
        (s, e)
        for s, e in catalog.items()
        if "alf/#2024-05-06#/_ibl_trials.choice.npy" in s.datasets
    )
    one = catalog.one
    file = one.load_dataset(
        eid, "_ibl_trials.choice.npy", collection="alf", revision="2024-05-06", download_only=True
    )
    assert Path(file) == ses.path / "alf/#2024-05-06#/_ibl_trials.choice.npy"
    listed = one.list_datasets(eid, collection="alf/probe00/pykilosort")
    assert set(listed) == {r for r in ses.datasets if r.startswith("alf/probe00/pykilosort/")}


def _md5_mismatches(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "md5 mismatch" in r.getMessage()]


def test_unhashed_tables_skip_the_md5_check(catalog: Catalog, caplog: pytest.LogCaptureFixture):
    """A null hash means "not hashed": one-api must not MD5 the file and report a mismatch."""
    ses, eid = next((s, e) for s, e in catalog.items() if s.datasets)
    with caplog.at_level(logging.WARNING):
        for rel in sorted(ses.datasets)[:3]:
            file = catalog.one.load_dataset(eid, rel, download_only=True)
            assert Path(file) == ses.path / rel
    # Under pandas 3 a null *string* reads as NaN and one-api (``hash is not None``) would MD5
    # the file and log a mismatch; alfcache writes an all-null hash as Arrow's null type.
    assert _md5_mismatches(caplog) == []


def test_hashed_tables_pass_the_md5_check(
    hashed_catalog: Catalog, caplog: pytest.LogCaptureFixture
):
    for ses, eid in hashed_catalog.items():
        details = hashed_catalog.one.list_datasets(eid, details=True)
        digests = dict(zip(details["rel_path"], details["hash"], strict=True))
        assert set(digests) == ses.datasets
        for rel in sorted(ses.datasets):
            assert digests[rel] == hashlib.md5((ses.path / rel).read_bytes()).hexdigest(), rel
    # one-api MD5s every loaded file (slowly, see above): two sessions, with and without lab.
    with_lab = next((s, e) for s, e in hashed_catalog.items() if s.lab)
    without_lab = next((s, e) for s, e in hashed_catalog.items() if not s.lab)
    loads = [(s, e, rel) for s, e in (with_lab, without_lab) for rel in sorted(s.datasets)[:2]]
    with caplog.at_level(logging.WARNING):
        for ses, eid, rel in loads:
            file = hashed_catalog.one.load_dataset(eid, rel, download_only=True)
            assert Path(file) == ses.path / rel
    assert _md5_mismatches(caplog) == []


def test_search_by_subject_date_and_number(catalog: Catalog):
    for ses, eid in catalog.items():
        found = catalog.one.search(subject=ses.subject, date=ses.date, number=ses.number)
        assert _ids(found) == {eid}, ses.path
        # number as text, as users type it
        found = catalog.one.search(subject=ses.subject, date=ses.date, number=str(ses.number))
        assert _ids(found) == {eid}, ses.path


def test_search_by_lab_number_and_date_range(catalog: Catalog):
    one, items = catalog.one, list(catalog.items())
    for lab in {s.lab for s, _ in items if s.lab}:
        assert _ids(one.search(lab=lab)) == {e for s, e in items if s.lab == lab}, lab
    for number in {s.number for s, _ in items}:
        assert _ids(one.search(number=number)) == {e for s, e in items if s.number == number}
    dates = sorted({s.date for s, _ in items})
    low, high = dates[1], dates[-2]
    expected = {e for s, e in items if low <= s.date <= high}
    assert _ids(one.search(date_range=[low, high])) == expected
    assert one.search(subject="no-such-subject") == []


def test_search_by_dataset(catalog: Catalog):
    items = list(catalog.items())
    expected = {e for s, e in items if any(r.endswith("/spikes.times.npy") for r in s.datasets)}
    assert expected
    assert _ids(catalog.one.search(datasets="spikes.times.npy")) == expected
    assert _ids(catalog.one.search(datasets=["spikes.times.npy", "licks.times.npy"])) == expected


def test_qc_queries(catalog: Catalog):
    """A new index is all NOT_SET: at or below any level, and nothing with QC set."""
    one, items = catalog.one, list(catalog.items())
    ses, eid = next((s, e) for s, e in items if s.datasets)
    for level in ("NOT_SET", "PASS", "WARNING", "FAIL", "CRITICAL", spec.QC.FAIL):
        assert set(one.list_datasets(eid, qc=level)) == ses.datasets, level
    assert list(one.list_datasets(eid, qc="FAIL", ignore_qc_not_set=True)) == []
    with_data = {e for s, e in items if s.datasets}
    for level in ("NOT_SET", "PASS", "FAIL"):
        found = one.search(datasets="spikes.times.npy", dataset_qc_lte=level)
        assert _ids(found) == with_data, level
    # one-api's local search quirks, the same for the reference's tables: dataset_qc_lte
    # without datasets looks for a file named '', and datasets= never finds files at the
    # session root (no '/' in rel_path). Neither may raise.
    one.search(dataset_qc_lte="FAIL")
    one.search(datasets="_ibl_experiment.description.yaml")


def test_load_dataset_reads_the_synthetic_arrays_and_tables(catalog: Catalog):
    """The demo's last step: ONE-api loads a synthetic ``.npy`` and ``.pqt`` as data.

    Datasets without a revision folder, so that ONE-api picks the one on disk named here.
    """
    ses, eid = next(
        (s, e) for s, e in catalog.items() if "alf/_ibl_trials.feedbackType.npy" in s.datasets
    )
    feedback = catalog.one.load_dataset(eid, "_ibl_trials.feedbackType.npy", collection="alf")
    raw = (ses.path / "alf/_ibl_trials.feedbackType.npy").read_bytes()
    # NumPy's own reader, and the payload after the 128-byte header, byte for byte.
    assert np.array_equal(feedback, np.load(ses.path / "alf/_ibl_trials.feedbackType.npy"))
    assert feedback.dtype == np.uint8 and feedback.tobytes() == raw[128:]
    metrics = catalog.one.load_dataset(eid, "clusters.metrics.pqt", collection="alf/probe00")
    assert isinstance(metrics, pd.DataFrame)
    assert list(metrics.columns) == ["payload"] and len(metrics) == 1
    assert metrics["payload"][0] in (ses.path / "alf/probe00/clusters.metrics.pqt").read_bytes()
