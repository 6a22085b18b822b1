"""The platform clearing as the cut exchange one level up (docs/model.md §12.2).

Member m's value V_m(g) — its least cost when the interconnector flows g (K, T) MW are imposed as fixed injections
at its border nodes — is evaluated by the member's own scheme (`hierarchical`: its TSO with its DSOs' curves and
cuts; `centralized-as-market` for the DSO-unaware platform; `common` for isolated members).  Its subgradient is
∂V_m/∂g = Δ·(λ_from − λ_to) at the member's border nodes (docs/model.md §1: a nodal price is the derivative of the
cost with respect to a fixed withdrawal).  The platform's master is

    min Σ_m θ_m   s.t.  θ_m >= V_m(ĝ) + s_mᵀ(g − ĝ) for every cut received,   −ATC_backward <= g <= ATC_forward,

the same `CutMaster` / `CutPool` / `CutExchange` as between a TSO and its DSOs, with the platform as parent (own
cost 0) and every member seeing the whole flow vector g (its slopes are zero on interconnectors it does not
touch; each member's cuts are written on its own copy of g, tied to the others by equality rows).  A member
clearing that fails at one proposal is replaced by that member's integrated clearing (`common`, the same value
without the decomposition), and the summary lists it (`member_fallbacks`).  The first round evaluates every member at g = 0 (the isolated clearing).  A hierarchical member is a
`MemberSession` for the whole run: its DSO agents, curves and cuts are kept, each round re-runs only its TSO's
cut exchange, and its slope comes from the TSO's cut model (`MemberSession.evaluate`).  After the exchange stops,
each member's result at the best flows is its dispatch: its TSO and DSOs clear with the border flows fixed
(schedules go down platform → TSO → DSO → sub-DSO; a session's DSOs dispatch only then).

The lower bound is certified when every member clearing is continuous (`relax=True`) and exact: V_m is then
convex and every cut valid.  With binaries the cuts come from the clearing priced at fixed binaries and bound
nothing; the certificate says so.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..decomposition.exchange import ChildValues, CutExchange, CutPool, ExchangeSettings, ParentPoint
from ..decomposition.master import CutMaster
from ..errors import SolverError, TdmarketError
from ..formulations.options import ModelOptions
from ..formulations.program import Program
from ..model.federation import Federation
from ..operators.runtime import MessageLog
from ..schemes.hierarchical import HierarchicalSession, SessionPoint
from ..schemes.result import ClearingResult
from .common import base_summary, border_buses, flows_table, member_prices_table, price_at
from .messages import PLATFORM, FlowCut, FlowSchedule
from .prices import platform_prices
from .result import FederationResult

log_ = logging.getLogger(__name__)
SESSION_SCHEME = "hierarchical"  # the member scheme whose clearing is kept open between platform rounds
# inexact member evaluations (docs/model.md §12.2): the isolated clearing of round 0 stops at this relative gap, and
# later ones within this share of the platform's gap (all members together), never above this share of its target
MEMBER_SEED_GAP = 1e-3
MEMBER_GAP_SHARE = 0.1


@dataclass
class MemberValue:
    """A member TSO's reply at flows ĝ: V_m(ĝ) (€), ∂V_m/∂g (K, T) €/MW, its border prices (€/MWh) and result
    (None for a point of a `MemberSession` not dispatched yet: `point` then holds its TSO clearing)."""

    cost_eur: float
    slope_eur_mw: np.ndarray
    border_price_eur_mwh: np.ndarray  # (len(border_buses(m)), T)
    result: ClearingResult | None
    point: SessionPoint | None = None
    # a lower bound of V_m(ĝ) that the slope supports as a cut (a session's cut model at ĝ, whose exchange stopped
    # at a gap); None: `cost_eur` is exact (a full clearing)
    cut_value_eur: float | None = None

    @property
    def value_for_cut(self) -> float:
        return self.cost_eur if self.cut_value_eur is None else min(self.cut_value_eur, self.cost_eur)


def _within(val: MemberValue, stop_at: dict) -> bool:
    """The member's value is as exact as `stop_at` asks (its gap V_m − cut value within the absolute or relative
    target)."""
    target = max(float(stop_at.get("gap_abs_eur", 0.0)), float(stop_at.get("gap", 0.0)) * max(1.0, abs(val.cost_eur)))
    return val.cost_eur - val.value_for_cut <= target


def _border_prices(fed: Federation, m: int, inst, buses: pd.DataFrame, scheme: str) -> np.ndarray:
    """(len(border_buses(m)), T) €/MWh: the prices at member m's border nodes in its `buses` table."""
    price = price_at(buses, inst.buses.id[border_buses(fed, m)], inst.periods)  # the member's own period numbers
    if np.isnan(price).any():
        raise SolverError(f"member {fed.members[m]}: no price at a border node in the {scheme} result")
    return price


