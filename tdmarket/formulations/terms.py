"""Sparse triplet accumulation for row blocks (vectorised: whole index arrays per call)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class Terms:
    """Accumulates coefficients of a block of `n_rows` rows as (row, col, value) arrays."""

    def __init__(self, n_rows: int):
        self.n_rows = int(n_rows)
        self._r: list[np.ndarray] = []
        self._c: list[np.ndarray] = []
        self._v: list[np.ndarray] = []

    def add(self, rows, cols, vals=1.0) -> Terms:
        rows = np.asarray(rows, dtype=np.int64).ravel()
        cols = np.asarray(cols, dtype=np.int64).ravel()
        rows, cols = np.broadcast_arrays(rows, cols)
        vals = np.broadcast_to(np.asarray(vals, float).ravel() if np.ndim(vals) else float(vals), rows.shape)
        self._r.append(rows.copy())
        self._c.append(cols.copy())
        self._v.append(np.array(vals, dtype=float))
        return self

    def matrix(self, n_cols: int) -> sp.coo_matrix:
        if not self._r:
            return sp.coo_matrix((self.n_rows, n_cols))
        r, c, v = (np.concatenate(a) for a in (self._r, self._c, self._v))
        keep = v != 0
        return sp.coo_matrix((v[keep], (r[keep], c[keep])), shape=(self.n_rows, n_cols))


def grid(start: int, n: int, T: int) -> np.ndarray:
    """(n, T) variable indices of an element-major block starting at `start`."""
    return start + np.arange(n * T).reshape(n, T)
