"""The platform's cross-border marginal prices at the flows it publishes (docs/model.md §12.4).

A member's clearing at fixed flows g* prices its border nodes with *a* subgradient of its value V_m: where V_m has
a kink at g*, the two members at the ends of an uncongested interconnector can pick subgradients that do not match
(two prices, a rent on a free line).  The platform knows more than either member: every cut it received.  Its
flows are ε-optimal for  min Σ_m V_m(g)  s.t.  −ATCᵇ <= g <= ATCᶠ,  so there are ε_m-subgradients σ_m of the V_m
and ν in the ε_0-normal cone of the capacity box with  Σ_m σ_m + ν = 0  and  Σ ε_m + ε_0 <= ε.  The prices are
read from the σ_m with the least such ε, found by one small LP over the cuts:

    min  Σ_k μ_k e_k + Σ_j ν⁺_j (ATCᶠ_j − g*_j) + ν⁻_j (g*_j + ATCᵇ_j)
    s.t. Σ_{k of m} μ_k = 1  for every member m,     Σ_k μ_k s_k + ν⁺ − ν⁻ = 0,     μ, ν⁺, ν⁻ >= 0,

where cut k (of member m, slope s_k) lies e_k = V_m(g*) − cut_k(g*) below V_m at g*.  σ_m = Σ_{k of m} μ_k s_k is
then within Σ μ_k e_k of a subgradient of V_m (exactly one where the chosen cuts touch V_m at g*), and the
prices at both ends of an interconnector are equal unless its ν is non-zero, which costs ν times its distance
to the capacity: a free interconnector gets one price unless its flow is within the platform's gap of optimal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..decomposition.exchange import CutPool
from ..formulations.program import Program
from ..model.federation import Federation
from ..solvers import SolveStatus, solve
from .common import border_buses


@dataclass
class PlatformPrices:
    """Per member, the prices at its border nodes (len(border_buses(m)), T) €/MWh, and ε (€): how far from optimal
    the flows are for those prices (Σ of the cuts' distances below the values and the capacity terms)."""

    prices: list[np.ndarray]
    epsilon_eur: float


def platform_prices(
    fed: Federation, pool: CutPool, flows_mw: np.ndarray, values_eur: np.ndarray, period_hours: float
) -> PlatformPrices | None:
    """The LP of the module docstring over every cut in `pool` (member m's cuts on the flattened (K·T) flows);
    `values_eur` (M,) are the members' values V_m at `flows_mw` (K, T).  None if a member has no cut or the LP
    is not solved (the caller keeps the members' own prices)."""
    ic = fed.interconnectors
    K, T, M = len(ic), fed.n_periods, fed.n_members
    g = np.asarray(flows_mw, float).ravel()
    if K == 0 or len(pool) == 0 or not np.isin(np.arange(M), pool.area).all():
        return None
    n_cut, KT = len(pool), K * T
    at_g = pool.values + np.einsum("kj,kj->k", pool.slopes, g[None, :] - pool.points)
    below = np.maximum(np.asarray(values_eur, float)[pool.area] - at_g, 0.0)  # € (round-off can make it negative)
    forward = np.maximum(ic.atc_forward_mw.ravel() - g, 0.0)  # MW of room in each direction
    backward = np.maximum(g + ic.atc_backward_mw.ravel(), 0.0)
    prog = Program()
    mu = prog.add_variables("cut_weight", n_cut, 0.0, np.inf, below).index
    nu_f = prog.add_variables("congestion_forward", KT, 0.0, np.inf, forward).index
    nu_b = prog.add_variables("congestion_backward", KT, 0.0, np.inf, backward).index
    convex = sp.csr_matrix((np.ones(n_cut), (pool.area, mu)), shape=(M, prog.n))
    prog.add_rows("one_subgradient_per_member", convex, np.ones(M), np.ones(M))
    cut_j, cut_k = np.nonzero(pool.slopes.T)  # (interconnector·period, cut) of every non-zero slope
    j = np.arange(KT)
    balance = sp.csr_matrix(
        (
            np.concatenate([pool.slopes.T[cut_j, cut_k], np.ones(KT), -np.ones(KT)]),
            (np.concatenate([cut_j, j, j]), np.concatenate([mu[cut_k], nu_f, nu_b])),
        ),
        shape=(KT, prog.n),
    )
    prog.add_rows("platform_stationarity", balance, np.zeros(KT), np.zeros(KT))
    sol = solve(prog)
    if sol.status is not SolveStatus.OPTIMAL:
        return None
    weights = np.maximum(sol.x[mu], 0.0)
    flat = np.zeros((M, KT))
    np.add.at(flat, pool.area, weights[:, None] * pool.slopes)
    sigma = flat.reshape(M, K, T)
    prices = []
    for m in range(M):
        bus = border_buses(fed, m)
        price = np.full((len(bus), T), np.nan)
        to = np.flatnonzero(ic.to_member == m)  # a flow injects at its to node: ∂V/∂g = −Δ·λ
        price[np.searchsorted(bus, ic.to_bus[to])] = -sigma[m, to] / period_hours
        fr = np.flatnonzero(ic.from_member == m)  # and withdraws at its from node: ∂V/∂g = Δ·λ
        price[np.searchsorted(bus, ic.from_bus[fr])] = sigma[m, fr] / period_hours
        prices.append(price)
    return PlatformPrices(prices, float(sol.objective))
