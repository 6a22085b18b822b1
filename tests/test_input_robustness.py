"""Input that must fail cleanly and quickly (issue 14, items 4-8): named pipes, huge files and fields, absurd
horizons and numbers, and messages that name file, editor row and column.  The tiny case of `test_io.py` is
altered cell by cell."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from test_io import CASE, add_lines, assert_error, make_case, read_error, replace_line

import tdmarket
from tdmarket.api import clear
from tdmarket.errors import InputError
from tdmarket.examples import builtin_path
from tdmarket.io import read
from tdmarket.io.smartnet.ranges import RANGES

WORKTREE = Path(__file__).resolve().parents[1]
FORMAT_DOC = WORKTREE / "docs" / "format.md"


# ------------------------------------------------------------------------------------------ item 4: pipes
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_named_pipe_as_csv_is_a_clean_error_not_a_hang(tmp_path):
    folder = make_case(tmp_path, Bids=None)
    os.mkfifo(folder / "Bids.csv")  # nobody ever writes to it: opening it for reading would block
    t0 = time.monotonic()
    assert_error(read_error(folder), "Bids.csv", None, None, "named pipe, not a regular file")
    assert time.monotonic() - t0 < 30.0  # a hang would never return; the bound only has to end the test


def test_folder_in_place_of_a_csv_file(tmp_path):
    folder = make_case(tmp_path, Edges=None)
    (folder / "Edges.csv").mkdir()
    assert_error(read_error(folder), "Edges.csv", None, None, "is a folder")


# ------------------------------------------------------------------------------------------ item 6: memory
_MEASURE = textwrap.dedent(
    """
    import resource, sys, time
    import tdmarket
    from tdmarket.errors import InputError
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.process_time()  # CPU time: a loaded machine stretches wall time, not the work done
    try:
        tdmarket.load(sys.argv[1])
        print("loaded")
    except InputError as err:
        print(err.one_line()[:300])
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"{time.process_time() - t0:.3f} {grown_mb:.1f}")
    """
)


def _load_in_child(folder: Path) -> tuple[str, float, float]:
    """(message, CPU seconds, MB of peak memory added) of `tdmarket.load(folder)` in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(folder)], capture_output=True, text=True, cwd=WORKTREE, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    message, figures = out.stdout.strip().splitlines()
    seconds, grown = map(float, figures.split())
    return message, seconds, grown


@pytest.mark.parametrize("shape", ["one 50 MB field", "50 MB of rows"])
def test_a_50_mb_file_fails_within_2_s_and_200_mb(tmp_path, shape):
    folder = make_case(tmp_path)
    with open(folder / "Bids.csv", "a") as fh:
        if shape == "one 50 MB field":
            fh.write("\n3,3,5,9," + "7" * 50_000_000 + ",0,1,1,1,0,1,0,0\n")
        else:
            row = "3,3,5,{},1,0,10,1,10,0,1,0,0\n"
            fh.writelines(row.format(k) for k in range(100, 100 + 1_600_000))  # ~50 MB
    assert (folder / "Bids.csv").stat().st_size > 45e6
    message, seconds, grown_mb = _load_in_child(folder)
    assert "Bids.csv" in message and "more than the limit" in message
    assert seconds < 2.0 and grown_mb < 200


def test_file_limit_is_an_option(tmp_path):
    folder = make_case(tmp_path)
    assert_error(read_error(folder, max_file_mb=0.0001), "Bids.csv", None, None, "more than the limit of 104 bytes")


def test_a_long_line_under_the_size_limit_fails_before_parsing(tmp_path):
    folder = make_case(tmp_path, Edges=add_lines("Edges", "3,3,2," + "1" * 200_000 + ",0.1,0,0.5,1,0"))
    assert_error(read_error(folder), "Edges.csv", 4, None, "line has 200", "more than the 10000")


@pytest.mark.parametrize("end", ["10000000", "1000000000000"])
def test_absurd_horizon_is_refused_before_allocating(tmp_path, end):
    folder = make_case(tmp_path, GeneralParam=f"StartTime,EndTime,baseMVA\n1,{end},1")
    t0 = time.process_time()  # CPU time: allocating the horizon would take seconds of work, a load only wall time
    err = read_error(folder)
    assert time.process_time() - t0 < 2.0
    assert_error(err, "GeneralParam.csv", 2, "EndTime")
    assert "more than 10000" in err.reason or "plausible range" in err.reason


