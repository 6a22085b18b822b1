"""The cut exchange's mixed-integer phase on a scripted parent (decomposition.exchange.CutExchange): what it does
when its master proposes the same point again; each DSO's share of the certified-gap target at dispatch; the
relaxed phase when its level LPs are stopped, and the level steps after a stopped projection LP."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import tdmarket
from tdmarket.decomposition import master
from tdmarket.decomposition.exchange import ChildValues, CutExchange, CutPool, ExchangeSettings, ParentPoint
from tdmarket.formulations.program import Program
from tdmarket.schemes.centralized import clear_centralized

X0 = np.array([[0.5], [0.2]])  # two children, one period, MW


def child_costs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C_0(x) = (x − 1)², C_1(x) = 3|x| (€) and their slopes (€/MW)."""
    costs = np.array([(x[0, 0] - 1.0) ** 2, 3.0 * abs(x[1, 0])])
    slopes = np.array([[2.0 * (x[0, 0] - 1.0)], [3.0 * np.sign(x[1, 0])]])
    return costs, slopes


class ScriptedMaster:
    def add_cuts(self, *args) -> None:
        pass

    def take_stats(self) -> dict:
        return {"simplex_iterations": 0, "cold_restarts": 0}


def scripted_exchange(asked_log: list, pool: CutPool) -> CutExchange:
    def evaluate(x, phase, k, asked):
        asked_log.append(None if asked is None else list(asked))
        costs, slopes = child_costs(x)
        return ChildValues(costs, slopes)

    def clear_integer(pool, remaining, box):
        # a master that always proposes X0 and bounds the problem 5 EUR below it: the gap never closes
        return ParentPoint(
            x=X0.copy(), own_cost=10.0, lower_bound=10.0 + child_costs(X0)[0].sum() - 5.0, handle=None, integer=True
        )

    return CutExchange(
        ScriptedMaster(),  # type: ignore[arg-type]
        pool,
        evaluate,
        master_point=lambda ms: ms,
        clear_integer=clear_integer,
        fallback=None,
        settings=ExchangeSettings(gap=1e-6, milp_rounds=10),
    )


def test_milp_phase_stops_when_its_master_repeats_a_point_every_child_was_asked_at():
    asked: list = []
    ex = scripted_exchange(asked, CutPool(T=1))
    best, best_ub, lb, stop = ex._milp_phase(-np.inf)
    assert stop is not None and stop[0] == "stall" and "repeated" in stop[1]
    assert [h["master"] for h in ex.history] == ["milp"]  # round 2 proposed X0 again: nothing left to learn
    assert asked == [None]  # round 1 asked every child
    assert best_ub == 10.0 + child_costs(X0)[0].sum()


def test_milp_phase_asks_every_child_at_a_repeated_point_none_was_asked_at():
    # the pool already holds exact cuts at X0, and the rounding step gave X0's value: the skip rule brackets both
    # children there, so round 1 asks nobody; the same point comes back, so round 2 asks everybody, and round 3
    # (the same point again) stops
    pool = CutPool(T=1)
    costs, slopes = child_costs(X0)
    pool.add(np.array([0, 1]), X0, costs, slopes)
    asked: list = []
    ex = scripted_exchange(asked, pool)
    ex.lp_best = ParentPoint(x=X0.copy(), own_cost=10.0, lower_bound=-np.inf, handle=None, integer=False)
    ex._best_vals = ChildValues(costs, slopes)
    ex.round_integer = lambda p: ParentPoint(x=X0.copy(), own_cost=10.0, lower_bound=-np.inf, handle=None, integer=True)
    _, _, _, stop = ex._milp_phase(10.0 + costs.sum() - 5.0)
    assert stop is not None and stop[0] == "stall"
    assert [h["master"] for h in ex.history] == ["rounded", "milp", "milp"]
    assert [h["children_asked"] for h in ex.history] == [0, 0, 2]
    assert asked == [[], None]  # round 1 asked nobody, round 2 all of them


