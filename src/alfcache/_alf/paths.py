"""A session's ALF folder from its parts: ``lab/Subjects/subject/date/number``.

One rule, in two forms: :func:`session_folder` for Python values and
:func:`session_folder_expr` for the same folder as a Polars expression over a frame's ``lab``,
``subject`` and ``date`` columns. ONE-api rebuilds a session's folder this way from its row
(``one.alf.path.session_path_parts`` in reverse), zero-padding the number to three digits
(:func:`padded`); the folder as written on disk keeps the number as written.

The scan workers import :func:`session_folder` (they hash each row's id from it), and must not
pay for Polars: it is imported only by the functions that build expressions.
"""

from __future__ import annotations

from numbers import Integral
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


def session_folder(lab: str | None, subject: str, date: object, number: Integral | str) -> str:
    """The session folder ``lab/Subjects/subject/date/number``, without ``lab/Subjects`` when
    ``lab`` is empty or None.

    ``number`` is written as given when a string, zero-padded to three digits when an integer;
    ``date`` as ``str(date)`` (``YYYY-MM-DD`` for a ``datetime.date``).
    """
    head = f"{lab}/Subjects/" if lab else ""
    if isinstance(number, Integral):
        number = f"{int(number):03d}"
    return f"{head}{subject}/{date}/{number}"


def padded(number: pl.Expr) -> pl.Expr:
    """A session number as ONE-api writes it in a folder name: zero-padded to three digits."""
    import polars as pl

    return number.cast(pl.String).str.zfill(3)


def session_folder_expr(number: pl.Expr) -> pl.Expr:
    """:func:`session_folder` of each row of a frame with ``lab`` ('' for none), ``subject``
    and ``date`` columns, and the folder's ``number`` (text, e.g. :func:`padded`)."""
    import polars as pl

    lab = pl.when(pl.col("lab") != "").then(pl.col("lab") + "/Subjects/").otherwise(pl.lit(""))
    return pl.concat_str(
        [lab, pl.col("subject"), pl.lit("/"), pl.col("date").cast(pl.String), pl.lit("/"), number]
    )
