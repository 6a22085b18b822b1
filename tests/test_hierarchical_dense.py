"""Hard generated systems the property test's family does not reach (docs/model.md §6.3 item 8): their own file, so
that pytest-xdist's `--dist loadfile` runs them beside the property test instead of after it."""

from __future__ import annotations

import pytest

import tdmarket
from tdmarket.examples import builtin_path
from tdmarket.generate.variants import dense_test_options, make_variant


@pytest.mark.slow
def test_hierarchical_balances_with_all_or_nothing_dsos_behind_tight_interfaces(tmp_path):
    """The built-in example with 6 copies of its DSOs, every order all-or-nothing and in start/stop blocks, the
    interface ratings × 0.3 (`tdmarket variant --example --dso-copies 6 --aon-share 1 --start-stop-share 1
    --interface-rating-scale 0.3 --seed 916`): the DSOs' binaries cannot balance the system.  Until ℓ was bounded
    by the lines' ratings (docs/model.md §3.3) centralized balanced it without slack by burning 19.5 MW per period
    as fictitious losses (2 598 €); the repair first ended at +118 % with 0.27 MW of slack while its configuration
    boxes stopped short of that burnt import end (docs/model.md §6.3 item 8 step 4a), then at +4e-6.  With the
    bound centralized needs 6.33 MW of slack (65 411.88 €) and the repair's menus do not hold its configuration:
    measured +4.7 % with 6.64 MW of slack, within its certified gap (4.8 %); with the market responses
    (docs/model.md §6.3 item 8 step 3a) +4.1 % with 6.60 MW, certified 4.2 % (iterated: the same +4.1 %, certified
    4.3 %).  Since the DSOs' evaluations refine their KKT solves to 1e-10 (2026-12-03, seventh session) their costs
    differ in the 8th digit and the repair takes another path: +4.0e-4, certified 0.39 %, by menu choices and market
    responses, without the configurations' burnt import ends it needed before.  What must hold on any instance is
    asserted, and the largest miss measured bounds what may be lost further."""
    folder = make_variant(
        builtin_path(),
        tmp_path / "v",
        seed=916,
        dso_copies=6,
        aon_share=1.0,
        start_stop_share=1.0,
        interface_rating_scale=0.3,
    )
    inst = tdmarket.load(folder)
    central = tdmarket.clear(inst, scheme="centralized", mip_gap=1e-6, incentives=False)
    res = tdmarket.clear(inst, scheme="hierarchical", executor="inline", incentives=False)
    scale = max(1.0, abs(central.total_cost))
    assert central.summary["slack"]["p_mw"] > 6.0  # short of power whatever the binaries
    assert res.summary["slack"]["p_mw"] >= central.summary["slack"]["p_mw"] - 1e-6
    c_lb = central.summary["mip"]["lower_bound"]
    c_lb = central.total_cost if c_lb is None else min(c_lb, central.total_cost)
    assert res.total_cost >= c_lb - 1e-6 * scale
    cert = res.summary["certificate"]
    assert cert["lower_bound_eur"] <= central.total_cost + 1e-6 * scale
    assert res.total_cost - central.total_cost <= cert["dispatched_gap"] * abs(res.total_cost) + 1e-6 * scale
    assert res.total_cost <= central.total_cost * 1.055  # measured +4.1 % and +4.0e-4 on two paths (docstring)
    assert any(r.get("how") for r in res.summary["integer_repair"]["rounds"])  # the relaxed dispatch was improved on


@pytest.mark.slow
def test_stalled_integer_repair_asks_the_dsos_it_never_asked(tmp_path):
    """Dense family seed 9 (`benchmarks/hierarchical_variants.py --family dense --seeds 9`; 12 DSO areas, copies of
    three DSOs): centralized's optimum activates orders in three copies whose dispatch delivered their exchange
    without integrality cost, so the integer repair never asked them and stalled at +6.8e-2 to centralized.  Once
    it stalls it asks every top-level DSO (docs/model.md §6.3 item 8): measured +8.1e-5."""
    variant, scheme = dense_test_options(9)
    inst = tdmarket.load(make_variant(builtin_path(), tmp_path / "v", seed=9, **variant))
    central = tdmarket.clear(inst, scheme="centralized", mip_gap=1e-6, incentives=False)
    res = tdmarket.clear(inst, scheme="hierarchical", executor="inline", incentives=False, **scheme)
    scale = max(1.0, abs(central.total_cost))
    rounds = res.summary["integer_repair"]["rounds"]
    widened = [r for r in rounds if r.get("asked_every_dso")]
    assert len(widened) == 1 and set(widened[0]["areas_asked"]) == set(inst.areas.name[1:])  # all top-level here
    assert res.total_cost >= central.total_cost - 1e-6 * scale
    assert res.total_cost - central.total_cost <= 1e-4 * scale