def test_dispatch_share_is_what_the_target_leaves_after_the_exchange_gap_in_equal_parts():
    from tdmarket.decomposition.exchange import ExchangeOutcome
    from tdmarket.schemes.hierarchical import DISPATCH_SLACK, dispatch_gap_share_eur

    settings = ExchangeSettings(gap=1e-5)
    outcome = ExchangeOutcome(None, 2000.0, 1999.99, "relative_gap", "", [], [])  # gap 0.01 EUR
    target = DISPATCH_SLACK * 1e-5 * 2000.0  # 0.2 EUR for the dispatched point
    share = dispatch_gap_share_eur(outcome, settings, 10)
    assert share == pytest.approx((target - 0.01) / 10)
    # shares and the exchange's gap together stay within the target
    assert 10 * share + 0.01 <= target + 1e-12
    # an exchange that used the whole target (or has no bound) leaves nothing
    assert dispatch_gap_share_eur(ExchangeOutcome(None, 2000.0, 1999.0, "", "", [], []), settings, 10) == 0.0
    assert dispatch_gap_share_eur(ExchangeOutcome(None, 2000.0, -np.inf, "", "", [], []), settings, 10) == 0.0
    # a negative cost: relative to |UB|
    neg = ExchangeOutcome(None, -3780.0, -3780.02, "", "", [], [])
    assert dispatch_gap_share_eur(neg, settings, 4) == pytest.approx((DISPATCH_SLACK * 1e-5 * 3780.0 - 0.02) / 4)


def test_level_lp_stopped_by_its_time_limit_leaves_the_exchange_certified(builtin, monkeypatch):
    """A projection (level) LP that HiGHS cannot finish (seen: a divergent infeasibility proof, seconds per
    iteration; a 1 000-area master) stops at its time limit; the later level steps search box radii instead and
    the exchange still ends within its certified gap of the centralized clearing.  Here every level LP gets no
    time at all."""
    monkeypatch.setattr(master, "LEVEL_STEP", "projection")
    monkeypatch.setattr(master, "LEVEL_TIME_MIN_S", 1e-9)
    monkeypatch.setattr(master, "LEVEL_TIME_FACTOR", 0.0)
    central = clear_centralized(builtin, relax=True).total_cost
    res = tdmarket.clear(builtin, scheme="hierarchical", relax=True, executor="inline", incentives=False)
    cert = res.summary["certificate"]
    restarts = [r for h in res.summary["iterations"] for r in h.get("master_cold_restarts", [])]
    assert "level: other Time limit reached" in restarts, restarts
    assert cert["stopped_by"] == "relative_gap"
    assert central - 1e-6 * abs(central) <= res.total_cost <= central + 1e-5 * abs(res.total_cost) + 1e-6


def _quadratic_master(n_children: int = 6, periods: int = 3) -> master.CutMaster:
    """A master over children whose costs are Σ_t (x_t − c_t)² (€), with tangent cuts at a few points each and the
    exchanges coupled by Σ x = 1 MW per period, so that the projection LP has many rows to pivot."""
    rng = np.random.default_rng(7)
    prog = Program()
    x_cols = np.stack([prog.add_variables(f"x_{a}", periods, -5.0, 5.0).index for a in range(n_children)])
    theta = prog.add_variables("theta", n_children, -1e3, np.inf, 1.0).index
    rows = np.repeat(np.arange(periods), n_children)
    prog.add_rows("sum", sp.csr_matrix((np.ones(x_cols.size), (rows, x_cols.T.ravel())), shape=(periods, prog.n)), 1, 1)
    cm = master.CutMaster(prog, x_cols, theta)
    centers = rng.uniform(-2, 2, (n_children, periods))
    for _ in range(4):
        pts = rng.uniform(-4, 4, (n_children, periods))
        cm.add_cuts(np.arange(n_children), pts, ((pts - centers) ** 2).sum(1), 2 * (pts - centers))
    return cm