def _member_value(
    fed: Federation, m: int, inst, buses: pd.DataFrame, cost: float, scheme: str, options: dict
) -> MemberValue:
    """V_m and its slope from the member's cost and the prices at its border nodes in its `buses` table."""
    price = _border_prices(fed, m, inst, buses, scheme)
    dense = np.zeros((len(inst.buses), fed.n_periods))
    dense[border_buses(fed, m)] = price
    period_hours = float(options.get("period_hours", ModelOptions.period_hours))
    return MemberValue(cost, fed.flow_slope(m, dense, period_hours), price, None)


def evaluate_member(fed: Federation, m: int, flows_mw: np.ndarray, scheme: str, options: dict) -> MemberValue:
    """Member m's clearing with `scheme` at the flows imposed (what its TSO does on receiving a `FlowSchedule`)."""
    from ..api import clear

    inst = fed.member_with_flows(m, flows_mw)
    res = clear(inst, scheme=scheme, incentives=False, **options)
    val = _member_value(fed, m, inst, res.tables["buses"], res.total_cost, scheme, options)
    val.result = res
    return val


class MemberSession:
    """Member m's hierarchical scheme held open for a whole platform run (`HierarchicalSession`): the flows g
    change only fixed injections at the member's transmission border nodes, and a DSO's cost C_d does not depend
    on them, so its agent, curves and cuts are kept; each round re-runs only the TSO's cut exchange (seeded with
    every cut so far), and the DSOs dispatch only at the final flows (`result`).  V_m(ĝ) is the exchange's upper
    bound (the TSO's own cost plus Σ_d C_d): with binaries the DSOs' integrality cost, known only at dispatch, is
    not in it (the published member cost has it; the platform is not certified with binaries anyway)."""

    def __init__(self, fed: Federation, m: int, options: dict):
        from ..api import scheme_context

        self.fed, self.m, self.options = fed, m, options
        self.session = HierarchicalSession(fed.instances[m], scheme_context(fed.instances[m], SESSION_SCHEME, options))

    def evaluate(self, flows_mw: np.ndarray, stop_at: dict | None = None) -> MemberValue:
        """V_m at `flows_mw` to within its exchange's gap (`stop_at`: that exchange's gap targets, see
        `HierarchicalSession.exchange_at`); `cut_value_eur` is the cut model's value there."""
        inst = self.fed.member_with_flows(self.m, flows_mw)
        point = self.session.exchange_at(inst, stop_at=stop_at)
        # the slope from the TSO's cut model (exchanges free): the published prices hold the exchanges, which is
        # not a subgradient of V_m where they sit at a kink of a DSO's cost (measured on the example federation:
        # cuts 1.5 EUR above V_m at the integrated flows, the platform then stopped 1.7e-4 above integrated); the
        # published border prices replace these at the final flows (`result`)
        buses = point.model_prices
        if buses is None:
            buses = point.tso.publish(point.handle).tables(point.tso)["buses"]
        val = _member_value(self.fed, self.m, inst, buses, point.cost_eur, SESSION_SCHEME, self.options)
        val.point = point
        # the slope is the cut model's, so is the cut's value: a lower bound where V_m is convex (continuous
        # clearings).  With binaries the cuts bound nothing anyway and the relaxed cut model lies far below the
        # member's cost (measured on the example federation: 59 platform rounds instead of 3, +0.29 % instead of
        # +0.25 % to integrated), so the value stays the member's cost there
        if point.model_prices is not None and self.options.get("relax", False):
            val.cut_value_eur = point.model_value_eur
        return val

    def result(self, val: MemberValue) -> ClearingResult:
        """The member's result at the point of `val`: its DSOs dispatched, completed as `tdmarket.clear` does."""
        from ..api import complete, provenance

        assert val.point is not None
        res = self.session.result(val.point)
        res.summary["session"] = self.session.summary()
        record = provenance(val.point.inst, SESSION_SCHEME, self.options, incentives=False)
        res = complete(res, val.point.inst, SESSION_SCHEME, self.options, record, incentives=False)
        # the published border prices (the flows table, the member prices), not the cut model's of the slope
        val.border_price_eur_mwh = _border_prices(self.fed, self.m, val.point.inst, res.tables["buses"], SESSION_SCHEME)
        return res

    def communication(self) -> dict:
        return self.session.rt.log.totals()

    def close(self) -> None:
        self.session.close()


