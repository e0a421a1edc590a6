"""Plain helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import warnings
from typing import Any

import alfcache


def index_quietly(
    root: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, **kwargs: Any
) -> alfcache.IndexReport:
    """``alfcache.index`` with its RuntimeWarnings silenced (tests that check warnings do so
    directly)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return alfcache.index(root, out, **kwargs)
