"""SmartNet reader and writer: round trips, parsing quirks, row-exact validation errors, sub-areas.

`make_case` writes a tiny valid instance (T node 1, D root 2, D node 3; periods 1–2; every order feature) that a
test can alter file by file.  Error tests assert the `InputError`'s file, editor row (header = 1), column and
message.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tdmarket import load as tdmarket_load
from tdmarket.errors import InputError
from tdmarket.io import read, smartnet
from tdmarket.io.atomic import _umask, atomic_dir, atomic_file
from tdmarket.io.smartnet import write_instance
from tdmarket.io.smartnet import writer as smartnet_writer
from tdmarket.model.instance import BranchKind

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "smartnet"

# ------------------------------------------------------------------------------------------- tiny case
BIDS_HEADER = "Node,QtBids,QBid,QBidSeg,forT,QuantityLoQ,PriceLoQ,QuantityHiQ,PriceHiQ,Xlb,Xub,AlphaOmegaSet,NoNewAct"
CASE = {
    "GeneralParam": """\
StartTime,EndTime,baseMVA
1,2,1""",
    "TransmissionNodes": """\
ID,RefNode
1,1""",
    "DistributionNodes": """\
ID,Vsqmin,Vsqmax,G,B
2,1,1,0,0
3,0.9025,1.1025,0,0.01""",
    "Edges": """\
ID,NodeFrom,NodeTo,R,X,B,S,Tap,Shift
1,1,2,0.007,0.07,0,5,1,0
2,2,3,0.01,0.1,0.002,0.5,1,0""",
    "NetInjections": """\
Node,forT,P,Q
1,1,-1,0
1,2,-1.5,0
2,1,0,0
2,2,0,0
3,1,-0.2,-0.1
3,2,-0.25,-0.1""",
    # line 2-3: T order over both periods; 4-5: start/stop AON block at node 3; 6: down order;
    # 7-8: two stacked segments of one QBid at the root
    "Bids": BIDS_HEADER
    + """
1,1,1,1,1,0,20,3,20,0,1,0,0
1,1,2,2,2,0,20,3,20,0,1,0,0
3,2,3,3,1,0,10,1,10,1,1,1,0
3,2,4,4,2,0,10,1,10,1,1,1,1
3,3,5,5,1,0,-5,-0.5,-5,0,1,0,0
2,4,6,6,1,0,15,1,15,0,1,0,0
2,4,6,7,1,1,18,2,18,0,1,0,0""",
    "ExclusiveQtBids": """\
ID,QtBid
1,2
1,3""",
    "RampConstraints": """\
QtBids,QBid,RampConstr,RCFrom,RCTo,RCRealPowerIncr,RCMin
1,1,1,-1,-1,0.5,0
1,1,2,-1,-1,-0.5,1""",
    "MinDurationPairs": """\
QtBids,QBid1,QBid2,Tau,ForTime
2,3,3,1,1
2,3,4,1,2""",
    # row 3 is on a T order: dropped with a warning
    "HalfPlanes": """\
ID,QtBid,QPHPFrom,QPHPTo,QPHPSlope,QPHPOffset,QPHPConstr
1,3,-1,-1,0.05,0,0
2,1,-1,-1,0.1,0,1""",
    "QPDisc": """\