def test_after_a_stopped_projection_lp_level_steps_search_the_radius(monkeypatch):
    """Once a projection LP stops at its limit (seen at every round of a generated 1 000-area system: 20 bound-LP
    times, twice per round, and then Kelley's step 43 MW from the best point), every later level step is the
    master's minimum inside a box around the center whose radius is searched: a point of the level set, within
    the search's resolution of the projection's distance, without the projection LP."""
    monkeypatch.setattr(master, "LEVEL_STEP", "projection")
    center = np.full((6, 3), 1.0 / 6)
    lb = _quadratic_master().solve().lower_bound
    levels = (lb + 20.0, lb + 50.0, lb + 100.0)
    projection = []  # the projection LP's distance t* at each level, from a master whose LPs run to the end
    for level in levels:
        ref = _quadratic_master()
        ref.solve()
        step = ref.solve_level(center, level)
        assert step is not None
        projection.append(float(np.abs(step.x - center).max()))
    monkeypatch.setattr(master, "LEVEL_ITERATION_LIMIT", 1)  # the projection LP stops after one iteration
    cm = _quadratic_master()
    assert cm.solve().lower_bound == lb
    for level, t_star in zip(levels, projection):
        step = cm.solve_level(center, level)
        assert step is not None
        assert step.objective <= level + 1e-6
        assert t_star - 1e-9 <= np.abs(step.x - center).max() <= t_star / (1 - master.RADIUS_RESOLUTION) + 1e-9
        assert step.lower_bound == -np.inf  # a proposal, not a bound
    # one stop, reported once: the projection LP was not solved again
    assert cm.take_stats()["cold_restarts"] == ["level: other Iteration limit reached"]
    # the master's own box is back: the next bound is the unrestricted one
    assert cm.solve().lower_bound == pytest.approx(lb)


def test_level_step_radius_never_builds_the_projection_lp(monkeypatch):
    """`LEVEL_STEP = "radius"`: every level step is the radius search from the start (no projection LP)."""
    monkeypatch.setattr(master, "LEVEL_STEP", "radius")
    cm = _quadratic_master()
    center = np.full((6, 3), 1.0 / 6)
    lb = cm.solve().lower_bound
    step = cm.solve_level(center, lb + 20.0)
    assert step is not None and step.objective <= lb + 20.0 + 1e-6
    assert cm._level is None
    assert cm.take_stats()["cold_restarts"] == []


def test_radius_step_prefers_the_proposal_domain(monkeypatch):
    """The radius search cuts its boxes to the proposal domain (the curves' slack-free ranges) where the level set
    meets it, and searches the full box where it does not: a level step is never refused for the domain."""
    monkeypatch.setattr(master, "LEVEL_STEP", "radius")
    center = np.full((6, 3), 1.0 / 6)
    lb = _quadratic_master().solve().lower_bound
    # a domain beside the center that the level set meets: the step lies in it and reaches the level
    cm = _quadratic_master()
    cm.solve()
    lo, hi = center, center + 2.0  # the center on its lower edge
    box = cm._box(center, np.inf, (lo.ravel(), hi.ravel()))
    assert box is not None
    level = cm._solve_in(*box, unrestricted=False).objective + 5.0  # its cheapest point in the domain, plus 5 €
    assert level > lb + 5.0  # the premise: the full box reaches lower
    cm.set_proposal_domain(lo, hi)
    step = cm.solve_level(center, level)
    assert step is not None and step.objective <= level + 1e-6
    assert np.all(step.x >= lo - 1e-9) and np.all(step.x <= hi + 1e-9)
    level = lb + 50.0
    # a domain far from every child's minimum (feasible for Σ x = 1, but its cheapest point costs more than the
    # level): the step comes from the full box
    far_lo = np.vstack([np.full((3, 3), -5.0), np.full((3, 3), 4.5)])
    far_hi = np.vstack([np.full((3, 3), -4.0), np.full((3, 3), 5.0)])
    cm = _quadratic_master()
    cm.solve()
    cm.set_proposal_domain(far_lo, far_hi)
    inside = cm._box(center, np.inf, (far_lo.ravel(), far_hi.ravel()))
    assert inside is not None and cm._solve_in(*inside, unrestricted=False).objective > level  # the premise
    step = cm.solve_level(center, lb + 20.0)
    assert step is not None and step.objective <= lb + 20.0 + 1e-6
    assert np.any(step.x < far_lo - 1e-9) or np.any(step.x > far_hi + 1e-9)
    assert cm.solve().lower_bound == pytest.approx(lb)  # the master's own box is back


