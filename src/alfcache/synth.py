"""Generate synthetic ALF trees for the demo, the tests and the benchmarks.

The trees are deterministic for a given seed: sessions with and without a lab, collections,
revision folders, empty sessions and non-ALF files (which an indexer must skip). The ``.npy``
files are real NumPy arrays (``uint8``) and the ``.pqt`` files real parquet tables (one binary
value), so ONE-api can load them; every other file is random bytes.

Public: :func:`make_tree` and :class:`TreeSummary` (``from alfcache.synth import make_tree``),
also behind ``alfcache synth``.
"""

from __future__ import annotations

import functools
import io
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["TreeSummary", "make_tree"]

LABS = ("cortexlab", "churchlandlab", "mainenlab")

# (collection, file name): ALF datasets spread over collections and a revision.
DATASET_FILES = (
    ("alf", "_ibl_trials.choice.npy"),
    ("alf", "_ibl_trials.feedbackType.npy"),
    ("alf", "_ibl_trials.stimOn_times.npy"),
    ("alf", "_ibl_trials.intervals.npy"),
    ("alf", "_ibl_trials.table.pqt"),
    ("alf", "_ibl_wheel.position.npy"),
    ("alf", "_ibl_wheel.timestamps.npy"),
    ("alf", "_ibl_wheelMoves.intervals.npy"),
    ("alf", "_ibl_leftCamera.times.npy"),
    ("alf", "licks.times.npy"),
    ("alf/#2024-05-06#", "_ibl_trials.choice.npy"),
    ("alf/#2024-05-06#", "_ibl_trials.table.pqt"),
    ("alf/probe00", "spikes.times.npy"),
    ("alf/probe00", "spikes.clusters.npy"),
    ("alf/probe00", "spikes.amps.npy"),
    ("alf/probe00", "spikes.depths.npy"),
    ("alf/probe00", "clusters.channels.npy"),
    ("alf/probe00", "clusters.metrics.pqt"),
    ("alf/probe00", "channels.localCoordinates.npy"),
    ("alf/probe00/pykilosort", "spikes.times.npy"),
    ("alf/probe00/pykilosort", "spikes.clusters.npy"),
    ("alf/probe00/pykilosort", "clusters.uuids.csv"),
    ("alf/probe00/pykilosort/#2024-05-06#", "spikes.times.npy"),
    ("raw_ephys_data/probe00", "_spikeglx_ephysData_g0_t0.imec0.ap.cbin"),
    ("raw_ephys_data/probe00", "_spikeglx_ephysData_g0_t0.imec0.ap.meta"),
    ("raw_ephys_data/probe00", "_spikeglx_ephysData_g0_t0.imec0.ap.ch"),
    ("raw_video_data", "_iblrig_leftCamera.raw.mp4"),
    ("raw_behavior_data", "_iblrig_taskData.raw.jsonable"),
    ("raw_behavior_data", "_iblrig_taskSettings.raw.json"),
    ("", "_ibl_experiment.description.yaml"),
)

# Files an indexer must not take as datasets: no dots, one dot, hidden, or not ALF.
NON_ALF_FILES = ("notes.txt", ".DS_Store", "README", "raw_data", "alf/log.txt")


# NumPy's format 1.0: magic, version, header length, then the header padded to 64 bytes.
_NPY_MAGIC = b"\x93NUMPY\x01\x00"
_NPY_ALIGN = 64


@functools.lru_cache(maxsize=4096)
def npy_header(n: int) -> bytes:
    """The header of a NumPy ``.npy`` file holding ``n`` bytes as a one-dimensional ``uint8``.

    Parameters
    ----------
    n : int
        Number of array elements (bytes) that follow the header.

    Returns
    -------
    bytes
        Magic, version, length and the padded header dictionary, a multiple of 64 bytes long.
    """
    text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({n},), }}"
    fixed = len(_NPY_MAGIC) + 2 + len(text) + 1  # + the length field and the final newline
    text += " " * (-fixed % _NPY_ALIGN) + "\n"
    return _NPY_MAGIC + len(text).to_bytes(2, "little") + text.encode("latin1")


