"""The mixed-integer rounds of the cut exchange with level steps (docs/model.md §6.3 step 4) on a generated system
whose TSO has all-or-nothing orders: the same clearing as plain cutting planes, within the gap of centralized, in
fewer mixed-integer rounds.

Needs pandapower and simbench (the `generate` extra); skipped without them, except in CI.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

if importlib.util.find_spec("simbench") is None or importlib.util.find_spec("pandapower") is None:
    if os.environ.get("CI"):
        raise ImportError("tests/test_hierarchical_milp_level.py needs pandapower and simbench in CI")
    pytest.skip("pandapower and simbench are not installed (pip install 'tdmarket[generate]')", allow_module_level=True)

import tdmarket
from tdmarket.generate.system import GenerateOptions, generate_system

# a fresh generated system (never tuned on) whose TSO's binaries leave an integrality gap after the relaxed phase:
# measured 2026-12-05, 22 mixed-integer rounds of plain cutting planes, 10 with level steps
OPTIONS = GenerateOptions(dsos=7, periods=3, seed=64, feeder_size="small")


@pytest.mark.slow
def test_level_steps_shorten_the_mixed_integer_rounds_and_keep_the_certificate(tmp_path, hierarchical_exchange):
    generate_system(tmp_path / "system", OPTIONS)
    inst = tdmarket.load(tmp_path / "system")
    common = tdmarket.clear(inst, scheme="common", mip_gap=1e-6, incentives=False).total_cost
    runs = {}
    for level in (False, True):
        with hierarchical_exchange(milp_level=level):
            res = tdmarket.clear(inst, scheme="hierarchical", executor="inline", incentives=False)
        cert = res.summary["certificate"]
        milp = [h for h in res.summary["iterations"] if h["master"] == "milp"]
        assert res.summary["cost"]["slack_cost_eur"] < 1e-3
        assert cert["certified"] and cert["lower_bound_eur"] <= common + 1e-6 * abs(common)
        assert res.total_cost - common <= 1e-4 * abs(common)
        assert cert["dispatched_gap"] <= 1e-4
        runs[level] = milp
    plain, level = runs[False], runs[True]
    assert len(plain) >= 15  # the case the level steps are for: a long tail of cutting planes
    assert len(level) <= len(plain) // 2 + 1
    assert any("probe_asked" in h for h in level) and not any("probe_asked" in h for h in plain)
