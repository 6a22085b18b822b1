"""Property test of the hierarchical scheme on generated hard variants of the built-in example (docs/model.md §6).

Each seed draws a variant (more DSO areas, all-or-nothing and start/stop shares, negative prices, tight interfaces
and D lines, imbalance scaling) with `tdmarket.generate.variants.make_variant` and the scheme's own options (curve
sampling, skipping of bracketed DSOs, curve tolerance), then checks what must hold on ANY
instance: the scheme finishes, its certified lower bound never exceeds the centralized optimum, its cost is never
below the centralized MIP bound and lies within its reported certified gap of that bound, and slack is reported;
and the target on these seeds: a cost within 1e-4 of centralized.
"""

from __future__ import annotations

import numpy as np
import pytest

import tdmarket
from tdmarket.examples import builtin_path
from tdmarket.generate.variants import make_variant, property_test_options

SEEDS = range(50)
# seeds allowed above the 1e-4 target, with their bound (none since the market responses were iterated, docs/model.md
# §6.3 item 8 step 3a: seed 44 was +1.75e-2 — its centralized optimum imports at DSO-301 in a configuration no best
# response at prices proposed — and is now −1e-9; seed 8 went from +1.29e-2 to +3e-7 with the first market
# responses)
TARGET_MISSES: dict[int, float] = {}


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_hierarchical_is_certified_against_centralized(seed, tmp_path):
    variant, scheme = property_test_options(seed)
    folder = make_variant(builtin_path(), tmp_path / "v", seed=seed, **variant)
    inst = tdmarket.load(folder)
    central = tdmarket.clear(inst, scheme="centralized", mip_gap=1e-6, incentives=False)
    res = tdmarket.clear(inst, scheme="hierarchical", executor="inline", incentives=False, **scheme)
    s = res.summary
    cert = s["certificate"]
    scale = max(1.0, abs(central.total_cost))
    c_lb = central.summary["mip"]["lower_bound"]
    c_lb = central.total_cost if c_lb is None else min(c_lb, central.total_cost)
    # a valid bound: the cut model under-estimates every DSO's cost and relaxes every binary
    assert cert["lower_bound_eur"] is not None
    assert cert["lower_bound_eur"] <= central.total_cost + 1e-6 * scale
    # a feasible clearing is never cheaper than the centralized bound, to the conic solver's accuracy: seed 38's
    # DSO-1401 (0.23 MW of slack at 1e4 EUR/MW) ends "almost solved" at every Clarabel setting tried, its cost
    # anywhere in 2323.610-2323.627 EUR, i.e. +-1e-6 of the total (measured 2026-12-05: hierarchical -1.25e-6)
    assert res.total_cost >= c_lb - 2e-6 * scale
    # ... and lies within its own certified gap of the centralized optimum
    gap = cert["dispatched_gap"]
    assert gap is not None and np.isfinite(gap)
    assert res.total_cost - central.total_cost <= gap * max(1.0, abs(res.total_cost)) + 1e-6 * scale
    # the target (docs/model.md §6.3 item 8): within 1e-4 of centralized; measured on these 50 seeds
    # (2026-12-04, radius-search level steps in the curves' ranges): median 4.5e-7, worst 3.6e-5 (seed 33) apart
    # from TARGET_MISSES
    assert res.total_cost - central.total_cost <= TARGET_MISSES.get(seed, 1e-4) * scale
    assert cert["stopped_by"] and cert["rounds"] >= 1
    # the integer repair starts no round at a point that the exchange's bound already certifies within its target
    # (measured before: 4 rounds on seed 1 where 1 was enough, at the same cost)
    ub, rel = cert["exchange_upper_bound_eur"], cert["exchange_gap"]
    if ub is not None and rel is not None:
        exchange_lb = ub - rel * max(1.0, abs(ub))
        for r in (s.get("integer_repair") or {}).get("rounds", []):
            total = r["total_before_eur"]
            assert total - exchange_lb > cert["dispatched_target_gap"] * max(1.0, abs(total)) - 1e-9 * scale
    assert s["slack"]["p_mw"] >= 0 and np.isfinite(s["slack"]["p_mw"])
