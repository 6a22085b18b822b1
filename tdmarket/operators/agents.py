"""Operator agents.  Each is built from its own area's sub-instance only and answers message objects.

* `DSO` — builds its residual supply curve, evaluates cuts, dispatches its resources for a cleared exchange
  and prices its own dispatch.  Children (sub-DSOs) are seen only through their offers.
* `TSO` — clears transmission with its own orders and the DSO offers as if they were orders, and sends
  schedules and interface prices down.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..decomposition.area_model import AreaModel
from ..decomposition.curves import build_curves
from ..decomposition.exchange import CutPool, ParentPoint
from ..decomposition.master import CutMaster, MasterSolution
from ..decomposition.messages import CurveOffer, CutReply, DispatchReport, Schedule
from ..decomposition.offers import Cut, Offer, add_offer_rows, bound_offers, child_exchange_columns, offer_from_message
from ..errors import SolverError
from ..formulations.clearing import ClearingProblem
from ..formulations.options import ModelOptions
from ..model.instance import Instance
from ..schemes.centralized import solve_clearing
from ..solvers import SolveStatus, solve
from ..solvers.result import Solution


@dataclass
class DispatchResult:
    """A DSO's dispatch for its schedule: its own tables, costs (€), the report sent up, its children's schedules."""

    area: str
    cost: dict
    mip: dict
    tables: dict
    report: DispatchReport
    child_schedules: list[Schedule]
    rho: np.ndarray
    check_ok: bool
    activations: dict
    time_s: float
    solver_time_s: float


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
        self._relaxed: AreaModel | None = None  # kept for the agent's lifetime: every round only moves x̂
        self._own_offer: CurveOffer | None = None  # the curves this agent sent its parent

    def _offers(self) -> list[Offer]:
        return [offer_from_message(m) for m in self.child_msgs]

    def model(self) -> AreaModel:
        """The area's relaxed value-function model C_d(x̂), built once per agent."""
        if self._relaxed is None:
            self._relaxed = AreaModel(self.sub, self.opts.relaxed(), self._offers(), locked=self.locked)
        return self._relaxed

    def curve(self, curve_tol: float, max_evals: int) -> CurveOffer:
        curves, cuts, _ = build_curves(self.model(), curve_tol=curve_tol, max_evals=max_evals)
        self._own_offer = CurveOffer(
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
        return self._own_offer

    def evaluate(self, sched: Schedule) -> CutReply:
        model = self.model()
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
        """x^0: the export with every order at zero and x, y free, minimising κ·slack + losses (docs/model.md §7)."""
        model = self.model()
        cp = model.cp
        prog = cp.prog.copy()
        xi = prog.var("xi").index
        prog.set_bounds(xi, 0.0, 0.0)
        c = prog.c.copy()
        c[xi] = 0.0
        c += cp.dist.loss_cost(prog.n)  # € per MW of loss (zero where the formulation has no losses)
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
        """Price the own dispatch consistently with the interface price π (docs/model.md §6.2 step 4, §8).

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
    ) -> DispatchResult:
        """Dispatch own resources for the cleared exchange, price the own dispatch, schedule the children."""
        t0 = time.perf_counter()
        own_offer = own_offer if own_offer is not None else self._own_offer
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
            rel = model if relax else self.model()
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
        return DispatchResult(
            area=self.name,
            cost=own,
            mip=mip,
            tables=tables,
            report=report,
            child_schedules=child_scheds,
            rho=rho,
            check_ok=chk.ok(1e-5),
            activations={"xi": sol.x[cp.prog.var("xi").index], "z": sol.x[cp.prog.var("z").index]},
            time_s=time.perf_counter() - t0,
            solver_time_s=sol.solve_time_s,
        )


@dataclass
class TSOClearing:
    """A transmission clearing: exports x (A, T) MW of the child areas `names`, interface prices π (A, T)
    €/MWh, the objective with the offers (€), the offers' value Σθ or Ση (€), own cost parts, MIP information and a
    certified lower bound of the integrated problem when the clearing provides one (€)."""

    names: list[str]
    x: np.ndarray
    pi: np.ndarray
    objective: float
    offer_value: float
    cost: dict
    mip: dict
    solver_time_s: float
    lower_bound: float = -np.inf
    cp: ClearingProblem | None = field(default=None, repr=False)
    sol: Solution | None = field(default=None, repr=False)
    _tables: dict | None = field(default=None, repr=False)

    @property
    def own_cost(self) -> float:
        return self.objective - self.offer_value

    def tables(self, owner: TSO) -> dict:
        """Result tables, built once, for the published solution only."""
        if self._tables is None:
            self._tables = owner.tables(self.cp, self.sol)
        return self._tables


class TSO:
    def __init__(self, sub: Instance, opts: ModelOptions):
        self.sub = sub
        self.opts = opts

    def _build(self, offers: list[Offer], *, use_curves: bool, use_cuts: bool, integer: bool):
        opts = self.opts if integer else self.opts.relaxed()
        cp = ClearingProblem(self.sub, opts)
        names = [o.area for o in offers]
        cols = child_exchange_columns(cp, names)
        maps = add_offer_rows(cp.prog, cols, offers, use_curves=use_curves, use_cuts=use_cuts)
        bound_offers(cp.prog, cols, offers, use_curves)
        return cp, cols, maps, names

    def tables(self, cp, sol) -> dict:
        """Result tables of a TSO solve (only what the TSO owns)."""
        tables = cp.extract(sol.x, sol.row_dual)
        b = self.sub.buses
        tables["buses"] = tables["buses"][~tables["buses"].node.isin(b.id[b.is_boundary])].reset_index(drop=True)
        return tables

    def _result(self, cp, cols, maps, names, sol, mip) -> TSOClearing:
        dt = self.opts.period_hours
        bal = cp.balance
        area_names = list(np.array(cp.inst.areas.name)[cp.iface.area])
        host = cp.iface.inject_bus[[area_names.index(n) for n in names]] if names else np.zeros(0, int)
        if not names:
            pi = np.zeros((0, self.sub.n_periods))
        elif sol.row_dual is None:  # a proposal without prices (level step of the cut exchange)
            pi = np.full((len(names), self.sub.n_periods), np.nan)
        else:
            pi = sol.row_dual[cp.prog.rows["balance_p"].start + bal.p_row[host]] / dt
        offer_value = sum(float(sol.x[maps[k]].sum()) for k in ("eta", "theta") if k in maps)
        lb = mip.get("lower_bound")
        return TSOClearing(
            names=names,
            x=sol.x[cols],
            pi=pi,
            objective=float(sol.objective),
            offer_value=offer_value,
            cost=cp.cost_parts(sol.x),
            mip=mip,
            solver_time_s=sol.solve_time_s,
            lower_bound=float(lb) if lb is not None else -np.inf,
            cp=cp,
            sol=sol,
        )

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
    ) -> TSOClearing:
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
    ) -> TSOClearing:
        """Clear transmission with the T orders only and every exchange held at `schedule` (MW per period)."""
        opts = self.opts if integer else self.opts.relaxed()
        cp = ClearingProblem(self.sub, opts)
        names = list(schedule)
        cols = child_exchange_columns(cp, names)
        for a, n in enumerate(names):
            cp.prog.set_bounds(cols[a], schedule[n], schedule[n])
        sol, mip = solve_clearing(cp, mip_gap=mip_gap, time_limit=time_limit, threads=threads)
        res = self._result(cp, cols, {}, names, sol, mip)
        res.offer_value = 0.0
        return res

    # ---------------------------------------------------------------- the cut exchange (decomposition.exchange)
    def _cut_offers(self, names: list[str], pool: CutPool) -> list[Offer]:
        offers = [Offer(area=n) for n in names]
        for k in range(len(pool)):
            offers[pool.area[k]].cuts.append(
                Cut(point=pool.points[k].tolist(), value=float(pool.values[k]), slope=pool.slopes[k].tolist())
            )
        return offers

    def cut_master(self, names: list[str], pool: CutPool, threads: int = 1) -> CutMaster:
        """The relaxed master of the cut exchange, seeded with every cut in `pool`."""
        cp, cols, maps, _ = self._build(self._cut_offers(names, pool), use_curves=False, use_cuts=True, integer=False)
        master = CutMaster(cp.prog, cols, maps["theta"], threads=threads)
        master.context = (cp, cols, maps, names)
        return master

    def master_point(self, master: CutMaster, ms: MasterSolution) -> ParentPoint:
        cp, cols, maps, names = master.context
        res = self._result(cp, cols, maps, names, ms.sol, {"binaries": 0, "lower_bound": ms.lower_bound})
        return ParentPoint(x=res.x, own_cost=res.own_cost, lower_bound=ms.lower_bound, handle=res, integer=False)

    def curve_point(self, offers: list[Offer], threads: int = 1) -> ParentPoint:
        """The relaxed clearing with the children's residual supply curves (secant models within their domains):
        the one-shot scheme's exchange, a good first proposal of the cut exchange."""
        res = self.clear(offers, use_curves=True, use_cuts=False, integer=False, threads=threads)
        return ParentPoint(x=res.x, own_cost=res.own_cost, lower_bound=-np.inf, handle=res, integer=False)

    def clear_with_cuts(
        self,
        names: list[str],
        pool: CutPool,
        *,
        mip_gap: float,
        time_limit: float | None,
        threads: int = 1,
        box: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> ParentPoint:
        """Mixed-integer master: the TSO's own binaries with every cut so far; with `box` (lo, hi) (A, T) MW the
        exchanges stay inside it (then the result bounds nothing: lower_bound = −inf)."""
        cp, cols, maps, names = self._build(
            self._cut_offers(names, pool), use_curves=False, use_cuts=True, integer=True
        )
        if box is not None:
            lo = np.maximum(cp.prog.lb[cols], box[0])
            hi = np.minimum(cp.prog.ub[cols], box[1])
            cp.prog.set_bounds(cols, lo, np.maximum(lo, hi))
        sol, mip = solve_clearing(cp, mip_gap=mip_gap, time_limit=time_limit, threads=threads)
        res = self._result(cp, cols, maps, names, sol, mip)
        lb = res.lower_bound if box is None else -np.inf
        return ParentPoint(x=res.x, own_cost=res.own_cost, lower_bound=lb, handle=res, integer=True)

    def clear_without_commitments(self, names: list[str], pool: CutPool, threads: int = 1) -> ParentPoint:
        """Fallback that is feasible by construction: every binary of the TSO at 0 (no all-or-nothing, start/stop
        or logic order activated), the rest cleared as an LP with the cuts; penalised slack closes any balance."""
        cp, cols, maps, names = self._build(
            self._cut_offers(names, pool), use_curves=False, use_cuts=True, integer=True
        )
        ints = np.flatnonzero(cp.prog.integrality)
        cp.prog.set_bounds(ints, 0.0, 0.0)
        cp.prog.relax_integrality()
        sol, mip = solve_clearing(cp, threads=threads)
        res = self._result(cp, cols, maps, names, sol, mip)
        return ParentPoint(
            x=res.x, own_cost=res.own_cost, lower_bound=-np.inf, handle=res, integer=True, note="binaries at zero"
        )
