"""Paths and counts as messages show them.

A user types ``alfcache index ../data`` or ``--out-dir x/..``; a message that repeats the text
typed (or a ``..`` inside it) says little once read in a log far from the shell it ran in.
"""

from __future__ import annotations

import os


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` as a message shows it: absolute, ``~``, ``..`` and links resolved.

    Parameters
    ----------
    path : str or os.PathLike
        A path as given by the user or built from one; it need not exist.

    Returns
    -------
    str
        The resolved path (``os.path.realpath``, which never raises on a missing path or a
        link loop).
    """
    return os.path.realpath(os.path.expanduser(os.fspath(path)))


def plural(n: int, word: str, many: str | None = None) -> str:
    """``n`` and ``word``, in the plural unless ``n`` is 1: ``1 session``, ``2 sessions``.

    ``many`` is the plural where it is not ``word`` + ``s`` (``entry``, ``entries``).
    """
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"
