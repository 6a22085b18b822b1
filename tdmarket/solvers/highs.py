"""HiGHS adapter for LP and MILP `Program`s.

The whole model is passed at once as a column-wise `HighsLp`.  HiGHS minimises, and its `row_dual` is already
d(objective)/d(active row bound) (docs/model.md §1), so row duals are returned unchanged; tests check this by
finite differences.  MIPs return no duals (prices come from the LP with binaries fixed, docs/model.md §1).
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp

from tdmarket.errors import SolverError
from tdmarket.formulations.program import Program
from tdmarket.solvers.result import Solution, SolveStatus

_MS = highspy.HighsModelStatus
_STATUS = {
    _MS.kOptimal: SolveStatus.OPTIMAL,
    _MS.kInfeasible: SolveStatus.INFEASIBLE,
    _MS.kUnbounded: SolveStatus.UNBOUNDED,
    _MS.kSolveError: SolveStatus.NUMERICAL_ERROR,
    _MS.kPostsolveError: SolveStatus.NUMERICAL_ERROR,
    _MS.kPresolveError: SolveStatus.NUMERICAL_ERROR,
    _MS.kObjectiveTarget: SolveStatus.OBJECTIVE_TARGET,
}
# Stops that may still leave a feasible incumbent; reported as TIME_LIMIT only for the time limit itself.
_LIMITS = {_MS.kTimeLimit, _MS.kIterationLimit, _MS.kSolutionLimit, _MS.kInterrupt}

# HiGHS schedules threads in one process-wide pool that is sized by the first run; a later run asking for a
# different `threads` fails with kError unless the pool is reset first.  We remember the size we last used.
_pool_threads: int | None = None


def _to_highs_lp(program: Program) -> highspy.HighsLp:
    """Build a column-wise HighsLp; infinite bounds become ±kHighsInf."""
    inf = highspy.kHighsInf  # the clip below maps any ±inf (or larger) bound onto HiGHS's infinity explicitly
    A = sp.csc_matrix(program.A)
    A.sort_indices()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = program.n, program.m
    lp.col_cost_ = program.c.astype(float)
    lp.offset_ = float(program.c0)
    lp.col_lower_ = np.clip(program.lb, -inf, inf)
    lp.col_upper_ = np.clip(program.ub, -inf, inf)
    lp.row_lower_ = np.clip(program.row_lo, -inf, inf)
    lp.row_upper_ = np.clip(program.row_hi, -inf, inf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = program.n, program.m
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data.astype(float)
    if program.has_integers:
        # highspy wants a sequence of HighsVarType enums: map the bool mask through a 2-entry lookup table.
        kinds = np.array([highspy.HighsVarType.kContinuous, highspy.HighsVarType.kInteger], dtype=object)
        lp.integrality_ = kinds[program.integrality.astype(np.intp)].tolist()
    return lp


_banner_done = False


def _new_highs() -> highspy.Highs:
    """A Highs object; the first one of a process prints a banner to stdout before any option can silence
    it, which would corrupt machine-readable output (`--json`), so stdout is muted around that call."""
    global _banner_done
    if _banner_done:
        return highspy.Highs()
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _banner_done = True
    return h


def _run(h: highspy.Highs, threads: int, interruptible: bool = False) -> None:
    """`h.run()`; `interruptible` (a MILP, which can run for minutes): in a solver thread while this thread waits,
    so that Ctrl-C or the CLI's SIGTERM (raised in the main thread, which a plain `run()` holds inside HiGHS until
    it returns) stops the solve at HiGHS's next interrupt check and is raised here (measured: a killed CLI run
    went on for 1 h 50 min inside a menu choice's MILP)."""
    global _pool_threads
    if _pool_threads is not None and _pool_threads != threads:
        highspy.Highs.resetGlobalScheduler(True)
    _pool_threads = threads
    # (a worker process of the pool ignores Ctrl-C and is killed by the main process: no thread needed there)
    if not interruptible or threading.current_thread() is not threading.main_thread() or mp.parent_process():
        h.run()
        return
    h.HandleUserInterrupt = True  # HiGHS's interrupt callbacks check highspy's cancel flag
    try:
        h.startSolve()
        while not h.wait(0.1)[0]:
            pass
    except BaseException:
        h.cancelSolve()
        while not h.wait(0.1)[0]:  # HiGHS stops at its next check; then the interrupt goes on
            pass
        raise
    finally:
        h.HandleUserInterrupt = False


