"""Deterministic ids: the column-at-a-time UUID v3 equals ``uuid.uuid3`` row by row."""

from __future__ import annotations

import random
import re
import uuid

import pyarrow as pa
import pytest

import alfcache
from alfcache._alf.ids import NAMESPACE, uuid3_strings

CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-3[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

FIXED_NAMES: list[str] = [
    "",
    "a",
    "lab/Subjects/s1/2021-01-01/001",
    "s1/2021-01-01/001",
    "lab/Subjects/s1/2021-01-01/001/alf/probe00/#2024-05-06#/spikes.times.npy",
    "ünïcode/2021-01-01/001",
    "中文/2021-01-01/001/alf/中文.times.npy",
    "emoji 🐭/2021-01-01/001",
    "tab\tand\nnewline",
    "x" * 10_000,
]


def _random_names(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcXYZ019_-./# " + "éü中🐭" + "\u0000\u00ff\u07ff\u0800\uffff"
    names = []
    for _ in range(n):
        length = rng.choice([0, 1, 2, 5, 20, 60, 200])
        names.append("".join(rng.choice(alphabet) for _ in range(length)))
    return names


def _expected(names: list[str]) -> list[str]:
    return [str(uuid.uuid3(NAMESPACE, name)) for name in names]


def test_namespace_is_exported_and_fixed() -> None:
    assert alfcache.NAMESPACE is NAMESPACE
    assert isinstance(NAMESPACE, uuid.UUID)
    # The namespace is part of the id format: changing it changes every id ever written.
    assert str(NAMESPACE) == "2a6e3c58-8e0a-4b1f-9d36-6c1f0b5a1c3e"


def test_fixed_names_equal_uuid3() -> None:
    got = uuid3_strings(FIXED_NAMES)
    assert isinstance(got, pa.Array)
    assert pa.types.is_string(got.type) or pa.types.is_large_string(got.type)
    assert got.null_count == 0
    assert got.to_pylist() == _expected(FIXED_NAMES)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Written out once from ``uuid.uuid3(NAMESPACE, name)`` with the standard library;
        # guards against a drift of the namespace or of the text encoding.
        ("lab/Subjects/s1/2021-01-01/001", "1e2b0172-4c51-32d0-afb1-7736fd4619f3"),
        ("", "5d534ba4-3e6c-3802-8247-9f184a0f8dc5"),
        ("ü", "8446fcb8-87ca-30c3-a3de-6ced3f89b853"),
    ],
    ids=repr,
)
def test_known_values(name: str, expected: str) -> None:
    assert uuid3_strings([name]).to_pylist() == [expected]


@pytest.mark.parametrize("seed", [0, 1])
def test_random_names_equal_uuid3(seed: int) -> None:
    names = _random_names(3000, seed)
    got = uuid3_strings(names).to_pylist()
    assert len(got) == len(names)
    assert got == _expected(names)


def test_version_variant_and_case() -> None:
    names = _random_names(2000, 2) + FIXED_NAMES
    for text in uuid3_strings(names).to_pylist():
        assert CANONICAL.fullmatch(text), text
        parsed = uuid.UUID(text)
        assert parsed.version == 3
        assert parsed.variant == uuid.RFC_4122
        assert text == text.lower() == str(parsed)


def test_distinct_names_give_distinct_ids() -> None:
    names = sorted(set(_random_names(3000, 3)))
    assert len(set(uuid3_strings(names).to_pylist())) == len(names)


def test_order_and_duplicates_preserved() -> None:
    names = ["b", "a", "b", "", "a"]
    got = uuid3_strings(names).to_pylist()
    assert got == _expected(names)
    assert got[0] == got[2] and got[1] == got[4] and got[0] != got[1]


def test_empty_input() -> None:
    got = uuid3_strings([])
    assert len(got) == 0
    assert got.to_pylist() == []


def test_deterministic_across_calls() -> None:
    names = _random_names(500, 4)
    assert uuid3_strings(names).to_pylist() == uuid3_strings(list(names)).to_pylist()
