"""Small array helpers shared by the readers, the model checks and the result post-processing."""

from __future__ import annotations

import numpy as np


def lookup(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `values` in the sorted, unique `keys`; returns (pos, found) (pos is clipped where not found)."""
    pos = np.searchsorted(keys, values)
    pos_c = np.clip(pos, 0, max(len(keys) - 1, 0))
    found = (pos < len(keys)) & (keys[pos_c] == values) if len(keys) else np.zeros(len(values), bool)
    return pos_c, found


def dense(rows, cols, values, shape: tuple[int, int], *, fill=np.nan, accumulate: bool = False) -> np.ndarray:
    """(row, col) table -> dense array of `shape`; `fill` where the table has no entry.

    `values` may be a scalar.  Without `accumulate` a repeated (row, col) keeps the last value; with it the
    values are summed onto `fill`.  The dtype is the common type of `fill` and `values` (e.g. bool for a
    `True`/`False` mask, float for `np.nan`)."""
    values = np.asarray(values)
    out = np.full(shape, fill, dtype=np.result_type(fill, values))
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    if accumulate:
        np.add.at(out, (rows, cols), values)
    else:
        out[rows, cols] = values
    return out


def node_period_array(inst, nodes, periods, values, *, fill=np.nan, accumulate: bool = False) -> np.ndarray:
    """(node id, period number) table, e.g. a results table's `node` and `period` columns -> (n_bus, T) array.

    Node ids are mapped with `Instance.bus_index` (KeyError for an unknown id) and period numbers by their
    position in `inst.periods`."""
    nodes = np.asarray(nodes)
    rows = inst.bus_index(nodes) if len(nodes) else np.zeros(0, np.int64)
    cols = np.searchsorted(inst.periods, np.asarray(periods))
    return dense(rows, cols, values, (len(inst.buses), inst.n_periods), fill=fill, accumulate=accumulate)