def _run_with_diagnosis(h: highspy.Highs, threads: int, is_mip: bool):
    """Run HiGHS; returns (model status, message).  An LP that presolve finds "infeasible or unbounded" is
    re-run without presolve, which tells which one."""
    _run(h, threads, interruptible=is_mip)
    ms = h.getModelStatus()
    message = h.modelStatusToString(ms)
    if ms == _MS.kUnboundedOrInfeasible and not is_mip:
        # Presolve can only say "infeasible or unbounded"; simplex without presolve tells which one.
        h.setOptionValue("presolve", "off")
        _run(h, threads)
        ms = h.getModelStatus()
        message += " -> without presolve: " + h.modelStatusToString(ms)
    return ms, message


def _status_and_point(program: Program, ms, sol) -> tuple[SolveStatus, np.ndarray, bool]:
    """(status, x, whether x is a valid point) from the HiGHS model status and solution."""
    has_x = bool(sol.value_valid)
    x = np.asarray(sol.col_value, float) if has_x else np.full(program.n, np.nan)
    if ms == _MS.kModelEmpty:
        # No columns: HiGHS does not solve; optimal iff every (empty) row admits 0.
        feasible = bool(np.all((program.row_lo <= 0.0) & (program.row_hi >= 0.0)))
        status = SolveStatus.OPTIMAL if feasible else SolveStatus.INFEASIBLE
        x, has_x = np.zeros(program.n), feasible
    elif ms in _LIMITS:
        # a time or node limit (HiGHS reports the node limit as a solution limit) with an incumbent
        limited = ms in (_MS.kTimeLimit, _MS.kSolutionLimit) and has_x
        status = SolveStatus.TIME_LIMIT if limited else SolveStatus.OTHER
    else:
        status = _STATUS.get(ms, SolveStatus.OTHER)
    return status, x, has_x


def _row_dual(program: Program, ms, sol, is_mip: bool) -> np.ndarray | None:
    """LP row duals (none for a MIP); zeros for an empty model."""
    if not is_mip and sol.dual_valid:
        # HiGHS (minimisation): row_dual = d(obj)/d(active row bound) already — no sign change.
        return np.asarray(sol.row_dual, float)
    if not is_mip and ms == _MS.kModelEmpty:
        return np.zeros(program.m)
    return None


def _iterations(info, is_mip: bool) -> int:
    """B&B nodes for a MIP (the meaningful work count there); simplex + IPM + crossover + PDLP for an LP."""
    if is_mip:
        return max(int(info.mip_node_count), 0)
    return sum(
        max(int(v), 0)
        for v in (
            info.simplex_iteration_count,
            info.ipm_iteration_count,
            info.crossover_iteration_count,
            info.pdlp_iteration_count,
        )
    )


def set_node_limit(h: highspy.Highs, nodes: int) -> None:
    """Limit a MILP to `nodes` branch-and-bound nodes: a heuristic whose incumbent is used (the integer repair's
    menu choice), so without restarts: HiGHS 1.16, restarting after its root presolve, spun in the root LP of one
    such model (1.5 M simplex iterations at node 0; without a time limit the run hung); without restart it solves
    in 0.2 s (tests/test_highs_limits.py).  (`solve_highs` turns restarts off for every MILP.)"""
    h.setOptionValue("mip_max_nodes", nodes)
    h.setOptionValue("mip_allow_restart", False)


