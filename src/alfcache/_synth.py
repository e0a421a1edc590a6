"""Generate synthetic ALF trees for the demo, the tests and the benchmarks.

The trees are deterministic for a given seed: sessions with and without a lab, collections,
revision folders, empty sessions and non-ALF files (which an indexer must skip).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class TreeSummary:
    """What :func:`make_tree` wrote."""

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
        Files get a random size between 1 and this many bytes.
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
            (folder / name).write_bytes(own.randbytes(size))
            n_datasets += 1
            n_bytes += size
        for rel in NON_ALF_FILES:
            (session / rel).write_bytes(b"x")
            n_non_alf += 1
    return TreeSummary(root, n_sessions, n_datasets, n_non_alf, n_bytes)
