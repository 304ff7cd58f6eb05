"""Mini-batches for training loops: ``jg.data.batches``."""
from __future__ import annotations

import numpy as np

__all__ = ["batches", "Batches"]


class Batches:
    """A re-iterable of aligned mini-batches; each iteration is one epoch.

    Every row appears exactly once per epoch.  With ``shuffle`` the rows are
    permuted anew each epoch; the permutations come from ``seed`` and the epoch
    number, so the same seed gives the same sequence of epochs (and a fresh
    ``Batches`` restarts it).
    """

    def __init__(self, arrays, batch_size: int, shuffle: bool = False, seed=None,
                 drop_last: bool = False, shard=None):
        self._single = isinstance(arrays, np.ndarray) or not isinstance(arrays, (tuple, list))
        self.arrays = [np.asarray(arrays)] if self._single else [np.asarray(a) for a in arrays]
        if not self.arrays:
            raise ValueError("batches: no arrays given")
        for i, a in enumerate(self.arrays):
            if a.ndim == 0:
                raise ValueError(f"batches: array {i} is a scalar; every array needs a leading row axis")
        rows = [len(a) for a in self.arrays]
        if len(set(rows)) != 1:
            raise ValueError(f"batches: arrays are not aligned: they have {rows} rows")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batches: batch_size must be a positive int, got {batch_size!r}")
        self.rows, self.batch_size = rows[0], int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        if shard is None:
            shard = (0, 1)
        rank, size = shard
        if not (isinstance(size, (int, np.integer)) and size >= 1 and 0 <= rank < size):
            raise ValueError(f"batches: shard must be (rank, size) with 0 <= rank < size, got {shard!r}")
        if shuffle and seed is None and size > 1:
            raise ValueError("batches: sharded shuffling needs a seed, so that every rank draws "
                             "the same permutation")
        self.shard = (int(rank), int(size))
        self._seed = np.random.SeedSequence(seed).entropy if seed is None else seed
        self._epoch = 0

    def __len__(self) -> int:
        """The number of batches per epoch."""
        full, rest = divmod(self.rows, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self):
        order = None
        if self.shuffle:
            order = np.random.default_rng([self._seed, self._epoch]).permutation(self.rows)
        self._epoch += 1
        rank, size = self.shard
        for k in range(len(self)):
            rows = np.arange(k * self.batch_size, min((k + 1) * self.batch_size, self.rows))
            rows = np.array_split(rows if order is None else order[rows], size)[rank]
            picked = [a[rows] for a in self.arrays]
            yield picked[0] if self._single else tuple(picked)


def batches(arrays, batch_size: int, shuffle: bool = False, seed=None, drop_last: bool = False,
            shard=None) -> Batches:
    """Aligned mini-batches of ``arrays`` (one array, or a tuple/list of arrays with the
    same number of rows), ``batch_size`` rows at a time (the last batch may be
    smaller unless ``drop_last``).  ``shard=(rank, size)``: this rank's part of every
    global batch (``np.array_split`` of its rows), for data-parallel training.

    >>> X, Y = np.arange(10).reshape(5, 2), np.arange(5)
    >>> [yb.tolist() for _, yb in batches((X, Y), batch_size=2)]
    [[0, 1], [2, 3], [4]]
    """
    return Batches(arrays, batch_size, shuffle, seed, drop_last, shard)