def solve_highs(
    program: Program,
    *,
    time_limit: float | None = None,
    mip_gap: float = 1e-4,
    mip_abs_gap: float | None = None,
    threads: int = 1,
    verbose: bool = False,
    random_seed: int = 0,
    objective_target: float | None = None,
    keep_basis: bool = True,
    sub_mip_heuristics: bool = True,
    node_limit: int | None = None,
) -> Solution:
    """Solve an LP/MILP with HiGHS (presolve on, options pinned for reproducibility).

    `time_limit` is in wall-clock seconds (None = unlimited); `mip_gap` is the relative MIP gap at which branch
    and bound stops, `mip_abs_gap` (objective units; None = HiGHS's default) the absolute one;
    `objective_target`: a MILP also stops at the first incumbent whose objective is at most this (status
    OBJECTIVE_TARGET).  `keep_basis`: an optimal LP's simplex basis is returned (`Solution.basis`, the warm start
    of its price intervals, `market.dual_face`); reading it costs ~5 ms on a small LP (highspy hands it over as a
    list of enum objects), so solves that are never priced skip it.  Raises ValueError if the program has
    second-order cones.  `sub_mip_heuristics=False` turns off HiGHS's RINS, RENS and feasibility jump (see
    `decomposition` callers: a cut-exchange master whose root node already closes the gap).  `node_limit`: a MILP
    stops after this many branch-and-bound nodes (a deterministic work limit, unlike `time_limit`) with its
    incumbent, if any (status TIME_LIMIT, as for the time limit).
    """
    if program.has_cones:
        raise ValueError("solve_highs handles LP/MILP only; the program has second-order cones")
    is_mip = program.has_integers
    h = _new_highs()
    for name, value in (
        ("output_flag", bool(verbose)),
        ("threads", int(threads)),
        ("random_seed", int(random_seed)),
        ("mip_rel_gap", float(mip_gap)),
        ("time_limit", float(np.inf if time_limit is None else time_limit)),
        ("presolve", "on"),
    ):
        h.setOptionValue(name, value)
    if mip_abs_gap is not None:
        h.setOptionValue("mip_abs_gap", float(mip_abs_gap))
    if is_mip:
        # no restart after the root's presolve: HiGHS 1.16 then spent 31 s proving a DSO dispatch MILP's 0.0017 EUR
        # absolute gap (399 binaries, italy-652) that it proves optimal in 0.9 s without, and spun in the root LP
        # of a menu choice (`set_node_limit`).  Measured on the property test's 50 variants, side by side: the
        # centralized clearings 71 -> 53 s, the hierarchical runs 251 s both, the same costs; italy-652 and the
        # generated 73-area system's centralized clearings unchanged (26.9 / 27.2 s, 49.2 / 49.2 s)
        h.setOptionValue("mip_allow_restart", False)
    if is_mip and not sub_mip_heuristics:
        for name in ("mip_heuristic_run_rins", "mip_heuristic_run_rens", "mip_heuristic_run_feasibility_jump"):
            h.setOptionValue(name, False)
    if node_limit is not None and is_mip:
        set_node_limit(h, int(node_limit))
    if objective_target is not None and is_mip:
        h.setOptionValue("objective_target", float(objective_target))
    if h.passModel(_to_highs_lp(program)) == highspy.HighsStatus.kError:
        raise SolverError("HiGHS rejected the model (passModel returned kError)")
    ms, message = _run_with_diagnosis(h, int(threads), is_mip)
    info = h.getInfo()
    sol = h.getSolution()
    status, x, has_x = _status_and_point(program, ms, sol)
    if ms == _MS.kModelEmpty:
        objective = float(program.c0) if has_x else float("nan")
    else:
        objective = float(info.objective_function_value) if has_x else float("nan")
    return Solution(
        status=status,
        x=x,
        objective=objective,
        row_dual=_row_dual(program, ms, sol, is_mip),
        cone_dual=None,
        iterations=_iterations(info, is_mip),
        solve_time_s=float(h.getRunTime()),
        solver=f"highs {highspy.HIGHS_VERSION_MAJOR}.{highspy.HIGHS_VERSION_MINOR}.{highspy.HIGHS_VERSION_PATCH}",
        mip_bound=float(info.mip_dual_bound) if is_mip else None,
        mip_gap=float(info.mip_gap) if is_mip else None,
        message=message,
        basis=_basis(h) if keep_basis and not is_mip and status == SolveStatus.OPTIMAL else None,
    )


