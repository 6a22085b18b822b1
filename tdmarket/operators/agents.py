"""The DSO agent, built from its own area's sub-instance only; it answers message objects.

It builds its residual supply curve, evaluates cuts, dispatches its resources for a cleared exchange and prices
its own dispatch.  Children (sub-DSOs) are seen only through their offers.  The TSO agent is in `tso.py`.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..decomposition.area_model import AreaModel, Evaluation, EvaluationError
from ..decomposition.curves import build_curves
from ..decomposition.exchange import CutPool
from ..decomposition.messages import (
    BestResponse,
    CostAtExchange,
    CurveOffer,
    CutReply,
    DispatchReport,
    MarketCost,
    NestedEvaluation,
    Schedule,
)
from ..decomposition.offers import Cut, Offer, offer_from_message, widen_cut
from ..errors import SolverError
from ..formulations.options import ModelOptions
from ..market.pricing import annotate_buses, publish_prices
from ..model.instance import Instance
from ..schemes.centralized import solve_clearing
from ..solvers import SolveStatus, solve
from ..solvers.acceptance import require
from ..solvers.misocp import fix_integers

PRICE_STEP = 0.1  # integer repair: a DSO's menu holds its best responses at (1 ± PRICE_STEP)·π ± 1 €/MWh
KEPT_DISPATCHES = 4  # mixed-integer dispatches an agent keeps (`_mip_solutions`)
RECENT_POINTS = 64  # exchanges at which a DSO with sub-DSOs keeps its own cost for `add_child_cuts`


def configuration_label(model: AreaModel, x: np.ndarray) -> str:
    """An opaque label of the binaries of a mixed-integer solution `x` of `model` (a hash: equal binaries, equal
    labels; it reveals nothing else about the area's orders)."""
    ints = model.cp.orders.binary_columns(model.cp.prog)
    bits = np.round(np.asarray(x, float)[ints]).astype(np.int8)
    return hashlib.blake2b(bits.tobytes(), digest_size=8).hexdigest()


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
    pricing_time_s: float = 0.0  # the price intervals of the dispatch (tdmarket.market.pricing)
    configuration: str | None = None  # `configuration_label` of the dispatched binaries (None: no binaries)


class DSO:
    def __init__(
        self,
        sub: Instance,
        opts: ModelOptions,
        parent: str,
        child_offers: Sequence[CurveOffer] = (),
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
        # the mixed-integer cost (€) of every schedule dispatched, by its exchange (MW) bytes: the integer repair may
        # try a point and keep the one dispatched before
        self._dispatched: dict[bytes, float] = {}
        # the last mixed-integer dispatches (solution, MIP info) by schedule: the integer repair dispatches a kept
        # point again at its published interface price, and the price does not change the dispatch, only its pricing
        self._mip_solutions: OrderedDict[tuple, tuple[Any, dict]] = OrderedDict()
        # tangent cuts of this area's cones from its best responses' outer approximations: every best response
        # solves the same program with the exchange free (other prices, or an L1 pull), so each cut stays valid
        self._oa_cuts: list = []
        # cuts of the children's costs received since the curves (`add_child_cuts`), by child name
        self._child_cuts: dict[str, list[Cut]] = {c: [] for c in self.children}
        # own cost (€, children's terms excluded) at the exchanges this DSO was last evaluated at, by exchange bytes
        self._own_cost_at: OrderedDict[bytes, float] = OrderedDict()
        # by exchange: the lowest actual cost found there (€) and the children's (P, Q, w) of that evaluation
        self._best_children_at: OrderedDict[bytes, tuple[float, dict[str, list[float]]]] = OrderedDict()

    def _offers(self) -> list[Offer]:
        """The children's offers: their curves' cuts (every curve evaluation is a cut of the child's cost over all
        periods) and every cut received since; `_area_model` models them by cuts (docs/model.md §6.4)."""
        offers = [offer_from_message(m) for m in self.child_msgs]
        for off in offers:
            off.cuts = off.cuts + self._child_cuts.get(off.area, [])
        return offers

    def _area_model(self, opts: ModelOptions) -> AreaModel:
        # a child's curves are slices of its cost through one point, not bounds of it: where several periods'
        # exchanges move at once their sum can be above or below the cost (generated 4-period systems: the
        # exchange's bound 9 EUR above the integrated optimum, the clearing 3e-4 above it); its cuts are valid
        # everywhere and are refined at the exchanges this DSO proposes (the scheme's nested rounds)
        return AreaModel(
            self.sub,
            opts,
            self._offers(),
            use_curves=not self.children,
            use_cuts=bool(self.children),
            locked=self.locked,
        )

    def model(self) -> AreaModel:
        """The area's relaxed value-function model C_d(x̂), built once per agent."""
        if self._relaxed is None:
            self._relaxed = self._area_model(self.opts.relaxed())
        return self._relaxed

    def add_child_cuts(
        self, point: Sequence[float], replies: Sequence[CutReply], costs: Sequence[CostAtExchange] = ()
    ) -> CostAtExchange:
        """Take the children's replies at the exchanges this DSO proposed them when it was asked at `point` (its
        exchange, or its exchange, Q and w as its `NestedEvaluation` gave it) as cuts of their costs, and answer
        its cost there with the children's actual costs: its own cost at that evaluation plus each child's cost
        (its `CostAtExchange` in `costs` if it has children of its own, else its reply's value)."""
        x = np.asarray(point, float)
        own = self._own_cost_at.get(x.tobytes())
        if own is None:
            raise ValueError(f"{self.name}: not evaluated at {x.tolist()}")
        actual = {r.sender: r.cost_eur for r in replies}
        actual.update({c.sender: c.cost_eur for c in costs})
        self._take_child_cuts(replies)
        total = own + float(sum(actual[c] for c in self.children))
        # the children's points of the best evaluation at this exchange: a dispatch here holds them (a
        # new solve with the cuts since would pick points its children were never asked at)
        kept = self._best_children_at.get(x.tobytes())
        if kept is None or total < kept[0]:
            points = {r.sender: r.coupling_point for r in replies}
            _keep(self._best_children_at, x.tobytes(), (total, {c: points[c] for c in self.children}), RECENT_POINTS)
        return CostAtExchange(
            sender=self.name,
            receiver=self.parent,
            stage="iterate",
            point_mw=x[: len(self.sub.periods)].tolist(),
            cost_eur=total,
            iteration=replies[0].iteration if replies else 0,
        )

    def _take_child_cuts(self, replies: Sequence[CutReply]) -> int:
        index = {c: i for i, c in enumerate(self.children)}
        new: list[tuple[int, Cut]] = []
        for r in replies:
            if r.sender not in index or r.receiver != self.name:
                raise ValueError(f"{self.name}: a cut reply from {r.sender} to {r.receiver} is not from its child")
            new.append((index[r.sender], Cut(point=r.coupling_point, value=r.cost_eur, slope=r.coupling_slope)))
            new.extend((index[r.sender], Cut(**c)) for c in r.extra_cuts)
        width = 3 * len(self.sub.periods)  # cuts in (P, Q, w); a cut in P alone has zero slopes in Q and w
        new = [(i, widen_cut(c, width)) for i, c in new]
        if not new:
            return 0
        for i, cut in new:
            self._child_cuts[self.children[i]].append(cut)
        if self._relaxed is not None:
            self._relaxed.add_child_cuts(
                np.array([i for i, _ in new]),
                np.array([c.point for _, c in new], float),
                np.array([c.value for _, c in new], float),
                np.array([c.slope for _, c in new], float),
            )
        # what was dispatched or best-responded with the old model is stale
        self._dispatched.clear()
        self._mip_solutions.clear()
        return len(new)

    def curve(self, curve_tol: float, max_evals: int, joint_ranges: bool = False) -> CurveOffer:
        """This area's curves (and cuts) for its parent; `joint_ranges` as in `build_curves` (for a parent that
        certifies the curves by a cut exchange)."""
        curves, cuts, _ = build_curves(
            self.model(), curve_tol=curve_tol, max_evals=max_evals, joint_ranges=joint_ranges
        )
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

    def evaluate(self, sched: Schedule) -> CutReply | NestedEvaluation:
        """C_d and a subgradient at the exchange of `sched`.  A DSO with sub-DSOs evaluates its cuts of their costs
        and also proposes each child its exchange there (`NestedEvaluation`); once they answered it sends its
        actual cost (`add_child_cuts`)."""
        model = self.model()
        x = _coupling_point(sched)
        T = len(sched.export_mw)
        ev = model.evaluate(x)
        slack = model.cp.cost_parts(ev.x)["slack_cost_eur"] > 1e-6
        extra = []
        back = self._halfway_back(x) if slack and len(x) == T else None
        if back is not None:
            eb = model.evaluate(back)
            extra.append(asdict(Cut(point=back.tolist(), value=eb.cost, slope=eb.rho.tolist())))
        reply = CutReply(
            sender=self.name,
            receiver=self.parent,
            stage="iterate",
            point_mw=list(sched.export_mw),
            cost_eur=ev.cost,
            slope_eur_mw=ev.rho[:T].tolist(),
            uses_slack=bool(slack),
            iteration=sched.iteration,
            extra_cuts=extra,
        )
        if len(x) > T:  # asked at (P, Q, w) by its parent DSO
            reply.point_mvar, reply.point_vsq_pu = list(sched.reactive_mvar), list(sched.root_vsq_pu)
            reply.slope_eur_mvar, reply.slope_eur_pu = ev.rho[T : 2 * T].tolist(), ev.rho[2 * T :].tolist()
        if not self.children:
            return reply
        exports, counted = model.child_terms(ev.x)
        _keep(self._own_cost_at, x.tobytes(), ev.cost - counted, RECENT_POINTS)
        periods = [int(p) for p in self.sub.periods]
        return NestedEvaluation(
            reply,
            [
                _child_schedule(self.name, c, "iterate", periods, exports[i], [], sched.iteration)
                for i, c in enumerate(self.children)
            ],
            point=x.tolist(),
        )

    def _halfway_back(self, x: np.ndarray) -> np.ndarray | None:
        """The point halfway between an exchange x that needed slack and its projection on the slack-free ranges of
        this DSO's curves (MW per period; None without curves, or if x is inside them).  A proposal beyond the
        ranges often sits at the interface's rating, where the apparent-power circle leaves the exchange no
        reactive power and the subgradient reaches 10⁸–10¹⁰ €/MW: a cut that bounds nothing a little further in.
        Halfway back the cut carries about the slack's price and tells the parent what leaving the ranges costs
        (measured on generated italy-693 variants that need slack: the exchange stalled at the ratings without
        these cuts, docs/model.md §6.3)."""
        offer = self._own_offer
        if offer is None or len(offer.xi_mw) != len(x):
            return None
        lo = np.array([xi[0] for xi in offer.xi_mw], float)
        hi = np.array([xi[-1] for xi in offer.xi_mw], float)
        inside = np.clip(x, lo, hi)
        if np.max(np.abs(x - inside)) <= 1e-6:
            return None
        return inside + 0.5 * (x - inside)

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
        sol = model._solve(prog, published=True)
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

    def best_response(self, sched: Schedule, *, mip_gap: float, time_limit: float | None) -> BestResponse:
        """The exchange this DSO prefers at the interface prices π of `sched`, its binaries decided:
        arg min_x C^MI(x) − Δ·πᵀx over the interface's range (docs/model.md §6.3, integer repair).  Sent when
        its mixed-integer dispatch at the schedule cost more than its relaxation promised; the TSO decides
        whether the exchange moves.  Without a better point (or on a solver failure) it proposes the schedule."""
        x_star = np.asarray(sched.export_mw, float)
        pi = np.asarray(sched.price_eur_mwh, float)
        at_schedule = self._dispatched.get(x_star.tobytes())  # None: never dispatched there
        reply = BestResponse(
            sender=self.name,
            receiver=self.parent,
            stage="repair",
            periods=[int(p) for p in self.sub.periods],
            export_mw=x_star.tolist(),
            cost_eur=at_schedule,
            cost_at_schedule_eur=at_schedule,
        )
        if not self.opts.integer or not np.isfinite(pi).all():
            return reply
        model = self._exchange_free_model()
        base = model.cp.prog.c.copy()
        value = pi * self.opts.period_hours  # € per MW exported
        best = self._respond(model, base, value, mip_gap=mip_gap, time_limit=time_limit)
        if best is None:
            return reply
        x, cost, mip, label, solution = best
        reply.export_mw, reply.cost_eur = x.tolist(), cost
        # x minimises C_k(x) − valueᵀx over the interface box for its binaries k, so `value` is a subgradient of
        # C_k there (within the box, which the TSO's clearing never leaves)
        reply.configuration, reply.slope_eur_mw = label, value.tolist()
        reply.range_mw = self._configuration_range(model, solution, x)
        bound = mip.get("lower_bound")
        if bound is not None and np.isfinite(bound):
            reply.bound_eur = min(float(bound), cost - float(value @ x))
        # the menu: the exchange nearest to the schedule that the binaries deliver, and the best responses at
        # prices 10 % + 1 €/MWh above and below π, which find the configurations next to a tie (measured on the
        # property test's variants with integer repair gaps: ±10 % brought 3 of 9 within 1e-4 of centralized, ±20 %
        # two, ±50 % none).  The nearest exchange is asked for even where the dispatch paid no slack: it was asked
        # only then, and once interior-point slack residue stopped counting as slack (docs/model.md §5) one variant
        # lost it (seed 26: 7.4e-5 -> 5.2e-4 to centralized; always asked: all 50 variants' median 8.0e-7, 45 within
        # 1e-4, +3 % wall time)
        menu: list[tuple[Any, np.ndarray | None]] = [
            (self._nearest_deliverable(x_star, value, mip_gap=mip_gap, time_limit=time_limit), None)
        ]
        for sign in (1.0, -1.0):
            shifted = value + sign * (PRICE_STEP * np.abs(value) + self.opts.period_hours)  # € per MW
            menu.append((self._respond(model, base, shifted, mip_gap=mip_gap, time_limit=time_limit), shifted))
        for found, slope in menu:
            if found is None:
                continue
            reply.menu_mw.append(found[0].tolist())
            reply.menu_cost_eur.append(found[1])
            reply.menu_configuration.append(found[3])
            # the nearest exchange's subgradient is unknown (its L1 pull moves it by up to ρΔ)
            reply.menu_slope_eur_mw.append(None if slope is None else slope.tolist())
            reply.menu_range_mw.append(None if slope is None else self._configuration_range(model, found[4], found[0]))
        return reply

    def respond_to_market(self, msg: MarketCost, *, mip_gap: float, time_limit: float | None) -> BestResponse:
        """The exchange this DSO's binaries deliver that minimises its mixed-integer cost plus the rest of the
        market's cost as the parent models it (`MarketCost`: cuts V_k + g_kᵀ(x − X_k) of a convex function):
        min C^MI(x) + η, η >= every cut, over the interface rating (docs/model.md §6.3 item 8, market responses).
        Unlike a best response at prices, the cuts' kinks can make a configuration optimal that no price
        supports.  Answers a `BestResponse` whose menu holds that exchange, its cost C^MI(x) € and the label of its
        binaries (an empty menu on a solver failure)."""
        reply = BestResponse(
            sender=self.name, receiver=self.parent, stage="repair", periods=[int(p) for p in self.sub.periods]
        )
        T = len(self.sub.periods)
        if not self.opts.integer or not msg.cuts:
            return reply
        cuts = CutPool(T)
        cuts.add_messages(0, msg.cuts)
        points, values, slopes = cuts.points, cuts.values, cuts.slopes
        if not (np.isfinite(points).all() and np.isfinite(values).all() and np.isfinite(slopes).all()):
            return reply
        model = self._exchange_free_model()
        prog, cols, K = model.cp.prog, model.cp.own_x, len(values)
        eta = int(prog.add_variables("market_cost_eur", 1, -np.inf, np.inf, 1.0).index[0])
        rows = np.repeat(np.arange(K), T + 1)
        at = np.column_stack([np.tile(cols, (K, 1)), np.full(K, eta)]).ravel()
        coef = np.column_stack([-slopes, np.ones(K)]).ravel()
        # η >= V_k − min V + g_kᵀ(x − X_k): measured from the lowest value, which moves no choice and keeps η small
        lower = values - values.min() - np.einsum("kt,kt->k", slopes, points)
        prog.add_rows("market_cost_cuts", sp.csr_matrix((coef, (rows, at)), shape=(K, prog.n)), lower, np.inf)
        try:
            sol, _ = solve_clearing(model.cp, mip_gap=mip_gap, time_limit=time_limit, oa_cuts=self._oa_cuts)
        except SolverError:
            return reply
        reply.menu_mw.append(sol.x[cols].tolist())
        reply.menu_cost_eur.append(float(sol.objective - sol.x[eta]))
        reply.menu_configuration.append(configuration_label(model, sol.x))
        reply.menu_slope_eur_mw.append(None)
        reply.menu_range_mw.append(None)
        return reply

    def _exchange_free_model(self) -> AreaModel:
        """This area's model with its binaries and the exchange free within the interface rating."""
        model = self.model().with_binaries()
        T = len(model.fix_rows)
        model.cp.prog.set_row_bounds(model.fix_rows, np.full(T, -model.rating), np.full(T, model.rating))
        return model

    def _respond(
        self, model: AreaModel, base: np.ndarray, value: np.ndarray, *, mip_gap: float, time_limit: float | None
    ):
        """arg min_x C^MI(x) − valueᵀx on `model` whose own costs are `base`: (x MW, the program's cost at it
        without the exchange's value €, the mixed-integer info, the `configuration_label` of its binaries, the
        solution), or None on a solver failure."""
        cols = model.cp.own_x
        c = base.copy()
        c[cols] -= value
        model.cp.prog.set_cost(c)
        try:
            sol, mip = solve_clearing(model.cp, mip_gap=mip_gap, time_limit=time_limit, oa_cuts=self._oa_cuts)
        except SolverError:
            return None
        x = sol.x[cols]
        return x, float(sol.objective + value @ x), mip, configuration_label(model, sol.x), sol.x

    @staticmethod
    def _configuration_range(model: AreaModel, solution: np.ndarray, x: np.ndarray) -> tuple[list, list, list] | None:
        """The exchanges (MW, per period, the other periods held at `x`) that the binaries of `solution` deliver
        without slack: (lo, hi, the import end with fictitious losses burnt), 3T continuous solves with those
        binaries fixed (None if one fails)."""
        fixed = copy.copy(model)
        fixed.cp = copy.copy(model.cp)
        fixed.cp.prog = fix_integers(model.cp.prog, solution)
        lo, hi, burnt = [], [], []
        for t in range(len(x)):
            try:
                found = fixed.hard_range(t, x)
                burnt_end = fixed.burnt_import_end(t, x)
            except EvaluationError:
                return None
            if found is None or burnt_end is None:
                return None
            # hard_range keeps its reference point inside; here the reference is the configuration's own point
            lo.append(min(found[0], float(x[t])))
            hi.append(max(found[1], float(x[t])))
            burnt.append(min(burnt_end, lo[-1]))
        return lo, hi, burnt

    def preferred_coupling(
        self, sched: Schedule, deliver: bool, *, mip_gap: float, time_limit: float | None
    ) -> list[Schedule]:
        """Sent to the parent DSO when this sub-DSO's mixed-integer dispatch at `sched` needed slack (`deliver`) or
        cost more than its relaxation there: (P, Q, w) its binaries deliver at a lower cost, for the parent to try
        (docs/model.md §6.4).  The exchange P is the schedule's, or with `deliver` the one nearest to it that the
        binaries deliver without slack (`_nearest_deliverable`, valued at the schedule's price).  Proposed: with
        `deliver`, the nearest exchange delivered at the schedule's Q and w; then P with the reactive exchange free
        (the root voltage held), with the root voltage free (Q held), and with both free.  The parent can support
        some of these and not others (measured: a child preferring its root at the voltage limit, which the parent
        could reach only with slack; with only the both-free proposal, a child 43 W short at its parent's Q and w
        proposed its root at the limit, where the parent paid 55 k€ of slack, and kept 0.41 € of slack itself).
        Empty without binaries, or on solver failures."""
        x_star = np.asarray(sched.export_mw, float)
        pi = np.asarray(sched.price_eur_mwh, float) if sched.price_eur_mwh else np.zeros(len(x_star))
        base = self.model()
        cols, rows = base.coupling_cols, base.coupling_rows
        if not self.opts.integer or not np.isfinite(pi).all() or cols is None or rows is None:
            return []
        periods = [int(p) for p in self.sub.periods]
        value = pi * self.opts.period_hours  # € per MW exported

        def proposal(x: np.ndarray, solution: np.ndarray) -> Schedule:  # (P, and the solution's Q and w)
            return _child_schedule(self.name, self.parent, "dispatch", periods, np.concatenate([x, solution[cols]]), [])

        # the exchange nearest to the schedule that the binaries deliver at the lowest cost at the parent's price,
        # Q and w free: the last proposal
        found = self._nearest_deliverable(x_star, value, mip_gap=mip_gap, time_limit=time_limit)
        nearest = [] if found is None else [proposal(found[0], found[4])]
        T = len(x_star)
        held = np.concatenate([sched.reactive_mvar, sched.root_vsq_pu]) if sched.reactive_mvar else None
        out = []
        frees = [np.arange(T), np.arange(T, 2 * T)]  # Q free (w held); w free (Q held)
        if deliver:
            if found is None:
                return []
            target = found[0]
            if held is not None:  # the exchange nearest to the schedule delivered at its Q and w
                at_held = self._nearest_deliverable(x_star, value, mip_gap=mip_gap, time_limit=time_limit, held=held)
                if at_held is not None:
                    out.append(proposal(at_held[0], at_held[4]))
        else:
            target = x_star
            frees.append(np.arange(2 * T))  # both free (with `deliver`, that is the nearest exchange's solution)
        for free in frees:
            if held is None and len(free) < 2 * T:
                continue
            model = base.with_binaries()
            model.cp.prog.set_row_bounds(model.fix_rows, target, target)
            keep = np.setdiff1d(np.arange(2 * T), free)
            if len(keep):
                assert held is not None
                model.cp.prog.set_row_bounds(rows[keep], held[keep], held[keep])
            try:
                solution, _ = solve_clearing(model.cp, mip_gap=mip_gap, time_limit=time_limit, oa_cuts=self._oa_cuts)
            except SolverError:
                continue
            out.append(proposal(target, solution.x))
        return out + nearest

    def _nearest_deliverable(
        self,
        x_star: np.ndarray,
        value: np.ndarray,
        *,
        mip_gap: float,
        time_limit: float | None,
        held: np.ndarray | None = None,
    ):
        """The exchange nearest to the schedule x* (L1, MW) that this DSO's binaries deliver without slack, at its
        lowest cost: min C^MI(x) − valueᵀx + ρΔ‖x − x*‖₁ with ρ above every marginal gain of moving (its largest
        order price plus the largest interface price, capped at half the slack penalty κ, so that slack stays
        dearer).  Returns (x MW, C^MI(x) €, the mixed-integer info, the binaries' label, the solution), or None on
        a solver failure.  The best response alone finds the exchange the prices favour; a DSO whose relaxation
        sat a few kW from a deliverable point should also offer that point (measured on a generated variant: the
        centralized optimum keeps it, +1e-2 without).  `held`: a sub-DSO's reactive exchange and root voltage
        (2T values, Mvar and p.u.²) held as its parent holds them (softly, at the slack penalty)."""
        model = self._exchange_free_model()
        prog, cols, T = model.cp.prog, model.cp.own_x, len(x_star)
        if held is not None:
            assert model.coupling_rows is not None
            prog.set_row_bounds(model.coupling_rows, held, held)
        dt = self.opts.period_hours
        rho = min(
            self.sub.max_abs_price_eur_mwh() + float(np.abs(value).max(initial=0.0)) / dt + 1.0,
            0.5 * self.opts.slack_penalty,
        )
        dev = prog.add_variables("nearest_deviation_mw", T, 0.0, np.inf, rho * dt).index
        pick = sp.csr_matrix((np.ones(T), (np.arange(T), cols)), shape=(T, prog.n))
        put = sp.csr_matrix((np.ones(T), (np.arange(T), dev)), shape=(T, prog.n))
        prog.add_rows("nearest_above", put - pick, -x_star, np.inf)  # dev >= x − x*
        prog.add_rows("nearest_below", put + pick, x_star, np.inf)  # dev >= x* − x
        found = self._respond(model, prog.c.copy(), value, mip_gap=mip_gap, time_limit=time_limit)
        if found is None:
            return None
        x, cost, mip, label, solution = found
        return x, cost - rho * dt * float(np.abs(x - x_star).sum()), mip, label, solution

    def _dispatch_without_commitments(self, model: AreaModel, known, exc: Exception):
        """Fallback when the mixed-integer dispatch finds no point (e.g. every fixed-integer SOCP refused): every
        binary at 0 (no all-or-nothing, start/stop or logic order of this area activated), the rest dispatched as
        a continuous clearing, feasible by construction (the penalised slack closes any balance).  Its certified
        gap is taken against the relaxation at the same exchange; `mip["fallback"]` says why (a warning)."""
        prog = model.cp.prog
        ints = np.flatnonzero(prog.integrality)
        relaxed = prog.copy()
        relaxed.relax_integrality()
        bound = known if known is not None else solve(relaxed)
        fixed = relaxed.copy()
        fixed.set_bounds(ints, 0.0, 0.0)
        sol, mip = solve_clearing(model.cp.with_program(fixed))
        lb = float(bound.objective) if bound.status in (SolveStatus.OPTIMAL, SolveStatus.ALMOST_OPTIMAL) else None
        gap = None if lb is None else max(0.0, float(sol.objective) - lb) / max(1.0, abs(float(sol.objective)))
        mip.update(
            binaries=len(ints),
            lower_bound=lb,
            gap=gap,
            fallback=f"mixed-integer dispatch failed ({exc}); dispatched with every binary at 0",
        )
        return sol, mip

    def _price_at_interface(self, model: AreaModel, sol, x_star: np.ndarray, pi: np.ndarray):
        """Price the own dispatch consistently with the interface price π (docs/model.md §6.2 step 4, §8).

        With the exchange fixed, the duals are not unique where the cleared exchange sits at a kink of C_d (for
        instance at the edge of the slack-free range): an interior-point solver then returns an arbitrary point
        of the subdifferential, up to the slack penalty.  Instead the exchange may move by ±1e-4 MW and is paid
        π: if π is a subgradient of C_d at x*, the DSO keeps x* and its prices support π; otherwise the bound
        binds and ρ = π + its dual.  Binaries stay fixed at the dispatch; the published quantities are the
        dispatch's own.  Returns (the pricing program, its solution, ρ €/MWh)."""
        dt = self.opts.period_hours
        prog = fix_integers(model.cp.prog, sol.x) if model.cp.prog.has_integers else model.cp.prog.copy()
        delta = 1e-4
        prog.set_row_bounds(model.fix_rows, x_star - delta, x_star + delta)
        c = prog.c.copy()
        c[model.cp.own_x] -= pi * dt
        prog.set_cost(c)
        # (far thermal circles left out, exact: docs/model.md §6.3 item 1; their duals are zero)
        psol = solve(prog, omitted=model.omitted)
        if not psol.ok:
            return model.cp.prog, sol, sol.row_dual[model.fix_rows] / dt
        assert psol.row_dual is not None  # a continuous solve has duals
        return prog, psol, pi + psol.row_dual[model.fix_rows] / dt

    @staticmethod
    def _curve_error(
        relaxed: AreaModel, own_offer: CurveOffer | None, x_star: np.ndarray, sol, x_full: np.ndarray | None = None
    ) -> tuple[float, float, Evaluation | None]:
        """(curve error, integrality cost, the relaxation) at the schedule: the relaxed cost at x* versus what this
        DSO's curve promised its parent (€), the mixed-integer dispatch cost versus the relaxed cost at the same
        schedule (€; `x_full`: a sub-DSO's (P, Q, w), else x*), and the relaxed evaluation there (None without a
        curve offer)."""
        if own_offer is None:
            return 0.0, 0.0, None
        try:
            ev = relaxed.evaluate(x_star if x_full is None else x_full)
        except EvaluationError:  # the dispatch stands; only its comparison with the relaxation is missing
            return 0.0, 0.0, None
        promised = sum(float(np.interp(x, xi, ph)) for x, xi, ph in zip(x_star, own_offer.xi_mw, own_offer.cost_eur))
        return ev.cost - promised, float(sol.objective) - ev.cost, ev

    def _child_schedules(self, model: AreaModel, offers: list[Offer], sol, row_dual) -> list[Schedule]:
        """Each sub-DSO's exchange (MW) and the price at its root bus (€/MWh) in this dispatch."""
        cp, scale = model.cp, 1.0 / self.opts.period_hours
        periods = [int(p) for p in self.sub.periods]
        out = []
        for a, off in enumerate(offers):
            root = self.sub.areas.root_bus[self.sub.areas.name.index(off.area)]
            price = row_dual[cp.prog.rows["balance_p"].start + cp.balance.p_row[root]] * scale
            coupling = sol.x[model.child_coupling_cols[a]]  # (P, Q, w) when the children are held by cuts
            out.append(_child_schedule(self.name, off.area, "dispatch", periods, coupling, price.tolist()))
        return out

    def _mixed_integer_dispatch(
        self,
        model: AreaModel,
        x_star: np.ndarray,
        relax: bool,
        mip_gap: float,
        time_limit: float | None,
        threads: int,
        gap_eur: float,
        use_known: bool = True,
    ):
        """The area's mixed-integer dispatch at exchange `x_star` (its model's exchange rows already fixed there):
        (solution, MIP info).  `use_known`: the relaxation at x* may come from the evaluations (not where the
        dispatch holds more than the exchange, e.g. its children's exchanges)."""
        # the relaxation at x* is usually known: the cut exchange asked this DSO for C_d(x*)
        known = None
        if use_known and self._relaxed is not None and self._relaxed.cp.prog.m == model.cp.prog.m:
            known = self._relaxed.relaxation_at(x_star)
            if known is None:
                # not asked at x* (bracketed by its cuts in the last rounds): the relaxation from the kept parametric
                # model, which also gives the curve error below its value (italy-652: 26 of 50 DSOs solved it twice)
                try:
                    self._relaxed.evaluate(x_star)
                except EvaluationError:
                    pass
                known = self._relaxed.relaxation_at(x_star)
        if known is not None and not model.cp.prog.has_integers and model.evaluations_publishable:
            # a continuous dispatch is that relaxation where it was solved at the published settings (a parent's, so
            # that its children stay where they were evaluated); a leaf's is solved again (LEAF_EVALUATION_SETTINGS)
            try:
                sol = require(copy.deepcopy(known), model.cp.prog, "clearing")
                return sol, {"binaries": 0, "lower_bound": None, "gap": None, "rounds": []}
            except SolverError:
                pass  # not accepted as the dispatch (e.g. an "almost solved" point): solved below
        try:
            # a DSO's dispatch may stop at its relaxation rounded down (round_down: see solve_misocp)
            sol, mip = solve_clearing(
                model.cp,
                mip_gap=mip_gap,
                time_limit=time_limit,
                threads=threads,
                relaxation=known,
                round_down=True,
                gap_eur=gap_eur,
                sub_mip_heuristics=False,  # its MILPs only propose binaries (see solve_misocp)
                omitted=model.omitted,  # its conic solves leave far thermal circles out, as the evaluations do
            )
        except SolverError as exc:
            if relax or not model.cp.prog.has_integers:
                raise
            sol, mip = self._dispatch_without_commitments(model, known, exc)
        return sol, mip

    def dispatch(
        self,
        sched: Schedule,
        *,
        mip_gap: float,
        time_limit: float | None,
        threads: int,
        relax: bool,
        own_offer: CurveOffer | None = None,
        gap_eur: float = 0.0,
        child_exports: dict[str, list[float]] | None = None,
    ) -> DispatchResult:
        """Dispatch own resources for the cleared exchange, price the own dispatch, schedule the children.
        `gap_eur`: the mixed-integer search also stops at a point within this many € of its lower bound (the
        area's relaxation at the exchange, or its MILP's bound): the area's share of the scheme's certified-gap
        target (`dispatch_gap_share_eur`)."""
        t0 = time.perf_counter()
        own_offer = own_offer if own_offer is not None else self._own_offer
        opts = self.opts.relaxed() if relax else self.opts
        offers = self._offers()
        if self._relaxed is not None:  # the agent's model (with binaries unless relaxed): no second build
            model = self._relaxed.copy(integer=bool(opts.integer))
        else:
            model = self._area_model(opts)
        x_star = np.asarray(sched.export_mw)
        x_full = _coupling_point(sched)  # with the child root's Q and w where the parent DSO sets them
        model.cp.prog.set_row_bounds(model.rows_for(x_full), x_full, x_full)
        if child_exports is None:
            best = self._best_children_at.get(x_full.tobytes())
            child_exports = best[1] if best is not None else None
        held = sorted((child_exports or {}).items())
        for child, x_child in held:  # children's (P, Q, w) held (`preferred_coupling`, best evaluation)
            cols = model.child_coupling_cols[self.children.index(child)]
            model.cp.prog.set_bounds(cols, np.asarray(x_child, float), np.asarray(x_child, float))
        key = (x_full.tobytes(), bool(relax), float(mip_gap), float(gap_eur), repr(held))
        if key in self._mip_solutions:
            self._mip_solutions.move_to_end(key)
            sol, mip = copy.deepcopy(self._mip_solutions[key])
        else:
            sol, mip = self._mixed_integer_dispatch(
                model, x_full, relax, mip_gap, time_limit, threads, gap_eur, use_known=not held
            )
            _keep(self._mip_solutions, key, copy.deepcopy((sol, mip)), KEPT_DISPATCHES)
        cp = model.cp
        self._dispatched[x_star.tobytes()] = float(sol.objective)
        dt = self.opts.period_hours
        pi = np.asarray(sched.price_eur_mwh, float) if sched.price_eur_mwh else np.full(len(x_star), np.nan)
        pricing_prog, priced = cp.prog, sol
        if sched.stage == "dispatch" and np.isfinite(pi).all():
            pricing_prog, priced, _ = self._price_at_interface(model, sol, x_star, pi)
        # the published prices: the interval of every degenerate price and the defined price inside it, with the
        # interface price π as the reference of the area (tdmarket.market.pricing)
        reference = np.full((self.sub.n_areas, len(x_star)), np.nan)
        reference[0] = pi
        price_cp = cp if pricing_prog is cp.prog else cp.with_program(pricing_prog)
        priced, intervals = publish_prices(price_cp, priced, interface_price=reference, carry_rows=model.fix_rows)
        row_dual = priced.row_dual
        assert row_dual is not None  # published duals of a continuous solve
        rho = row_dual[model.fix_rows] / dt
        if pricing_prog is not cp.prog:
            rho = pi + rho
        tables = cp.extract(sol.x, row_dual)
        own = cp.cost_parts(sol.x)
        curve_err, integrality, relaxation = self._curve_error(self.model(), own_offer, x_star, sol, x_full)
        child_scheds = self._child_schedules(model, offers, sol, row_dual)
        b = self.sub.buses
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
            relaxed_cost_eur=None if relaxation is None else relaxation.cost,
            relaxed_slope_eur_mw=None if relaxation is None else relaxation.rho[: len(x_star)].tolist(),
        )
        # keep only what this operator owns (boundary buses belong to neighbours)
        buses = tables["buses"][~tables["buses"].node.isin(b.id[b.is_boundary])].reset_index(drop=True)
        tables["buses"] = annotate_buses(self.sub, buses, intervals)
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
            pricing_time_s=intervals.time_s,
            configuration=configuration_label(model, sol.x) if cp.prog.has_integers else None,
        )

    def ac_redispatch(self, tables: dict, parent: str = "", root_vsq_pu=None, *, relax: bool):
        """The exact AC re-dispatch of this DSO's own area at its cleared exchange (docs/model.md §5(h); binaries,
        exchange and children's exchanges fixed), when the AC power flow of its dispatch `tables` finds it not
        deliverable (always for a sub-DSO given its parent's AC root voltage `root_vsq_pu`, p.u.² per period).
        Returns an `AreaOutcome` whose `tables` are `tables` with the re-dispatch (None if nothing changed); the
        result is a local optimum of the non-convex program (`LOCAL_OPTIMUM_LABEL`)."""
        from .ac_dispatch import AreaTask, redispatch_if_not_deliverable, replace_dispatch

        opts = self.opts.relaxed() if relax else self.opts
        task = AreaTask(self.name, self.sub, tables, opts, 0, float("nan"), parent=parent, root_vsq_pu=root_vsq_pu)
        out = redispatch_if_not_deliverable(task)
        if out.tables is not None:
            out.tables = replace_dispatch(tables, out.tables)
        return out


