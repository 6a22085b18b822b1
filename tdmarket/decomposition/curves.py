"""Residual supply curves (docs/model.md §6.2): per period, a convex piecewise-linear curve of an area's cost
C_d along the coordinate line through its preferred point x̄, refined until the secant/tangent gap certifies
`curve_tol` €, exact at its breakpoints, with infeasible exchanges expressed as bounds (never penalty prices).
Every evaluation is also returned as a cut (a supporting plane of C_d over all periods) for the cut exchange."""

from __future__ import annotations

import numpy as np

from .area_model import AreaModel
from .offers import Cut, SliceCurve

SOC_EXACT_TOL = 1e-5  # max u·ℓ − P² − Q² accepted as an exact (AC-feasible) point


def _piece_error(a, b) -> tuple[float, float]:
    """Max gap between secant and tangents on [a, b] (docs/model.md §6.2 step 3) and where it occurs."""
    (xa, fa, ga), (xb, fb, gb) = a, b
    if xb - xa <= 1e-12:
        return 0.0, xa
    sig = (fb - fa) / (xb - xa)
    if gb - ga <= 1e-12:
        return 0.0, 0.5 * (xa + xb)
    eps = max(0.0, (sig - ga)) * max(0.0, (gb - sig)) * (xb - xa) / (gb - ga)
    star = xa + (xb - xa) * (gb - sig) / (gb - ga)
    return eps, star


def build_curves(
    model: AreaModel, *, curve_tol: float = 0.1, max_evals: int = 64, joint_ranges: bool = False
) -> tuple[list[SliceCurve], list[Cut], np.ndarray]:
    """One-shot curves around the preferred point x̄ (docs/model.md §6.2); also returns every evaluation as a cut
    (for the iterative variant) and x̄.  `joint_ranges`: each period's slack-free range from two solves over all
    periods (`AreaModel.joint_hard_range`, checked at its ends) instead of two per period; with coupling between
    periods such a range can be slightly narrower than the period's own (measured on italy-652: by up to 13 kW
    on 100 of 150 area-periods), so only curves that a cut exchange certifies use it."""
    T = model.T
    pref = model.preferred()
    x_ref = np.clip(pref.x, -model.rating, model.rating)
    # at an unclipped preferred point the cost is C(x̄) and 0 is a subgradient (x̄ minimises C): no second solve
    base = pref if np.array_equal(x_ref, pref.x) else model.evaluate(x_ref)
    cuts = [Cut(point=x_ref.tolist(), value=base.cost, slope=base.rho.tolist())]
    shift = (T - 1) / T * base.cost
    curves = []
    joint = model.joint_hard_range(x_ref) if joint_ranges and T > 1 else None
    for t in range(T):
        flags = []
        rng = None if joint is None else _checked_joint_range(model, x_ref, t, joint)
        if rng is None:
            rng = model.hard_range(t, x_ref)
        if rng is None or rng[0] > rng[1] + 1e-9:
            flags.append("needs_slack")
            lo, hi = -model.rating, model.rating
        else:
            lo, hi = rng
        pts = {}

        def ev(xt):
            xh = x_ref.copy()
            xh[t] = xt
            if np.array_equal(xh, x_ref):  # the reference point of every period: evaluated once (base)
                e = base
            else:
                e = model.evaluate(xh)
                cuts.append(Cut(point=xh.tolist(), value=e.cost, slope=e.rho.tolist()))
            pts[float(xt)] = (float(xt), e.cost - shift, float(e.rho[t]))
            return e

        ref_t = float(np.clip(x_ref[t], lo, hi))
        ref_exact = ev(ref_t).soc_gap <= SOC_EXACT_TOL
        if not ref_exact:
            flags.append("inexact_relaxation")
        lo, hi = _trim_inexact_ends(ev, pts, ref_t, lo, hi, ref_exact, flags)
        pts = {k: v for k, v in pts.items() if lo - 1e-12 <= k <= hi + 1e-12}
        eps = _refine(ev, pts, curve_tol, max_evals)
        if eps > curve_tol:
            flags.append("tolerance_not_reached")
        keys = sorted(pts)
        xi = np.array(keys)
        phi = np.array([pts[k][1] for k in keys])
        phi, convex_ok = _convexify(xi, phi, curve_tol)
        if not convex_ok:
            flags.append("nonconvex_or_inaccurate")
        curves.append(
            SliceCurve(
                period=int(model.inst.periods[t]),
                xi=xi.tolist(),
                phi=phi.tolist(),
                eps=float(eps),
                evaluations=len(keys),
                flags=flags,
            )
        )
    return curves, cuts, x_ref