QtBid,QBids,QPDCID,QPDFrom,QPDTo,QPDMax
4,6,1,-1,-1,2.5""",
}
OPTIONAL = ("ExclusiveQtBids", "RampConstraints", "MinDurationPairs", "HalfPlanes", "QPDisc")


def make_case(tmp_path: Path, name: str = "case", eol: str = "\n", bom: bool = False, **overrides) -> Path:
    """Write the tiny instance into tmp_path/name and return the folder.

    `overrides` maps a file stem (e.g. `Bids`) to replacement text (lines joined by "\\n", re-terminated with
    `eol`), to raw bytes (written as is), or to None (file left out).  New stems add files.
    """
    folder = tmp_path / name
    folder.mkdir()
    files = {**CASE, **overrides}
    for stem, content in files.items():
        if content is None:
            continue
        if isinstance(content, str):
            content = ("\ufeff" if bom else "") + content.replace("\n", eol)
            content = content.encode("utf-8")
        (folder / f"{stem}.csv").write_bytes(content)
    return folder


def replace_line(stem: str, line: int, text: str) -> str:
    """CASE[stem] with editor line `line` (header = 1) replaced by `text`."""
    lines = CASE[stem].split("\n")
    lines[line - 1] = text
    return "\n".join(lines)


def add_lines(stem: str, *rows: str) -> str:
    return "\n".join([CASE[stem], *rows])


def drop_line(stem: str, line: int) -> str:
    lines = CASE[stem].split("\n")
    del lines[line - 1]
    return "\n".join(lines)


def read_error(folder: Path, **options) -> InputError:
    with pytest.raises(InputError) as info:
        read(folder, **options)
    return info.value


def assert_error(err: InputError, file: str, row: int | None, column: str | None, *fragments: str) -> None:
    assert err.file is not None and err.file.endswith(file), err.one_line()
    assert err.row == row, err.one_line()
    assert err.column == column, err.one_line()
    for fragment in fragments:
        assert fragment in err.reason, err.one_line()
    assert "\n" not in err.one_line()


# ------------------------------------------------------------------------------------------- comparison
def _same_array(a, b, where: str) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{where}: shape {a.shape} != {b.shape}"
    if a.dtype.kind == "f":
        assert np.allclose(a, b, rtol=1e-15, atol=0.0, equal_nan=False) or np.array_equal(a, b), where
    else:
        assert np.array_equal(a, b), where


def assert_same_instance(a, b) -> None:
    """Every array of buses, branches, areas, injections and orders equal (1e-15 relative for floats)."""
    _same_array(a.periods, b.periods, "periods")
    for part in ("buses", "branches", "areas", "orders"):
        pa, pb = getattr(a, part), getattr(b, part)
        for f in dataclasses.fields(pa):
            va, vb = getattr(pa, f.name), getattr(pb, f.name)
            if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
                _same_array(va, vb, f"{part}.{f.name}")
            elif dataclasses.is_dataclass(va):
                for g in dataclasses.fields(va):
                    _same_array(getattr(va, g.name), getattr(vb, g.name), f"{part}.{f.name}.{g.name}")
            else:
                assert va == vb, f"{part}.{f.name}"
    _same_array(a.p_inj, b.p_inj, "p_inj")
    _same_array(a.q_inj, b.q_inj, "q_inj")


def ids(inst, positions) -> list[int]:
    return [int(v) for v in inst.buses.id[positions]]


# =========================================================================================== the tiny case
def test_tiny_case_reads_as_designed(tmp_path):
    inst = read(make_case(tmp_path))
    assert list(inst.periods) == [1, 2]
    assert list(inst.buses.id) == [1, 2, 3]
    assert list(inst.buses.is_dist) == [False, True, True]
    assert list(inst.buses.area) == [0, 1, 1]
    assert list(inst.branches.kind) == [BranchKind.INTERFACE, BranchKind.DISTRIBUTION]
    assert inst.areas.name == ["TSO", "DSO-2"]
    assert not inst.areas.root_is_from[1]  # root 2 is NodeTo of edge 1
    o = inst.orders
    assert len(o.segments) == 7 and len(o.bids) == 6
    assert list(o.bids.alpha_omega) == [False, False, True, True, False, False]
    assert list(o.bids.no_new_act) == [False, False, False, True, False, False]
    assert list(o.segments.width) == [3, 3, 1, 1, -0.5, 1, 1]
    assert list(o.hp_qtbid) == [3]  # the T row is dropped ...
    assert any("HalfPlanes.csv: 1 rows on transmission" in w for w in inst.warnings)  # ... with a warning
    assert list(o.disc_bid) == [5] and list(o.disc_radius) == [2.5]
    np.testing.assert_array_equal(inst.p_inj, [[-1, -1.5], [0, 0], [-0.2, -0.25]])


# =========================================================================================== (a) round trip
def _shared(name: str) -> Path:
    if not (DATA / name).is_dir():
        pytest.skip("shared SmartNet data not found at ../shared/smartnet")
    return DATA / name


@pytest.mark.parametrize("name", ["three-node", "italy-693"])
def test_round_trip_shared_instances(tmp_path, name):
    original = read(_shared(name))
    out = write_instance(original, tmp_path / "out")
    again = read(out)
    assert_same_instance(original, again)
    assert again.warnings == []  # T half-plane/disc rows were dropped on the first read


def test_round_trip_tiny_case(tmp_path):
    original = read(make_case(tmp_path))
    again = read(write_instance(original, tmp_path / "out"))
    assert_same_instance(original, again)


def test_round_trip_applies_base_mva_once(tmp_path):
    folder = make_case(tmp_path, GeneralParam="StartTime,EndTime,baseMVA\n1,2,10")
    original = read(folder)
    assert original.branches.r[1] == pytest.approx(0.001)
    again = read(write_instance(original, tmp_path / "out"))
    assert (tmp_path / "out" / "GeneralParam.csv").read_text() == "StartTime,EndTime,baseMVA\n1,2,1\n"
    assert_same_instance(original, again)


def test_written_files_are_canonical(tmp_path):
    dist = replace_line("DistributionNodes", 3, "3,0,0,0,0.01")  # unbounded voltage
    edges = replace_line("Edges", 3, "2,2,3,0.01,0.1,0.002,0,1,0")  # unrated
    inst = read(make_case(tmp_path, DistributionNodes=dist, Edges=edges))
    assert np.isinf(inst.buses.vsq_max[2]) and np.isinf(inst.branches.rating[1])
    out = write_instance(inst, tmp_path / "out")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "GeneralParam.csv",
            "TransmissionNodes.csv",
            "DistributionNodes.csv",
            "Edges.csv",
            "NetInjections.csv",
            "Bids.csv",
            "ExclusiveQtBids.csv",
            "RampConstraints.csv",
            "MinDurationPairs.csv",
            "HalfPlanes.csv",
            "QPDisc.csv",
        ]
    )
    for p in out.iterdir():
        data = p.read_bytes()
        assert b"\r" not in data and not data.startswith(b"\xef\xbb\xbf"), p.name
    assert (out / "DistributionNodes.csv").read_text().splitlines() == [
        "ID,Vsqmin,Vsqmax,G,B",
        "2,1.0,1.0,0.0,0.0",
        "3,0.0,0.0,0.0,0.01",
    ]
    assert (out / "Edges.csv").read_text().splitlines() == [
        "ID,NodeFrom,NodeTo,R,X,B,S,Tap,Shift",
        "1,1,2,0.007,0.07,0.0,5.0,1.0,0.0",
        "2,2,3,0.01,0.1,0.002,0.0,1.0,0.0",
    ]
    assert (out / "Bids.csv").read_text().splitlines()[0].endswith(",Xlb,Xub,AlphaOmegaSet,NoNewAct")
    assert (out / "RampConstraints.csv").read_text().splitlines()[
        0
    ] == "QtBids,QBid,RampConstr,RCFrom,RCTo,RCRealPowerIncr,RCMin"
    assert (out / "MinDurationPairs.csv").read_text().splitlines() == [
        "QtBids,QBid1,QBid2,Tau,ForTime",
        "2,3,3,1,1",
        "2,3,4,1,2",
    ]
    assert (out / "HalfPlanes.csv").read_text().splitlines() == [
        "ID,QtBid,QPHPFrom,QPHPTo,QPHPSlope,QPHPOffset,QPHPConstr",
        "1,3,-1,-1,0.05,0.0,0",
    ]
    assert (out / "QPDisc.csv").read_text().splitlines() == [
        "QtBid,QBids,QPDCID,QPDFrom,QPDTo,QPDMax",
        "4,6,1,-1,-1,2.5",
    ]


def test_writer_keeps_full_float_precision(tmp_path):
    inst = read(make_case(tmp_path))
    inst.p_inj[2, 0] = 1 / 3
    inst.orders.segments.price[0] = 2.16e-07
    again = read(write_instance(inst, tmp_path / "out"))
    assert again.p_inj[2, 0] == 1 / 3
    assert again.orders.segments.price[0] == 2.16e-07


def test_writer_refuses_non_empty_folder_and_overwrites_on_request(tmp_path):
    inst = read(make_case(tmp_path))
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        write_instance(inst, target)
    assert (target / "keep.txt").read_text() == "user data"
    write_instance(inst, target, overwrite=True)
    assert not (target / "keep.txt").exists()
    assert_same_instance(inst, read(target))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case", "out"]  # no temporary siblings left


def test_writer_into_existing_empty_folder(tmp_path):
    inst = read(make_case(tmp_path))
    (tmp_path / "out").mkdir()
    assert_same_instance(inst, read(write_instance(inst, tmp_path / "out")))


def test_writer_is_atomic_on_failure(tmp_path, monkeypatch):
    inst = read(make_case(tmp_path))
    real = smartnet_writer._write_csv
    calls = []

    def failing(path, columns):
        calls.append(path.name)
        if len(calls) == 3:
            raise OSError("disk full")
        real(path, columns)

    monkeypatch.setattr(smartnet_writer, "_write_csv", failing)
    with pytest.raises(OSError, match="disk full"):
        write_instance(inst, tmp_path / "out")
    assert len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]  # neither the target nor a temp folder


def test_writer_leaves_out_boundary_buses(tmp_path):
    inst = read(make_case(tmp_path))
    dso = inst.area_instance(1)
    assert ids(dso, dso.buses.is_boundary) == [1]
    out = write_instance(dso, tmp_path / "out")
    assert (out / "TransmissionNodes.csv").read_text() == "ID,RefNode\n"
    assert (out / "Edges.csv").read_text().splitlines()[1:] == ["2,2,3,0.01,0.1,0.002,0.5,1.0,0.0"]
    injected = [ln.split(",")[0] for ln in (out / "NetInjections.csv").read_text().splitlines()[1:]]
    assert injected == ["2", "2", "3", "3"]


# =========================================================================================== (b) quirks
@pytest.mark.parametrize("eol", ["\r", "\r\n"])
def test_line_endings_give_the_same_instance(tmp_path, eol):
    lf = read(make_case(tmp_path, name="lf", eol="\n"))
    other_folder = make_case(tmp_path, name="other", eol=eol)
    raw = (other_folder / "Bids.csv").read_bytes()
    assert raw.count(eol.encode()) == 7 and (eol == "\r\n" or b"\n" not in raw)
    assert_same_instance(lf, read(other_folder))


def test_error_rows_count_lines_the_same_with_cr_only(tmp_path):
    folder = make_case(tmp_path, eol="\r", Edges=replace_line("Edges", 3, "2,2,3,abc,0.1,0,0.5,1,0"))
    assert_error(read_error(folder), "Edges.csv", 3, "R", "'abc'")


def test_utf8_bom_is_stripped(tmp_path):
    plain = read(make_case(tmp_path, name="plain"))
    with_bom = make_case(tmp_path, name="bom", bom=True, eol="\r\n")
    assert (with_bom / "TransmissionNodes.csv").read_bytes().startswith(b"\xef\xbb\xbfID,")
    assert_same_instance(plain, read(with_bom))


def test_header_only_files_without_terminator_are_empty_tables(tmp_path):
    folder = make_case(
        tmp_path,
        ExclusiveQtBids=b"ID,QtBid",
        RampConstraints=b"\xef\xbb\xbfQtBids,QBid,RampConstr",
        MinDurationPairs=b"QtBids,QBid1,QBid2,Tau,ForTime\r",
    )
    o = read(folder).orders
    assert len(o.exclusive_group) == 0 and len(o.ramp_bid) == 0 and len(o.mindur_bid1) == 0
    assert len(o.hp_qtbid) == 1  # the other files are still read


def test_scientific_notation(tmp_path):
    bids = replace_line("Bids", 7, "2,4,6,6E0,1,0,1.5E1,2.16E-07,15,0,1,0,0")
    bids = bids.replace("2,4,6,7,1,1,18,2,18,0,1,0,0", "2,4,6,7,1,2.16E-07,18,2e0,18,0,1,0,0")
    inst = read(make_case(tmp_path, Bids=bids))
    s = inst.orders.segments
    assert list(s.id) == [1, 2, 3, 4, 5, 6, 7]
    assert s.hi[5] == 2.16e-07 and s.price[5] == 15.0
    assert s.lo[6] == 2.16e-07 and s.hi[6] == 2.0


def test_optional_files_absent(tmp_path):
    inst = read(make_case(tmp_path, **{stem: None for stem in OPTIONAL}))
    o = inst.orders
    for arr in (o.exclusive_group, o.ramp_bid, o.mindur_bid1, o.hp_qtbid, o.disc_bid):
        assert len(arr) == 0
    assert len(o.segments) == 7
    assert inst.warnings == []


def test_flags_as_files_equal_flags_as_columns(tmp_path):
    as_columns = read(make_case(tmp_path, name="columns"))
    header = BIDS_HEADER.replace(",AlphaOmegaSet,NoNewAct", "")
    rows = [ln.rsplit(",", 2)[0] for ln in CASE["Bids"].split("\n")[1:]]
    folder = make_case(
        tmp_path,
        name="files",
        Bids="\n".join([header, *rows]),
        AlphaOmegaSet="\ufeffQtBids,QBid,forT\n2,3,1\n2,4,2",
        NoNewAct="QtBids,QBid,forT\n2,4,2",
    )
    as_files = read(folder)
    assert list(as_files.orders.bids.alpha_omega) == [False, False, True, True, False, False]
    assert_same_instance(as_columns, as_files)


def test_bids_columns_win_over_flag_files(tmp_path):
    # three-node ships both; docs/model.md §2.1: the files are used only if Bids lacks the column
    folder = make_case(tmp_path, AlphaOmegaSet="QtBids,QBid,forT\n1,1,1", NoNewAct="QtBids,QBid,forT\n1,1,1")
    assert list(read(folder).orders.bids.alpha_omega) == [False, False, True, True, False, False]


def test_empty_order_book_is_valid(tmp_path):
    folder = make_case(tmp_path, Bids=BIDS_HEADER, **{stem: None for stem in OPTIONAL})
    inst = read(folder)
    assert len(inst.orders.segments) == 0 and len(inst.orders.bids) == 0
    again = read(write_instance(inst, tmp_path / "out"))
    assert_same_instance(inst, again)


def test_empty_order_book_stats(tmp_path):
    from tdmarket.model.stats import format_stats, instance_stats

    inst = read(make_case(tmp_path, Bids=BIDS_HEADER, **{stem: None for stem in OPTIONAL}))
    stats = instance_stats(inst)
    assert stats["orders"]["segments"] == 0 and stats["orders"]["price_range"] is None
    assert stats["injections"]["system_imbalance"] == [-1.2, -1.75]
    assert "segments total / T / D" in format_stats(stats)


def test_ratings_zero_and_huge_are_unrated(tmp_path):
    edges = add_lines("Edges", "3,3,4,0.01,0.1,0,90000,1,0", "4,4,5,0.01,0.1,0,0,1,0")
    folder = make_case(
        tmp_path,
        Edges=edges,
        DistributionNodes=add_lines("DistributionNodes", "4,0.9,1.1,0,0", "5,0.9,1.1,0,0"),
        NetInjections=add_lines("NetInjections", "4,1,0,0", "4,2,0,0", "5,1,0,0", "5,2,0,0"),
    )
    rating = read(folder).branches.rating
    assert rating[0] == 5 and rating[1] == 0.5
    assert np.isinf(rating[2]) and np.isinf(rating[3])


def test_negative_rating_accepted_as_unrated_with_research_option(tmp_path):
    folder = make_case(tmp_path, Edges=replace_line("Edges", 3, "2,2,3,0.01,0.1,0,-1,1,0"))
    inst = read(folder, nonpositive_rating_unlimited=True)
    assert np.isinf(inst.branches.rating[1])


# =========================================================================================== (c) bad input
def test_missing_required_file(tmp_path):
    err = read_error(make_case(tmp_path, Edges=None))
    assert_error(err, "Edges.csv", None, None, "missing")


def test_missing_required_column(tmp_path):
    edges = "ID,NodeFrom,NodeTo,R,B,S\n1,1,2,0.007,0,5\n2,2,3,0.01,0,0.5"
    assert_error(read_error(make_case(tmp_path, Edges=edges)), "Edges.csv", 1, "X", "missing required column 'X'")


def test_non_numeric_value(tmp_path):
    folder = make_case(tmp_path, Edges=replace_line("Edges", 3, "2,2,3,abc,0.1,0,0.5,1,0"))
    assert_error(read_error(folder), "Edges.csv", 3, "R", "abc", "is not a finite number")


def test_non_numeric_value_message_quotes_plain_text(tmp_path):
    folder = make_case(tmp_path, Edges=replace_line("Edges", 3, "2,2,3,abc,0.1,0,0.5,1,0"))
    assert "value 'abc' is not a finite number" == read_error(folder).reason


def test_nan_value(tmp_path):
    folder = make_case(tmp_path, NetInjections=replace_line("NetInjections", 4, "2,1,NaN,0"))
    assert_error(read_error(folder), "NetInjections.csv", 4, "P", "NaN", "is not a finite number")


def test_infinite_value(tmp_path):
    folder = make_case(tmp_path, Bids=replace_line("Bids", 6, "3,3,5,5,1,0,-inf,-0.5,-5,0,1,0,0"))
    assert_error(read_error(folder), "Bids.csv", 6, "PriceLoQ", "-inf", "is not a finite number")


def test_empty_cell(tmp_path):
    folder = make_case(tmp_path, DistributionNodes=replace_line("DistributionNodes", 3, "3,0.9025,,0,0"))
    assert_error(read_error(folder), "DistributionNodes.csv", 3, "Vsqmax", "empty value")


def test_duplicate_node_id(tmp_path):
    folder = make_case(tmp_path, DistributionNodes=add_lines("DistributionNodes", "3,0.9,1.1,0,0"))
    assert_error(read_error(folder), "DistributionNodes.csv", 4, "ID", "duplicate key ID=3", "first at row 3")


def test_duplicate_edge_id(tmp_path):
    folder = make_case(tmp_path, Edges=replace_line("Edges", 3, "1,2,3,0.01,0.1,0,0.5,1,0"))
    assert_error(read_error(folder), "Edges.csv", 3, "ID", "duplicate key ID=1", "first at row 2")


def test_duplicate_segment_id(tmp_path):
    folder = make_case(tmp_path, Bids=replace_line("Bids", 8, "2,4,6,6,1,1,18,2,18,0,1,0,0"))
    assert_error(read_error(folder), "Bids.csv", 8, "QBidSeg", "duplicate key QBidSeg=6", "first at row 7")


def test_order_at_unknown_bus(tmp_path):
    folder = make_case(tmp_path, Bids=replace_line("Bids", 6, "99,3,5,5,1,0,-5,-0.5,-5,0,1,0,0"))
    assert_error(read_error(folder), "Bids.csv", 6, "Node", "unknown node 99")


def test_injection_at_unknown_bus(tmp_path):
    folder = make_case(tmp_path, NetInjections=add_lines("NetInjections", "9,1,0,0"))
    assert_error(read_error(folder), "NetInjections.csv", 8, "Node", "unknown node 9")


def test_branch_at_unknown_bus(tmp_path):
    folder = make_case(tmp_path, Edges=replace_line("Edges", 3, "2,2,9,0.01,0.1,0,0.5,1,0"))
    assert_error(read_error(folder), "Edges.csv", 3, "NodeTo", "unknown node 9")


def test_order_period_outside_horizon(tmp_path):
    folder = make_case(tmp_path, Bids=replace_line("Bids", 3, "1,1,2,2,3,0,20,3,20,0,1,0,0"))
    assert_error(read_error(folder), "Bids.csv", 3, "forT", "period 3 outside the horizon 1..2")


def test_injection_period_outside_horizon(tmp_path):
    folder = make_case(tmp_path, NetInjections=add_lines("NetInjections", "1,0,0,0"))
    assert_error(read_error(folder), "NetInjections.csv", 8, "forT", "period 0 outside the horizon 1..2")


def test_missing_injection_is_an_error(tmp_path):
    folder = make_case(tmp_path, NetInjections=drop_line("NetInjections", 7))
    assert_error(read_error(folder), "NetInjections.csv", None, "Node", "no injection row for node 3 in period 2")


def test_duplicate_injection(tmp_path):
    folder = make_case(tmp_path, NetInjections=add_lines("NetInjections", "3,2,0,0"))
    assert_error(read_error(folder), "NetInjections.csv", 8, "Node", "duplicate key Node=3, forT=2", "first at row 7")


def test_meshed_distribution_area(tmp_path):
    folder = make_case(
        tmp_path,
        DistributionNodes=add_lines("DistributionNodes", "4,0.9,1.1,0,0"),
        Edges=add_lines("Edges", "3,3,4,0.01,0.1,0,0.5,1,0", "4,4,2,0.01,0.1,0,0.5,1,0"),
        NetInjections=add_lines("NetInjections", "4,1,0,0", "4,2,0,0"),
    )
    assert_error(read_error(folder), "Edges.csv", 5, "NodeFrom", "meshed")


def test_area_with_two_interface_edges(tmp_path):
    folder = make_case(tmp_path, Edges=add_lines("Edges", "3,1,3,0.01,0.1,0,5,1,0"))
    assert_error(read_error(folder), "Edges.csv", 4, "NodeFrom", "several interface edges (1, 3)")


def test_negative_rating_rejected(tmp_path):
    folder = make_case(tmp_path, Edges=replace_line("Edges", 3, "2,2,3,0.01,0.1,0,-1,1,0"))
    assert_error(read_error(folder), "Edges.csv", 3, "S", "negative rating -1.0 MVA", "nonpositive_rating_unlimited")


def test_self_loop(tmp_path):
    folder = make_case(tmp_path, Edges=replace_line("Edges", 3, "2,3,3,0.01,0.1,0,0.5,1,0"))
    assert_error(read_error(folder), "Edges.csv", 3, "NodeTo", "self-loop")


def test_node_in_both_node_files(tmp_path):
    folder = make_case(tmp_path, DistributionNodes=add_lines("DistributionNodes", "1,0.9,1.1,0,0"))
    assert_error(read_error(folder), "DistributionNodes.csv", 4, "ID", "node 1 is also listed in TransmissionNodes")


def test_start_after_end(tmp_path):
    folder = make_case(tmp_path, GeneralParam="StartTime,EndTime,baseMVA\n3,2,1")
    assert_error(read_error(folder), "GeneralParam.csv", 2, "StartTime", "StartTime 3 > EndTime 2")


def test_segment_crossing_zero(tmp_path):
    folder = make_case(tmp_path, Bids=replace_line("Bids", 6, "3,3,5,5,1,0.2,-5,-0.5,-5,0,1,0,0"))
    assert_error(read_error(folder), "Bids.csv", 6, "QuantityHiQ", "crosses zero")


@pytest.mark.parametrize("xlb", ["1.5", "-0.1"])
def test_xlb_outside_unit_interval(tmp_path, xlb):
    folder = make_case(tmp_path, Bids=replace_line("Bids", 2, f"1,1,1,1,1,0,20,3,20,{xlb},1,0,0"))
    assert_error(read_error(folder), "Bids.csv", 2, "Xlb", f"Xlb must be in [0, 1], got {float(xlb)}")


def test_no_new_act_without_alpha_omega(tmp_path):
    folder = make_case(tmp_path, Bids=replace_line("Bids", 6, "3,3,5,5,1,0,-5,-0.5,-5,0,1,0,1"))
    assert_error(read_error(folder), "Bids.csv", 6, "NoNewAct", "QBid 5 has NoNewAct without AlphaOmegaSet")


def test_exclusive_row_with_unknown_order(tmp_path):
    folder = make_case(tmp_path, ExclusiveQtBids=add_lines("ExclusiveQtBids", "2,99"))
    assert_error(read_error(folder), "ExclusiveQtBids.csv", 4, "QtBid", "unknown QtBid 99")


def test_min_duration_row_with_unknown_order(tmp_path):
    folder = make_case(tmp_path, MinDurationPairs=replace_line("MinDurationPairs", 3, "2,3,99,1,2"))
    assert_error(read_error(folder), "MinDurationPairs.csv", 3, "QBid2", "unknown QBid 99")


def test_min_duration_row_with_wrong_period(tmp_path):
    folder = make_case(tmp_path, MinDurationPairs=replace_line("MinDurationPairs", 3, "2,3,4,1,1"))
    assert_error(read_error(folder), "MinDurationPairs.csv", 3, "ForTime", "QBid 4 is in period 2, not 1")


def test_ramp_row_with_unknown_order(tmp_path):
    folder = make_case(tmp_path, RampConstraints=replace_line("RampConstraints", 2, "1,99,1,-1,-1,0.5,0"))
    assert_error(read_error(folder), "RampConstraints.csv", 2, "QBid", "unknown QBid 99")


def test_ramp_row_with_qbid_of_another_qtbid(tmp_path):
    folder = make_case(tmp_path, RampConstraints=replace_line("RampConstraints", 3, "1,3,2,-1,-1,-0.5,1"))
    assert_error(read_error(folder), "RampConstraints.csv", 3, "QBid", "QBid 3 belongs to QtBid 2, not 1")


def test_half_plane_row_with_unknown_order(tmp_path):
    folder = make_case(tmp_path, HalfPlanes=replace_line("HalfPlanes", 2, "1,99,-1,-1,0.05,0,0"))
    assert_error(read_error(folder), "HalfPlanes.csv", 2, "QtBid", "unknown QtBid 99")


def test_disc_row_with_unknown_order(tmp_path):
    folder = make_case(tmp_path, QPDisc=replace_line("QPDisc", 2, "4,99,1,-1,-1,2.5"))
    assert_error(read_error(folder), "QPDisc.csv", 2, "QBids", "unknown QBid 99")


def test_period_window_rejected(tmp_path):
    folder = make_case(tmp_path, HalfPlanes=replace_line("HalfPlanes", 2, "1,3,1,-1,0.05,0,0"))
    assert_error(read_error(folder), "HalfPlanes.csv", 2, "QPHPFrom", "period windows are not supported")


def test_ragged_row(tmp_path):
    folder = make_case(tmp_path, Edges=replace_line("Edges", 3, "2,2,3,0.01,0.1,0,0.5,1"))
    assert_error(read_error(folder), "Edges.csv", 3, None, "has 8 fields but the header has 9")


# =========================================================================================== sub-areas
def feeder_case(tmp_path: Path, sub_areas: str | None) -> Path:
    """Tiny case with the feeder extended to 2-3-4-5 (edge 4 written 5->4) and an order at node 5."""
    return make_case(
        tmp_path,
        DistributionNodes=add_lines("DistributionNodes", "4,0.9,1.1,0,0", "5,0.9,1.1,0,0"),
        Edges=add_lines("Edges", "3,3,4,0.01,0.1,0,0.5,1,0", "4,5,4,0.02,0.2,0,0.3,1,0"),
        NetInjections=add_lines("NetInjections", "4,1,-0.1,0", "4,2,-0.1,0", "5,1,-0.05,0", "5,2,-0.05,0"),
        Bids=add_lines("Bids", "5,5,7,8,1,0,12,0.2,12,0,1,0,0"),
        SubAreas=sub_areas,
    )


def test_sub_area_file_creates_child_area(tmp_path):
    inst = read(feeder_case(tmp_path, "Edge,Area\n3,feeder-tail"))
    ar, bu, br = inst.areas, inst.buses, inst.branches
    assert ar.name == ["TSO", "DSO-2", "feeder-tail"]
    assert list(ar.parent) == [-1, 0, 1]
    assert ids(inst, [ar.root_bus[2]]) == [4] and ids(inst, [ar.host_bus[2]]) == [3]
    assert br.id[ar.interface[2]] == 3 and not ar.root_is_from[2]
    assert dict(zip(bu.id.tolist(), bu.area.tolist())) == {1: 0, 2: 1, 3: 1, 4: 2, 5: 2}
    assert dict(zip(br.id.tolist(), br.kind.tolist())) == {
        1: BranchKind.INTERFACE,
        2: BranchKind.DISTRIBUTION,
        3: BranchKind.INTERFACE,
        4: BranchKind.DISTRIBUTION,
    }
    assert dict(zip(br.id.tolist(), br.area.tolist())) == {1: 1, 2: 1, 3: 2, 4: 2}


def test_nested_sub_areas(tmp_path):
    inst = read(feeder_case(tmp_path, "Edge,Area\n4,leaf\n3,tail"))  # deeper edge listed first
    ar = inst.areas
    assert ar.name == ["TSO", "DSO-2", "tail", "leaf"]
    assert list(ar.parent) == [-1, 0, 1, 2]
    assert dict(zip(inst.buses.id.tolist(), inst.buses.area.tolist())) == {1: 0, 2: 1, 3: 1, 4: 2, 5: 3}
    assert ids(inst, [ar.root_bus[3]]) == [5] and ids(inst, [ar.host_bus[3]]) == [4]
    assert ar.root_is_from[3]  # edge 4 is written 5 -> 4


def test_sub_area_round_trip(tmp_path):
    inst = read(feeder_case(tmp_path, "Edge,Area\n4,leaf\n3,tail"))
    out = write_instance(inst, tmp_path / "out")
    assert (out / "SubAreas.csv").read_text().splitlines() == ["Edge,Area", "3,tail", "4,leaf"]
    assert_same_instance(inst, read(out))


def test_sub_area_edge_must_be_distribution(tmp_path):
    err = read_error(feeder_case(tmp_path, "Edge,Area\n1,bad"))
    assert_error(err, "SubAreas.csv", 2, "Edge", "edge 1 is not a distribution (D-D) edge")


def test_area_instance_of_dso_is_self_contained(tmp_path):
    inst = read(make_case(tmp_path))
    dso = inst.area_instance(1)
    assert ids(dso, slice(None)) == [1, 2, 3]
    assert list(dso.buses.is_boundary) == [True, False, False]
    np.testing.assert_array_equal(dso.p_inj, [[0, 0], [0, 0], [-0.2, -0.25]])
    np.testing.assert_array_equal(dso.q_inj, [[0, 0], [0, 0], [-0.1, -0.1]])
    assert list(dso.branches.id) == [1, 2]
    o = dso.orders
    assert sorted(set(o.bids.qtbid.tolist())) == [2, 3, 4]  # no T order
    assert len(o.segments) == 5
    assert ids(dso, o.bids.bus) == [3, 3, 3, 2]
    assert len(o.ramp_bid) == 0  # the ramp rows belong to the T order
    assert list(o.exclusive_qtbid) == [2, 3] and list(o.hp_qtbid) == [3]
    assert list(o.bids.id[o.mindur_bid2]) == [3, 4]
    assert list(o.bids.id[o.disc_bid]) == [6]
    np.testing.assert_allclose(dso.system_imbalance(), [-0.2, -0.25])


def test_area_instance_with_child_area(tmp_path):
    inst = read(feeder_case(tmp_path, "Edge,Area\n3,tail"))
    dso = inst.area_instance(1)
    assert ids(dso, slice(None)) == [1, 2, 3, 4]
    assert list(dso.buses.is_boundary) == [True, False, False, True]  # T host and child root
    assert dso.areas.name == ["DSO-2", "tail"]
    assert list(dso.areas.parent) == [-1, 0]
    assert list(dso.branches.id) == [1, 2, 3]
    assert np.all(dso.p_inj[dso.buses.is_boundary] == 0)
    assert 5 not in dso.orders.bids.qtbid  # the child's order stays with the child
    child = inst.area_instance(2)
    assert ids(child, slice(None)) == [3, 4, 5]
    assert list(child.buses.is_boundary) == [True, False, False]
    assert list(child.orders.bids.qtbid) == [5]
    np.testing.assert_allclose(child.p_inj, [[0, 0], [-0.1, -0.1], [-0.05, -0.05]])


# =========================================================================================== tdmarket.io.read
def test_read_detects_the_smartnet_format(tmp_path):
    from tdmarket import io as tio

    folder = make_case(tmp_path)
    assert tio.detect(folder) == "smartnet"
    assert_same_instance(read(folder), read(folder, format="smartnet"))
    assert tdmarket_load(folder).fingerprint() == read(folder).fingerprint()


def test_read_falls_back_to_smartnet_errors_for_unrecognised_paths(tmp_path):
    from tdmarket import io as tio

    empty = tmp_path / "empty"
    empty.mkdir()
    assert tio.detect(empty) == "smartnet"
    assert_error(read_error(empty), "empty/GeneralParam.csv", None, None, "required file is missing")
    err = read_error(tmp_path / "missing")
    assert err.file == str(tmp_path / "missing") and "does not exist" in err.reason


def test_read_rejects_an_unknown_format_listing_the_known_ones(tmp_path):
    folder = make_case(tmp_path)
    with pytest.raises(InputError) as info:
        read(folder, format="matpower")
    assert info.value.reason == "unknown input format 'matpower'; known formats: smartnet, layout"
    assert info.value.file == str(folder)


def test_read_passes_options_to_the_parser(tmp_path):
    folder = make_case(tmp_path, Edges=None, EdgesHard=CASE["Edges"])
    assert_error(read_error(folder), "Edges.csv", None, None, "missing")
    assert list(read(folder, edges_file="EdgesHard.csv").branches.id) == [1, 2]
    with pytest.raises(TypeError):
        read(folder, no_such_option=1)


def test_parser_leaves_topology_and_checks_to_read(tmp_path):
    folder = feeder_case(tmp_path, "Edge,Area\n4,leaf\n3,tail")
    inst, splits = smartnet.parse(folder)
    assert inst.areas.name == ["TSO"] and not inst.buses.area.any()
    assert list(splits.edge) == [4, 3] and splits.name == ["leaf", "tail"]
    assert inst.provenance["branches"].row.tolist() == [2, 3, 4, 5]
    assert inst.warnings == []  # the T half-plane row is dropped (with its warning) by the checks
    assert len(inst.orders.hp_qtbid) == 2


def test_read_error_location_survives_a_corrected_table(tmp_path):
    # the T half-plane row (line 3) is dropped; the provenance of the kept rows stays aligned
    inst = read(make_case(tmp_path))
    assert inst.provenance["half_planes"].row.tolist() == [2]


# =========================================================================================== atomic writes
def test_atomic_dir_replaces_or_leaves_the_target(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and (target / "old.txt").exists()
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert target.stat().st_mode & 0o777 == 0o777 & ~_umask()


def test_atomic_file_replaces_or_leaves_the_file(tmp_path):
    path = tmp_path / "sub" / "report.html"
    with atomic_file(path) as tmp:
        tmp.write_text("one")
    assert path.read_text() == "one" and path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    with pytest.raises(RuntimeError):
        with atomic_file(path) as tmp:
            tmp.write_text("two")
            raise RuntimeError("boom")
    assert path.read_text() == "one" and [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_a_very_large_size_limit_reads_only_what_the_file_holds(tmp_path):
    """The limit is a bound, not a buffer size: 1 TiB does not allocate 1 TiB (it raised MemoryError)."""
    from tdmarket.io.table import read_bytes

    path = tmp_path / "small.csv"
    path.write_bytes(b"ID\n1\n")
    assert read_bytes(path, "small.csv", 2**40) == b"ID\n1\n"
    with pytest.raises(InputError, match="more than the limit"):
        read_bytes(path, "small.csv", 3)