def _coupling_point(sched: Schedule) -> np.ndarray:
    """The point a schedule asks for: the exchange (MW), with the child root's Q (Mvar) and w (p.u.²) where a
    parent DSO sends them (docs/model.md §6.4)."""
    parts = [sched.export_mw]
    if sched.reactive_mvar or sched.root_vsq_pu:
        if len(sched.reactive_mvar) != len(sched.export_mw) or len(sched.root_vsq_pu) != len(sched.export_mw):
            raise ValueError(f"{sched.receiver}: a schedule with P, Q and w of different lengths")
        parts += [sched.reactive_mvar, sched.root_vsq_pu]
    return np.asarray(np.concatenate(parts), float)


def _child_schedule(sender, child, stage, periods, coupling: np.ndarray, price, iteration: int = 0) -> Schedule:
    """A parent DSO's schedule of a child from its (P, Q, w) columns' values (3T; or P alone, T)."""
    T = len(periods)
    sched = Schedule(
        sender=sender,
        receiver=child,
        stage=stage,
        periods=list(periods),
        export_mw=np.asarray(coupling[:T], float).tolist(),
        price_eur_mwh=list(price),
        iteration=iteration,
    )
    if len(coupling) == 3 * T:
        sched.reactive_mvar = np.asarray(coupling[T : 2 * T], float).tolist()
        sched.root_vsq_pu = np.asarray(coupling[2 * T :], float).tolist()
    return sched


def _keep(recent: OrderedDict, key, value, limit: int) -> None:
    """Store `value` under `key` in a bounded record of the latest entries (the oldest goes past `limit`)."""
    recent[key] = value
    recent.move_to_end(key)
    if len(recent) > limit:
        recent.popitem(last=False)
