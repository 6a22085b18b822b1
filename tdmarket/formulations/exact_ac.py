"""The exact AC model of a distribution area as a nonlinear program (docs/model.md §5(h)).

On a radial network the branch-flow model of docs/model.md §3.3 with the relaxed cone P² + Q² <= u·ℓ held as an
*equality* is the AC power flow of the π-model (series impedance, charging, off-nominal taps, nodal shunts): the
voltage angles of a tree can always be recovered from (P, Q, ℓ, w).  So the exact AC program of an area is its
clearing program (`ClearingProblem`) with

* every cone block the distribution formulation names in `relaxation_cones` turned into the equality
  (u + ℓ)² − ‖(2P, 2Q, u − ℓ)‖² = 4(u·ℓ − P² − Q²) = 0,
* every other cone s₀ >= ‖s₁…‖ (thermal limits at both ends, reactive capability discs, the interface rating)
  kept as the smooth pair s₀² − ‖s₁…‖² >= 0, s₀ >= 0,
* the integer columns fixed at given values and the area's exchange with its parent fixed (P, MW per period;
  the reactive exchange stays free within the interface rating, as in the clearing),

and the same objective (order costs and penalised slack, €).  The program stays solver-neutral: a solver adapter
(`tdmarket.solvers.ipopt`) writes the quadratic constraints from the sparse matrices in one vectorised pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .clearing import ClearingProblem
from .program import Program


@dataclass(frozen=True)
class QuadraticCones:
    """One cone block of the program read as quadratic constraints: s = cone_b − cone_A·x over rows
    [start, start + dim·count), cone j on rows start + j·dim …; `equality` for s₀² − ‖s₁…‖² = 0."""

    name: str
    start: int
    count: int
    dim: int
    equality: bool


@dataclass
class ExactACProgram:
    """The exact AC program of an area: `prog` (integers fixed, exchange fixed, integrality dropped) and how its
    cone rows are read (`cones`).  Objective, rows and bounds are those of `prog` (€, MW, Mvar, p.u.)."""

    prog: Program
    cones: list[QuadraticCones]

    @property
    def n_equality_cones(self) -> int:
        return sum(c.count for c in self.cones if c.equality)


def exact_ac_program(cp: ClearingProblem, integer_values: np.ndarray, export_mw: np.ndarray) -> ExactACProgram:
    """The exact AC program of the area problem `cp` (an operator's sub-instance, `cp.own_x` its exchange).

    `integer_values`: one value per integer column of `cp.prog` (in column order, rounded here); `export_mw`:
    the area's export per period (MW), fixed through the `exchange_fix` rows."""
    prog = cp.prog.copy()
    cols = np.flatnonzero(prog.integrality)
    values = np.asarray(integer_values, float)
    if values.shape != cols.shape:
        raise ValueError(f"expected {len(cols)} integer values, got {values.shape}")
    fixed = np.clip(np.round(values), prog.lb[cols], prog.ub[cols])
    prog.set_bounds(cols, fixed, fixed)
    prog.relax_integrality()
    rows = prog.rows["exchange_fix"]
    export_mw = np.asarray(export_mw, float)
    if export_mw.shape != (rows.size,):
        raise ValueError(f"expected {rows.size} exchange values, got {export_mw.shape}")
    prog.set_row_bounds(np.arange(rows.start, rows.start + rows.size), export_mw, export_mw)
    relaxed = set(cp.dist.relaxation_cones)
    cones = [QuadraticCones(b.name, b.start, b.size, b.dim, b.name in relaxed) for b in prog.cones.values() if b.size]
    return ExactACProgram(prog=prog, cones=cones)


def cone_residuals(eprog: ExactACProgram, x: np.ndarray) -> tuple[float, float]:
    """(max |s₀² − ‖s₁…‖²| over the equality cones, max violation of the other cones ‖s₁…‖ − s₀) at `x`."""
    p = eprog.prog
    s = p.cone_b - p.cone_A @ x if p.k else np.zeros(0)
    eq, ineq = 0.0, 0.0
    for c in eprog.cones:
        block = s[c.start : c.start + c.dim * c.count].reshape(c.count, c.dim)
        if c.equality:
            eq = max(eq, float(np.abs(block[:, 0] ** 2 - (block[:, 1:] ** 2).sum(axis=1)).max(initial=0.0)))
        else:
            ineq = max(ineq, float((np.linalg.norm(block[:, 1:], axis=1) - block[:, 0]).max(initial=0.0)))
    return eq, max(ineq, 0.0)


def integer_values_from_tables(cp: ClearingProblem, segments, bids) -> np.ndarray:
    """The cleared value of every integer column of `cp.prog` (column order), read from a clearing's `segments`
    and `bids` tables (ids as in `cp.inst`; orders missing from the tables count as not accepted).

    AON segments: their accepted fraction; minimum-ratio acceptance: fraction > 0; logic acceptance z: the bid's
    `accepted`; exclusive-group choice Z: some bid of the QtBid accepted; direction δ: the bid's P > 0 (up)."""
    inst, ob, prog = cp.inst, cp.orders, cp.prog
    seg, b = inst.orders.segments, inst.orders.bids
    frac = _lookup(segments, "segment", seg.id, "accepted_fraction")
    accepted = _lookup(bids, "bid", b.id, "accepted") > 0.5
    p_bid = _lookup(bids, "bid", b.id, "p_mw")
    values = np.zeros(prog.n)
    values[ob.col(prog, "xi")] = frac
    values[ob.col(prog, "vmin")] = frac[ob.vmin_seg] > 1e-6
    values[ob.col(prog, "z")] = accepted[ob.z_bid]
    chosen_qt = np.unique(b.qtbid[accepted])
    values[ob.col(prog, "Z")] = np.isin(ob.Z_qt, chosen_qt)
    values[ob.col(prog, "delta")] = p_bid[ob.delta_bid] > 0
    return values[np.flatnonzero(prog.integrality)]


def _lookup(frame, key: str, ids: np.ndarray, column: str) -> np.ndarray:
    """`frame[column]` at the rows whose `key` is each of `ids` (0 where absent)."""
    if frame is None or len(frame) == 0 or column not in frame:
        return np.zeros(len(ids))
    series = frame.drop_duplicates(key).set_index(key)[column].astype(float)
    return series.reindex(ids).fillna(0.0).to_numpy(float)
