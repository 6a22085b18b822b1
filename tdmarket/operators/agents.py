"""Operator agents.  Each is built from its own area's sub-instance only and answers message objects.

* `DSO` — builds its residual supply curve, evaluates cuts, dispatches its resources for a cleared exchange
  and prices its own dispatch.  Children (sub-DSOs) are seen only through their offers.
* `TSO` — clears transmission with its own orders and the DSO offers as if they were orders, and sends
  schedules and interface prices down.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np

from ..errors import SolverError
from ..formulations.clearing import ClearingProblem
from ..formulations.options import ModelOptions
from ..model.instance import Instance
from ..schemes.centralized import solve_clearing
from ..schemes.hierarchical import (
    AreaModel,
    Cut,
    Offer,
    SliceCurve,
    add_offers,
    bound_offers,
    build_curves,
    child_exchange_columns,
)
from ..solvers import SolveStatus, solve
from .messages import CurveOffer, CutReply, DispatchReport, Schedule


def offer_from_message(msg: CurveOffer) -> Offer:
    curves = [
        SliceCurve(period=p, xi=x, phi=c, eps=e, evaluations=len(x), flags=f)
        for p, x, c, e, f in zip(msg.periods, msg.xi_mw, msg.cost_eur, msg.eps_eur, msg.flags)
    ]
    cuts = [Cut(**c) for c in msg.cuts]
    return Offer(area=msg.sender, curves=curves, cuts=cuts, lo=[c.lo for c in curves], hi=[c.hi for c in curves])


def add_cut_replies(offer: Offer, replies: list[CutReply]) -> Offer:
    offer.cuts.extend(Cut(point=r.point_mw, value=r.cost_eur, slope=r.slope_eur_mw) for r in replies)
    return offer


_MODEL_CACHE: dict = {}


class DSO:
    def __init__(
        self,
        sub: Instance,
        opts: ModelOptions,
        parent: str,
        child_offers: list[CurveOffer] = (),
        locked: dict | None = None,
    ):
        self.sub = sub
        self.locked = locked
        self.name = sub.areas.name[0]
        self.parent = parent
        self.opts = opts
        self.child_msgs = list(child_offers)
        self.children = [m.sender for m in self.child_msgs]

    def _offers(self) -> list[Offer]:
        return [offer_from_message(m) for m in self.child_msgs]

    def curve(self, curve_tol: float, max_evals: int) -> CurveOffer:
        model = AreaModel(self.sub, self.opts.relaxed(), self._offers(), locked=self.locked)
        curves, cuts, _ = build_curves(model, curve_tol=curve_tol, max_evals=max_evals)
        return CurveOffer(
            sender=self.name,
            receiver=self.parent,
            stage="curve",
            periods=[c.period for c in curves],
            xi_mw=[c.xi for c in curves],
            cost_eur=[c.phi for c in curves],
            eps_eur=[c.eps for c in curves],
            flags=[c.flags for c in curves],
            cuts=[asdict(c) for c in cuts],
        )

    def model(self, opts: ModelOptions) -> AreaModel:
        """The area's value-function model, cached per process: a DSO answers many cut requests, and only the
        exchange changes between them."""
        key = (
            self.sub.fingerprint(),
            opts,
            tuple(m.to_json() for m in self.child_msgs),
            tuple((k, v.tobytes()) for k, v in sorted((self.locked or {}).items())),
        )
        model = _MODEL_CACHE.get(key)
        if model is None:
            if len(_MODEL_CACHE) >= 256:
                _MODEL_CACHE.clear()
            model = _MODEL_CACHE[key] = AreaModel(self.sub, opts, self._offers(), locked=self.locked)
        return model

    def evaluate(self, sched: Schedule) -> CutReply:
        model = self.model(self.opts.relaxed())
        ev = model.evaluate(np.asarray(sched.export_mw))
        slack = model.cp.cost_parts(ev.x)["slack_cost_eur"] > 1e-6
        return CutReply(
            sender=self.name,
            receiver=self.parent,
            stage="iterate",
            point_mw=list(sched.export_mw),
            cost_eur=ev.cost,
            slope_eur_mw=ev.rho.tolist(),
            uses_slack=bool(slack),
            iteration=sched.iteration,
        )

    def base_exchange(self) -> Schedule:
        """x^0: the export with every order at zero and x, y free, minimising κ·slack + losses (MODEL.md §7)."""
        model = self.model(self.opts.relaxed())
        cp = model.cp
        prog = cp.prog.copy()
        xi = prog.var("xi").index
        prog.set_bounds(xi, 0.0, 0.0)
        c = prog.c.copy()
        c[xi] = 0.0
        if cp.dist.conic and len(cp.dist.line):
            c[cp.dist.l_grid.ravel()] = np.repeat(cp.dist.r, self.sub.n_periods)  # € per MW of loss
        prog.set_cost(c)
        sol = model._solve(prog)
        if sol.status not in (SolveStatus.OPTIMAL, SolveStatus.ALMOST_OPTIMAL):  # a schedule, not a price
            raise SolverError(f"{self.name}: base-case exchange failed ({sol.status.value})")
        x0 = sol.x[cp.own_x]
        return Schedule(
            sender=self.name,
            receiver=self.parent,
            stage="base-exchange",
            periods=[int(p) for p in self.sub.periods],
            export_mw=x0.tolist(),
            price_eur_mwh=[],
        )

    def _price_at_interface(self, model: AreaModel, sol, x_star: np.ndarray, pi: np.ndarray):
        """Price the own dispatch consistently with the interface price π (MODEL.md §6.2 step 4, §8).

        With the exchange fixed, the duals are not unique where the cleared exchange sits at a kink of C_d (for
        instance at the edge of the slack-free range): an interior-point solver then returns an arbitrary point
        of the subdifferential, up to the slack penalty.  Instead the exchange may move by ±1e-4 MW and is paid
        π: if π is a subgradient of C_d at x*, the DSO keeps x* and its prices support π; otherwise the bound
        binds and ρ = π + its dual.  Binaries stay fixed at the dispatch; the published quantities are the
        dispatch's own."""
        from ..solvers.misocp import fix_integers

        dt = self.opts.period_hours
        prog = fix_integers(model.cp.prog, sol.x) if model.cp.prog.has_integers else model.cp.prog.copy()
        delta = 1e-4
        prog.set_row_bounds(model.fix_rows, x_star - delta, x_star + delta)
        c = prog.c.copy()
        c[model.cp.own_x] -= pi * dt
        prog.set_cost(c)
        psol = solve(prog)
        if not psol.ok:
            return sol.row_dual, sol.row_dual[model.fix_rows] / dt
        return psol.row_dual, pi + psol.row_dual[model.fix_rows] / dt

    def dispatch(
        self,
        sched: Schedule,
        *,
        mip_gap: float,
        time_limit: float | None,
        threads: int,
        relax: bool,
        own_offer: CurveOffer | None = None,
    ) -> dict:
        """Dispatch own resources for the cleared exchange, price the own dispatch, schedule the children."""
        t0 = time.perf_counter()
        opts = self.opts.relaxed() if relax else self.opts
        offers = self._offers()
        model = AreaModel(self.sub, opts, offers, locked=self.locked)
        x_star = np.asarray(sched.export_mw)
        model.cp.prog.set_row_bounds(model.fix_rows, x_star, x_star)
        sol, mip = solve_clearing(model.cp, mip_gap=mip_gap, time_limit=time_limit, threads=threads)
        cp = model.cp
        dt = self.opts.period_hours
        row_dual = sol.row_dual
        rho = row_dual[model.fix_rows] / dt
        pi = np.asarray(sched.price_eur_mwh, float) if sched.price_eur_mwh else np.full(len(x_star), np.nan)
        if sched.stage == "dispatch" and np.isfinite(pi).all():
            row_dual, rho = self._price_at_interface(model, sol, x_star, pi)
        tables = cp.extract(sol.x, row_dual)
        own = cp.cost_parts(sol.x)
        # curve error at the schedule: relaxed cost at x* versus what this DSO's curve promised the parent;
        # integrality cost: mixed-integer dispatch cost versus the relaxed cost at the same exchange
        curve_err = integrality = 0.0
        if own_offer is not None:
            rel = model if relax else AreaModel(self.sub, self.opts.relaxed(), offers, locked=self.locked)
            c_rel = rel.evaluate(x_star).cost
            promised = sum(
                float(np.interp(x, xi, ph)) for x, xi, ph in zip(x_star, own_offer.xi_mw, own_offer.cost_eur)
            )
            curve_err = c_rel - promised
            integrality = float(sol.objective) - c_rel
        child_scheds = []
        b = self.sub.buses
        bal = cp.balance
        scale = 1.0 / dt
        for a, off in enumerate(offers):
            cols = model.child_cols[a]
            xc = sol.x[cols]
            root = self.sub.areas.root_bus[self.sub.areas.name.index(off.area)]
            price = row_dual[cp.prog.rows["balance_p"].start + bal.p_row[root]] * scale
            child_scheds.append(
                Schedule(
                    sender=self.name,
                    receiver=off.area,
                    stage="dispatch",
                    periods=[int(p) for p in self.sub.periods],
                    export_mw=xc.tolist(),
                    price_eur_mwh=price.tolist(),
                )
            )
        chk = cp.check(sol.x)
        slack_mw = float(tables["buses"].loc[~tables["buses"].node.isin(b.id[b.is_boundary]), "slack_p_mw"].abs().sum())
        report = DispatchReport(
            sender=self.name,
            receiver=self.parent,
            stage="dispatch",
            slack_mw=slack_mw,
            curve_error_eur=curve_err,
            rho_eur_mwh=rho.tolist(),
            integrality_cost_eur=integrality,
            soc_gap_max=chk.max_soc_gap,
        )
        # keep only what this operator owns (boundary buses belong to neighbours)
        tables["buses"] = tables["buses"][~tables["buses"].node.isin(b.id[b.is_boundary])].reset_index(drop=True)
        return {
            "area": self.name,
            "cost": own,
            "mip": mip,
            "tables": tables,
            "report": report,
            "child_schedules": child_scheds,
            "rho": rho,
            "check_ok": chk.ok(1e-5),
            "activations": {"xi": sol.x[cp.prog.var("xi").index], "z": sol.x[cp.prog.var("z").index]},
            "time_s": time.perf_counter() - t0,
            "solver_time_s": sol.solve_time_s,
        }


