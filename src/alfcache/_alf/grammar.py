"""The ALF grammar: which folders are sessions and which file names are datasets.

The patterns are those of ``one.alf.spec`` (ONE-api). Two deliberate refinements, both
documented in the README:

* session folders are matched *whole folder name by whole folder name*; the reference searches
  its pattern in the joined path string, so ``my-lab/Subjects/...`` yields the lab ``lab``;
* a file is a dataset only when its *name* is valid ALF (ONE-api 3.0.0 on PyPI takes any name
  with two dots).

This module is the bottom of the import graph: it imports nothing from the package.
"""

from __future__ import annotations

import datetime
import re
from typing import NamedTuple

LAB = r"\w+"
SUBJECT = r"[\w.-]+"
DATE = r"\d{4}-\d{2}-\d{2}"
NUMBER = r"\d{1,3}"

# ONE-api's FILE_SPEC, applied with ``re.match`` exactly as ``one.alf.spec.is_valid`` does.
_DATASET_NAME = re.compile(
    r"_?(?P<namespace>(?<=_)[a-zA-Z0-9]+)?_?(?P<object>\w+)"
    r"\.(?P<attribute>(?:_[a-z]+_)?[a-zA-Z0-9]+(?:_times(?=[_.])|_intervals(?=[_.]))?)"
    r"(?:_(?P<timescale>\w+))?(?:\.(?P<extra>[.\w-]+))*\.(?P<extension>\w+)$"
)
_LAB = re.compile(LAB)
_SUBJECT = re.compile(SUBJECT)
_DATE = re.compile(DATE)
_NUMBER = re.compile(NUMBER)
_LONG_NUMBER = re.compile(r"\d{4,}")


class SessionParts(NamedTuple):
    """The parsed parts of a session folder path."""

    lab: str
    """The lab, '' when the folder is not below ``<lab>/Subjects``."""
    subject: str
    date: str
    """The date as written, ``YYYY-MM-DD``; see :func:`is_real_date`."""
    number: str
    """The number as written ('1', '01' or '001')."""

    @property
    def path_id(self) -> str:
        """The reference's path id: ``lab/subject/date/number`` (no ``Subjects``)."""
        head = f"{self.lab}/" if self.lab else ""
        return f"{head}{self.subject}/{self.date}/{self.number}"


def is_dataset_name(name: str) -> bool:
    """Return True when a file name is a valid ALF dataset name (``one.alf.spec.is_valid``)."""
    return _DATASET_NAME.match(name) is not None


def session_parts(names: tuple[str, ...] | list[str]) -> SessionParts | None:
    """Parse the trailing folder names of a path as a session folder.

    Parameters
    ----------
    names : sequence of str
        Folder names from the top of the path down to the candidate folder; only the last five
        are looked at.

    Returns
    -------
    SessionParts or None
        The parsed parts, or None when the last folders do not form ``subject/date/number``.
    """
    if len(names) < 3:
        return None
    subject, date, number = names[-3], names[-2], names[-1]
    if not (_NUMBER.fullmatch(number) and _DATE.fullmatch(date) and _SUBJECT.fullmatch(subject)):
        return None
    lab = ""
    if len(names) >= 5 and names[-4] == "Subjects" and _LAB.fullmatch(names[-5]):
        lab = names[-5]
    return SessionParts(lab, subject, date, number)


def has_long_number(names: tuple[str, ...] | list[str]) -> bool:
    """Return True when the last folders read ``subject/date/number`` but the number has 4+ digits.

    Such a folder (``s1/2021-01-01/0001``) is not a session for ONE-api either; the scanner
    reports it, because its files are otherwise dropped without a word.
    """
    return (
        len(names) >= 3
        and _LONG_NUMBER.fullmatch(names[-1]) is not None
        and _DATE.fullmatch(names[-2]) is not None
        and _SUBJECT.fullmatch(names[-3]) is not None
    )


