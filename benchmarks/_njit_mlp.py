"""The W3 training step hand-written as one ``@njit(cache=True)`` function.

The W6 baseline: what a cold Numba compile and a warm Numba cache cost for the
same step when written by hand. In a file of its own so that Numba can cache it.
"""
import numba
import numpy as np


@numba.njit(cache=True)
def _step(x, labels, W0, b0, W1, b1, W2, b2, lr):
    n = x.shape[0]
    h1 = np.dot(x, W0) + b0
    a1 = np.maximum(h1, np.float32(0))
    h2 = np.dot(a1, W1) + b1
    a2 = np.maximum(h2, np.float32(0))
    z = np.dot(a2, W2) + b2
    dz = np.empty_like(z)
    loss = 0.0
    for i in range(n):
        m = z[i].max()
        s = 0.0
        for j in range(z.shape[1]):
            dz[i, j] = np.exp(z[i, j] - m)
            s += dz[i, j]
        loss += np.log(s) + m - z[i, labels[i]]
        for j in range(z.shape[1]):
            dz[i, j] = dz[i, j] / s / n
        dz[i, labels[i]] -= np.float32(1.0 / n)
    gW2 = np.dot(a2.T.copy(), dz)
    gb2 = dz.sum(axis=0)
    da2 = np.dot(dz, W2.T.copy()) * (h2 > 0)
    gW1 = np.dot(a1.T.copy(), da2)
    gb1 = da2.sum(axis=0)
    da1 = np.dot(da2, W1.T.copy()) * (h1 > 0)
    gW0 = np.dot(x.T.copy(), da1)
    gb0 = da1.sum(axis=0)
    W0 -= lr * gW0
    b0 -= lr * gb0
    W1 -= lr * gW1
    b1 -= lr * gb1
    W2 -= lr * gW2
    b2 -= lr * gb2
    return loss / n


class NjitStep:
    def __init__(self, weights):
        self.weights = [np.ascontiguousarray(w) for w in weights]
        self.lr = np.float32(0.01)

    def __call__(self, x, labels):
        return _step(x, labels, *self.weights, self.lr)
