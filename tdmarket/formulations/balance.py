"""Nodal balances (MODEL.md §3, §5): the triplet accumulator every block writes its injections into.

`Balance`: P rows for every modelled bus, Q rows for every modelled distribution bus, written as
injections − outflows = −(fixed injection).
"""

from __future__ import annotations

import numpy as np

from ..model.instance import Instance
from .terms import Terms


def modelled_buses(inst: Instance) -> np.ndarray:
    """Buses with balance rows: every own bus, plus the root of a child DSO hanging from a D-D edge (the
    parent models that edge and receives the child's export at the child root, MODEL.md §6.4)."""
    b, ar, br = inst.buses, inst.areas, inst.branches
    mask = ~b.is_boundary.copy()
    has = ar.interface >= 0
    iface = ar.interface[has]  # (index only real interfaces: an instance may have no branch at all)
    dd = has.copy()
    dd[has] = b.is_dist[br.f[iface]] & b.is_dist[br.t[iface]]
    root = np.where(has, ar.root_bus, 0)
    host = np.where(has, ar.host_bus, 0)
    coupling = dd & b.is_boundary[root] & ~b.is_boundary[host]
    mask[root[coupling]] = True
    return mask


class Balance:
    """Nodal balance rows: P for every modelled bus, Q for every modelled distribution bus, per period."""

    def __init__(self, inst: Instance):
        T = inst.n_periods
        own = modelled_buses(inst)
        self.T = T
        self.p_bus = np.flatnonzero(own)
        self.q_bus = np.flatnonzero(own & inst.buses.is_dist)
        n = len(inst.buses)
        self.p_row = np.full((n, T), -1, dtype=np.int64)
        self.p_row[self.p_bus] = np.arange(len(self.p_bus) * T).reshape(-1, T)
        self.q_row = np.full((n, T), -1, dtype=np.int64)
        self.q_row[self.q_bus] = np.arange(len(self.q_bus) * T).reshape(-1, T)
        self.P = Terms(len(self.p_bus) * T)
        self.Q = Terms(len(self.q_bus) * T)

    def add_p(self, bus, period, cols, coef) -> None:
        """Add coef·x[cols] to the P balance of (bus, period); entries at buses without a row are dropped."""
        rows = self.p_row[bus, period]
        keep = rows >= 0
        coef = np.broadcast_to(np.asarray(coef, float), np.shape(rows))
        self.P.add(rows[keep], np.asarray(cols)[keep], coef[keep])

    def add_q(self, bus, period, cols, coef) -> None:
        rows = self.q_row[bus, period]
        keep = rows >= 0
        coef = np.broadcast_to(np.asarray(coef, float), np.shape(rows))
        self.Q.add(rows[keep], np.asarray(cols)[keep], coef[keep])
