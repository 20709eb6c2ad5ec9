"""Exact subset-sum search for split and batch matching: every combination of candidates that sums to an amount,
within a bound on the work done, and saying so when the bound was reached (the caller then breaks, never picks).
Pure; standard library only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate


@dataclass(frozen=True)
class SubsetSearch:
    """`solutions`: index tuples into the searched amounts, each ascending, in a canonical order. `complete`:
    False when the search stopped at its limit (then `solutions` holds only those found before it)."""

    solutions: tuple[tuple[int, ...], ...]
    complete: bool
    visited: int


class _Stop(Exception):
    pass


def exact_subsets(target: int, amounts: Sequence[int], *, max_size: int, limit: int,
                  min_size: int = 2) -> SubsetSearch:
    """Every subset of `amounts` (by position) of `min_size`..`max_size` elements whose sum is exactly `target`.

    Amounts must be positive (a zero part adds nothing and would only duplicate solutions). A depth-first search
    over the amounts in ascending order, pruned exactly: a branch stops when the next amount exceeds what is left,
    or when the largest amounts that still fit in the size bound cannot reach it. `limit` bounds the number of
    search nodes visited (deterministic for the same input, whatever the machine): over it, `complete` is False.
    """
    if any(a <= 0 for a in amounts):
        raise ValueError("amounts must be positive")
    order = sorted(range(len(amounts)), key=lambda i: (amounts[i], i))
    values = [amounts[i] for i in order]
    n = len(values)
    prefix = [0, *accumulate(values)]
    found: list[tuple[int, ...]] = []
    visited = 0

    def largest(start: int, k: int) -> int:
        """Sum of the k largest values at positions >= start."""
        return prefix[n] - prefix[max(n - k, start)]

    def search(start: int, remaining: int, chosen: list[int]) -> None:
        nonlocal visited
        size = len(chosen) + 1
        for j in range(start, n):
            visited += 1
            if visited > limit:
                raise _Stop
            value = values[j]
            if value > remaining:
                break  # ascending: every later value is too large as well
            left = remaining - value
            if left == 0:
                if size >= min_size:
                    found.append(tuple(sorted(order[i] for i in (*chosen, j))))
                continue
            if size == max_size or largest(j + 1, max_size - size) < left:
                continue
            search(j + 1, left, [*chosen, j])

    complete = True
    if target > 0 and max_size >= min_size:
        try:
            search(0, target, [])
        except _Stop:
            complete = False
    return SubsetSearch(tuple(sorted(found)), complete, visited)