def _checked_joint_range(model: AreaModel, x_ref: np.ndarray, t: int, joint) -> tuple[float, float] | None:
    """Period t's ends from `AreaModel.joint_hard_range` if neither needs slack with the other periods at x_ref:
    then both lie in the period's own slack-free range (its ends, without coupling between periods; inside it,
    with coupling).  The evaluations are the ones the curve makes at its ends anyway (the model keeps them).
    None: ask `hard_range`."""
    lo, hi = float(joint[0][t]), float(joint[1][t])
    if lo > hi + 1e-9:
        return None
    for end in (lo, hi):
        xh = x_ref.copy()
        xh[t] = end
        if np.array_equal(xh, x_ref):
            continue
        if model.needs_slack(model.evaluate(xh)):
            return None
    return lo, hi


def _trim_inexact_ends(ev, pts: dict, ref_t: float, lo: float, hi: float, ref_exact: bool, flags: list[str]):
    """Evaluate both ends and trim each to its AC-exact part by bisection (the relaxation can "burn" fictitious
    losses near the import end); only meaningful where the reference point itself is exact.  Returns (lo, hi)."""
    for end in (lo, hi):
        if abs(end - ref_t) < 1e-9:
            continue
        e = ev(end)
        if ref_exact and e.soc_gap > SOC_EXACT_TOL:
            good, bad = ref_t, end
            for _ in range(10):
                mid = 0.5 * (good + bad)
                if ev(mid).soc_gap > SOC_EXACT_TOL:
                    bad = mid
                else:
                    good = mid
            pts.pop(float(end), None)
            if end == lo:
                lo = good
            else:
                hi = good
            flags.append("trimmed_inexact_end")
    return lo, hi


def _refine(ev, pts: dict, curve_tol: float, max_evals: int) -> float:
    """Evaluate inside the worst piece until the secant/tangent certificate holds or the cap is reached; returns the
    certified maximum error (€)."""
    while True:
        keys = sorted(pts)
        errs = [_piece_error(pts[a], pts[b]) for a, b in zip(keys[:-1], keys[1:])]
        if not errs:
            return 0.0
        k = int(np.argmax([e for e, _ in errs]))
        eps = errs[k][0]
        if eps <= curve_tol or len(pts) >= max_evals:
            return eps
        a, b = keys[k], keys[k + 1]
        star = errs[k][1]
        if not (a + 0.05 * (b - a) < star < b - 0.05 * (b - a)):
            star = 0.5 * (a + b)
        ev(star)


def _convexify(xi: np.ndarray, phi: np.ndarray, tol: float) -> tuple[np.ndarray, bool]:
    """Make secant slopes non-decreasing by pool-adjacent-violators (solver noise); report larger violations."""
    if len(xi) < 3:
        return phi, True
    dx = np.diff(xi)
    s = list(np.diff(phi) / np.maximum(dx, 1e-12))
    w = list(dx)
    blocks = [[s[i], w[i], 1] for i in range(len(s))]
    out = []
    for blk in blocks:
        out.append(blk)
        while len(out) > 1 and out[-2][0] > out[-1][0]:
            b2, b1 = out.pop(), out.pop()
            ww = b1[1] + b2[1]
            out.append([(b1[0] * b1[1] + b2[0] * b2[1]) / ww, ww, b1[2] + b2[2]])
    slopes = np.concatenate([[v] * n for v, _, n in out])
    new_phi = np.concatenate([[phi[0]], phi[0] + np.cumsum(slopes * dx)])
    ok = float(np.max(np.abs(new_phi - phi))) <= max(tol, 1e-6 * max(1.0, np.abs(phi).max()))
    return new_phi, ok
