"""The CPU target's ``argsort`` and ``tie_average`` over the rows of (outer, n, inner) stacks.

Each row (``x[o, :, q]``) is copied out, sorted by Numba's ``np.argsort(kind="mergesort")``
(stable, NaNs last, as NumPy's), and its indices written to ``out[o, :, q]``.  Descending is
the reversed stable sort of the reversed row: ties keep the lower index first, NaNs first.
"""
import numpy as np
from numba import njit


@njit(cache=True)
def _row(x, out, o, q, descending):
    n = x.shape[1]
    row = np.empty(n, x.dtype)
    for j in range(n):
        row[j] = x[o, n - 1 - j if descending else j, q]
    order = np.argsort(row, kind="mergesort")
    for j in range(n):
        out[o, j, q] = n - 1 - order[n - 1 - j] if descending else order[j]


@njit(cache=True)
def argsort_rows(x, out, descending):
    for o in range(x.shape[0]):
        for q in range(x.shape[2]):
            _row(x, out, o, q, descending)



@njit(cache=True)
def tie_average_rows(s, v, out):
    """out = v with each run of equal values of s (along the rows) averaged, as the reference
    ``jitgrad.ops.sort.tie_average_ref`` does it (a run whose v are all equal is kept)."""
    n = s.shape[1]
    for o in range(s.shape[0]):
        for q in range(s.shape[2]):
            start = 0
            while start < n:
                end = start + 1
                while end < n and s[o, end, q] == s[o, start, q]:
                    end += 1
                first = v[o, start, q]
                spread, unequal = first - first, False     # the value is unused until unequal
                for j in range(start + 1, end):
                    if v[o, j, q] != first:
                        spread = v[o, j, q] - first if not unequal else spread + (v[o, j, q] - first)
                        unequal = True
                for j in range(start, end):
                    out[o, j, q] = first + spread / (end - start) if unequal else v[o, j, q]
                start = end