class TSO:
    def __init__(self, sub: Instance, opts: ModelOptions):
        self.sub = sub
        self.opts = opts

    def _build(self, offers: list[Offer], *, use_curves: bool, use_cuts: bool, integer: bool):
        opts = self.opts if integer else self.opts.relaxed()
        cp = ClearingProblem(self.sub, opts)
        names = [o.area for o in offers]
        cols = child_exchange_columns(cp, names)
        maps = add_offers(cp, cols, offers, use_curves=use_curves, use_cuts=use_cuts)
        bound_offers(cp.prog, cols, offers, use_curves)
        return cp, cols, maps, names

    def tables(self, cp, sol) -> dict:
        """Result tables of a TSO solve (only what the TSO owns)."""
        tables = cp.extract(sol.x, sol.row_dual)
        b = self.sub.buses
        tables["buses"] = tables["buses"][~tables["buses"].node.isin(b.id[b.is_boundary])].reset_index(drop=True)
        return tables

    def _result(self, cp, cols, maps, names, sol, mip, with_tables: bool = True) -> dict:
        """Exchanges, interface prices and costs of a TSO solve; the tables only when asked (they are built once,
        for the published solution, not at every cut round)."""
        dt = self.opts.period_hours
        x_star = sol.x[cols]
        bal = cp.balance
        area_names = list(np.array(cp.inst.areas.name)[cp.iface.area])
        host = cp.iface.inject_bus[[area_names.index(n) for n in names]] if names else np.zeros(0, int)
        pi = (
            sol.row_dual[cp.prog.rows["balance_p"].start + bal.p_row[host]] / dt
            if names
            else np.zeros((0, self.sub.n_periods))
        )
        offer_value = sum(float(sol.x[maps[k]].sum()) for k in ("eta", "theta") if k in maps)
        return {
            "x": x_star,
            "pi": pi,
            "objective": float(sol.objective),
            "offer_value": offer_value,
            "cost": cp.cost_parts(sol.x),
            "tables": self.tables(cp, sol) if with_tables else None,
            "mip": mip,
            "names": names,
            "solver_time_s": sol.solve_time_s,
            "sol": sol,
            "cp": cp,
        }

    def clear(
        self,
        offers: list[Offer],
        *,
        use_curves: bool,
        use_cuts: bool,
        integer: bool,
        mip_gap: float = 1e-4,
        time_limit: float | None = None,
        threads: int = 1,
    ) -> dict:
        """Clear transmission with the offers (MILP with the TSO's binaries, then the LP with them fixed)."""
        cp, cols, maps, names = self._build(offers, use_curves=use_curves, use_cuts=use_cuts, integer=integer)
        sol, mip = solve_clearing(cp, mip_gap=mip_gap, time_limit=time_limit, threads=threads)
        return self._result(cp, cols, maps, names, sol, mip)

    def clear_fixed(
        self,
        schedule: dict[str, np.ndarray],
        *,
        integer: bool,
        mip_gap: float = 1e-4,
        time_limit: float | None = None,
        threads: int = 1,
    ) -> dict:
        """Clear transmission with the T orders only and every exchange held at `schedule` (MW per period)."""
        opts = self.opts if integer else self.opts.relaxed()
        cp = ClearingProblem(self.sub, opts)
        names = list(schedule)
        cols = child_exchange_columns(cp, names)
        for a, n in enumerate(names):
            cp.prog.set_bounds(cols[a], schedule[n], schedule[n])
        sol, mip = solve_clearing(cp, mip_gap=mip_gap, time_limit=time_limit, threads=threads)
        return self._result(cp, cols, {}, names, sol, mip)

    def cut_master(self, offers: list[Offer], threads: int = 1) -> CutMaster:
        return CutMaster(self, offers, threads)


