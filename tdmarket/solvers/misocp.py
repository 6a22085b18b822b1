"""Mixed-integer SOCP by outer approximation (docs/model.md §5(a)): HiGHS MILP on tangent cuts + Clarabel SOCP.

    LB  = max(SOCP relaxation, best MILP bound over the cut approximation)   (a valid lower bound)
    UB  = best SOCP value with the integers fixed at a MILP solution          (a feasible point)
Each round adds tangent cuts at the MILP point for every cone it violates, so the approximation tightens where
it matters, and at every cone of each fixed-integer SOCP point solved (classical outer approximation).  Stops when (UB − LB) / max(1, |UB|) <= `mip_gap`, when the MILP point is cone-feasible (then
LB = UB up to the MILP gap), when it stalls (the MILP proposes integers already tried and LB rose by less than
STALL_FRACTION of UB − LB that round), at `max_rounds` or at `time_limit`.

A tangent cut of the cone s0 >= ||s̄|| (s = h − G x) at a point with ŝ̄ != 0 is  n·s̄ <= s0, n = ŝ̄/||ŝ̄||,
i.e. (G0 − nᵀḠ) x <= h0 − nᵀh̄: valid everywhere, tight at the point.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..formulations.program import Program
from .acceptance import accept, rejection
from .clarabel import OmittedCones, solve_clarabel, solve_clarabel_retrying
from .highs import solve_highs
from .result import Solution, SolveStatus, usable_statuses


@dataclass
class OAHistory:
    rounds: list[dict] = field(default_factory=list)


def _cone_layout(prog: Program):
    """Per cone: first row and dimension (vectorised)."""
    starts, dims = [], []
    row = 0
    for dim, count in prog.cone_dims:
        starts.append(row + dim * np.arange(count))
        dims.append(np.full(count, dim))
        row += dim * count
    if not starts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(starts), np.concatenate(dims)


def tangent_cuts(prog: Program, x: np.ndarray, *, only_violated_tol: float | None = None):
    """Tangent cuts at x for every cone (or only those violated by more than the tolerance)."""
    G, h = prog.cone_A.tocsr(), prog.cone_b
    s = h - G @ x
    start, dim = _cone_layout(prog)
    # norm of the tail of each cone
    row_cone = np.repeat(np.arange(len(start)), dim)
    is_head = np.zeros(len(s), bool)
    is_head[start] = True
    tail_sq = np.bincount(row_cone, np.where(is_head, 0.0, s**2), minlength=len(start))
    norm = np.sqrt(tail_sq)
    viol = norm - s[start]
    keep = norm > 1e-9
    if only_violated_tol is not None:
        keep &= viol > only_violated_tol * np.maximum(1.0, np.abs(s[start]))
    kc = np.flatnonzero(keep)
    if len(kc) == 0:
        return None, None, viol
    sel_rows = np.isin(row_cone, kc)
    rows = np.flatnonzero(sel_rows)
    cut_index = np.full(len(start), -1)
    cut_index[kc] = np.arange(len(kc))
    weight = np.where(is_head[rows], 1.0, -s[rows] / norm[row_cone[rows]])
    W = sp.csr_matrix((weight, (cut_index[row_cone[rows]], rows)), shape=(len(kc), len(s)))
    return W @ G, W @ h, viol


def circle_cuts(prog: Program, sides: int = 8):
    """Circumscribed-polygon cuts n_j·s̄ <= s0 for every 3-dimensional cone (valid outer approximation)."""
    G, h = prog.cone_A.tocsr(), prog.cone_b
    start, dim = _cone_layout(prog)
    c3 = start[dim == 3]
    if len(c3) == 0:
        return None, None
    mats, rhs = [], []
    k = len(c3)
    for ang in 2 * np.pi * np.arange(sides) / sides:
        cols = np.concatenate([c3, c3 + 1, c3 + 2])
        w = np.concatenate([np.ones(k), -np.full(k, np.cos(ang)), -np.full(k, np.sin(ang))])
        W = sp.csr_matrix((w, (np.tile(np.arange(k), 3), cols)), shape=(k, len(h)))
        mats.append(W @ G)
        rhs.append(W @ h)
    return sp.vstack(mats).tocsr(), np.concatenate(rhs)


def _linear_program(prog: Program, cuts: list, cut_rhs: list) -> Program:
    lin = Program()
    lin.add_variables("x", prog.n, prog.lb, prog.ub, prog.c, integer=prog.integrality)
    lin.c0 = prog.c0
    lin.add_rows("linear", prog.A, prog.row_lo, prog.row_hi)
    if cuts:
        lin.add_rows("cuts", sp.vstack(cuts), -np.inf, np.concatenate(cut_rhs))
    return lin


def fix_integers(prog: Program, x: np.ndarray) -> Program:
    """Copy of `prog` with every integer variable fixed at round(x) and integrality dropped."""
    fixed = prog.copy()
    cols = np.flatnonzero(prog.integrality)
    vals = np.clip(np.round(x[cols]), prog.lb[cols], prog.ub[cols])
    fixed.set_bounds(cols, vals, vals)
    fixed.relax_integrality()
    return fixed


class IntegerRows:
    """The rows of a program that have only integer columns (exclusive groups, links between commitments), to
    check a rounded assignment before solving the SOCP with it fixed: one that breaks such a row is infeasible,
    and an interior point would spend a dozen iterations proving it (italy-652's DSO dispatches: every infeasible
    rounding broke one)."""

    def __init__(self, prog: Program):
        self.ints = np.flatnonzero(prog.integrality)
        A = sp.csr_matrix(prog.A)
        has_continuous = np.zeros(A.shape[0], bool)
        coo = A.tocoo()
        has_continuous[coo.row[~prog.integrality.astype(bool)[coo.col]]] = True
        self.rows = np.flatnonzero(~has_continuous & (np.diff(A.indptr) > 0))
        self.A = A[self.rows][:, self.ints]
        self.lo, self.hi = prog.row_lo[self.rows], prog.row_hi[self.rows]

    def broken(self, x: np.ndarray, tol: float = 1e-9) -> bool:
        """Whether round(x) on the integer columns violates one of the rows."""
        if not len(self.rows):
            return False
        act = self.A @ np.round(x[self.ints])
        return bool(
            np.any(act > self.hi + tol * (1 + np.abs(self.hi))) or np.any(act < self.lo - tol * (1 + np.abs(self.lo)))
        )


@dataclass
class _Incumbent:
    """Bounds of the outer approximation and the best fixed-integer SOCP solution found so far."""

    lb: float
    ub: float = np.inf
    best: Solution | None = None
    seen: set[bytes] = field(default_factory=set)
    loose: Solution | None = None  # best point within RELAXATION_TOL only: published if no strict one exists
    integer_rows: IntegerRows | None = None  # of the program whose integers are tried (None: none checked)
    target: float | None = None  # the relaxation + `gap_eur` (€): HiGHS's objective target in the MILP rounds
    gap_eur: float = 0.0  # an incumbent within this (€) of the bound ends the search (`gap_eur`)
    socp_points: list[np.ndarray] = field(default_factory=list)  # fixed-integer SOCP points not yet cut at
    omitted: OmittedCones | None = None  # cones the fixed-integer SOCPs leave out until near (`solve_misocp`)

    def take_cuts(self, prog: Program, cuts: list, rhs: list) -> None:
        """Tangent cuts at every fixed-integer SOCP point solved since the last call (classical outer approximation:
        the MILP then values those binaries at their SOCP cost, up to tolerances, instead of proposing them again)."""
        for x in self.socp_points:
            C, d, _ = tangent_cuts(prog, x, only_violated_tol=None)
            if C is not None:
                cuts.append(C)
                rhs.append(d)
        self.socp_points.clear()

    @property
    def on_target(self) -> bool:
        # LB never falls below the relaxation, so this also covers an incumbent at most `target`
        return self.gap_eur > 0 and self.ub - self.lb <= self.gap_eur

    def try_integers(self, prog: Program, x: np.ndarray) -> bool:
        """Solve the SOCP with the integers fixed at round(x), once per assignment; keep it if accepted and better.
        False if that assignment was tried before."""
        key = np.round(x[np.flatnonzero(prog.integrality)]).tobytes()
        if key in self.seen:
            return False
        self.seen.add(key)
        if self.integer_rows is not None and self.integer_rows.broken(x):
            return True
        fixed = fix_integers(prog, x)
        fx = solve_clarabel(fixed, omitted=self.omitted)
        if fx.status is not SolveStatus.INFEASIBLE:
            # a fixed-integer SOCP the interior point did not finish at the default tolerance: the next MILP round
            # may propose the same binaries (then no incumbent is ever found), so retry it here
            first = fx
            fx = solve_clarabel_retrying(fixed, fx, lambda s: accept(s, fixed))
            if not accept(fx, fixed):
                fx = first  # none accepted: judge the first solve, as before (e.g. within RELAXATION_TOL)
        if accept(fx, fixed, tol=RELAXATION_TOL):
            self.socp_points.append(fx.x)
        if accept(fx, fixed):
            if fx.objective < self.ub:
                self.ub, self.best = fx.objective, fx
        elif accept(fx, fixed, tol=RELAXATION_TOL) and (self.loose is None or fx.objective < self.loose.objective):
            self.loose = fx
        return True

    def adopt_loose(self) -> None:
        """No fixed-integer SOCP met the strict residual check: take the best one within RELAXATION_TOL (an
        interior-point point that ended "almost solved"), and say so in its message."""
        if self.best is None and self.loose is not None:
            self.best, self.ub = self.loose, self.loose.objective
            self.best.message = f"{self.best.message} (accepted at scaled residual <= {RELAXATION_TOL:g})"


def _record(hist: OAHistory, rec: dict, progress: Callable[[dict], None] | None) -> None:
    hist.rounds.append(rec)
    if progress:
        progress(rec)


def _initial_cuts(prog: Program, x: np.ndarray) -> tuple[list, list]:
    """Tangent cuts at the relaxation's point and the circumscribed polygons of the 3-dimensional cones."""
    cuts, rhs = [], []
    C, d, _ = tangent_cuts(prog, x)
    if C is not None:
        cuts.append(C)
        rhs.append(d)
    C, d = circle_cuts(prog)
    if C is not None:
        cuts.append(C)
        rhs.append(d)
    return cuts, rhs