@functools.lru_cache(maxsize=4096)
def _parquet_template(n: int) -> tuple[bytes, bytes, int]:
    """A parquet file of one ``payload`` value of ``n`` bytes, split around that value.

    Written once per length, uncompressed, without statistics, dictionary or checksum, so the
    value's bytes appear verbatim once and any ``n`` bytes put in their place make a valid file:
    writing each synthetic table with pyarrow would cost more than the rest of the tree.

    Parameters
    ----------
    n : int
        Length of the payload, at least 1.

    Returns
    -------
    tuple of (bytes, bytes, int)
        The bytes before the payload, the bytes after it, and ``n``.
    """

    def write(value: bytes) -> bytes:
        out = io.BytesIO()
        # ONE-api loads a .pqt through iblutil, which needs the one_metadata key it writes.
        table = pa.table(
            {"payload": pa.array([value], pa.binary())}, metadata={"one_metadata": "{}"}
        )
        pq.write_table(
            table, out, compression="none", use_dictionary=False, write_statistics=False
        )
        return out.getvalue()

    zeros, ones = write(b"\x00" * n), write(b"\xff" * n)
    differ = np.flatnonzero(np.frombuffer(zeros, np.uint8) != np.frombuffer(ones, np.uint8))
    start = int(differ[0])
    # Nothing but the payload may depend on the value, or a changed payload breaks the file.
    assert np.array_equal(differ, np.arange(start, start + n)), f"parquet template of {n} bytes"
    return zeros[:start], zeros[start + n :], n


def file_bytes(name: str, payload: bytes) -> bytes:
    """The content of a synthetic file named ``name`` holding ``payload``.

    Parameters
    ----------
    name : str
        File name; ``.npy`` and ``.pqt`` files get a real NumPy or parquet frame around the
        payload, others are the payload itself.
    payload : bytes
        The file's own bytes (at least one for ``.pqt``).

    Returns
    -------
    bytes
    """
    if name.endswith(".npy"):
        return npy_header(len(payload)) + payload
    if name.endswith(".pqt"):
        head, tail, _ = _parquet_template(len(payload))
        return head + payload + tail
    return payload


@dataclass(frozen=True)
class TreeSummary:
    """What :func:`make_tree` wrote.

    Attributes
    ----------
    root : pathlib.Path
        The folder written into.
    sessions : int
        Session folders, empty ones included.
    datasets : int
        ALF dataset files.
    non_alf_files : int
        Files an indexer must not take as datasets (``notes.txt``, ``.DS_Store``, ...).
    bytes : int
        Total size of the dataset files.
    """

    root: Path
    sessions: int
    datasets: int
    non_alf_files: int
    bytes: int


def make_tree(
    root: str | os.PathLike[str],
    n_sessions: int = 200,
    files_per_session: int = len(DATASET_FILES),
    *,
    seed: int = 0,
    max_file_size: int = 2048,
    empty_every: int = 25,
    no_lab_every: int = 4,
) -> TreeSummary:
    """Write a synthetic ALF tree.

    Parameters
    ----------
    root : path
        Folder to write into; created when missing.
    n_sessions : int
        Number of session folders.
    files_per_session : int
        ALF datasets per session (at most ``len(DATASET_FILES)``).
    seed : int
        Seed of the random sizes and the layout.
    max_file_size : int
        Files get a random payload of 1 to this many bytes; a ``.npy`` file has a 128-byte
        header more, a ``.pqt`` file a parquet frame of a few hundred bytes.
    empty_every : int
        Every n-th session has no files at all (0 for none).
    no_lab_every : int
        Every n-th subject sits directly in the root, without ``lab/Subjects`` (0 for none).

    Returns
    -------
    TreeSummary
    """
    rng = random.Random(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = DATASET_FILES[: max(0, min(files_per_session, len(DATASET_FILES)))]
    n_datasets = n_non_alf = n_bytes = 0
    for i in range(n_sessions):
        subject_no, session_no = divmod(i, 12)
        subject = f"SW{subject_no:04d}"
        if no_lab_every and subject_no % no_lab_every == no_lab_every - 1:
            subject_dir = root / subject
        else:
            subject_dir = root / LABS[subject_no % len(LABS)] / "Subjects" / subject
        day, number = divmod(session_no, 3)
        date = f"2024-{1 + day:02d}-{1 + (subject_no % 28):02d}"
        session = subject_dir / date / f"{number + 1:03d}"
        session.mkdir(parents=True, exist_ok=True)
        if empty_every and i % empty_every == empty_every - 1:
            continue
        for collection, name in files:
            folder = session / collection if collection else session
            folder.mkdir(parents=True, exist_ok=True)
            # Never 0 bytes: an empty dataset is an awkward entry, reported as such.
            size = rng.randrange(1, max_file_size + 1)
            # Each file its own bytes, from a generator of its own path: two digests swapped
            # between files of equal size must show.
            own = random.Random(f"{seed}/{session.relative_to(root)}/{collection}/{name}")
            content = file_bytes(name, own.randbytes(size))
            (folder / name).write_bytes(content)
            n_datasets += 1
            n_bytes += len(content)
        for rel in NON_ALF_FILES:
            (session / rel).write_bytes(b"x")
            n_non_alf += 1
    return TreeSummary(root, n_sessions, n_datasets, n_non_alf, n_bytes)
