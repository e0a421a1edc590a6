"""The records of a run: ``Skip`` and the registry of every reason code it may carry.

A leaf module (the standard library only): the walk, the reading of files, the tables and the
maintenance verbs all write or test reasons, and each takes them from here, so a reason string
lives in one place. docs/rules.md's "Reason codes" table lists exactly these codes
(``tests/test_reasons.py::test_the_rules_table_lists_exactly_the_registry``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

import pyarrow as pa

SKIP = "skip"
"""Kind of a reason whose entry was not indexed."""

NOTICE = "notice"
"""Kind of a reason whose entry was indexed but is worth a look."""


class Reason(str, Enum):
    """A reason code: its value is the string the report shows (``--json``, stderr, warnings).

    A ``str``, so records compare, sort and serialise as the plain codes they were before;
    ``kind`` is ``SKIP`` or ``NOTICE`` and ``meaning`` says in one line what it reports.
    """

    kind: str
    meaning: str

    def __new__(cls, code: str, kind: str, meaning: str) -> Reason:
        member = str.__new__(cls, code)
        member._value_ = code
        member.kind = kind
        member.meaning = meaning
        return member

    # As a plain str everywhere it is shown: Enum's own str() and format() would give
    # "Reason.VANISHED" on some Python versions.
    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    INVALID_DATE = "invalid_date", SKIP, "a session folder whose date is not a calendar date"
    INVALID_NUMBER = "invalid_number", SKIP, "a session number of four or more digits"
    SESSION_CLASH = "session_clash", SKIP, "a folder that is the same session as another one"
    NESTED_SESSION = "nested_session", NOTICE, "a session folder below another session folder"
    EMPTY_FILE = "empty_file", NOTICE, "a dataset file of 0 bytes"
    NOT_UTF8 = "not_utf8", SKIP, "a file or folder name that is not valid UTF-8"
    PERMISSION_DENIED = "permission_denied", SKIP, "a folder this user may not list"
    UNREADABLE = (
        "unreadable",
        SKIP,
        "a folder, file or link that cannot be listed, stat'ed or resolved "
        "(a notice when hashing: indexed without a digest)",
    )
    VANISHED = "vanished", SKIP, "an entry deleted between its listing and its stat or reading"
    CHANGING = "changing", NOTICE, "a file that changed while it was read: indexed without digest"
    BROKEN_SYMLINK = "broken_symlink", SKIP, "a link whose target does not exist"
    SYMLINK_LOOP = "symlink_loop", SKIP, "a link that resolves to itself through other links"
    SYMLINK_NOT_FOLLOWED = "symlink_not_followed", SKIP, "a link to a folder, not followed"
    SYMLINK_REVISIT = (
        "symlink_revisit",
        SKIP,
        "a link to a folder that overlaps one already indexed",
    )
    SYMLINK_OUTSIDE_ROOT = (
        "symlink_outside_root",
        NOTICE,
        "a link to a file outside the root: indexed, never read for a digest",
    )
    NOT_REGULAR_FILE = "not_regular_file", SKIP, "a FIFO, socket or device named like a dataset"
    NEAR_MISS = "near_miss", SKIP, "a folder or file that looks like ALF but is not"
    NOT_LOADABLE = (
        "not_loadable",
        NOTICE,
        "a session in another folder than the one ONE-api rebuilds from its row",
    )


NOTICE_REASONS = frozenset(r for r in Reason if r.kind == NOTICE)
"""Reasons of records about entries that *were* indexed: reported as notices, not skips."""


class Skip(NamedTuple):
    """An entry the walk did not index, or indexed but worth a look (see NOTICE_REASONS)."""

    path: str
    reason: str
    message: str


SESSION_BATCH_SCHEMA = pa.schema(
    [
        ("session", pa.large_string()),
        ("lab", pa.large_string()),
        ("subject", pa.large_string()),
        ("date", pa.large_string()),
        ("number", pa.large_string()),
        ("num", pa.uint16()),
        ("id", pa.large_string()),
    ]
)
r"""One row per session folder; ``session`` is the folder's path relative to the root, ``number``
the folder name as written and ``num`` its value (Python's ``int`` reads any Unicode digits,
as the reference's ``\d`` admits them); ``id`` its UUID v3
(:func:`alfcache._walk.scan.session_id_name`), or null when ids are not hashed
(``hash_ids=False``: the assembler makes path ids)."""

DATASET_BATCH_SCHEMA = pa.schema(
    [
        ("session", pa.large_string()),
        ("rel_path", pa.large_string()),
        ("file_size", pa.uint64()),
        ("mtime_ns", pa.int64()),
        ("id", pa.large_string()),
    ]
)
"""One row per dataset file; ``rel_path`` is relative to the session folder and ``id`` is the
UUID v3 of ``{session's ALF path}/{rel_path}``, or null when ids are not hashed
(``hash_ids=False``: the assembler makes path ids). Files are read (and hashed) in a later phase,
see :mod:`alfcache._digest.read`.

The ids are made by the walk, in the workers, as rows are found, rather than by the main
process after it: a session's ALF path (:func:`alfcache._walk.scan.session_id_name`) depends
only on its own folder names, and the table builder keeps or drops sessions but never moves
one."""


@dataclass
class ScanResult:
    """What a worker hands back: Arrow batches plus structured skip records."""

    sessions: pa.RecordBatch
    datasets: pa.RecordBatch
    skipped: list[Skip] = field(default_factory=list)
    ignored: int = 0
    """Files inside sessions whose names are not ALF (``notes.txt``, ``.DS_Store``)."""
    links: list[str] = field(default_factory=list)
    """Links to folders met with ``follow_symlinks``, relative to the root: see plan_links."""
    listed: int = 0
    """Folders this walk listed: lets the report show where the walking was done."""