def _oa_rounds(
    prog, inc, cuts, rhs, hist, t0, mip_gap, time_limit, threads, max_rounds, cone_tol, progress, sub_mip_heuristics
) -> None:
    """MILP rounds on the cut approximation (see module docstring); updates `inc`, `cuts`/`rhs` and `hist`.
    A MILP incumbent at most `inc.target` ends the MILP's search; the round then goes on as usual."""
    for k in range(max_rounds):
        remaining = None if time_limit is None else max(1.0, time_limit - (time.perf_counter() - t0))
        lin = _linear_program(prog, cuts, rhs)
        # the gap is relative to max(1 €, |UB|): near zero cost an absolute gap of mip_gap € is the criterion, which
        # HiGHS's relative gap alone never reaches (it then proves optimality to its 1e-6 default)
        milp = solve_highs(
            lin,
            mip_gap=mip_gap / 2,
            mip_abs_gap=max(mip_gap, inc.gap_eur) / 2,
            time_limit=remaining,
            threads=threads,
            objective_target=inc.target,
            sub_mip_heuristics=sub_mip_heuristics,
        )
        if not accept(milp, lin, allow_almost=False, allow_time_limit=True):
            break
        lb_before, gap_before = inc.lb, inc.ub - inc.lb
        if milp.mip_bound is not None and np.isfinite(milp.mip_bound):
            inc.lb = max(inc.lb, milp.mip_bound)
        repeated = not inc.try_integers(prog, milp.x)
        gap = _gap(inc.ub, inc.lb)
        # the MILP proposes integers already evaluated (the upper bound cannot move) and its bound barely rose: the
        # cuts are only refining the cones around that one point.  Measured on a DSO dispatch (italy-693 variant,
        # 80 % all-or-nothing): its fixed-integer SOCP needs 1.2e-4 Mvar of reactive slack (1.23 EUR at the slack
        # price) that the cut approximation avoids within the solvers' 1e-7 tolerances, so the bound stalled 1.1 EUR
        # below the incumbent and 20 rounds of 10 s MILPs followed.
        stalled = repeated and np.isfinite(gap_before) and inc.lb - lb_before < STALL_FRACTION * gap_before
        C, d, viol = tangent_cuts(prog, milp.x, only_violated_tol=cone_tol)
        n_viol = 0 if C is None else C.shape[0]
        rec = {
            "round": k + 1,
            "lower_bound": inc.lb,
            "upper_bound": inc.ub,
            "gap": gap,
            "violated_cones": n_viol,
            "milp_time_s": milp.solve_time_s,
            "elapsed_s": time.perf_counter() - t0,
        }
        if stalled:
            rec["stalled"] = True
        _record(hist, rec, progress)
        if gap <= mip_gap or inc.on_target or n_viol == 0 or stalled:
            break
        if time_limit is not None and time.perf_counter() - t0 >= time_limit:
            break
        cuts.append(C), rhs.append(d)
        inc.take_cuts(prog, cuts, rhs)