def _open_sessions(fed: Federation, member_scheme: str, options: dict) -> list[MemberSession | None]:
    """A `MemberSession` per member for the hierarchical member scheme (None where opening one failed: that
    member is then cleared in full every round, as for the other member schemes)."""
    sessions: list[MemberSession | None] = [None] * fed.n_members
    if member_scheme != SESSION_SCHEME:
        return sessions
    try:
        for m, name in enumerate(fed.members):
            try:
                sessions[m] = MemberSession(fed, m, options)
            except TdmarketError as exc:
                log_.warning("%s: its hierarchical session did not open (%s); cleared in full every round", name, exc)
    except BaseException:
        for s in sessions:
            if s is not None:
                s.close()
        raise
    return sessions


def _add_communication(total: dict, summary: dict) -> None:
    comm = summary.get("communication") or {}
    total["messages"] += int(comm.get("messages", 0))
    total["bytes"] += int(comm.get("bytes", 0))


def run_platform(
    fed: Federation, scheme_id: str, member_scheme: str, options: dict, settings: ExchangeSettings
) -> FederationResult:
    """The platform's cut exchange with every member evaluated by `member_scheme` (module docstring)."""
    t0 = time.perf_counter()
    sessions = _open_sessions(fed, member_scheme, options)
    try:
        return _run_platform(fed, scheme_id, member_scheme, options, settings, sessions, t0)
    finally:
        for s in sessions:
            if s is not None:
                s.close()