def test_long_horizon_with_few_injection_rows_names_the_first_missing_pair(tmp_path):
    folder = make_case(tmp_path, GeneralParam="StartTime,EndTime,baseMVA\n1,9000,1")
    err = read_error(folder)
    assert_error(err, "NetInjections.csv", None, "Node", "no injection row for node 1 in period 3")
    assert "26994 (node, period) pairs missing" in err.reason


# ------------------------------------------------------------------------------ item 5: absurd numbers
ABSURD = [  # (file stem, editor row, new row, column)
    ("Bids", 2, "1,1,1,1,1,0,20,1e308,20,0,1,0,0", "QuantityHiQ"),  # quantity
    ("NetInjections", 4, "2,1,1e308,0", "P"),  # injection
    ("NetInjections", 4, "2,1,0,-1e308", "Q"),
    ("Edges", 3, "2,2,3,1e308,0.1,0.002,0.5,1,0", "R"),  # impedance
    ("Edges", 3, "2,2,3,0.01,1e308,0.002,0.5,1,0", "X"),
    ("Edges", 3, "2,2,3,0.01,0.1,1e308,0.5,1,0", "B"),
    ("Edges", 3, "2,2,3,0.01,0.1,0.002,0.5,1e308,0", "Tap"),  # tap
    ("Edges", 3, "2,2,3,0.01,0.1,0.002,1e308,1,0", "S"),
    ("DistributionNodes", 3, "3,0.9025,1.1025,1e308,0.01", "G"),  # shunts
    ("DistributionNodes", 3, "3,0.9025,1.1025,0,-1e308", "B"),
    ("DistributionNodes", 3, "3,0.9025,1e308,0,0.01", "Vsqmax"),
    ("GeneralParam", 2, "1,2,1e308", "baseMVA"),
    ("GeneralParam", 2, "1,2,1e-300", "baseMVA"),
    ("Bids", 6, "3,3,5,5,1,0,-1e308,-0.5,-1e308,0,1,0,0", "PriceLoQ"),
    ("RampConstraints", 2, "1,1,1,-1,-1,1e308,0", "RCRealPowerIncr"),
    ("HalfPlanes", 2, "1,3,-1,-1,1e308,0,0", "QPHPSlope"),
    ("HalfPlanes", 2, "1,3,-1,-1,0.05,1e308,0", "QPHPOffset"),
    ("QPDisc", 2, "4,6,1,-1,-1,1e308", "QPDMax"),
]


@pytest.mark.parametrize(("stem", "row", "text", "column"), ABSURD, ids=[f"{a[0]}-{a[3]}" for a in ABSURD])
def test_finite_but_absurd_numbers_are_rejected_at_their_cell(tmp_path, stem, row, text, column):
    folder = make_case(tmp_path, **{stem: replace_line(stem, row, text)})
    assert_error(read_error(folder), f"{stem}.csv", row, column, "outside the plausible range")