class CutMaster:
    """The TSO's relaxed master of the cut exchange, kept alive in HiGHS: each round appends the new cuts
    θ_d >= C_d(x̂) + ρᵀ(x_d − x̂) and re-solves from the previous basis.  Two copies are kept, one for the
    lower bound (no trust region) and one for the trial point (with the trust-region box), so that neither
    loses its basis to bound changes made for the other."""

    def __init__(self, tso: TSO, offers: list[Offer], threads: int = 1):
        from ..solvers.highs import PersistentLP

        self.tso = tso
        self.cp, self.cols, self.maps, self.names = tso._build(offers, use_curves=False, use_cuts=True, integer=False)
        self.lps = {
            "bound": PersistentLP(self.cp.prog, threads=threads),
            "trial": PersistentLP(self.cp.prog, threads=threads),
        }
        flat = self.cols.ravel()
        self.x_lb, self.x_ub = self.cp.prog.lb[flat].copy(), self.cp.prog.ub[flat].copy()

    def add_cuts(self, replies: list[CutReply]) -> None:
        from ..formulations.terms import Terms

        n = self.cp.prog.n
        T = self.cols.shape[1]
        t = Terms(len(replies))
        lo = np.zeros(len(replies))
        for k, r in enumerate(replies):
            a = self.names.index(r.sender)
            slope = np.asarray(r.slope_eur_mw)
            t.add([k], [self.maps["theta"][a]], 1.0)
            t.add(np.full(T, k), self.cols[a], -slope)
            lo[k] = r.cost_eur - slope @ np.asarray(r.point_mw)
        rows = t.matrix(n)
        for lp in self.lps.values():
            lp.add_rows(rows, lo, np.inf)

    def solve(self, center: np.ndarray | None = None, radius: float | None = None) -> dict:
        """Solve the master; with `center`/`radius`, inside the box |x − center| <= radius (a trust region)."""
        flat = self.cols.ravel()
        if center is None:
            lp = self.lps["bound"]
        else:
            lp = self.lps["trial"]
            c = np.asarray(center, float).ravel()
            lo = np.minimum(np.maximum(self.x_lb, c - radius), self.x_ub)
            hi = np.maximum(np.minimum(self.x_ub, c + radius), self.x_lb)
            lp.set_col_bounds(flat, lo, hi)
        sol = lp.solve()
        if sol.status is not SolveStatus.OPTIMAL:  # warm start went astray: solve once more from scratch
            lp.h.clearSolver()
            sol = lp.solve()
        if sol.status is not SolveStatus.OPTIMAL:
            raise SolverError(f"TSO master LP failed: {sol.status.value} {sol.message}")
        # a valid lower bound of the master WITHOUT the trust region, from this solve's duals (weak duality)
        col_lb, col_ub = lp.col_lb.copy(), lp.col_ub.copy()
        col_lb[flat], col_ub[flat] = self.x_lb, self.x_ub
        bound = lp.dual_bound(sol, col_lb, col_ub)
        sol.row_dual = sol.row_dual[: self.cp.prog.m]
        res = self.tso._result(self.cp, self.cols, self.maps, self.names, sol, {"binaries": 0}, with_tables=False)
        res["lower_bound"] = min(bound, res["objective"]) if np.isfinite(bound) else -np.inf
        return res