def _run_platform(
    fed: Federation,
    scheme_id: str,
    member_scheme: str,
    options: dict,
    settings: ExchangeSettings,
    sessions: list[MemberSession | None],
    t0: float,
) -> FederationResult:
    ic = fed.interconnectors
    K, T, M = len(ic), fed.n_periods, fed.n_members
    log = MessageLog()
    member_comm = {"messages": 0, "bytes": 0}
    cache: dict[bytes, list[MemberValue]] = {}
    evaluated: list[np.ndarray] = []  # flows asked so far, in order
    touches = [np.flatnonzero(fed.touches(m)) for m in range(M)]
    evaluations = [0]
    fallbacks: list[dict] = []
    relax = bool(options.get("relax", False))  # continuous member clearings: V_m convex, the bound certified

    def ask_members(g: np.ndarray, rnd: int, stop_at: dict | None = None) -> list[MemberValue]:
        key = np.round(g, 7).tobytes()  # a proposal repriced by the master may differ by round-off
        # flows asked again: the same values, unless a member's were looser than now asked (its exchange then goes
        # on from every cut so far; with the same values the master would propose the same flows again)
        if key in cache and (stop_at is None or all(_within(v, stop_at) for v in cache[key])):
            return cache[key]
        out = []
        for m, name in enumerate(fed.members):
            mine = touches[m]
            log.add(
                FlowSchedule(
                    PLATFORM,
                    name,
                    "platform",
                    interconnectors=[int(i) for i in ic.id[mine]],
                    periods=[int(p) for p in fed.periods],
                    flow_mw=g[mine].tolist(),
                    round=rnd,
                )
            )
            session = sessions[m]
            try:
                if session is not None:
                    val = session.evaluate(g, stop_at)
                else:
                    val = evaluate_member(fed, m, g, member_scheme, options)
            except TdmarketError as exc:
                if member_scheme == "common":
                    raise
                # a member clearing that fails at one proposal (e.g. a DSO solve refused by the acceptance rule)
                # must not stop the platform: that member's value is taken from its integrated clearing, labelled
                fallbacks.append({"member": name, "round": rnd, "reason": str(exc)})
                log_.warning(
                    "platform round %d: %s failed in %s (%s); its value taken from common",
                    rnd,
                    name,
                    member_scheme,
                    exc,
                )
                val = evaluate_member(fed, m, g, "common", options)
            evaluations[0] += 1
            if val.result is not None:  # a session's messages are counted once, at the end
                _add_communication(member_comm, val.result.summary)
            log.add(
                FlowCut(
                    name,
                    PLATFORM,
                    "platform",
                    interconnectors=[int(i) for i in ic.id[mine]],
                    periods=[int(p) for p in fed.periods],
                    cost_eur=float(val.cost_eur),
                    slope_eur_mw=val.slope_eur_mw[mine].tolist(),
                    round=rnd,
                )
            )
            out.append(val)
        cache[key] = out
        evaluated.append(g.copy())
        return out

    zero = np.zeros((K, T))
    history: list[dict] = []
    certificate: dict
    pool: CutPool | None = None
    if K == 0:
        best_g = zero
        certificate = {"kind": "no interconnector: every member alone", "stopped_by": "no_exchange"}
    else:
        prog = Program()
        # one copy of the flows per member, tied by g_m = g_0: the master's column operations (trust box, level
        # box, fixing at the best point) take each column once (HiGHS refuses a bound change that names a column
        # twice)
        lo, hi = -ic.atc_backward_mw.ravel(), ic.atc_forward_mw.ravel()
        x_cols = np.stack([prog.add_variables(f"interconnector_flow_{m}", K * T, lo, hi).index for m in range(M)])
        theta = prog.add_variables("theta", M, -np.inf, np.inf, 1.0).index
        if M > 1:
            n_tie = (M - 1) * K * T
            rows = np.tile(np.arange(n_tie), 2)
            cols = np.concatenate([x_cols[1:].ravel(), np.tile(x_cols[0], M - 1)])
            vals = np.concatenate([np.ones(n_tie), -np.ones(n_tie)])
            tie = sp.csr_matrix((vals, (rows, cols)), shape=(n_tie, prog.n))
            prog.add_rows("same_flows", tie, np.zeros(n_tie), np.zeros(n_tie))
        master = CutMaster(prog, x_cols, theta, threads=int(options.get("threads", 1)))
        pool = CutPool(K * T)
        # round 0: the isolated members, to a loose gap (their cuts only start the master); inexact member
        # evaluations only where the cuts are valid at any member gap (continuous clearings, `MemberSession`)
        seed = ask_members(zero, 0, {"gap": MEMBER_SEED_GAP} if relax else None)
        seed_slopes = np.stack([v.slope_eur_mw.ravel() for v in seed])
        seed_values = np.array([v.value_for_cut for v in seed])
        # (the members' costs there, not the cuts' values, span the exchange's inner bound)
        pool.add(np.arange(M), np.zeros((M, K * T)), seed_values, seed_slopes, np.array([v.cost_eur for v in seed]))
        master.add_cuts(np.arange(M), np.zeros((M, K * T)), seed_values, seed_slopes)
        scale = max(1.0, abs(float(sum(v.cost_eur for v in seed))))  # |UB|, €: the platform's target is relative

        def member_targets() -> dict | None:
            """The members' exchanges stop within a share of the platform's gap (inexact evaluations: the cut
            values are the members' cut models, lower bounds at any gap, so loose early rounds cost no
            validity), and never above a share of the platform's own target, which their gaps count in."""
            if not relax:
                return None
            if not np.isfinite(exchange.gap_eur):  # no gap yet (its first round)
                return {"gap": MEMBER_SEED_GAP}
            floor = MEMBER_GAP_SHARE * settings.gap * scale / M
            # the absolute target governs (the member's relative rule off)
            return {"gap": 0.0, "gap_abs_eur": max(floor, MEMBER_GAP_SHARE * exchange.gap_eur / M)}

        def evaluate(x: np.ndarray, phase: str, k: int, asked: np.ndarray | None) -> ChildValues:
            nonlocal scale
            # every member is asked every round (the platform's settings do not skip: skip_share 0)
            vals = ask_members(x[0].reshape(K, T), k, member_targets())
            scale = max(1.0, abs(float(sum(v.cost_eur for v in vals))))
            return ChildValues(
                costs=np.array([v.cost_eur for v in vals]),
                slopes=np.stack([v.slope_eur_mw.ravel() for v in vals]),
                cut_values=np.array([v.value_for_cut for v in vals]),
            )

        def master_point(ms) -> ParentPoint:
            return ParentPoint(x=ms.x, own_cost=0.0, lower_bound=ms.lower_bound, handle=ms, integer=False)

        exchange = CutExchange(master, pool, evaluate, master_point, None, None, settings)
        outcome = exchange.run(np.zeros((M, K * T)), integer=False)
        if outcome.best is None:
            best_g = zero
            outcome.warnings.append("the platform master failed: published the isolated clearing")
        else:
            best_g = outcome.best.x[0].reshape(K, T)
            # the repriced best point differs from the proposal the members evaluated only by round-off: take the
            # evaluated flows (no extra round of member clearings for the dispatch)
            dist = [float(np.abs(g - best_g).max()) for g in evaluated]
            if min(dist) <= 1e-6:
                best_g = evaluated[int(np.argmin(dist))]
        history = outcome.history
        certificate = {
            "kind": "certified (continuous member clearings: V_m convex; every cut from a member's cut model, below V_m "
            "at any gap of its own exchange)"
            if relax
            else "not certified (members with binaries: V_m not convex, cuts from the clearing at fixed binaries)",
            "certified": relax,
            "upper_bound_eur": float(outcome.upper_bound),
            "lower_bound_eur": float(outcome.lower_bound),
            "gap": float(outcome.certified_gap),
            "stopped_by": outcome.stopped_by,
            "reason": outcome.reason,
            "rounds": len(history),
            "warnings": list(outcome.warnings),
        }
    final = list(ask_members(best_g, len(history) + 1))  # cached: the schedules of the best point
    # schedules down: the final flows to every member (its TSO then dispatches its DSOs with them fixed)
    results = _final_results(fed, best_g, final, sessions, options, fallbacks)
    for session in sessions:
        if session is not None:
            _add_communication(member_comm, {"communication": session.communication()})
    member_costs = {}
    for m, name in enumerate(fed.members):
        s = results[m].summary["cost"]
        member_costs[name] = {
            "market_cost_eur": float(s["market_cost_eur"]),
            "slack_cost_eur": float(s["slack_cost_eur"]),
            "total_cost_eur": float(s["total_cost_eur"]),
        }
    own_prices = [v.border_price_eur_mwh for v in final]
    period_hours = float(options.get("period_hours", ModelOptions.period_hours))
    # the platform's prices: one subgradient per member chosen so that the ends of a free interconnector match
    # (docs/model.md §12.4); the members' own prices at fixed flows stay in `member_prices`
    selected = None
    if pool is not None:
        selected = platform_prices(fed, pool, best_g, np.array([v.cost_eur for v in final]), period_hours)
    prices = own_prices if selected is None else selected.prices
    ft = flows_table(fed, best_g, prices, period_hours)
    summary = base_summary(fed, scheme_id, member_costs, ft)
    summary["cross_border_prices"] = (
        {"source": "members", "note": "each member's clearing at the platform's flows"}
        if selected is None
        else {
            "source": "platform",
            "epsilon_eur": selected.epsilon_eur,
            "note": "subgradients of the members' values from the platform's cuts, consistent across free "
            "interconnectors; the flows are optimal for these prices within epsilon_eur",
        }
    )
    summary["member_scheme"] = member_scheme
    summary["certificate"] = certificate
    summary["iterations"] = history
    summary["member_evaluations"] = evaluations[0]
    summary["member_fallbacks"] = fallbacks
    if any(session is not None for session in sessions):
        # what each member's hierarchical session reused: one curve request per DSO for the whole run
        summary["member_sessions"] = {
            name: session.session.summary() for name, session in zip(fed.members, sessions) if session is not None
        }
    if fallbacks:
        certificate.setdefault("warnings", []).append(
            f"{len(fallbacks)} member clearing(s) failed in {member_scheme} and were replaced by common"
        )
    platform_comm = log.totals()
    summary["communication"] = {
        "platform": {"messages": platform_comm["messages"], "bytes": platform_comm["bytes"]},
        "member": member_comm,
        "messages": platform_comm["messages"] + member_comm["messages"],
        "bytes": platform_comm["bytes"] + member_comm["bytes"],
    }
    summary["timings_s"] = {"total": time.perf_counter() - t0}
    return FederationResult(
        scheme=scheme_id,
        federation=fed.name,
        summary=summary,
        flows=ft,
        member_prices=member_prices_table(fed, prices, own_prices),
        members={name: results[m] for m, name in enumerate(fed.members)},
        member_instances={name: fed.member_with_flows(m, best_g) for m, name in enumerate(fed.members)},
        messages=log.entries,
    )


