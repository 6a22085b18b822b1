"""`instance_stats` against the instance facts table of docs/model.md §10, and `tdmarket info`.

Every §10 figure an `Instance` can give is asserted.  Figures that depend on the raw files rather than on the
instance (`baseMVA`, which the reader folds into the impedances) are not.  The T half-plane and disc rows that
the reader drops come from its warnings.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tdmarket.cli import main
from tdmarket.io import read
from tdmarket.model.stats import format_stats, instance_stats

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "smartnet"


def _load(name: str):
    if not (DATA / name).is_dir():
        pytest.skip("shared SmartNet data not found at ../shared/smartnet")
    inst = read(DATA / name)
    return inst, instance_stats(inst)


@pytest.fixture(scope="module")
def three_node():
    return _load("three-node")


@pytest.fixture(scope="module")
def italy_693():
    return _load("italy-693")


@pytest.fixture(scope="module")
def italy_652():
    return _load("italy-652")


# (section, key) -> expected value, transcribed from the docs/model.md §10 table.
EXPECTED = {
    "three-node": {
        ("periods", "count"): 1,
        ("periods", "numbers"): [1],
        ("network", "t_nodes"): 1,
        ("network", "reference_nodes"): [1],
        ("network", "d_nodes"): 2,
        ("network", "edges"): 2,
        ("network", "edges_tt"): 0,
        ("network", "edges_dd"): 1,
        ("network", "edges_interface"): 1,
        ("network", "interface_orientation"): "T→D",
        ("network", "interface_ratings"): [5.0],
        ("network", "tt_rated"): 0,
        ("network", "tt_unrated"): 0,
        ("network", "tt_x0"): 0,
        ("network", "tt_x0_rated"): 0,
        ("network", "tt_parallel_pairs"): 0,
        ("network", "dd_r0_x0"): 0,
        ("network", "dd_x0_rpos"): 0,
        ("network", "dd_b_nonzero"): 0,
        ("network", "dd_tap_or_shift"): 0,
        ("areas", "dso_areas"): 1,
        ("areas", "nodes_per_area_min"): 2,
        ("areas", "nodes_per_area_median"): 2.0,
        ("areas", "nodes_per_area_max"): 2,
        ("areas", "voltage_bounds"): [[0.9025, 1.1025], [1.0, 1.0]],
        ("areas", "root_q_range"): [0.0, 0.0],
        ("areas", "net_position_range_rounded"): [-0.2, -0.2],
        ("areas", "areas_with_period_coupling"): 0,
        ("areas", "max_segments_in_area"): 2,
        ("injections", "system_imbalance"): [-1.2],
        ("orders", "segments"): 3,
        ("orders", "segments_t"): 1,
        ("orders", "segments_d"): 2,
        ("orders", "segments_up"): 3,
        ("orders", "segments_down"): 0,
        ("orders", "segments_zero_width"): 0,
        ("orders", "segments_stacked"): 0,
        ("orders", "aon"): 0,
        ("orders", "aon_nonzero_width"): 0,
        ("orders", "price_range"): [10.0, 20.0],
        ("orders", "bids"): 3,
        ("orders", "bids_t"): 1,
        ("orders", "bids_d"): 2,
        ("orders", "qtbids"): 3,
        ("orders", "qtbids_multi_period"): 0,
        ("orders", "max_segments_per_bid"): 1,
        ("orders", "bids_up_and_down"): 0,
        ("orders", "bids_with_acceptance_logic"): 0,
        ("conditions", "exclusive_groups"): 0,
        ("conditions", "exclusive_rows"): 0,
        ("conditions", "exclusive_sizes_text"): "",
        ("conditions", "start_stop_bids"): 0,
        ("conditions", "no_new_act_bids"): 0,
        ("conditions", "min_duration_pairs"): 0,
        ("conditions", "ramp_rows"): 0,
        ("conditions", "half_plane_rows_d"): 0,
        ("conditions", "half_plane_rows_t_dropped"): 0,
        ("conditions", "disc_rows_d"): 0,
        ("conditions", "disc_rows_t_dropped"): 0,
        ("conditions", "d_bids_pq"): {"no_pq": 2, "one_sided": 0, "fixed_pf": 0, "disc": 0},
    },
    "italy-693": {
        ("periods", "count"): 4,
        ("periods", "numbers"): [1, 2, 3, 4],
        ("network", "t_nodes"): 27,
        ("network", "reference_nodes"): [1468],
        ("network", "d_nodes"): 175,
        ("network", "edges"): 203,
        ("network", "edges_tt"): 28,
        ("network", "edges_dd"): 171,
        ("network", "edges_interface"): 4,
        ("network", "interface_orientation"): "D→T",
        ("network", "interface_ratings"): [24.9415, 40.0104],
        ("network", "tt_rated"): 28,
        ("network", "tt_unrated"): 0,
        ("network", "tt_x0"): 0,
        ("network", "tt_x0_rated"): 0,
        ("network", "tt_parallel_pairs"): 0,
        ("network", "dd_r0_x0"): 0,
        ("network", "dd_x0_rpos"): 4,
        ("network", "dd_b_nonzero"): 0,
        ("network", "dd_tap_or_shift"): 0,
        ("areas", "dso_areas"): 4,
        ("areas", "nodes_per_area_min"): 26,
        ("areas", "nodes_per_area_median"): 45.5,
        ("areas", "nodes_per_area_max"): 58,
        ("areas", "voltage_bounds"): [[0.9025, 1.1025]],
        ("areas", "areas_with_period_coupling"): 4,
        ("areas", "max_segments_in_area"): 484,
        ("injections", "system_imbalance"): [33.1656, 33.0821, 32.8686, 32.3661],
        ("orders", "segments"): 1667,
        ("orders", "segments_t"): 264,
        ("orders", "segments_d"): 1403,
        ("orders", "segments_up"): 459,
        ("orders", "segments_down"): 1196,
        ("orders", "segments_zero_width"): 12,
        ("orders", "segments_stacked"): 122,
        ("orders", "aon"): 421,
        ("orders", "aon_nonzero_width"): 421,
        ("orders", "aon_nonzero_width_t"): 68,
        ("orders", "aon_nonzero_width_d"): 353,
        ("orders", "bids"): 1373,
        ("orders", "bids_t"): 204,
        ("orders", "bids_d"): 1169,
        ("orders", "qtbids"): 356,
        ("orders", "qtbids_multi_period"): 348,
        ("orders", "max_segments_per_bid"): 6,
        ("orders", "bids_up_and_down"): 160,
        ("orders", "bids_with_acceptance_logic"): 421,
        ("conditions", "exclusive_groups"): 17,
        ("conditions", "exclusive_rows"): 118,
        ("conditions", "exclusive_sizes"): {"2": 3, "8": 14},
        ("conditions", "exclusive_sizes_text"): "14×8, 3×2",
        ("conditions", "start_stop_bids"): 413,
        ("conditions", "start_stop_qtbids"): 110,
        ("conditions", "start_stop_bids_t"): 64,
        ("conditions", "start_stop_bids_d"): 349,
        ("conditions", "start_stop_share_of_bids_pct"): 30.1,
        ("conditions", "no_new_act_bids"): 303,
        ("conditions", "min_duration_pairs"): 1002,
        ("conditions", "ramp_rows"): 232,
        ("conditions", "ramp_ids"): 58,
        ("conditions", "ramp_constraints_max"): 87,
        ("conditions", "ramp_constraints_min"): 87,
        ("conditions", "ramp_rows_t"): 112,
        ("conditions", "ramp_rows_d"): 120,
        ("conditions", "half_plane_rows_d"): 252,
        ("conditions", "half_plane_rows_t_dropped"): 40,
        ("conditions", "half_plane_constraints_geq"): 351,
        ("conditions", "half_plane_constraints_leq"): 411,
        ("conditions", "disc_rows_d"): 156,
        ("conditions", "disc_rows_t_dropped"): 120,
        ("conditions", "d_bids_pq"): {"no_pq": 602, "one_sided": 60, "fixed_pf": 351, "disc": 156},
    },
    "italy-652": {
        ("periods", "count"): 3,
        ("periods", "numbers"): [2, 3, 4],
        ("network", "t_nodes"): 4236,
        ("network", "reference_nodes"): [5689],
        ("network", "d_nodes"): 1822,
        ("network", "edges"): 6640,
        ("network", "edges_tt"): 4818,
        ("network", "edges_dd"): 1772,
        ("network", "edges_interface"): 50,
        ("network", "interface_orientation"): "D→T",
        ("network", "interface_ratings"): [24.8567, 24.9415, 40.0104],
        ("network", "tt_rated"): 3034,
        ("network", "tt_unrated"): 1784,
        ("network", "tt_x0"): 599,
        ("network", "tt_x0_rated"): 476,
        ("network", "tt_parallel_pairs"): 87,
        ("network", "dd_r0_x0"): 33,
        ("network", "dd_x0_rpos"): 0,
        ("network", "dd_b_nonzero"): 1772,
        ("network", "dd_tap_or_shift"): 0,
        ("areas", "dso_areas"): 50,
        ("areas", "nodes_per_area_min"): 18,
        ("areas", "nodes_per_area_median"): 28.0,
        ("areas", "nodes_per_area_max"): 84,
        ("areas", "voltage_bounds"): [[0.902494, 1.102494], [0.9025, 1.1025], [0.902502, 1.102508]],
        ("areas", "net_position_range_rounded"): [-12.7, -0.8],
        ("areas", "areas_with_period_coupling"): 50,
        ("areas", "max_segments_in_area"): 825,
        ("injections", "system_imbalance"): [-123.0514, -99.9319, -77.1164],
        ("orders", "segments"): 12318,
        ("orders", "segments_t"): 3834,
        ("orders", "segments_d"): 8484,
        ("orders", "segments_up"): 3860,
        ("orders", "segments_down"): 6184,
        ("orders", "segments_zero_width"): 2274,
        ("orders", "segments_stacked"): 0,
        ("orders", "aon"): 3129,
        ("orders", "aon_nonzero_width"): 1756,
        ("orders", "aon_nonzero_width_t"): 517,
        ("orders", "aon_nonzero_width_d"): 1239,
        ("orders", "bids"): 8577,
        ("orders", "bids_t"): 3036,
        ("orders", "bids_d"): 5541,
        ("orders", "qtbids"): 3035,
        ("orders", "qtbids_multi_period"): 2771,
        ("orders", "max_segments_per_bid"): 2,
        ("orders", "bids_up_and_down"): 2843,
        ("orders", "bids_with_acceptance_logic"): 3129,
        ("conditions", "exclusive_groups"): 543,
        ("conditions", "exclusive_rows"): 1219,
        ("conditions", "exclusive_sizes"): {"1": 11, "2": 472, "3": 31, "4": 1, "5": 1, "6": 27},
        ("conditions", "exclusive_sizes_text"): "472×2, 31×3, 27×6, 11×1, 1×4, 1×5",
        ("conditions", "start_stop_bids"): 2865,
        ("conditions", "start_stop_qtbids"): 955,
        ("conditions", "start_stop_bids_t"): 306,
        ("conditions", "start_stop_bids_d"): 2559,
        ("conditions", "start_stop_share_of_bids_pct"): 33.4,
        ("conditions", "no_new_act_bids"): 1910,
        ("conditions", "min_duration_pairs"): 5730,
        ("conditions", "ramp_rows"): 1842,
        ("conditions", "ramp_ids"): 614,
        ("conditions", "ramp_constraints_max"): 614,
        ("conditions", "ramp_constraints_min"): 614,
        ("conditions", "ramp_rows_t"): 1842,
        ("conditions", "ramp_rows_d"): 0,
        ("conditions", "half_plane_rows_d"): 3920,
        ("conditions", "half_plane_rows_t_dropped"): 543,
        ("conditions", "half_plane_constraints_geq"): 2559,
        ("conditions", "half_plane_constraints_leq"): 4773,
        ("conditions", "disc_rows_d"): 0,
        ("conditions", "disc_rows_t_dropped"): 0,
        ("conditions", "d_bids_pq"): {"no_pq": 768, "one_sided": 2214, "fixed_pf": 2559, "disc": 0},
    },
}

# Figures §10 prints rounded: (section, key) -> (expected, decimals)
ROUNDED = {
    "three-node": {
        ("orders", "price_range"): ([10.0, 20.0], 2),
    },
    "italy-693": {
        ("areas", "root_q_range"): ([-4.12, -1.65], 2),
        ("orders", "price_range"): ([-67.93, 95.89], 2),
        ("network", "dd_b_abs_max"): (0.0, 4),
    },
    "italy-652": {
        ("areas", "root_q_range"): ([-0.054, -0.0015], 4),
        ("orders", "price_range"): ([-60.60, 65.07], 2),
        ("network", "dd_b_abs_max"): (0.0731, 4),
    },
}


def _round(value, nd):
    return [round(v, nd) for v in value] if isinstance(value, list) else round(value, nd)


def _check(name: str, stats: dict) -> None:
    mismatches = []
    for (section, key), want in EXPECTED[name].items():
        got = stats[section][key]
        if got != want:
            mismatches.append(f"{section}.{key}: got {got!r}, §10 says {want!r}")
    for (section, key), (want, nd) in ROUNDED[name].items():
        got = _round(stats[section][key], nd)
        if got != want:
            mismatches.append(f"{section}.{key}: got {got!r} (rounded to {nd}), §10 says {want!r}")
    assert not mismatches, "\n".join(mismatches)


def test_three_node_matches_model_table(three_node):
    _check("three-node", three_node[1])


def test_italy_693_matches_model_table(italy_693):
    _check("italy-693", italy_693[1])


def test_italy_652_matches_model_table(italy_652):
    _check("italy-652", italy_652[1])


def test_italy_693_net_position_range(italy_693):
    lo, hi = italy_693[1]["areas"]["net_position_range"]
    assert round(lo, 1) == 5.1  # §10: +5.1…+26.8
    assert round(lo, 4) == 5.0648
    assert round(hi, 4) == 26.7499  # largest area, last period: 26.74994706 MW


def test_italy_693_dropped_rows_come_from_reader_warnings(italy_693):
    inst, stats = italy_693
    assert any("HalfPlanes.csv: 40 rows on transmission" in w for w in inst.warnings)
    c = stats["conditions"]
    # §10: half-plane rows 292 (252 D / 40 T), disc rows 276 (156 D / 120 T)
    assert c["half_plane_rows_d"] + c["half_plane_rows_t_dropped"] == 292
    assert c["disc_rows_d"] + c["disc_rows_t_dropped"] == 276


def test_stats_are_plain_json(italy_652):
    stats = italy_652[1]
    assert json.loads(json.dumps(stats)) == stats


def test_format_stats_lists_the_key_figures(italy_652):
    text = format_stats(italy_652[1])
    lines = text.splitlines()
    assert lines[0] == "instance italy-652"
    assert any("edges total / T–T / D–D / interface" in ln and "6 640 / 4 818 / 1 772 / 50" in ln for ln in lines)
    assert any("exclusive groups" in ln and "543 (1 219); 472×2, 31×3, 27×6, 11×1, 1×4, 1×5" in ln for ln in lines)
    assert "t=2: -123.0514, t=3: -99.9319, t=4: -77.1164" in text
    # the values of all "  label  value" rows start in one column
    value_cols = {re.match(r"  \S.*?\S {2,}(\S)", ln).start(1) for ln in lines if ln.startswith("  ")}
    assert len(value_cols) == 1


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_info_json(capsys):
    if not (DATA / "italy-693").is_dir():
        pytest.skip("shared SmartNet data not found at ../shared/smartnet")
    code = main(["info", str(DATA / "italy-693"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    stats = json.loads(out)
    assert stats["name"] == "italy-693"
    assert stats["network"]["edges"] == 203
    assert stats["orders"]["segments"] == 1667
    assert stats["conditions"]["min_duration_pairs"] == 1002
    assert stats["injections"]["system_imbalance"] == [33.1656, 33.0821, 32.8686, 32.3661]
    assert "40 rows on transmission orders ignored" in err  # reader warnings go to stderr


def test_cli_info_text(capsys):
    if not (DATA / "three-node").is_dir():
        pytest.skip("shared SmartNet data not found at ../shared/smartnet")
    assert main(["info", str(DATA / "three-node")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("instance three-node\n")
    assert "T→D; 5" in out


def test_cli_info_missing_folder_exits_2(tmp_path, capsys):
    missing = tmp_path / "no-such-instance"
    code = main(["info", str(missing), "--json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("tdmarket: error: ")
    assert str(missing) in lines[0]
    assert "does not exist" in lines[0]
