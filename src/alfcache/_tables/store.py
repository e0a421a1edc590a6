"""Parquet on disk: where the tables are written and read back.

Every read of a parquet file (a table, its schema metadata, a checkpoint) goes through
:func:`read_parquet` or :func:`read_metadata`, and a verb that reads a cache table a user points
it at goes through :func:`read_table`, whose failures are one line.

Writing is all-or-nothing per run: both tables go to temporary names that do not end in
``.pqt`` (ONE-api loads every ``*.pqt`` in the folder), are flushed to disk, and only then
renamed over the previous tables. A failure before the renames leaves the previous tables
untouched and removes the temporary files. A run killed before it could clean up leaves them
behind; their names carry the host and process id of their run, and the next run removes those
of runs that are gone (:func:`remove_stale_tmp`).

Permissions are those a user expects of a file written in place: a new table gets the mode the
umask allows (``0644`` under umask 022, as ONE-api's tables), and a table that replaces another
keeps the mode, group and (when run as root) owner of the one it replaces, so a nightly
re-index does not lock lab members out or undo what an admin set; but only a regular file
passes them on (never what a link there points to), and never its set-id or sticky bits. The
rename replaces a link at a table's name, never what it points to. ``mkstemp`` creates ``0600``
files and a rename keeps the mode, hence the explicit ``fchmod``.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import re
import socket
import stat
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from alfcache._exceptions import BadArgument, BadOutDir, OutDirNotWritable, WriteFailed
from alfcache._paths import shown
from alfcache._processes import sigint_at_checks
from alfcache._tables.arrow import TEXT_TYPES
from alfcache._tables.revisions import with_default_revision
from alfcache._tables.schema import (
    DATASETS_INDEX,
    DIGEST_COLUMNS,
    SESSIONS_INDEX,
    pandas_metadata,
)
from alfcache._version import __version__

SESSIONS_FILE = "sessions.pqt"
DATASETS_FILE = "datasets.pqt"
_TMP_SUFFIX = ".alfcache-tmp"
_HOST = socket.gethostname().replace(".", "-") or "localhost"
"""This machine in temporary names (dots would blur the name's fields)."""
_TMP_NAME = re.compile(
    r"^\.(?:sessions\.pqt|datasets\.pqt|probe|alfcache-digests\.checkpoint)\.(?P<host>[^.]+)\.(?P<pid>\d+)\.\w+"
    + re.escape(_TMP_SUFFIX)
    + "$"
)
_OLD_TMP_NAME = re.compile(r"^\.(?:sessions|datasets)\.pqt\.\w+" + re.escape(_TMP_SUFFIX) + "$")
"""Temporary names of alfcache 0.1, without host and PID."""
_OLD_TMP_AGE_S = 3600
"""A 0.1 run held its temporary files for the seconds of a write; an hour means dead."""


def _tmp_prefix(name: str) -> str:
    """Temporary names say who writes them, so a later run can tell a dead run's leftovers."""
    return f".{name}.{_HOST}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _is_stale(entry: os.DirEntry[str], now: float) -> bool:
    if match := _TMP_NAME.match(entry.name):
        # Another machine's PIDs mean nothing here (an output folder on NFS): left alone.
        return match["host"] == _HOST and not _alive(int(match["pid"]))
    if _OLD_TMP_NAME.match(entry.name):
        try:
            return now - entry.stat(follow_symlinks=False).st_mtime > _OLD_TMP_AGE_S
        except OSError:
            return False
    return False


def read_parquet(source: Path | IO[bytes]) -> pa.Table:
    """A parquet file (a path or an open binary file) as Arrow, with its schema metadata.

    Not ``pq.read_table``: it goes through ``pyarrow.dataset``, which imports pandas (0.5 s).

    Raises
    ------
    OSError, pyarrow.ArrowException
        The file cannot be opened or is not parquet; each caller says what to do in its words.
    """
    import pyarrow.parquet as pq  # see _write_tmp

    with pq.ParquetFile(source) as file:
        return file.read()


def read_metadata(path: Path) -> Mapping[bytes, bytes]:
    """A parquet file's schema metadata (``{}`` when it has none), without reading its rows.

    Raises
    ------
    OSError, pyarrow.ArrowException
        As :func:`read_parquet`.
    """
    import pyarrow.parquet as pq  # see _write_tmp

    return pq.read_schema(path).metadata or {}


def read_one_metadata(metadata: Mapping[bytes, bytes] | None) -> dict[str, Any] | None:
    """The ``one_metadata`` JSON object in a table's schema metadata; None when absent or not
    an object."""
    try:
        value = json.loads((metadata or {})[b"one_metadata"])
    except (KeyError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_table(path: Path, *, text: bool = True) -> pa.Table:
    """A cache table as Arrow, without pandas; every verb reads its tables here.

    ``text=False`` leaves values that are not UTF-8 to the caller (``info`` reports them).

    Raises
    ------
    BadArgument
        The file is missing, cannot be opened or is not parquet, or (``text``) holds a value
        that is not UTF-8.
    """
    # Imported here: the checks read provenance from this module.

    if not path.is_file():
        raise BadArgument(
            f"no table {shown(path)}; index the folder first, or pass the folder that holds "
            "sessions.pqt and datasets.pqt"
        )
    try:
        table = read_parquet(path)
    except OSError as exc:  # before ArrowException: pyarrow's IOError is both
        raise BadArgument(
            f"cannot read table {shown(path)}: {exc.strerror or exc}; check its permissions"
        ) from exc
    except pa.ArrowException as exc:
        raise BadArgument(
            f"cannot read table {shown(path)}: {exc}; is it a parquet file?"
        ) from exc
    if text and (why := bad_text(table)):
        raise BadArgument(f"cannot read table {shown(path)}: {why}; index the folder again")
    return table


def remove_stale_tmp(out_dir: Path) -> list[Path]:
    """Remove the temporary files that runs killed mid-write (SIGTERM, SIGKILL) left behind.

    Only files of runs on this machine whose process is gone are removed; a live run's are
    kept. Returns the removed files.
    """
    now = time.time()
    removed = []
    with os.scandir(out_dir) as entries:
        stale = [
            Path(e.path) for e in entries if e.name.endswith(_TMP_SUFFIX) and _is_stale(e, now)
        ]
    for path in stale:
        try:
            path.unlink()
        except FileNotFoundError:
            continue  # another run removed it first
        removed.append(path)
    return removed


PROVENANCE_KEY = b"alfcache"
"""The schema-metadata key of alfcache's own record of a run (see :func:`provenance`); kept out
of ``one_metadata``, which holds only what one-api writes."""


RUN_KEY = "run"
"""The key of the provenance record holding the id (a UUID4, hex) shared by the tables of one
write."""


def prepare_out_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` when missing and prove that files can be written in it.

    Runs before the scan, so a bad output folder fails in a second, not after hours.

    Raises
    ------
    BadOutDir
        ``out_dir`` (or a parent) is a file, or the folder cannot be created.
    OutDirNotWritable
        The folder exists but a file cannot be created in it.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise BadOutDir(
            f"output folder {shown(out_dir)} is a file; pass a folder as out_dir (--out-dir)"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadOutDir(
            f"cannot create output folder {shown(out_dir)}: {exc.strerror or exc}; "
            "pass a folder that can be created"
        ) from exc
    try:
        with tempfile.NamedTemporaryFile(
            dir=out_dir, prefix=_tmp_prefix("probe"), suffix=_TMP_SUFFIX
        ):
            pass
    except OSError as exc:
        raise OutDirNotWritable(
            f"cannot write in output folder {shown(out_dir)}: {exc.strerror or exc}; "
            "choose another --out-dir or fix its permissions"
        ) from exc
    remove_stale_tmp(out_dir)
    return out_dir


def one_metadata(origin: str) -> dict[str, str]:
    """The ``one_metadata`` JSON that ONE-api reads: creation time (naive, minutes) and origin.

    Exactly the two keys one-api writes: its own tests compare the metadata for equality.
    """
    now = datetime.datetime.now().isoformat(sep=" ", timespec="minutes")
    return {"date_created": now, "origin": origin}


def provenance(
    id_kind: str, digests: Sequence[str], options: Mapping[str, object]
) -> dict[str, object]:
    """alfcache's own record of a run, stored under :data:`PROVENANCE_KEY`.

    Parameters
    ----------
    id_kind : {'uuid3', 'path'}
        The kind of ids the tables hold.
    digests : sequence of str
        The digests the datasets table holds (``md5``, ``xxh3``).
    options : mapping
        The options of the run, as the library was called.
    """
    return {
        "version": __version__,
        "id_kind": id_kind,
        "digests": list(digests),
        "options": dict(options),
    }


def read_provenance(metadata: Mapping[bytes, bytes] | None) -> dict[str, Any]:
    """The provenance in a table's schema metadata; ``{}`` for tables of other tools.

    Tables of alfcache 0.1.0 kept ``alfcache_hash`` (digests) and ``alfcache_hash_ids`` (id
    kind) inside ``one_metadata``; they are read as the same record, so such tables still
    update.
    """
    metadata = metadata or {}
    try:
        record = json.loads(metadata[PROVENANCE_KEY])
    except (KeyError, ValueError):
        record = None
    if isinstance(record, dict):
        return record
    legacy = read_one_metadata(metadata) or {}
    return {
        key: legacy[old]
        for key, old in (("digests", "alfcache_hash"), ("id_kind", "alfcache_hash_ids"))
        if old in legacy
    }


def _with_metadata(
    table: pa.Table,
    ids: tuple[str, ...],
    meta: dict[str, str],
    record: dict[str, object] | None,
    extra: Mapping[str, object],
) -> pa.Table:
    # The layout of one-api's make_parquet_db: it makes hashed ids the frame's index (pandas
    # then stores them last) and leaves path ids as columns over a RangeIndex; its own tests
    # read both shapes (``df.loc[0]`` of path ids, ``index.name == 'id'`` of hashed ones).
    index: tuple[str, ...] = ()
    if record is not None and record.get("id_kind") == "uuid3":
        index = ids
        table = table.select([n for n in table.column_names if n not in ids] + list(ids))
    metadata = {
        b"one_metadata": json.dumps(meta).encode(),
        b"pandas": pandas_metadata(table.schema, index, table.num_rows),
    }
    if record is not None:
        metadata[PROVENANCE_KEY] = json.dumps(record).encode()
    metadata.update({key.encode(): json.dumps(value).encode() for key, value in extra.items()})
    return table.replace_schema_metadata(metadata)


def _umask() -> int:
    # The only portable way to read the umask is to set it; the write runs in the main thread.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _take_permissions(fd: int, final: Path) -> None:
    """Give the open temporary file the permissions ``final`` has, or a new file would get.

    Only a table that is a regular file with one name passes them on: a link (or a hard
    link) there may point at any file, which another user who can write the folder chose, and
    its owner and mode are not the previous table's. Set-id and sticky bits never pass on: a
    table is data, and a root run must not make a set-uid file of another user.
    """
    try:
        st = os.lstat(final)
    except FileNotFoundError:
        st = None
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.fchmod(fd, 0o666 & ~_umask())
        return
    # Only root may give a file away; anyone may pass it to a group they belong to, else the
    # new table gets this user's group.
    with contextlib.suppress(PermissionError):
        os.fchown(fd, st.st_uid if os.geteuid() == 0 else -1, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o777)


def _random_hex(record: Mapping[str, object]) -> tuple[str, ...]:
    """The columns of random hexadecimal text (UUID ids, digests), written plain.

    Each value is unique, so neither a dictionary nor Snappy shrinks them by more than a tenth,
    and trying both took most of the time to write a million datasets (0.12 s of 0.25 s with
    UUIDs, 0.36 s of 0.60 s with both digests too). A dataset's ``eid`` repeats (a dictionary
    pays), and path ids repeat their session's folder (Snappy pays).
    """
    ids = ("id",) if record.get("id_kind") == "uuid3" else ()
    return ids + tuple(DIGEST_COLUMNS.values())


def _write_tmp(table: pa.Table, final: Path, plain: Sequence[str]) -> Path:
    # Imported when first used: pyarrow.parquet brings pyarrow.fs (S3, GCS, Azure, HDFS,
    # OpenSSL), 12 libraries that a run can load while its walk runs (alfcache._walk.local).
    import pyarrow.parquet as pq

    fd, name = tempfile.mkstemp(
        dir=final.parent, prefix=_tmp_prefix(final.name), suffix=_TMP_SUFFIX
    )
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            _take_permissions(f.fileno(), final)
            # No minimum and maximum of text: nothing reads them (ONE-api reads whole tables),
            # and for a million ids and paths they were a ninth of the write.
            numbers = [f.name for f in table.schema if f.type not in TEXT_TYPES]
            pq.write_table(
                table,
                f,
                write_statistics=numbers,
                use_dictionary=[n for n in table.column_names if n not in plain],
                compression={n: "NONE" if n in plain else "SNAPPY" for n in table.column_names},
            )
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_tables(
    sessions: pa.Table,
    datasets: pa.Table,
    out_dir: Path,
    meta: dict[str, str],
    record: dict[str, object] | None = None,
    *,
    extra: Mapping[str, object] | None = None,
) -> tuple[Path, Path]:
    """Write both tables into ``out_dir`` atomically (see the module docstring).

    ``meta`` goes under ``one_metadata``, ``record`` (see :func:`provenance`) with a fresh
    run id (:data:`RUN_KEY`) under :data:`PROVENANCE_KEY`; ``extra`` maps further schema
    metadata keys (e.g. ``alfcache_shard``) to JSON values.

    Returns
    -------
    pathlib.Path, pathlib.Path
        The sessions and datasets table paths.

    Raises
    ------
    WriteFailed
        Writing failed (disk full, permissions); the previous tables are untouched.
    """
    more = extra or {}
    # Here, where every path that writes tables meets (index, update, merge, the Dask backend).
    datasets = with_default_revision(datasets)
    # Both tables carry one id of this run: a run killed between the two renames leaves a pair
    # of two runs, which every reader detects (alfcache._tables.checks.pair_mismatch).
    record = {**(record or {}), RUN_KEY: uuid.uuid4().hex}
    plan = (
        (_with_metadata(sessions, SESSIONS_INDEX, meta, record, more), out_dir / SESSIONS_FILE),
        (_with_metadata(datasets, DATASETS_INDEX, meta, record, more), out_dir / DATASETS_FILE),
    )
    plain = _random_hex(record)
    written: list[tuple[Path, Path]] = []
    renamed = False
    try:
        # A Ctrl-C is taken only between the steps (it waits for the table being written): one
        # inside a step could leave a temporary file behind, and one between the renames a new
        # sessions table beside the old datasets table.
        with sigint_at_checks() as check:
            for table, final in plan:
                check()
                written.append((_write_tmp(table, final, plain), final))
            check()
            for tmp, final in written:
                tmp.replace(final)
            renamed = True
    except KeyboardInterrupt:
        if not renamed:
            raise
        # It came while the tables were renamed into place: the run has written them, and
        # ends as if the Ctrl-C had come a moment later (saying "interrupted, no table was
        # written" would be false).
    except OSError as exc:
        raise WriteFailed(
            f"could not write the cache tables in {shown(out_dir)}: {exc.strerror or exc}; "
            "the previous tables are unchanged. Free space or choose another --out-dir."
        ) from exc
    finally:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
    return out_dir / SESSIONS_FILE, out_dir / DATASETS_FILE


MIN_ROW_BYTES = 10
"""The fewest bytes a table row takes on disk: measured 13 a dataset with path ids and no
digest (300 synthetic sessions, 8,640 datasets), 43 with UUIDs, 119 with both digests."""
MIN_DIGEST_BYTES = 16
"""The fewest bytes a file's digest takes in the tables or a checkpoint: 128 random bits."""
MIN_TABLE_BYTES = 4096
"""Parquet's schema and metadata in each table, however few its rows."""


def check_space(out_dir: Path, rows: int, digests: int) -> None:
    """Fail now when ``out_dir``'s file system cannot hold the tables of ``rows`` rows.

    Called after the walk, before any file is read: a full output disk found only by the
    final write would throw hours of hashing away. The estimate errs low (the smallest tables
    measured, ``digests`` digests of 16 bytes each), so that a run refused is one that could
    not fit; a disk that fills up later still fails the write (:func:`write_tables`).

    Raises
    ------
    WriteFailed
        The estimate exceeds the free space (what this user may take: root may also use the
        blocks reserved for it).
    """
    st = os.statvfs(out_dir)
    free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
    need = 2 * MIN_TABLE_BYTES + rows * MIN_ROW_BYTES + digests * MIN_DIGEST_BYTES
    if need > free:
        raise WriteFailed(
            f"cannot write the cache tables in {shown(out_dir)}: {os.strerror(errno.ENOSPC)} "
            f"(they take at least {need / 1e6:,.2f} MB, {free / 1e6:,.2f} MB free; found "
            "before reading any file); the previous tables are unchanged. Free space or "
            "choose another --out-dir."
        )


def bad_text(table: pa.Table) -> str | None:
    """What is wrong with the text of ``table`` (a value that is not UTF-8); None when nothing.

    Validating every value is a pass over the strings in memory (20 ms for 5 million paths).
    """
    for name, column in zip(table.column_names, table.columns, strict=True):
        try:
            column.validate(full=True)
        except pa.ArrowInvalid as exc:
            return f"column {name!r} holds a value that is not UTF-8 ({exc})"
    return None