def is_session_path(path: str) -> bool:
    """Return True when a POSIX path ends in a session folder (cf. ``spec.is_session_path``)."""
    return session_parts(path.strip("/").split("/")) is not None


def is_real_date(date: str) -> bool:
    """Return True when an ISO date string names a day that exists (2021-02-30 does not)."""
    try:
        datetime.date.fromisoformat(date)
    except ValueError:
        return False
    return True


def left_out_prefixes(names: tuple[str, ...] | list[str]) -> frozenset[str] | None:
    """The ALF paths an entry the walk left out could hold, for carrying its rows over.

    Parameters
    ----------
    names : sequence of str
        The absolute path of a folder or file the walk could not list or did not follow.

    Returns
    -------
    frozenset of str or None
        Every tail of the path, its session number zero-padded as in a table's ALF path
        (``lab/Subjects/subject/date/NNN/collection/...``): a row whose ALF path, with or
        without ``lab/Subjects``, starts with one of them may lie below the entry. None when the
        entry is a plain folder (not at a lab, subject, date or session level, nor inside a
        session): it may hold any session, so no row is ruled out.
    """
    names = list(names)
    for i in range(2, len(names)):
        if _NUMBER.fullmatch(names[i]) and _DATE.fullmatch(names[i - 1]):
            names[i] = names[i].zfill(3)
    inside_session = any(session_parts(names[:end]) for end in range(3, len(names) + 1))
    structural = (
        inside_session
        or names[-1:] == ["Subjects"]
        or names[-2:-1] == ["Subjects"]
        or (bool(names) and _DATE.fullmatch(names[-1]) is not None)
        or (bool(names) and is_dataset_name(names[-1]))
    )
    if not structural:
        return None
    return frozenset("/".join(names[start:]) for start in range(len(names)))


def folder_to_index(found: str, alf_path: str, root: str) -> str | None:
    """The folder to index instead when the root cuts a session's ALF path in two.

    Parameters
    ----------
    found : str
        The absolute path of the session folder as found.
    alf_path : str
        Its ALF path as written on disk (``lab/Subjects/subject/date/number``, or without lab).
    root : str
        The indexed folder.

    Returns
    -------
    str or None
        The folder just above the ALF path when that lies above ``root`` (the root is a lab,
        ``Subjects``, subject, date or session folder, so ONE-api looks for the sessions one
        level too deep); None when the root is not the cause.
    """
    names, alf = found.split("/"), alf_path.split("/")
    if len(names) <= len(alf) or names[-len(alf) :] != alf:
        return None
    top = "/".join(names[: -len(alf)]) or "/"
    return top if len(top) < len(root) else None


_LOOSE_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")


def near_miss(names: tuple[str, ...] | list[str]) -> str | None:
    """Why a folder outside any session looks like, but is not, part of the ALF layout.

    Parameters
    ----------
    names : sequence of str
        Folder names from the top of the path down to the folder; it is not a session.

    Returns
    -------
    str or None
        A message for a date folder not written ``YYYY-MM-DD`` (``2024-1-5``) or a would-be
        session whose subject folder is not an ALF name (``KS 005``); None otherwise.
    """
    if not names:
        return None
    loose = _LOOSE_DATE.fullmatch(names[-1])
    if loose and not _DATE.fullmatch(names[-1]):
        year, month, day = loose.groups()
        return (
            f"{names[-1]} is not a date as ALF writes it (YYYY-MM-DD, e.g. "
            f"{year}-{int(month):02d}-{int(day):02d}); nothing below it is indexed"
        )
    if (
        len(names) >= 3
        and _NUMBER.fullmatch(names[-1])
        and _DATE.fullmatch(names[-2])
        and not _SUBJECT.fullmatch(names[-3])
    ):
        return (
            f"subject folder {names[-3]!r} is not an ALF subject name (letters, digits, "
            "'_', '.', '-'); not a session"
        )
    return None