def test_every_numeric_column_read_has_a_documented_range():
    """The table of docs/format.md lists every column of `RANGES` with its bounds."""
    doc = FORMAT_DOC.read_text()
    section = doc[doc.index("### Plausible ranges") : doc.index("## 2. Files")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    for file, columns in RANGES.items():
        for column, valid in columns.items():
            if valid is not None:
                assert any(f"`{file}`" in row and f"`{column}`" in row for row in rows), (file, column)


def test_price_above_the_slack_penalty_names_its_cell(tmp_path):
    folder = make_case(tmp_path, Bids=replace_line("Bids", 6, "3,3,5,5,1,0,-50000,-0.5,-50000,0,1,0,0"))
    inst = read(folder)
    with pytest.raises(InputError) as info:
        clear(inst, scheme="common", relax=True)
    assert_error(info.value, "Bids.csv", 6, "PriceLoQ", "price -50000 €/MWh is not below the slack penalty 10000")


# ------------------------------------------------------------------------------ item 7: messages
def test_disconnected_distribution_node_names_its_row(tmp_path):
    folder = make_case(
        tmp_path,
        DistributionNodes=add_lines("DistributionNodes", "4,0.9,1.1,0,0"),
        NetInjections=add_lines("NetInjections", "4,1,0,0", "4,2,0,0"),
    )
    assert_error(read_error(folder), "DistributionNodes.csv", 4, "ID", "distribution node 4 is not connected")


def test_transmission_island_without_reference_names_its_row(tmp_path):
    folder = make_case(
        tmp_path,
        TransmissionNodes=add_lines("TransmissionNodes", "7,0"),
        NetInjections=add_lines("NetInjections", "7,1,0,0", "7,2,0,0"),
    )
    assert_error(read_error(folder), "TransmissionNodes.csv", 3, "RefNode", "containing node 7 has no reference")


def test_several_references_are_listed_as_plain_numbers(tmp_path):
    folder = make_case(
        tmp_path,
        TransmissionNodes=add_lines("TransmissionNodes", "7,1"),
        Edges=add_lines("Edges", "3,1,7,0,0.1,0,0,1,0"),
        NetInjections=add_lines("NetInjections", "7,1,0,0", "7,2,0,0"),
    )
    err = read_error(folder)
    assert_error(
        err, "TransmissionNodes.csv", 3, "RefNode", "several reference nodes in one transmission component: 1, 7"
    )
    assert "np." not in err.one_line()


def test_qtbid_spanning_two_areas_names_the_stray_bid(tmp_path):
    # QtBid 2 (start/stop at D node 3) gets a bid at the T node: the row of that bid is at fault
    folder = make_case(tmp_path, Bids=add_lines("Bids", "1,2,9,9,2,0,10,1,10,0,1,0,0"))
    err = read_error(folder)
    assert_error(err, "Bids.csv", 9, "QtBids", "QtBid 2 has bids in more than one operator area (DSO-2 and TSO)")


def test_no_new_act_fault_is_blamed_on_its_own_file(tmp_path):
    bids = "\n".join(",".join(ln.split(",")[:-2]) for ln in CASE["Bids"].split("\n"))  # flags as files
    folder = make_case(
        tmp_path,
        Bids=bids,
        AlphaOmegaSet="QtBids,QBid\n2,3\n2,4",
        NoNewAct="QtBids,QBid\n2,4\n3,5",  # QBid 5 has no AlphaOmegaSet
    )
    assert_error(read_error(folder), "NoNewAct.csv", 3, "QBid", "QBid 5 has NoNewAct without AlphaOmegaSet")


# ------------------------------------------------------------------------------ item 8: names and case
def test_sub_area_name_of_an_existing_dso_is_an_error(tmp_path):
    folder = tmp_path / "clash"
    shutil.copytree(builtin_path(), folder)
    (folder / "SubAreas.csv").write_text("Edge,Area\n22,DSO-301\n")
    assert_error(read_error(folder), "SubAreas.csv", 2, "Area", "'DSO-301' is already the name of the DSO area")
    (folder / "SubAreas.csv").write_text("Edge,Area\n22,X\n23,X\n")
    err = read_error(folder)
    assert (err.row, err.column) in ((2, "Area"), (3, "Area")) and "given twice" in err.reason


def test_columns_match_without_regard_to_letter_case(tmp_path):
    reference = read(make_case(tmp_path))
    edges = CASE["Edges"].replace("ID,NodeFrom,NodeTo,R,X,B,S,Tap,Shift", "id,nodefrom,NODETO,r,x,b,s,tap,shift")
    nodes = CASE["DistributionNodes"].replace("ID,Vsqmin,Vsqmax,G,B", "ID,vsqmin,VSQMAX,g,b")
    inst = read(make_case(tmp_path, name="lower", Edges=edges, DistributionNodes=nodes))
    assert inst.fingerprint() == reference.fingerprint()
    assert np.isclose(inst.branches.tap, 1.0).all() and inst.buses.b_shunt.max() == pytest.approx(0.01)


def test_two_columns_differing_only_in_case_are_an_error(tmp_path):
    nodes = CASE["DistributionNodes"].replace("ID,Vsqmin,Vsqmax,G,B", "ID,Vsqmin,Vsqmax,B,b")
    assert_error(
        read_error(make_case(tmp_path, DistributionNodes=nodes)),
        "DistributionNodes.csv",
        1,
        "b",
        "'b' and 'B' differ only in letter case",
    )


def test_errors_quote_plain_numbers(tmp_path):
    folder = make_case(tmp_path, Bids=add_lines("Bids", "2,4,6,6,1,1,18,2,18,0,1,0,0"))  # duplicate QBidSeg 6
    err = read_error(folder)
    assert "QBidSeg=6" in err.reason and "np." not in err.one_line()


def test_api_load_of_the_example_still_works():
    assert len(tdmarket.load(builtin_path()).buses) > 0
