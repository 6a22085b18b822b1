"""Ipopt through CasADi for the exact AC program (`tdmarket.formulations.exact_ac`).

The nonlinear program is written from the program's sparse matrices in one vectorised pass: the linear rows are
one sparse product A·x, the cone rows one product s = b − G·x, and each cone block one reshape of s into a
dim × count matrix whose squared columns give s₀² − ‖s₁…‖² for all its cones at once.  CasADi's SX expressions
give Ipopt exact sparse first and second derivatives.  Ipopt is deterministic; its options are fixed here and it
prints nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..formulations.exact_ac import ExactACProgram

CASADI_HINT = "AC recovery needs casadi (it ships Ipopt), an optional dependency: pip install 'tdmarket[ac]'"

IPOPT_OPTIONS = {
    "ipopt.print_level": 0,
    "ipopt.sb": "yes",
    "ipopt.tol": 1e-8,
    "ipopt.constr_viol_tol": 1e-8,
    "ipopt.acceptable_tol": 1e-6,
    "ipopt.max_iter": 3000,
    "ipopt.linear_solver": "mumps",
    # from the SOC warm start a tiny fixed barrier and no gradient scaling of the NLP (the €-objective with 1e4
    # €/MWh slack penalties made Ipopt's scaling slow it down): 12-26 iterations on italy-693 and italy-652 areas
    # (D ratings x0.4) where the adaptive strategy took 32-150, optima equal to 1e-7 relative
    "ipopt.mu_strategy": "monotone",
    "ipopt.mu_init": 1e-8,
    "ipopt.nlp_scaling_method": "none",
    "ipopt.bound_push": 1e-8,  # keep the SOC warm start where it is (interior-point default pushes it inwards)
    "ipopt.bound_frac": 1e-8,
    "print_time": False,
}


def load_casadi():
    """The casadi module, or an ImportError with the install hint."""
    try:
        import casadi
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(CASADI_HINT) from exc
    return casadi


@dataclass
class NLPSolution:
    """What Ipopt returned: `converged` for Solve_Succeeded / Solved_To_Acceptable_Level; objective in the
    program's unit (€, with c0)."""

    converged: bool
    status: str
    x: np.ndarray
    objective: float
    iterations: int
    solve_time_s: float
    build_time_s: float


def _sparse(ca, M) -> object:
    M = sp.csc_matrix(M)
    M.sort_indices()
    pattern = ca.Sparsity(
        M.shape[0], M.shape[1], M.indptr.astype(np.int64).tolist(), M.indices.astype(np.int64).tolist()
    )
    return ca.DM(pattern, M.data.astype(float))


_SOLVERS: OrderedDict[str, object] = OrderedDict()  # CasADi Ipopt functions by program structure (see `_solver`)
_SOLVER_CACHE_SIZE = 64


def _structure_key(eprog: ExactACProgram) -> str:
    """A digest of everything the CasADi function depends on: the row and cone matrices, cone right-hand side,
    costs and the cone blocks.  Bounds are not in it: fixing binaries or the exchange only moves bounds, so an
    area's program has the same function whatever its fixings."""
    p = eprog.prog
    h = hashlib.sha1()
    for M in (p.A, p.cone_A):
        if M is None:
            continue
        M = sp.csr_matrix(M)
        M.sort_indices()
        h.update(repr(M.shape).encode())
        for arr in (M.indptr, M.indices, M.data):
            h.update(np.ascontiguousarray(arr).tobytes())
    for arr in (p.cone_b, p.c):
        h.update(np.ascontiguousarray(np.asarray(arr, float)).tobytes())
    h.update(repr((p.n, p.m, p.k, float(p.c0), [(c.start, c.count, c.dim, c.equality) for c in eprog.cones])).encode())
    return h.hexdigest()


def _solver(ca, eprog: ExactACProgram):
    """The CasADi Ipopt function of the program (built once per program structure and process, then reused: a DSO
    agent or a worker re-dispatching the same area again skips the symbolic build and derivative generation)."""
    key = _structure_key(eprog)
    solver = _SOLVERS.get(key)
    if solver is not None:
        _SOLVERS.move_to_end(key)
        return solver
    p = eprog.prog
    x = ca.SX.sym("x", p.n)
    g = []
    if p.m:
        g.append(ca.mtimes(_sparse(ca, p.A), x))
    if p.k:
        s = ca.DM(p.cone_b) - ca.mtimes(_sparse(ca, p.cone_A), x)
        for c in eprog.cones:
            block = ca.reshape(s[c.start : c.start + c.dim * c.count], c.dim, c.count)
            lead = block[0, :].T
            g.append(lead**2 - ca.sum1(block[1:, :] ** 2).T)
            if not c.equality:
                g.append(lead)
    objective = ca.dot(ca.DM(p.c), x) + p.c0
    nlp = {"x": x, "f": objective, "g": ca.vertcat(*g) if g else ca.SX(0, 1)}
    solver = ca.nlpsol("exact_ac", "ipopt", nlp, IPOPT_OPTIONS)
    _SOLVERS[key] = solver
    while len(_SOLVERS) > _SOLVER_CACHE_SIZE:
        _SOLVERS.popitem(last=False)
    return solver


def _constraint_bounds(eprog: ExactACProgram) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the constraint vector of `_solver` (rows, then per cone block s₀² − ‖s₁…‖² and, for an inequality
    cone, s₀ ≥ 0)."""
    p = eprog.prog
    lbg, ubg = [], []
    if p.m:
        lbg.append(p.row_lo)
        ubg.append(p.row_hi)
    if p.k:
        for c in eprog.cones:
            lbg.append(np.zeros(c.count))
            ubg.append(np.zeros(c.count) if c.equality else np.full(c.count, np.inf))
            if not c.equality:
                lbg.append(np.zeros(c.count))
                ubg.append(np.full(c.count, np.inf))
    if not lbg:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(lbg), np.concatenate(ubg)


def solve_exact_ac(eprog: ExactACProgram, x0: np.ndarray) -> NLPSolution:
    """Solve the exact AC program from the start point `x0` (e.g. the SOC solution with the same fixings)."""
    ca = load_casadi()
    t0 = time.perf_counter()
    p = eprog.prog
    solver = _solver(ca, eprog)
    lbg, ubg = _constraint_bounds(eprog)
    build = time.perf_counter() - t0
    lbx, ubx = p.lb.copy(), p.ub.copy()
    start = np.clip(np.asarray(x0, float), lbx, ubx)
    t1 = time.perf_counter()
    out = solver(x0=start, lbx=lbx, ubx=ubx, lbg=lbg, ubg=ubg)
    stats = solver.stats()
    status = str(stats.get("return_status", "unknown"))
    return NLPSolution(
        converged=status in ("Solve_Succeeded", "Solved_To_Acceptable_Level"),
        status=status,
        x=np.asarray(out["x"], float).ravel(),
        objective=float(out["f"]),
        iterations=int(stats.get("iter_count", 0)),
        solve_time_s=time.perf_counter() - t1,
        build_time_s=build,
    )