def _basis(h: highspy.Highs) -> tuple[np.ndarray, np.ndarray] | None:
    """The optimal basis as (column status, row status) integer arrays, None if HiGHS has none."""
    b = h.getBasis()
    if not b.valid:
        return None
    # map(int, …) instead of a generator expression: 7× faster on italy-652's transmission master (91 k entries)
    return (
        np.fromiter(map(int, b.col_status), np.int8, len(b.col_status)),
        np.fromiter(map(int, b.row_status), np.int8, len(b.row_status)),
    )


def _check_change(status, what: str, index: np.ndarray) -> None:
    """HiGHS refuses a bound change silently (status kError, nothing changed) e.g. when an index appears twice;
    the caller's model would then differ from the one it believes it solves."""
    if status == highspy.HighsStatus.kError:
        repeated = len(index) != len(np.unique(index))
        raise SolverError(f"HiGHS refused a change of {what}" + (" (an index appears twice)" if repeated else ""))


_BASIS_STATUS = (  # HiGHS's basis status codes 0..4, by code
    highspy.HighsBasisStatus.kLower,
    highspy.HighsBasisStatus.kBasic,
    highspy.HighsBasisStatus.kUpper,
    highspy.HighsBasisStatus.kZero,
    highspy.HighsBasisStatus.kNonbasic,
)


@dataclass(frozen=True)
class StartBasis:
    """An optimal simplex basis of an LP with `n` columns and `m` rows (HiGHS status codes), kept to start the
    LPs that extend it: programs whose first n columns and m rows are that LP's, with columns and rows appended
    (e.g. a transmission clearing with the children's cuts or curves, started from the clearing without them)."""

    col_status: np.ndarray  # (n,) int8
    row_status: np.ndarray  # (m,) int8

    def extended_to(self, lb: np.ndarray, ub: np.ndarray, rows: int) -> highspy.HighsBasis | None:
        """The basis for an LP with column bounds `lb`, `ub` and `rows` rows that extends this one: the appended
        columns nonbasic at a finite bound (free ones at zero), the appended rows basic, so that the basis has one
        basic variable per row; a kept column nonbasic at a bound that is infinite there moves to its finite one.
        None if that LP is smaller."""
        n, m = len(self.col_status), len(self.row_status)
        if len(lb) < n or rows < m:
            return None
        lb_ok, ub_ok = np.isfinite(lb), np.isfinite(ub)
        at_bound = np.where(lb_ok, 0, np.where(ub_ok, 2, 3)).astype(np.int8)  # lower, upper, zero (free)
        col = at_bound.copy()
        col[:n] = self.col_status
        kept = col[:n]
        wrong = ((kept == 0) & ~lb_ok[:n]) | ((kept == 2) & ~ub_ok[:n]) | ((kept == 3) & (lb_ok[:n] | ub_ok[:n]))
        kept[wrong] = at_bound[:n][wrong]
        row = np.ones(rows, np.int8)  # basic
        row[:m] = self.row_status
        basis = highspy.HighsBasis()
        basis.col_status = [_BASIS_STATUS[s] for s in col.tolist()]
        basis.row_status = [_BASIS_STATUS[s] for s in row.tolist()]
        basis.valid = True
        return basis


