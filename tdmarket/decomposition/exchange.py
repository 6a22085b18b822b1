"""The cut exchange (nested Benders, docs/model.md §6.3) between a parent and its child areas.

The parent holds a master: its own clearing with one θ_a per child and every cut received so far.  Each round
the master proposes exchanges x, every child returns C_a(x_a) and a subgradient (a cut), and

* UB = parent's own cost at the proposal + Σ_a C_a(x_a)   (a feasible clearing: the children have complete
  recourse through their penalised slack, so every proposal is deliverable),
* LB = the master's optimum (a relaxation of the integrated problem: cuts under-estimate every C_a).

LP phase: the relaxed master, stabilised by a box trust region, until a stopping rule fires.  MILP phase (with
the parent's binaries): a few rounds of the mixed-integer master with all cuts; only its points are published.
Whatever fails (a solver status, the time limit) the loop keeps the best feasible point with its certified
bound, and falls back to a point that is feasible by construction if no mixed-integer point was found.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TdmarketError
from .inner import InnerBound
from .master import CutMaster
from .stopping import IterationLimit, Progress, RelativeGap, Stall, StoppingRule, TimeLimit, first_stop


@dataclass
class CutPool:
    """Every cut received, as arrays (area index, point (K, T) MW, value € , slope (K, T) €/MW), with the child's
    cost at each point as far as it is known (`upper`, €: the cut's value when the child reported its cost
    exactly, NaN when the value is only a lower bound of it, e.g. a DSO whose sub-DSOs' costs it models by cuts).
    The cuts bound the children's costs from below; the inner bound (`InnerBound`) uses only the known costs."""

    T: int
    area: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    slopes: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    upper: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        self.points = self.points.reshape(-1, self.T)
        self.slopes = self.slopes.reshape(-1, self.T)
        if len(self.upper) != len(self.values):
            self.upper = self.values.copy()

    def add(
        self,
        area: np.ndarray,
        points: np.ndarray,
        values: np.ndarray,
        slopes: np.ndarray,
        upper: np.ndarray | float | None = None,
    ) -> None:
        """Add cuts; `upper`: the children's costs at the points (€, NaN where unknown; default: the values)."""
        values = np.asarray(values, float)
        upper = values if upper is None else np.broadcast_to(np.asarray(upper, float), values.shape)
        self.area = np.concatenate([self.area, np.asarray(area, np.int64)])
        self.points = np.vstack([self.points, np.asarray(points, float).reshape(-1, self.T)])
        self.values = np.concatenate([self.values, values])
        self.slopes = np.vstack([self.slopes, np.asarray(slopes, float).reshape(-1, self.T)])
        self.upper = np.concatenate([self.upper, upper])

    def add_messages(self, area: int, cuts: list[dict], exact: bool = True) -> None:
        """Add one child's cuts as messages carry them ({point, value, slope}, e.g. `CurveOffer.cuts`); `exact`:
        the values are the child's costs at the points (else only lower bounds of them)."""
        if cuts:
            self.add(
                np.full(len(cuts), area),
                np.array([c["point"] for c in cuts], float),
                np.array([c["value"] for c in cuts], float),
                np.array([c["slope"] for c in cuts], float),
                None if exact else np.nan,
            )

    def messages(self) -> list[dict]:
        """The cuts as messages carry them ({point, value, slope}; the inverse of `add_messages`)."""
        return [
            {"point": p.tolist(), "value": float(v), "slope": g.tolist()}
            for p, v, g in zip(self.points, self.values, self.slopes, strict=True)
        ]

    def extend(self, other: CutPool) -> None:
        self.add(other.area, other.points, other.values, other.slopes, other.upper)

    def __len__(self) -> int:
        return len(self.area)

    def model_value(self, x: np.ndarray) -> np.ndarray:
        """max over cuts of each area's planes at x (A, T): the cut model's value per area (−inf without cut)."""
        A = x.shape[0]
        out = np.full(A, -np.inf)
        if len(self):
            v = self.values + np.einsum("kt,kt->k", self.slopes, x[self.area] - self.points)
            np.maximum.at(out, self.area, v)
        return out


@dataclass
class ParentPoint:
    """A parent's clearing at some exchanges: x (A, T) MW, its own cost (€, offers excluded), a lower bound
    of the integrated problem it certifies (€, −inf if none), and the parent's own result object."""

    x: np.ndarray
    own_cost: float
    lower_bound: float
    handle: Any
    integer: bool
    note: str = ""


@dataclass
class ChildValues:
    """The children's replies at a proposal: C_a(x_a) (€) and ∂C_a/∂x_a (€/MW per period).  Children that were
    not asked (`asked` False) carry the parent's inner upper bound U_a(x_a) as cost and no slope (NaN)."""

    costs: np.ndarray  # (A,)
    slopes: np.ndarray  # (A, T)
    asked: np.ndarray | None = None  # (A,) bool; None = every child was asked
    # (A,) the cuts' values at the point where a child reports its cost only to within a gap (a lower bound of
    # its cost there that the slopes support, e.g. a member's cut model at the flows); None = `costs` (exact)
    cut_values: np.ndarray | None = None
    # further cuts the children sent with their replies, e.g. a DSO's evaluation halfway back from a proposal that
    # needed slack; None = none
    extra: CutPool | None = None

    @property
    def values_for_cuts(self) -> np.ndarray:
        return self.costs if self.cut_values is None else self.cut_values

    @property
    def asked_mask(self) -> np.ndarray:
        return np.ones(len(self.costs), bool) if self.asked is None else self.asked


@dataclass
class ExchangeOutcome:
    best: ParentPoint | None
    upper_bound: float
    lower_bound: float
    stopped_by: str
    reason: str
    history: list[dict]
    warnings: list[str]

    @property
    def certified_gap(self) -> float:
        if not (np.isfinite(self.upper_bound) and np.isfinite(self.lower_bound)):
            return float("inf")
        return max(self.upper_bound - self.lower_bound, 0.0) / max(1.0, abs(self.upper_bound))


@dataclass
class ExchangeSettings:
    gap: float = 1e-4  # relative (UB − LB)/max(1, |UB|)
    gap_abs_eur: float = 0.0
    max_rounds: int = 50  # LP phase
    # mixed-integer rounds (only when rounding the relaxed optimum did not close the gap): measured on a generated
    # 10-DSO system with many T binaries, 3 rounds ended at a certified gap of 2.2 % (+1.4 % to centralized) and 25
    # closed it to 1.1e-5; the stall rule ends a round sequence that no longer makes progress
    milp_rounds: int = 30
    stall_rounds: int = 8
    time_limit_s: float | None = None
    milp_box_mw: float = 1.0  # first mixed-integer round: exchanges within ± this of the relaxed optimum, MW
    level: float = 0.3  # λ of the level method: the next proposal must reach LB + λ (UB − LB) on the cut model
    # a child whose cost is bracketed within this share of the current gap by its cuts and the inner bound of its
    # evaluations is not asked (docs/model.md §6.3); 0 asks every child every round
    skip_share: float = 0.05
    # the mixed-integer phase stops at this multiple of `gap`: rounding the parent's binaries can add a little
    # to the relaxed gap, and closing it by mixed-integer master rounds costs far more than it gains (measured on
    # italy-652, machine under load: two rounds, 129 s, for 0.01 €)
    integer_gap_factor: float = 2.0
    # after the mixed-integer phase, level rounds with the parent's binaries held at the best point's (one
    # configuration: a convex problem); 0 = none
    polish_rounds: int = 30
    # after a relaxed level round, the children whose cut model is still open at the bound LP's minimiser
    # (Kelley's point) are asked there too (`CutExchange._probe`)
    probe: bool = True
    # from the second mixed-integer round on, the point evaluated is a level step with the parent's binaries held at
    # the bound master's configuration, and the bound master's point is probed after it
    # (`CutExchange._level_in_configuration`); False: plain cutting planes (Kelley's point only)
    milp_level: bool = True

    def lp_rules(self) -> list[StoppingRule]:
        rules: list[StoppingRule] = [RelativeGap(self.gap)]
        if self.gap_abs_eur > 0:
            from .stopping import AbsoluteGap

            rules.append(AbsoluteGap(self.gap_abs_eur))
        rules += [Stall(self.stall_rounds), IterationLimit(self.max_rounds)]
        return rules


class CutExchange:
    def __init__(
        self,
        master: CutMaster,
        pool: CutPool,
        evaluate: Callable[[np.ndarray, str, int, np.ndarray | None], ChildValues],
        master_point: Callable[[Any], ParentPoint],
        clear_integer: Callable[[CutPool, float | None, tuple | None], ParentPoint] | None,
        fallback: Callable[[CutPool], ParentPoint] | None,
        settings: ExchangeSettings,
        progress: Callable[[dict], None] | None = None,
        first_point: Callable[[], ParentPoint] | None = None,
        round_integer: Callable[[ParentPoint], ParentPoint | None] | None = None,
        hold_integer: Callable[[ParentPoint], tuple[Callable[[Any], ParentPoint], Callable[[], None]] | None]
        | None = None,
    ):
        self.master, self.pool, self.evaluate = master, pool, evaluate
        self.master_point, self.clear_integer, self.fallback = master_point, clear_integer, fallback
        self.s = settings
        self.progress = progress
        self.first_point = first_point  # e.g. the parent's clearing with the children's curves
        # the relaxed optimum with the parent's binaries rounded and the exchanges held (no child is asked again)
        self.round_integer = round_integer
        # the parent's binaries held at a mixed-integer point's: (master solution -> point, release), or None
        self.hold_integer = hold_integer
        self._best_vals: ChildValues | None = None
        self.lp_stop: tuple[str, str] = ("", "")  # (rule, reason) that ended the relaxed phase
        self.history: list[dict] = []
        self.lp_best: ParentPoint | None = None
        self.warnings: list[str] = []
        self.clock = TimeLimit(settings.time_limit_s) if settings.time_limit_s else None
        self._inner = InnerBound()
        self._gap_eur = np.inf  # UB − LB before the current round, € (sets how much a skipped child may hide)

    @property
    def gap_eur(self) -> float:
        """UB − LB before the round being evaluated, € (inf before the first bound and proposal)."""
        return float(self._gap_eur)

    # ------------------------------------------------------------------ helpers
    def _remaining(self) -> float | None:
        return None if self.clock is None else max(self.clock.remaining(), 1.0)

    def _round(
        self,
        point: ParentPoint,
        phase: str,
        k: int,
        lb: float,
        best_ub: float,
        t_master: float,
        known: ChildValues | None = None,
        ask_all: bool = False,
    ) -> tuple[float, ChildValues]:
        """One round: the children's values at the point (asked, or `known` when the exchanges were evaluated
        before), the new cuts, the history entry; returns the point's upper bound and the children's values."""
        t0 = time.perf_counter()
        vals = known if known is not None else self._ask(point.x, phase, k, ask_all=ask_all)
        t_eval = time.perf_counter() - t0
        ub = point.own_cost + float(vals.costs.sum())
        if known is None:
            self._add_cuts(point.x, vals)
        self._record(
            phase,
            lb,
            min(best_ub, ub),
            ub,
            t_master,
            t_eval,
            int(vals.asked_mask.sum()) if known is None else 0,
            point.note,
        )
        return ub, vals

    def _add_cuts(self, x: np.ndarray, vals: ChildValues) -> None:
        """The cuts of the children asked at x (and the further cuts sent with their replies), to the pool and
        the master."""
        asked = np.flatnonzero(vals.asked_mask)
        values = vals.values_for_cuts
        self.pool.add(asked, x[asked], values[asked], vals.slopes[asked], vals.costs[asked])
        self.master.add_cuts(asked, x[asked], values[asked], vals.slopes[asked])
        if vals.extra is not None and len(vals.extra):
            e = vals.extra
            self.pool.extend(e)
            self.master.add_cuts(e.area, e.points, e.values, e.slopes)

    def _probe(self, point: ParentPoint, k: int, phase: str = "lp") -> tuple[float, ChildValues] | None:
        """After a level round: the children at the bound LP's minimiser `point` (Kelley's point, where the cut
        model is lowest), their cuts and the point's upper bound, recorded in the round's history entry.  Only
        the children whose cut model there is still open by more than a share of the gap are asked (`_ask`),
        with the level point's cuts already in, so it costs few evaluations; its cuts raise the bound, which the
        level steps, kept near the best point, leave behind (docs/model.md §6.3 item 3).  None if no child was
        asked or a child's evaluation failed (the round stands without it)."""
        t0 = time.perf_counter()
        try:
            vals = self._ask(point.x, phase, k)
        except TdmarketError as exc:
            self.warnings.append(f"round {k}: the children's values at the bound's point failed ({exc})")
            return None
        asked = int(vals.asked_mask.sum())
        if asked == 0:
            return None
        self._add_cuts(point.x, vals)
        ub = point.own_cost + float(vals.costs.sum())
        entry = self.history[-1]
        entry.update(probe_asked=asked, probe_upper_bound=ub, probe_evaluation_s=time.perf_counter() - t0)
        entry["upper_bound"] = min(entry["upper_bound"], ub)
        entry["gap_eur"] = entry["upper_bound"] - entry["lower_bound"]
        return ub, vals

    def _record(
        self, phase: str, lb: float, ub: float, point_ub: float, t_master: float, t_eval: float, asked: int, note: str
    ) -> None:
        """One history entry (with the master's simplex statistics since the last), reported to `progress`."""
        entry: dict[str, Any] = {
            "iteration": len(self.history) + 1,
            "master": phase,
            "lower_bound": lb,
            "upper_bound": ub,
            "point_upper_bound": point_ub,
            "gap_eur": ub - lb,
            "master_s": t_master,
            "evaluation_s": t_eval,
            "children_asked": asked,
        }
        stats = self.master.take_stats()
        entry["master_simplex_iterations"] = stats["simplex_iterations"]
        if stats["cold_restarts"]:
            entry["master_cold_restarts"] = stats["cold_restarts"]
        if note:
            entry["note"] = note
        self.history.append(entry)
        if self.progress:
            self.progress({"stage": "iterate", **entry})

    def _ask(self, x: np.ndarray, phase: str, k: int, ask_all: bool = False) -> ChildValues:
        """The children's values at x: every child whose cost is not yet bracketed is asked; a child whose cut
        model m_a and inner bound U_a agree at x_a to within a small share of the gap is not (its cut could move
        neither bound by more than U_a − m_a; U_a is counted in the upper bound)."""
        A = x.shape[0]
        skip = np.zeros(A, bool)
        upper = np.full(A, np.inf)
        if self.s.skip_share > 0 and np.isfinite(self._gap_eur) and len(self.pool) and not ask_all:
            p = self.pool
            known = np.isfinite(p.upper)  # (a point whose cost is known only from below spans no inner bound)
            upper = self._inner.values(p.area[known], p.points[known], p.upper[known], p.slopes[known], x)
            spread = np.maximum(upper - p.model_value(x), 0.0)
            order = np.argsort(spread, kind="stable")
            budget = self.s.skip_share * self._gap_eur
            within = np.cumsum(spread[order]) <= budget
            skip[order[within & np.isfinite(spread[order])]] = True
        asked = ~skip
        if not skip.any():
            return self.evaluate(x, phase, k, None)
        vals = self.evaluate(x, phase, k, np.flatnonzero(asked))
        costs, slopes = vals.costs.copy(), vals.slopes.copy()
        costs[skip], slopes[skip] = upper[skip], np.nan
        cut_values = None if vals.cut_values is None else vals.cut_values.copy()
        return ChildValues(costs, slopes, asked, cut_values, vals.extra)

    # ------------------------------------------------------------------ phases
    def _lp_phase(self, center: np.ndarray, prog: Progress) -> tuple[ParentPoint | None, float]:
        """Level-bundle steps on the relaxed master (docs/model.md §6.3).

        Each round solves the master for the lower bound LB, then proposes the point of the level set
        {model <= LB + λ(UB − LB)} nearest (max norm over the exchanges) to the best point so far.  Unlike plain
        cutting planes it does not jump across the domain, and unlike a box trust region it needs no radius."""
        rules = self.s.lp_rules() + ([self.clock] if self.clock else [])
        best, best_ub = None, np.inf
        lam = self.s.level
        while True:
            prog.rounds += 1
            t0 = time.perf_counter()
            bound = self.master.solve()
            prog.lower_bound = max(prog.lower_bound, bound.lower_bound)
            probe = None  # Kelley's point of a level round (`_probe`)
            if best is None:
                point = self.first_point() if self.first_point is not None else self.master_point(bound)
            else:
                prog.upper_bound = best_ub
                stop = first_stop(rules, prog)
                if stop is not None:  # the new bound closed the gap: no further proposal needed
                    self.lp_stop = stop
                    return best, best_ub
                self._gap_eur = best_ub - prog.lower_bound
                ms = self.master.solve_level(best.x, prog.lower_bound + lam * (best_ub - prog.lower_bound))
                point = self.master_point(ms if ms is not None else bound)
                if ms is not None and self.s.probe:
                    probe = self.master_point(bound)
            ub, vals = self._round(point, "lp", prog.rounds, prog.lower_bound, best_ub, time.perf_counter() - t0)
            if ub < best_ub:
                best, best_ub, self._best_vals = point, ub, vals
            if probe is not None and not np.array_equal(probe.x, point.x):
                probed = self._probe(probe, prog.rounds)
                if probed is not None and probed[0] < best_ub:
                    best, (best_ub, self._best_vals) = probe, probed
            prog.upper_bound = best_ub
            prog.gaps.append(prog.gap_eur)
            stop = first_stop(rules, prog)
            if stop is not None:
                self.lp_stop = stop
                return best, best_ub

    def _reprice(self, best: ParentPoint) -> tuple[ParentPoint, float]:
        """The relaxed point published: the master with the exchanges fixed at the best proposal, so that the
        parent's prices are the duals of its own clearing at those exchanges (a level step has no prices)."""
        point = self.master_point(self.master.solve_fixed(best.x))
        assert self._best_vals is not None  # set with the best point
        return point, point.own_cost + float(self._best_vals.costs.sum())

    def _milp_phase(self, lb: float) -> tuple[ParentPoint | None, float, float, tuple[str, str] | None]:
        best, best_ub = None, np.inf
        prog = Progress(lower_bound=lb)
        stop = None
        if self.round_integer is not None and self.lp_best is not None and self._best_vals is not None:
            # measured on italy-652: the relaxed optimum's binaries are (nearly) integral, and rounding them at the
            # same exchanges costs one warm LP instead of a mixed-integer master (13 s) and an evaluation round
            t0 = time.perf_counter()
            point = self.round_integer(self.lp_best)
            if point is not None:
                x_same = np.allclose(point.x, self.lp_best.x, rtol=0.0, atol=1e-9)
                known = self._best_vals if x_same else None
                best_ub, _ = self._round(point, "rounded", 0, lb, np.inf, time.perf_counter() - t0, known=known)
                best = point
                prog.upper_bound = best_ub
                stop = first_stop([RelativeGap(self.s.gap * self.s.integer_gap_factor)], prog)
                if stop is not None:
                    return best, best_ub, prog.lower_bound, stop
        last: tuple[np.ndarray, bool] | None = None  # the last mixed-integer point, whether every child was asked
        for k in range(1, self.s.milp_rounds + 1):
            if self.clock is not None and self.clock.check(prog):
                stop = ("time_limit", self.clock.check(prog) or "")
                break
            t0 = time.perf_counter()
            # round 1 stays near the relaxed optimum (the cut model is accurate only where the DSOs were asked);
            # it is a feasible point but bounds nothing; later rounds are unrestricted and certify the bound
            box = None
            if k == 1 and self.lp_best is not None and self.s.milp_box_mw > 0:
                box = (self.lp_best.x - self.s.milp_box_mw, self.lp_best.x + self.s.milp_box_mw)
            assert self.clear_integer is not None  # given for integer runs
            try:
                point = self.clear_integer(self.pool, self._remaining(), box)
            except TdmarketError as exc:
                if box is not None:  # the restricted round is only a shortcut: go on without the box
                    self.warnings.append(f"mixed-integer round {k} within the box failed ({exc}); unrestricted next")
                    continue
                self.warnings.append(f"mixed-integer master round {k} failed ({exc}); kept the best point so far")
                stop = ("milp_failed", str(exc))
                break
            prog.lower_bound = max(prog.lower_bound, point.lower_bound)
            # the master repeats its point when the children asked there could not move it (the others bracketed
            # by the skip rule): ask every child at a repeated point, and stop if it comes back even so (nothing
            # would change in later rounds; measured on a generated 10-area system, six identical rounds)
            repeated = last is not None and np.allclose(point.x, last[0], rtol=0.0, atol=1e-9)
            if repeated and last is not None and last[1]:
                stop = ("stall", f"mixed-integer round {k} repeated the last point, every child asked there")
                break
            # the skip rule's budget: a share of the relaxed phase's last gap, or of this phase's where that is smaller
            # (a relaxed phase that ended loose, by its stall or round limit, must not let these rounds skip every
            # child; measured on a generated 10-area system: six identical rounds, see the `repeated` rule)
            self._gap_eur = min(self._gap_eur, best_ub - prog.lower_bound)
            kelley = None  # the bound master's point, when a level step is proposed instead
            if self.s.milp_level and box is None and best is not None and not repeated:
                step = self._level_in_configuration(point, best, prog.lower_bound, best_ub)
                if step is not None:
                    point, kelley = step, point
            ub, vals = self._round(
                point, "milp", k, prog.lower_bound, best_ub, time.perf_counter() - t0, ask_all=repeated
            )
            last = (point.x.copy(), bool(vals.asked_mask.all()))
            if ub < best_ub:
                best, best_ub = point, ub
            if kelley is not None and not np.array_equal(kelley.x, point.x):
                # the children at the bound master's point too (those still open there): its cuts raise the bound,
                # which the level steps, kept near the best point, would leave behind (as in the relaxed phase)
                last = (kelley.x.copy(), False)
                probed = self._probe(kelley, k, "milp")
                if probed is not None:
                    last = (kelley.x.copy(), bool(probed[1].asked_mask.all()))
                    if probed[0] < best_ub:
                        best, best_ub = kelley, probed[0]
            prog.upper_bound = best_ub
            prog.rounds = k
            prog.gaps.append(prog.gap_eur)
            stop = first_stop([RelativeGap(self.s.gap * self.s.integer_gap_factor), Stall(self.s.stall_rounds)], prog)
            if stop is not None:
                break
        else:
            stop = ("milp_rounds", f"{self.s.milp_rounds} mixed-integer rounds")
        return best, best_ub, prog.lower_bound, stop

    def _level_in_configuration(
        self, bound_point: ParentPoint, best: ParentPoint, lb: float, ub: float
    ) -> ParentPoint | None:
        """The level step of a mixed-integer round: with the parent's binaries held at the bound master's point's
        configuration, the point of the relaxed master's level set {model <= LB + λ(UB − LB)} nearest to the best
        point (`CutMaster.solve_level`).  It is a mixed-integer clearing (of that configuration), so its upper
        bound is valid; the configuration's minimum is the master's bound, so its level set is not empty unless
        the master stopped within its own gap above it.  Plain mixed-integer rounds are Kelley's cutting planes,
        which jump across the exchanges' domain (measured: a generated 10-area system 21 → 13 rounds, a
        generated 7-area one 22 → 10, with as many evaluations: each round asks at both points).  None if the
        parent has no binaries, or no level step was found."""
        held = None if self.hold_integer is None else self.hold_integer(bound_point)
        if held is None:
            return None
        point_from, release = held
        try:
            ms = self.master.solve_level(best.x, lb + self.s.level * (ub - lb))
            return None if ms is None else point_from(ms)
        except TdmarketError:
            return None
        finally:
            release()

    def _polish_phase(
        self, best: ParentPoint, best_ub: float, lb: float
    ) -> tuple[ParentPoint, float, tuple[str, str] | None]:
        """Level rounds (as in the relaxed phase) with the parent's binaries held at `best`'s: the mixed-integer
        rounds are Kelley's cutting planes, whose proposals jump across the exchanges' domain; once they have
        found the configuration of the parent's binaries, what is left of the gap is often its continuous part
        (measured on a generated 15-area system: 30 mixed-integer rounds ended 3.8e-3 above their bound, 3.5e-3
        above centralized, with the TSO's binaries and every exchange but a few tenths of a MW already
        centralized's).  Points of these rounds are mixed-integer clearings; their master bound bounds this
        configuration only, so the certified bound stays `lb`.  Returns (best point, its upper bound, the rule
        that ended the rounds or None if none ran)."""
        held = None if self.hold_integer is None else self.hold_integer(best)
        if held is None:
            return best, best_ub, None
        point_from, release = held
        rules: list[StoppingRule] = [
            RelativeGap(self.s.gap),
            Stall(self.s.stall_rounds),
            IterationLimit(self.s.polish_rounds),
        ] + ([self.clock] if self.clock else [])
        prog = Progress(upper_bound=best_ub)
        lam = self.s.level
        stop: tuple[str, str] | None = None
        try:
            while True:
                t0 = time.perf_counter()
                bound = self.master.solve()  # this configuration's bound
                prog.lower_bound = max(prog.lower_bound, bound.lower_bound)
                stop = first_stop(rules, prog)
                if stop is not None:
                    break
                prog.rounds += 1
                ms = self.master.solve_level(best.x, prog.lower_bound + lam * (best_ub - prog.lower_bound))
                point = point_from(ms if ms is not None else bound)
                ub, _ = self._round(point, "polish", prog.rounds, lb, best_ub, time.perf_counter() - t0)
                if ub < best_ub:
                    best, best_ub = point, ub
                prog.upper_bound = best_ub
                prog.gaps.append(prog.gap_eur)
                stop = first_stop(rules, prog)
                if stop is not None:
                    break
        except TdmarketError as exc:  # the best point so far stands
            self.warnings.append(f"rounds with the binaries held failed ({exc}); kept the best point so far")
            stop = ("polish_failed", str(exc))
        finally:
            release()
        return best, best_ub, stop if prog.rounds else None

    def _bound_round(self, best: ParentPoint, best_ub: float, lb: float) -> tuple[ParentPoint, float, float]:
        """One more mixed-integer master after the rounds with the binaries held: their cuts lie around the best
        point, so its bound may rise (the generated 15-area system of `_polish_phase`: certified gap 3.7e-4 →
        3.4e-6); its point is evaluated like a mixed-integer round's.  Returns (best, its upper bound, LB)."""
        if self.clear_integer is None or (self.clock is not None and self.clock.remaining() <= 0):
            return best, best_ub, lb
        t0 = time.perf_counter()
        try:
            point = self.clear_integer(self.pool, self._remaining(), None)
        except TdmarketError as exc:
            self.warnings.append(f"mixed-integer master after the rounds with the binaries held failed ({exc})")
            return best, best_ub, lb
        lb = max(lb, point.lower_bound)
        if np.allclose(point.x, best.x, rtol=0.0, atol=1e-9):  # the children were asked there: a bound only
            t = time.perf_counter() - t0
            self._record("milp", lb, best_ub, best_ub, t, 0.0, 0, "bound only: the best point again")
            return best, best_ub, lb
        ub, _ = self._round(point, "milp", len(self.history) + 1, lb, best_ub, time.perf_counter() - t0)
        if ub < best_ub:
            best, best_ub = point, ub
        return best, best_ub, lb

    def run(self, center: np.ndarray, integer: bool) -> ExchangeOutcome:
        prog = Progress()
        self.lp_stop = ("", "")
        try:
            best, best_ub = self._lp_phase(np.asarray(center, float), prog)
        except TdmarketError as exc:
            self.warnings.append(f"relaxed master failed ({exc})")
            best, best_ub, self.lp_stop = None, np.inf, ("lp_failed", str(exc))
        lb = prog.lower_bound
        stopped_by, reason = self.lp_stop
        if not integer and best is not None:
            best, best_ub = self._reprice(best)
        if integer:
            self.lp_best = best
            best, best_ub, lb, stop = self._milp_phase(lb)
            if stop is not None:
                stopped_by, reason = stop
            target = self.s.gap * self.s.integer_gap_factor * max(1.0, abs(best_ub))
            if best is not None and best.integer and best_ub - lb > target and stopped_by != "time_limit":
                best, best_ub, polished = self._polish_phase(best, best_ub, lb)
                if polished is not None:
                    rounds = sum(h["master"] == "polish" for h in self.history)
                    reason = f"{reason}; then {rounds} rounds with the binaries held ({polished[1]})"
                    if best_ub - lb > target:
                        best, best_ub, lb = self._bound_round(best, best_ub, lb)
            if best is None and self.fallback is not None:
                point = self.fallback(self.pool)
                best_ub, _ = self._round(point, "fallback", 1, lb, np.inf, 0.0)
                best = point
                self.warnings.append("no mixed-integer master point: published the fallback clearing")
        return ExchangeOutcome(best, best_ub, lb, stopped_by, reason, self.history, self.warnings)
