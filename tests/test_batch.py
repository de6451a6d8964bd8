"""The exit code of several builds: the most serious of theirs."""

from __future__ import annotations

import pytest

from compiler_kit.batch import worst_exit


@pytest.mark.parametrize(
    "codes, expected",
    [
        ([0, 0], 0),
        ([0, 3], 3),
        ([3, 4], 4),
        ([4, 2, 3], 2),
        ([2, 1], 1),
        ([0, -9], 1),  # killed by a signal: no verdict, as bad as a crash
        ([1, 130], 130),
        ([], 0),
    ],
)
def test_worst_exit(codes: list[int], expected: int) -> None:
    assert worst_exit(codes) == expected