def _final_results(
    fed: Federation,
    best_g: np.ndarray,
    final: list[MemberValue],
    sessions: list[MemberSession | None],
    options: dict,
    fallbacks: list[dict],
) -> list[ClearingResult]:
    """Every member's result at the final flows: a session's DSOs dispatch now (top-down); a member whose dispatch
    fails is replaced by its integrated clearing (`common`) at those flows, listed in `fallbacks` (its values and
    prices in `final` too)."""
    out = []
    for m, val in enumerate(final):
        session = sessions[m]
        if val.result is None and session is not None:
            try:
                val.result = session.result(val)
            except TdmarketError as exc:
                fallbacks.append({"member": fed.members[m], "round": "dispatch", "reason": str(exc)})
                log_.warning(
                    "%s: its dispatch at the platform's flows failed (%s); published common", fed.members[m], exc
                )
                final[m] = val = evaluate_member(fed, m, best_g, "common", options)
        assert val.result is not None
        out.append(val.result)
    return out


def run_isolated(fed: Federation, options: dict, member_scheme: str = "common") -> FederationResult:
    """Every member alone (no exchange, g = 0), cleared by `member_scheme` (docs/model.md §12.3)."""
    t0 = time.perf_counter()
    K, T = len(fed.interconnectors), fed.n_periods
    zero = np.zeros((K, T))
    vals = [evaluate_member(fed, m, zero, member_scheme, options) for m in range(fed.n_members)]
    member_comm = {"messages": 0, "bytes": 0}
    member_costs = {}
    results = [v.result for v in vals]
    for m, name in enumerate(fed.members):
        res = results[m]
        assert res is not None
        _add_communication(member_comm, res.summary)
        s = res.summary["cost"]
        member_costs[name] = {k: float(s[k]) for k in ("market_cost_eur", "slack_cost_eur", "total_cost_eur")}
    prices = [v.border_price_eur_mwh for v in vals]
    period_hours = float(options.get("period_hours", ModelOptions.period_hours))
    ft = flows_table(fed, zero, prices, period_hours)
    summary = base_summary(fed, "isolated", member_costs, ft)
    summary["member_scheme"] = member_scheme
    summary["certificate"] = {"kind": "every member alone (no exchange)"}
    summary["communication"] = {
        "platform": {"messages": 0, "bytes": 0},
        "member": member_comm,
        **member_comm,
    }
    summary["timings_s"] = {"total": time.perf_counter() - t0}
    return FederationResult(
        scheme="isolated",
        federation=fed.name,
        summary=summary,
        flows=ft,
        member_prices=member_prices_table(fed, prices),
        members={name: r for name, r in zip(fed.members, results) if r is not None},
        member_instances={name: fed.instances[m] for m, name in enumerate(fed.members)},
    )
