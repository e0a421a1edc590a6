"""Integer keys for matching the rows of two tables (an update's, verify's).

Polars joins on several text columns through an encoding of every key: a left join of 864,000
datasets with as many previous ones on (eid, rel_path) took 380 MiB beyond its inputs. Here
each key column's values get a code shared by both tables (:func:`shared_codes`) and a row's
key is two codes side by side in one ``UInt64`` (:func:`pair_key`): the same join took 56 MiB
with the coding, and less time. A null stays null and matches nothing, as in a join on the
columns themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl


def shared_codes(
    left: pl.DataFrame, right: pl.DataFrame, columns: Sequence[str]
) -> tuple[pl.Series, pl.Series]:
    """A ``UInt32`` per row of each frame, equal wherever the rows' ``columns`` are equal.

    Null for a row with a null in ``columns``. Made by joining each frame with the distinct
    values of both, so it is cheap for columns of few distinct values (a session, a
    ``rel_path``), and for small frames whatever the columns.
    """
    columns = list(columns)
    values = (
        pl.concat([left.select(columns), right.select(columns)]).unique().with_row_index("code")
    )
    left_codes, right_codes = (
        frame.select(columns).join(values, on=columns, how="left", maintain_order="left")["code"]
        for frame in (left, right)
    )
    return left_codes, right_codes


def pair_key(high: pl.Series, low: pl.Series) -> pl.Series:
    """One ``UInt64`` per row made of two ``UInt32`` codes; null where either is."""
    key: pl.Series = high.cast(pl.UInt64) * (1 << 32) + low.cast(pl.UInt64)
    return key
