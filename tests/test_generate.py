"""The variant generator (`tdmarket.generate`): validity, id remapping, counts, shares, determinism, CLI."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tdmarket
from tdmarket.cli import main
from tdmarket.errors import InputError
from tdmarket.examples import builtin_path
from tdmarket.generate import make_variant, read_manifest
from tdmarket.generate.tables import read_csv
from tdmarket.model.instance import BranchKind
from tdmarket.model.stats import instance_stats

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "smartnet"


def _shared(name: str) -> Path:
    if not (DATA / name).is_dir():
        pytest.skip("shared SmartNet data not found at ../shared/smartnet")
    return DATA / name


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _d_segments(inst) -> int:
    return int(inst.buses.is_dist[inst.orders.bids.bus[inst.orders.segments.bid]].sum())


@pytest.fixture(scope="module")
def base():
    return tdmarket.load(builtin_path())


# ------------------------------------------------------------------------------------------- plain copies
def test_identity_variant_is_the_same_instance(tmp_path, base):
    out = make_variant(builtin_path(), tmp_path / "v", seed=0)
    inst = tdmarket.load(out)
    a, b = instance_stats(base), instance_stats(inst)
    for key in ("name", "source"):
        a.pop(key), b.pop(key)
    assert a == b
    np.testing.assert_array_equal(inst.p_inj, base.p_inj)
    np.testing.assert_array_equal(inst.orders.segments.price, base.orders.segments.price)


@pytest.mark.parametrize("k", [2, 3])
def test_dso_copies_multiply_areas_nodes_and_d_orders(tmp_path, base, k):
    out = make_variant(builtin_path(), tmp_path / "v", seed=5, dso_copies=k)
    inst = tdmarket.load(out)
    assert inst.n_areas - 1 == k * (base.n_areas - 1)
    assert inst.buses.is_dist.sum() == k * base.buses.is_dist.sum()
    n_t_seg = len(base.orders.segments) - _d_segments(base)
    assert _d_segments(inst) == k * _d_segments(base)
    assert len(inst.orders.segments) - _d_segments(inst) == n_t_seg
    assert (inst.branches.kind == BranchKind.DISTRIBUTION).sum() == k * (
        base.branches.kind == BranchKind.DISTRIBUTION
    ).sum()
    # the imbalance rule: clones are offset at their host, so the system imbalance does not move
    np.testing.assert_allclose(inst.system_imbalance(), base.system_imbalance(), atol=1e-9)
    # each clone sits at a distinct T node, and the builtin has enough free ones for 3 (k=2) clones
    clones = read_manifest(out)["clones"]
    assert len(clones) == (k - 1) * 3
    hosts = [c["host"] for c in clones]
    assert len(set(hosts)) == len(hosts)
    if k == 2:
        assert not set(hosts) & {102, 104, 105}


def test_clone_is_a_faithful_copy_with_fresh_ids(tmp_path, base):
    out = make_variant(builtin_path(), tmp_path / "v", seed=1, dso_copies=2)
    inst = tdmarket.load(out)
    bu, ar = inst.buses, inst.areas
    for clone in read_manifest(out)["clones"]:
        orig = ar.name.index(clone["area"])
        copy = ar.name.index(f"DSO-{clone['root']}")
        assert bu.id[ar.host_bus[copy]] == clone["host"]
        # same size, same net position per period, same orders
        assert (bu.area == orig).sum() == (bu.area == copy).sum()
        np.testing.assert_allclose(inst.p_inj[bu.area == copy].sum(0), inst.p_inj[bu.area == orig].sum(0))
        seg_area = bu.area[inst.orders.bids.bus[inst.orders.segments.bid]]
        s = inst.orders.segments
        np.testing.assert_array_equal(np.sort(s.price[seg_area == copy]), np.sort(s.price[seg_area == orig]))
        np.testing.assert_array_equal(np.sort(s.xlb[seg_area == copy]), np.sort(s.xlb[seg_area == orig]))
        # interface rating copied
        assert inst.branches.rating[ar.interface[copy]] == inst.branches.rating[ar.interface[orig]]
    # every id namespace stays unique in every file, and conditions were copied with their orders
    bids = read_csv(out / "Bids.csv")
    assert bids["QBidSeg"].is_unique
    for name, key in [
        ("HalfPlanes.csv", ["ID"]),
        ("QPDisc.csv", ["QtBid", "QBids"]),
        ("ExclusiveQtBids.csv", ["ID", "QtBid"]),
        ("MinDurationPairs.csv", ["QBid1", "QBid2"]),
        ("Edges.csv", ["ID"]),
        ("NetInjections.csv", ["Node", "forT"]),
    ]:
        df = read_csv(out / name)
        assert not df.duplicated(key).any(), name
    src = {n: read_csv(builtin_path() / n) for n in ("HalfPlanes.csv", "QPDisc.csv", "MinDurationPairs.csv")}
    # builtin: half-planes and discs are all on D orders, min-duration pairs on one T and one D block
    assert len(read_csv(out / "HalfPlanes.csv")) == 2 * len(src["HalfPlanes.csv"])
    assert len(read_csv(out / "QPDisc.csv")) == 2 * len(src["QPDisc.csv"])
    assert len(read_csv(out / "MinDurationPairs.csv")) == len(src["MinDurationPairs.csv"]) + 6
    assert len(np.unique(inst.orders.disc_group)) == 2  # disc group ids remapped, not shared


def test_three_node_clones_share_its_single_t_node_and_flag_files_are_kept(tmp_path):
    out = make_variant(_shared("three-node"), tmp_path / "v", seed=2, dso_copies=3, start_stop_share=1.0)
    inst = tdmarket.load(out)
    assert inst.n_areas - 1 == 3
    assert set(inst.buses.id[inst.areas.host_bus[1:]]) == {1}
    assert inst.orders.bids.alpha_omega.all()
    # three-node keeps its flags in files, so the variant does too
    assert "AlphaOmegaSet" not in read_csv(out / "Bids.csv").columns
    assert len(read_csv(out / "AlphaOmegaSet.csv")) == len(inst.orders.bids)
    assert read_manifest(out)["notes"]  # the shared host is reported


def test_dso_areas_target_and_order_duplication(tmp_path, base):
    out = make_variant(builtin_path(), tmp_path / "a", seed=3, dso_areas=5, order_copies=2.0)
    inst = tdmarket.load(out)
    assert inst.n_areas - 1 == 5
    d_after_clone = read_manifest(out)["figures"]["segments_d"]
    assert d_after_clone == _d_segments(inst)
    # areas: 3 originals + 2 clones; D orders then doubled (up to one unit's worth over)
    out2 = make_variant(builtin_path(), tmp_path / "b", seed=3, dso_areas=5)
    d_clone = _d_segments(tdmarket.load(out2))
    assert 2 * d_clone <= _d_segments(inst) < 2 * d_clone + 3
    # a total segment target
    out3 = make_variant(builtin_path(), tmp_path / "c", seed=3, segments=100)
    n = len(tdmarket.load(out3).orders.segments)
    assert 100 <= n < 103
    # duplicated orders stay in their area, at D nodes (the reader rejects a QtBid spanning areas)
    assert tdmarket.load(out3).orders.bids.qtbid.size > base.orders.bids.qtbid.size


def test_sub_areas_are_cloned_with_their_parent(tmp_path):
    import shutil

    folder = tmp_path / "three_level"
    shutil.copytree(builtin_path(), folder)
    (folder / "SubAreas.csv").write_text("Edge,Area\n22,DSO-203\n")
    out = make_variant(folder, tmp_path / "v", seed=0, dso_copies=2)
    inst = tdmarket.load(out)
    names = list(inst.areas.name)
    assert len(names) == 1 + 2 * 4
    copy = names.index("DSO-203_copy1")
    parent = inst.areas.parent[copy]
    assert names[parent].startswith("DSO-") and parent != names.index("DSO-201")


# ------------------------------------------------------------------------------------------- determinism
OPTS = dict(
    dso_copies=2.5,
    order_copies=1.5,
    aon_share=0.5,
    start_stop_share=0.4,
    negative_price_share=0.5,
    price_noise=0.1,
    interface_rating_scale=0.7,
    d_rating_scale=0.6,
    imbalance_scale=1.3,
)


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    a = _bytes(make_variant(builtin_path(), tmp_path / "a", seed=11, **OPTS))
    b = _bytes(make_variant(builtin_path(), tmp_path / "b", seed=11, **OPTS))
    c = _bytes(make_variant(builtin_path(), tmp_path / "c", seed=12, **OPTS))
    assert a == b
    assert a.keys() == c.keys()
    assert a["Bids.csv"] != c["Bids.csv"]
    assert a["Edges.csv"] != c["Edges.csv"]  # other hosts
    # 2 copies: the 3 clones take the 3 free T nodes (the other host-drawing branch)
    opts = dict(OPTS, dso_copies=2)
    d = _bytes(make_variant(builtin_path(), tmp_path / "d", seed=11, **opts))
    e = _bytes(make_variant(builtin_path(), tmp_path / "e", seed=11, **opts))
    assert d == e


# ------------------------------------------------------------------------------------------- shares
@pytest.mark.parametrize("aon,ss,neg", [(0.6, 0.45, 0.75), (0.35, 0.1, 0.0), (1.0, 0.3, 1.0)])
def test_requested_shares_are_met(tmp_path, aon, ss, neg):
    out = make_variant(
        builtin_path(),
        tmp_path / "v",
        seed=4,
        dso_copies=3,
        aon_share=aon,
        start_stop_share=ss,
        negative_price_share=neg,
    )
    inst = tdmarket.load(out)
    o = inst.orders
    s, b = o.segments, o.bids
    stats = instance_stats(inst)
    n = stats["orders"]["segments"]
    assert abs(stats["orders"]["aon"] / n - aon) <= 1.0 / n + 1e-12
    assert abs(b.alpha_omega.mean() - ss) <= inst.n_periods / len(b) + 1e-12
    down = s.width < 0
    assert abs((down & (s.price < 0)).sum() / down.sum() - neg) <= 1.0 / down.sum() + 1e-12
    # every start/stop QtBid is a block: NoNewAct after its first period, full pair triangle, AON segments
    pairs = pd.DataFrame({"q": b.qtbid[o.mindur_bid1]}).value_counts()
    for q in np.unique(b.qtbid[b.alpha_omega]):
        mine = np.flatnonzero(b.qtbid == q)
        assert b.alpha_omega[mine].all()
        first = b.period[mine].min()
        np.testing.assert_array_equal(b.no_new_act[mine], b.period[mine] > first)
        m = len(mine)
        assert pairs[(q,)] == m * (m + 1) // 2
        assert (s.xlb[np.isin(s.bid, mine)] == 1).all()


def test_aon_goes_to_d_segments_first_then_narrow_t_segments(tmp_path, base):
    s0 = base.orders.segments
    d0 = base.buses.is_dist[base.orders.bids.bus[s0.bid]]
    was = s0.xlb == 1
    # 0.5: the 16 divisible D segments cover the 11 needed, so no T segment changes
    s = tdmarket.load(make_variant(builtin_path(), tmp_path / "a", seed=0, aon_share=0.5)).orders.segments
    new = (s.xlb == 1) & ~was
    assert new.sum() == 11 and not (new & ~d0).any()
    # 0.9: all D segments, then the narrowest divisible T segments
    s = tdmarket.load(make_variant(builtin_path(), tmp_path / "b", seed=0, aon_share=0.9)).orders.segments
    new = (s.xlb == 1) & ~was
    assert (s.xlb[d0] == 1).all()
    t_new, t_left = new & ~d0, ~d0 & (s.xlb != 1)
    assert t_new.sum() == 36 - 9 - (d0 & ~was).sum()
    assert np.abs(s.width[t_new]).max() <= np.abs(s.width[t_left]).min()


def test_ratings_and_imbalance_scale(tmp_path, base):
    out = make_variant(
        builtin_path(), tmp_path / "v", seed=0, interface_rating_scale=0.5, d_rating_scale=0.25, imbalance_scale=1.5
    )
    inst = tdmarket.load(out)
    br, br0 = inst.branches, base.branches
    iface = br.kind == BranchKind.INTERFACE
    dd = br.kind == BranchKind.DISTRIBUTION
    np.testing.assert_allclose(br.rating[iface], 0.5 * br0.rating[iface])
    np.testing.assert_allclose(br.rating[dd], 0.25 * br0.rating[dd])
    np.testing.assert_array_equal(br.rating[~iface & ~dd], br0.rating[~iface & ~dd])
    np.testing.assert_allclose(inst.system_imbalance(), 1.5 * base.system_imbalance())
    # only T injections change
    np.testing.assert_array_equal(inst.p_inj[inst.buses.is_dist], base.p_inj[base.buses.is_dist])


def test_price_noise_only_raises_prices(tmp_path, base):
    """The noise is a mark-up: every price rises (or stays 0), so no up/down pair becomes a money pump."""
    out = make_variant(builtin_path(), tmp_path / "v", seed=9, price_noise=0.5)
    s, s0 = tdmarket.load(out).orders.segments, base.orders.segments
    assert (s.id == s0.id).all()
    assert (s.price >= s0.price).all()
    assert (np.sign(s.price) == np.sign(s0.price)).all()
    assert (s.price != s0.price).mean() > 0.9
    # within a QBid, the cheapest up plus the cheapest down price can only grow
    for b in np.unique(s0.bid):
        up, dn = (s0.bid == b) & (s0.width > 0), (s0.bid == b) & (s0.width < 0)
        if up.any() and dn.any():
            assert s.price[up].min() + s.price[dn].min() >= s0.price[up].min() + s0.price[dn].min()


def test_periods_truncate_the_horizon(tmp_path):
    out = make_variant(builtin_path(), tmp_path / "v", seed=0, periods=1, dso_copies=2)
    inst = tdmarket.load(out)
    assert list(inst.periods) == [1]
    assert (inst.orders.bids.period == 0).all()


def test_bad_options_raise_input_error(tmp_path):
    for kw in [
        dict(seed=-1),
        dict(seed=0, dso_copies=0.5),
        dict(seed=0, aon_share=1.5),
        dict(seed=0, d_rating_scale=0),
        dict(seed=0, periods=4),
        dict(seed=0, segments=10),
    ]:
        with pytest.raises(InputError):
            make_variant(builtin_path(), tmp_path / "bad", **kw)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        make_variant(builtin_path(), tmp_path / "full", seed=0)


# ------------------------------------------------------------------------------------------- property
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    dso_copies=st.floats(1.0, 3.0),
    order_copies=st.floats(1.0, 2.0),
    aon=st.none() | st.floats(0.0, 1.0),
    ss=st.none() | st.floats(0.0, 1.0),
    neg=st.none() | st.floats(0.0, 1.0),
    noise=st.floats(0.0, 0.3),
    iface=st.floats(0.1, 2.0),
    dscale=st.floats(0.1, 2.0),
    imb=st.floats(0.0, 2.0),
    periods=st.none() | st.integers(1, 3),
)
def test_every_variant_loads_and_clears(
    seed, dso_copies, order_copies, aon, ss, neg, noise, iface, dscale, imb, periods
):
    with tempfile.TemporaryDirectory() as tmp:
        out = make_variant(
            builtin_path(),
            Path(tmp) / "v",
            seed=seed,
            dso_copies=dso_copies,
            order_copies=order_copies,
            aon_share=aon,
            start_stop_share=ss,
            negative_price_share=neg,
            price_noise=noise,
            interface_rating_scale=iface,
            d_rating_scale=dscale,
            imbalance_scale=imb,
            periods=periods,
        )
        inst = tdmarket.load(out)
    assert inst.n_areas - 1 == round(dso_copies * 3)
    result = tdmarket.clear(inst, scheme="centralized", relax=True)
    assert math.isfinite(result.total_cost)


# ------------------------------------------------------------------------------------------- CLI
def test_cli_variant(tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["variant", "--example", str(out), "--seed", "3", "--dso-copies", "2", "--aon-share", "0.5"]) == 0
    assert "6 DSO areas" in capsys.readouterr().out
    assert tdmarket.load(out).n_areas == 7
    # same folder again: refused without --overwrite, one line, exit 2
    assert main(["variant", "--example", str(out), "--seed", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tdmarket: error:") and "\n" not in err
    assert main(["variant", "--example", str(out), "--seed", "4", "--overwrite"]) == 0
    for bad in (["--aon-share", "1.5"], ["--seed", "-2"], ["--dso-copies", "0"]):
        argv = ["variant", "--example", str(tmp_path / "w"), "--seed", "1", *bad]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("tdmarket: error:") and "\n" not in err
    assert main(["variant", str(tmp_path / "only-one"), "--seed", "1"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["variant", "--help"])
    assert exc.value.code == 0
    assert "--dso-copies" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- real data
def test_italy_693_variant_loads_and_clears(tmp_path):
    base = _shared("italy-693")
    out = make_variant(
        base, tmp_path / "v", seed=7, dso_copies=2, aon_share=0.6, negative_price_share=0.8, price_noise=0.05
    )
    inst = tdmarket.load(out)
    ref = tdmarket.load(base)
    assert inst.n_areas - 1 == 8
    assert _d_segments(inst) == 2 * _d_segments(ref)
    assert len(inst.orders.disc_bid) > len(ref.orders.disc_bid)
    stats = instance_stats(inst)
    assert abs(stats["orders"]["aon"] / stats["orders"]["segments"] - 0.6) < 1e-3
    result = tdmarket.clear(inst, scheme="centralized", relax=True, incentives=False)
    assert math.isfinite(result.total_cost)
