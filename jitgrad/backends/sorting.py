"""The CPU target's ``argsort``: stable sorts of the rows of a (outer, n, inner) stack.

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