class PersistentLP:
    """An LP kept alive in HiGHS between solves, for cutting-plane loops: rows are appended with `add_rows`
    and the next `solve` starts from the previous basis (warm start), instead of rebuilding the model."""

    def __init__(self, program: Program, *, threads: int = 1, random_seed: int = 0, presolve_first: bool = False):
        """`presolve_first`: the first solve (no basis yet) runs with presolve, later ones warm without it
        (measured on the italy-652 transmission master: 4.2 s instead of 9.4 s for the first solve)."""
        if program.has_cones or program.has_integers:
            raise ValueError("PersistentLP takes a pure LP")
        self.n, self.m = program.n, program.m
        self.threads = int(threads)
        self.h = _new_highs()
        # presolve off: a re-solve after added rows or changed bounds must start from the previous basis, and
        # presolve would rebuild the reduced problem instead
        for name, value in (
            ("output_flag", False),
            ("threads", self.threads),
            ("random_seed", int(random_seed)),
            ("presolve", "off"),
            ("solver", "simplex"),
        ):
            self.h.setOptionValue(name, value)
        if self.h.passModel(_to_highs_lp(program)) == highspy.HighsStatus.kError:
            raise SolverError("HiGHS rejected the model (passModel returned kError)")
        self._presolve_next = bool(presolve_first)
        self.c0 = float(program.c0)
        self.row_lo, self.row_hi = program.row_lo.copy(), program.row_hi.copy()
        self.col_lb, self.col_ub = program.lb.copy(), program.ub.copy()
        # wall-clock limit of each solve (s; None: none).  HiGHS compares its option `time_limit` with the run clock
        # of the object, which accumulates over every run, so `solve` sets it to that clock plus this limit: a
        # fixed option would stop every solve once the object's runs together exceeded it
        self.time_limit_s: float | None = None

    def start_basis(self) -> StartBasis | None:
        """The last solve's basis, to start LPs that extend this one (None if HiGHS has no valid basis)."""
        found = _basis(self.h)
        return None if found is None else StartBasis(*found)

    def set_start(self, start: StartBasis) -> bool:
        """Start the next solve from `start` extended to this LP (`StartBasis.extended_to`), without presolve
        (a presolved solve would not use it).  False (nothing changed) if HiGHS refuses the basis."""
        basis = start.extended_to(self.col_lb, self.col_ub, self.m)
        if basis is None or self.h.setBasis(basis) == highspy.HighsStatus.kError:
            return False
        self._presolve_next = False
        return True

    def dual_bound(
        self, sol: Solution, col_lb: np.ndarray | None = None, col_ub: np.ndarray | None = None, tol: float = 1e-9
    ) -> float:
        """Weak-duality lower bound of the LP with column bounds `col_lb`/`col_ub` (default: the model's own),
        from the duals of the last solve: c0 + Σ_i y_i·(active row bound) + Σ_j r_j·(bound).  It lets a
        trust-region solve also certify a lower bound of the unrestricted problem."""
        y, r = sol.row_dual, sol.col_dual
        if y is None or r is None:
            return -np.inf
        lb = self.col_lb if col_lb is None else col_lb
        ub = self.col_ub if col_ub is None else col_ub
        row_b = np.where(y > tol, self.row_lo, np.where(y < -tol, self.row_hi, 0.0))
        col_b = np.where(r > tol, lb, np.where(r < -tol, ub, 0.0))
        if not (np.isfinite(row_b).all() and np.isfinite(col_b).all()):
            return -np.inf
        y = np.where(np.abs(y) > tol, y, 0.0)
        r = np.where(np.abs(r) > tol, r, 0.0)
        return float(self.c0 + y @ row_b + r @ col_b)

    def add_rows(self, A, lo, hi) -> None:
        """Append rows lo <= A x <= hi (A: sparse, n columns)."""
        inf = highspy.kHighsInf
        A = sp.csr_matrix(A)
        A.sort_indices()
        k = A.shape[0]
        if k == 0:
            return
        self.h.addRows(
            k,
            np.clip(np.broadcast_to(lo, (k,)).astype(float), -inf, inf),
            np.clip(np.broadcast_to(hi, (k,)).astype(float), -inf, inf),
            A.nnz,
            A.indptr[:-1].astype(np.int32),
            A.indices.astype(np.int32),
            A.data.astype(float),
        )
        self.m += k
        self.row_lo = np.concatenate([self.row_lo, np.broadcast_to(lo, (k,)).astype(float)])
        self.row_hi = np.concatenate([self.row_hi, np.broadcast_to(hi, (k,)).astype(float)])

    def set_row_bounds(self, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        inf = highspy.kHighsInf
        rows = np.asarray(rows, dtype=np.int32)
        lo = np.broadcast_to(np.asarray(lo, float), rows.shape)
        hi = np.broadcast_to(np.asarray(hi, float), rows.shape)
        # changeRowsBounds exists at runtime (highspy 1.16) but is missing from highspy's stubs
        status = self.h.changeRowsBounds(len(rows), rows, np.clip(lo, -inf, inf), np.clip(hi, -inf, inf))  # type: ignore[attr-defined]
        _check_change(status, "row bounds", rows)
        self.row_lo[rows], self.row_hi[rows] = lo, hi

    def set_cost(self, cols: np.ndarray, cost: np.ndarray | float) -> None:
        """New objective coefficients of columns `cols` (the next solve starts from the last basis, which stays
        primal feasible)."""
        cols = np.asarray(cols, dtype=np.int32)
        cost = np.broadcast_to(np.asarray(cost, float), cols.shape)
        _check_change(self.h.changeColsCost(len(cols), cols, cost), "costs", cols)

    def set_col_bounds(self, cols: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        inf = highspy.kHighsInf
        cols = np.asarray(cols, dtype=np.int32)
        lo = np.broadcast_to(np.asarray(lo, float), cols.shape)
        hi = np.broadcast_to(np.asarray(hi, float), cols.shape)
        status = self.h.changeColsBounds(len(cols), cols, np.clip(lo, -inf, inf), np.clip(hi, -inf, inf))
        _check_change(status, "column bounds", cols)
        self.col_lb[cols], self.col_ub[cols] = lo, hi

    def stopped_at_limit(self) -> bool:
        """Whether the last solve stopped at its time or iteration limit (rather than failing numerically)."""
        return self.h.getModelStatus() in (_MS.kTimeLimit, _MS.kIterationLimit)

    def solve_again(self) -> Solution:
        """A re-solve after a warm solve that ended without optimality ("Unknown" after numerical trouble):
        first the primal simplex from the same basis, then a cold solve with presolve (measured on italy-652: a
        cold re-solve of the transmission master without presolve took 31 000 iterations)."""
        value = self.h.getOptionValue("simplex_strategy")
        strategy = value[1] if isinstance(value, tuple) else value  # (status, value) in some versions
        self.h.setOptionValue("simplex_strategy", 4)  # primal
        try:
            sol = self.solve()
        finally:
            self.h.setOptionValue("simplex_strategy", strategy)
        if sol.status is SolveStatus.OPTIMAL:
            return sol
        self.h.clearSolver()
        self._presolve_next = True
        return self.solve()

    def solve(self) -> Solution:
        run_before = self.h.getRunTime()  # HiGHS's run clock accumulates over the object's runs
        limit = np.inf if self.time_limit_s is None else run_before + float(self.time_limit_s)
        self.h.setOptionValue("time_limit", float(limit))
        if self._presolve_next:
            self.h.setOptionValue("presolve", "on")
            try:
                _run(self.h, self.threads)
            finally:
                self.h.setOptionValue("presolve", "off")
                self._presolve_next = False
        else:
            _run(self.h, self.threads)
        ms = self.h.getModelStatus()
        sol = self.h.getSolution()
        info = self.h.getInfo()
        status = _STATUS.get(ms, SolveStatus.OTHER)
        x = np.asarray(sol.col_value, float) if sol.value_valid else np.full(self.n, np.nan)
        out = Solution(
            status=status,
            x=x,
            objective=float(info.objective_function_value) if sol.value_valid else float("nan"),
            row_dual=np.asarray(sol.row_dual, float) if sol.dual_valid else None,
            cone_dual=None,
            iterations=int(max(info.simplex_iteration_count, 0)),
            solve_time_s=float(self.h.getRunTime() - run_before),
            solver="highs (warm)",
            message=self.h.modelStatusToString(ms),
        )
        out.col_dual = np.asarray(sol.col_dual, float) if sol.dual_valid else None
        return out