STALL_FRACTION = 0.05  # a MILP round on integers already tried that lifts LB by less than this share of UB − LB
RELAXATION_TOL = 1e-4  # scaled residual accepted for the relaxation (a bound and a guide, never published)


def solve_misocp(
    prog: Program,
    *,
    mip_gap: float = 1e-3,
    time_limit: float | None = None,
    threads: int = 1,
    max_rounds: int = 20,
    cone_tol: float = 1e-6,
    progress: Callable[[dict], None] | None = None,
    relaxation: Solution | None = None,
    round_down: bool = False,
    gap_eur: float = 0.0,
    oa_cuts: list | None = None,
    sub_mip_heuristics: bool = True,
    omitted: OmittedCones | None = None,
) -> tuple[Solution, OAHistory]:
    """Outer-approximation MISOCP solve; returns the best fixed-integer SOCP solution (with duals) and history.

    The returned `Solution` has `mip_bound` = LB and `mip_gap` = certified relative gap.  Every solve is judged by
    `tdmarket.solvers.acceptance.accept`; a relaxation that fails it is returned with status NUMERICAL_ERROR
    (unless its own status already says why).  `relaxation`: the continuous relaxation's solution when the caller
    already has it (e.g. a DSO that evaluated the same exchange); it is checked like a fresh one.  `round_down`:
    round 0 also tries the relaxation's integers rounded down when rounding to nearest does not close the gap, and
    stops there if that point is within `mip_gap` € of the bound (the centralized reference keeps it off: it
    searches on to its own gap).  `gap_eur` (> 0): the search also stops at a point within this many €
    of its lower bound, the continuous relaxation or a MILP's bound (a DSO's share of the scheme's certified-gap
    target at dispatch: the scheme's bound is built from the DSOs' relaxations and its own cuts, so a tighter proof
    of this DSO's own bound certifies nothing more).
    `sub_mip_heuristics=False`: the MILP rounds run without HiGHS's RINS, RENS and feasibility jump, whose better
    MILP incumbents only propose binaries (the search's incumbent is their SOCP); measured on nine DSO dispatches
    of an italy-693 variant (263–707 binaries): 24 sub-MIPs took 6.9 of a MILP's 8.3 s, and without them the same
    points came in 36.7 instead of 67.9 s.  They stay on where the MILP's bound matters (a DSO's best response in
    the integer repair: its bound is a Lagrangian cut; off there, two property variants' certified gaps widened).
    `oa_cuts`: tangent cuts (pairs (C, d): C x <= d) of earlier solves of programs with the same cones on the
    same leading columns (another objective, other bounds, columns appended): they start the outer approximation
    and the cuts this solve adds are appended (at most OA_KEPT_ROWS rows kept).  A tangent cut of a cone is valid
    wherever that cone holds, whatever the objective.
    `omitted`: cones the continuous solves (the relaxation, the fixed-integer SOCPs) leave out until a solution
    comes near one (`solvers.clarabel.OmittedCones`; exact, and a retry at looser settings keeps every cone).
    """
    t0 = time.perf_counter()
    hist = OAHistory()
    relaxed = prog.copy()
    relaxed.relax_integrality()
    rel = relaxation
    if rel is None or rel.x is None or len(rel.x) != prog.n:
        rel = solve_clarabel(relaxed, omitted=omitted)
    # The relaxation only bounds and guides the search (every incumbent is checked strictly), so an interior-point
    # point slightly outside the residual tolerance is still used (measured: a DSO dispatch of italy-652 ended
    # "almost solved" with a scaled row residual of 1.7e-5); beyond RELAXATION_TOL it is refused.
    why = rejection(rel, relaxed, tol=RELAXATION_TOL)
    if why is not None and rel is relaxation:
        # the caller's relaxation (e.g. a DSO's evaluation at the exchange, "almost solved") is not good enough:
        # solve it here, at the retry settings if need be.  Measured on an italy-652 DSO: a row residual of
        # 3.9e-4 made the dispatch fall back to every binary at 0 (+0.82 €), where its own solve is optimal.
        rel = solve_clarabel_retrying(
            relaxed,
            solve_clarabel(relaxed, omitted=omitted),
            lambda s: rejection(s, relaxed, tol=RELAXATION_TOL) is None,
        )
        why = rejection(rel, relaxed, tol=RELAXATION_TOL)
    if why is not None:
        if rel.status in usable_statuses(allow_almost=True):
            rel.status, rel.message = SolveStatus.NUMERICAL_ERROR, f"relaxation: {why}"
        rel.mip_bound, rel.mip_gap = None, None
        return rel, hist
    target = rel.objective + gap_eur if gap_eur > 0 else None
    inc = _Incumbent(
        lb=rel.objective, integer_rows=IntegerRows(prog), target=target, gap_eur=max(gap_eur, 0.0), omitted=omitted
    )
    cuts, rhs = _initial_cuts(prog, rel.x)
    # round 0 (relaxation-guided): the relaxation keeps all order logic and is often integral already; fixing
    # its rounded integers gives an upper bound that may close the gap without any MILP.
    int_cols = np.flatnonzero(prog.integrality)
    inc.try_integers(prog, rel.x)
    rounded_down = False
    if round_down and _gap(inc.ub, inc.lb) > mip_gap and not inc.on_target:
        # and rounded down (what is fractional is not activated): rounding to nearest breaks order logic such as
        # exclusive groups; measured on italy-652's DSO dispatches (costs ~1e-4 EUR, 20-400 fractional binaries):
        # rounding failed in 35 of 50 areas, rounding down closed the gap in 28 of those, 8.8 s -> 4.6 s
        down = rel.x.copy()
        down[int_cols] = np.floor(rel.x[int_cols] + 1e-6)
        before = inc.best
        inc.try_integers(prog, down)
        rounded_down = inc.best is not before
    frac = int((np.abs(rel.x[int_cols] - np.round(rel.x[int_cols])) > 1e-6).sum())
    rec = {
        "round": 0,
        "lower_bound": inc.lb,
        "upper_bound": inc.ub,
        "gap": _gap(inc.ub, inc.lb),
        "fractional": frac,
        "elapsed_s": time.perf_counter() - t0,
    }
    _record(hist, rec, progress)
    # a point rounded down ends the search only within mip_gap € absolute: relative to a large cost it would take
    # up to mip_gap of it where the MILP usually finds the optimum (a generated 10-area system: +0.13 € in total)
    if (rec["gap"] <= mip_gap and (not rounded_down or inc.ub - inc.lb <= mip_gap)) or inc.on_target:
        assert inc.best is not None  # a finite gap needs an incumbent
        return _finish(inc.best, inc.lb, inc.ub, t0), hist
    inc.take_cuts(prog, cuts, rhs)  # at round 0's roundings
    first_new = len(cuts)
    if oa_cuts:
        cuts += [_widen(C, prog.n) for C, _ in oa_cuts]
        rhs += [d for _, d in oa_cuts]
    _oa_rounds(
        prog, inc, cuts, rhs, hist, t0, mip_gap, time_limit, threads, max_rounds, cone_tol, progress, sub_mip_heuristics
    )
    if oa_cuts is not None:
        _keep_cuts(oa_cuts, cuts[first_new + len(oa_cuts) :], rhs[first_new + len(oa_cuts) :])
    inc.adopt_loose()
    if inc.best is None:
        rel.status = SolveStatus.OTHER
        rel.message = "no integer-feasible point found"
        rel.mip_bound, rel.mip_gap = inc.lb, np.inf
        return rel, hist
    return _finish(inc.best, inc.lb, inc.ub, t0), hist


OA_KEPT_ROWS = 4000  # tangent cuts kept between solves (`oa_cuts`): the newest


def _widen(C: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """A cut matrix over the leading columns of a program with `n` columns."""
    C = sp.csr_matrix(C)
    return C if C.shape[1] == n else sp.csr_matrix((C.data, C.indices, C.indptr), shape=(C.shape[0], n))


def _keep_cuts(pool: list, cuts: list, rhs: list) -> None:
    pool.extend(zip(cuts, rhs, strict=True))
    rows = 0
    for k in range(len(pool) - 1, -1, -1):
        rows += pool[k][0].shape[0]
        if rows > OA_KEPT_ROWS:
            del pool[: k + 1]
            break


def _gap(ub: float, lb: float) -> float:
    """Certified relative gap; solver tolerances can put UB a hair below LB, which counts as 0."""
    return max(0.0, (ub - lb) / max(1.0, abs(ub))) if np.isfinite(ub) else np.inf


def _finish(best: Solution, lb: float, ub: float, t0: float) -> Solution:
    best.mip_bound = min(lb, ub)
    best.mip_gap = _gap(ub, lb)
    best.solve_time_s = time.perf_counter() - t0
    best.solver = "oa(highs+clarabel)"
    return best