def test_master_counts_a_failed_solves_iterations_once():
    """The round history's simplex iterations count each LP solve once, also one that failed and was reported (it
    was counted twice until 2026-12-04)."""
    from tdmarket.errors import SolverError

    cm = _quadratic_master()
    seen: list[int] = []
    lp = cm.lp
    solve, solve_again = lp.solve, lp.solve_again

    depth = [0]

    def recorded(fn):
        def call(*args, **kwargs):  # the master's own calls (a re-solve calls `solve` inside)
            depth[0] += 1
            try:
                sol = fn(*args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                seen.append(int(sol.iterations or 0))
            return sol

        return call

    lp.solve, lp.solve_again = recorded(solve), recorded(solve_again)  # type: ignore[method-assign]
    lp.h.setOptionValue("simplex_iteration_limit", 1)  # the bound LP stops after one iteration: reported
    try:
        cm.solve()
    except SolverError:
        pass
    stats = cm.take_stats()
    assert stats["cold_restarts"] and stats["cold_restarts"][0].startswith("bound:")
    assert seen and seen[0] >= 1
    assert stats["simplex_iterations"] == sum(seen)


def _quadratic_centers() -> np.ndarray:
    """The children's c (MW, (6, 3)) of `_quadratic_master`: its random generator's first draw."""
    return np.random.default_rng(7).uniform(-2, 2, (6, 3))


def _quadratic_exchange(probe: bool, asked_at: list) -> CutExchange:
    """A cut exchange on `_quadratic_master`'s children with their exact costs Σ_t (x_t − c_t)² (€)."""
    centers = _quadratic_centers()

    def evaluate(x, phase, k, asked):
        asked_at.append((k, x.copy(), None if asked is None else list(asked)))
        return ChildValues(((x - centers) ** 2).sum(1), 2 * (x - centers))

    def point(ms) -> ParentPoint:
        own = ms.objective - ms.offer_value
        return ParentPoint(x=ms.x, own_cost=own, lower_bound=ms.lower_bound, handle=ms, integer=False)

    return CutExchange(
        _quadratic_master(),
        CutPool(3),
        evaluate,
        master_point=point,
        clear_integer=None,
        fallback=None,
        settings=ExchangeSettings(gap=1e-6, probe=probe, max_rounds=200, stall_rounds=200),
    )


def test_level_rounds_probe_the_bounds_point(monkeypatch):
    """After each level round the children still open at the bound LP's minimiser (Kelley's point) are asked
    there too: the exchange still ends within its gap of the optimum, in fewer rounds than without, and each
    probe is a second evaluation of its round at another point, reported in the round's history."""
    monkeypatch.setattr(master, "LEVEL_STEP", "radius")
    centers = _quadratic_centers()
    x_opt = centers + (1.0 - centers.sum(0)) / 6  # Σ_a x_a = 1 MW per period binds; no bound is active
    assert np.abs(x_opt).max() < 5
    optimum = float(((x_opt - centers) ** 2).sum())
    center = np.full((6, 3), 1.0 / 6)
    runs = {}
    for probe in (False, True):
        asked_at: list = []
        out = _quadratic_exchange(probe, asked_at).run(center, integer=False)
        assert out.stopped_by == "relative_gap"
        assert out.lower_bound <= optimum + 1e-9 <= out.upper_bound + 2e-9
        assert out.upper_bound - optimum <= 1e-6 * max(1.0, abs(out.upper_bound)) + 1e-9
        runs[probe] = (out, asked_at)
    (plain, plain_asked), (probed, probed_asked) = runs[False], runs[True]
    assert len(probed.history) < len(plain.history)
    assert len(plain_asked) == len(plain.history)  # one evaluation per round without the probe
    rounds = [h["iteration"] for h in probed.history if "probe_asked" in h]
    assert rounds and 1 not in rounds  # round 1 has no level step
    for k in rounds:
        at = [x for kk, x, _ in probed_asked if kk == k]
        assert len(at) == 2 and not np.array_equal(at[0], at[1])
    for h in probed.history:
        assert h["upper_bound"] <= min(h["point_upper_bound"], h.get("probe_upper_bound", np.inf))


def _level_exchange(asked: list, proposals: list, level_step, calls: list) -> CutExchange:
    """`scripted_exchange` whose bound master proposes `proposals` in turn (bound 8 EUR) and whose level step, with
    the binaries held at the bound point's configuration, lands at `level_step(bound point x)`; the holds, level
    solves and releases are logged in `calls`."""

    class LevelMaster(ScriptedMaster):
        def solve_level(self, center, level):
            calls.append(("level", center.copy(), level))
            return "level solution"

    def hold_integer(point):
        calls.append(("hold", point.x.copy()))
        x = level_step(point.x.copy())

        def point_from(ms):
            assert ms == "level solution"
            return ParentPoint(x=x, own_cost=10.0, lower_bound=-np.inf, handle=None, integer=True)

        return point_from, lambda: calls.append(("release",))

    bound_points = iter(proposals)

    def clear_integer(pool, remaining, box):
        return ParentPoint(x=next(bound_points).copy(), own_cost=10.0, lower_bound=8.0, handle=None, integer=True)

    ex = scripted_exchange(asked, CutPool(T=1))
    ex.master = LevelMaster()  # type: ignore[assignment]
    ex.hold_integer, ex.clear_integer = hold_integer, clear_integer
    return ex


def test_mixed_integer_rounds_propose_the_level_step_in_the_bound_masters_configuration():
    """From the second mixed-integer round on, the point evaluated is the level step with the parent's binaries
    held at the bound master's configuration (nearest to the best point, at LB + λ(UB − LB)); the bound master's
    own point is probed after it.  Here the bound master proposes X0, then X2 twice: round 2 evaluates the level
    step and probes X2 (every child asked), so round 3's repeat of X2 ends the phase."""
    x1 = np.array([[0.8], [0.0]])  # the level step: nearer C_0's minimum and C_1's kink
    x2 = np.array([[0.3], [0.4]])
    lb_master = 8.0
    calls: list = []
    asked: list = []
    evaluated: list = []
    ex = _level_exchange(asked, [X0, x2, x2], lambda x: x1.copy(), calls)
    inner = ex.evaluate
    ex.evaluate = lambda x, phase, k, a: (evaluated.append((k, x.ravel().tolist())), inner(x, phase, k, a))[1]
    best, best_ub, lb, stop = ex._milp_phase(-np.inf)
    ub0, ub1, ub2 = (10.0 + child_costs(x)[0].sum() for x in (X0, x1, x2))
    assert ub1 < ub0 < ub2
    assert evaluated == [(1, [0.5, 0.2]), (2, [0.8, 0.0]), (2, [0.3, 0.4])]
    assert asked == [None, None, None]
    assert calls[0][0] == "hold" and np.array_equal(calls[0][1], x2)  # the bound point's configuration
    assert calls[1][0] == "level" and np.array_equal(calls[1][1], X0)  # centred on the best point so far
    assert calls[1][2] == pytest.approx(lb_master + ExchangeSettings().level * (ub0 - lb_master))
    assert calls[2] == ("release",) and len(calls) == 3
    assert stop is not None and stop[0] == "stall" and "repeated" in stop[1]
    assert best_ub == ub1 and np.array_equal(best.x, x1) and lb == lb_master
    assert [h["master"] for h in ex.history] == ["milp", "milp"]
    assert ex.history[1]["probe_upper_bound"] == ub2 and ex.history[1]["upper_bound"] == ub1


def test_a_level_step_at_the_bound_masters_own_point_is_asked_once():
    """When the level step lands on the bound master's point itself (its configuration's level set reaches no
    nearer), that point is evaluated once, no probe follows, and the bound master repeating it ends the phase."""
    x2 = np.array([[0.3], [0.4]])
    asked: list = []
    ex = _level_exchange(asked, [X0, x2, x2], lambda x: x, [])
    _, _, _, stop = ex._milp_phase(-np.inf)
    assert asked == [None, None]  # X0, then (0.3, 0.4) once
    assert stop is not None and stop[0] == "stall" and "repeated" in stop[1]
    assert all("probe_asked" not in h for h in ex.history)
