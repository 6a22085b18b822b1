"""The operator layout (docs/layout.md): `tdmarket split`, every command reading it, and the hierarchical scheme
in which the TSO process reads only the TSO folder and the index while each DSO reads its own folder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from casebuilder import shared_path

import tdmarket
from tdmarket.cli import main
from tdmarket.examples import builtin_path
from tdmarket.io import read
from tdmarket.io.layout import INDEX, OperatorFolder, read_index, write_layout


@pytest.fixture(scope="module")
def example_layout(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("layout") / "example"
    assert main(["split", str(builtin_path()), str(out)]) == 0
    return out


def _same_sub_instances(inst, layout_path: Path) -> None:
    lay = read_index(layout_path)
    assert lay.areas.name == inst.areas.name
    for a in range(inst.n_areas):
        assert lay.area_instance(a).fingerprint() == inst.area_instance(a).fingerprint(), inst.areas.name[a]


def test_split_writes_one_folder_per_operator_and_an_index(example_layout):
    inst = read(builtin_path())
    names = sorted(p.name for p in example_layout.iterdir() if p.is_dir())
    assert names == sorted(inst.areas.name)
    lay = read_index(example_layout)
    assert list(lay.areas.parent) == [-1, 0, 0, 0]
    assert lay.area_sizes().tolist() == inst.area_sizes().tolist()
    assert lay.max_abs_price_eur_mwh() == inst.max_abs_price_eur_mwh()
    # each folder's sub-instance is exactly what the operator holds in the integrated instance
    _same_sub_instances(inst, example_layout)
    # and the layout as a whole reads back as the integrated instance
    whole = read(example_layout)
    assert whole.areas.name == inst.areas.name
    np.testing.assert_array_equal(whole.buses.id, inst.buses.id)
    np.testing.assert_array_equal(whole.buses.area, inst.buses.area)
    np.testing.assert_array_equal(whole.orders.bids.id, inst.orders.bids.id)
    assert sorted(whole.branches.id) == sorted(inst.branches.id)


def test_split_refuses_a_foreign_non_empty_folder_and_replaces_a_layout(example_layout, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["split", str(builtin_path()), str(foreign)]) == 2
    assert "not an operator layout" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "keep me"
    again = tmp_path / "again"
    assert main(["split", str(builtin_path()), str(again)]) == 0
    assert main(["split", str(builtin_path()), str(again)]) == 0  # a layout may be replaced


def test_an_edited_operator_file_is_named_in_one_line(example_layout, tmp_path, capsys):
    import shutil

    lay = tmp_path / "edited"
    shutil.copytree(example_layout, lay)
    dso = read_index(lay).folders[1]
    bids = Path(dso.path) / "Bids.csv"
    bids.write_text(bids.read_text() + "1\n")  # a changed file (the checksum of the index no longer matches)
    assert main(["info", str(lay)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and dso.area in err and "changed" in err


def test_a_layout_error_names_the_operator_file_row_and_column(example_layout, tmp_path, capsys):
    import shutil

    from tdmarket.io.checksum import input_sha256

    lay = tmp_path / "bad"
    shutil.copytree(example_layout, lay)
    dso = read_index(lay).folders[2]
    bids = Path(dso.path) / "Bids.csv"
    lines = bids.read_text().splitlines()
    cells = lines[1].split(",")
    cells[9] = "2"  # Xlb > 1: found by the checks of the assembled instance (tdmarket.model.validate)
    lines[1] = ",".join(cells)
    bids.write_text("\n".join(lines) + "\n")
    index = (lay / INDEX).read_text().replace(dso.sha256, input_sha256(dso.path))
    (lay / INDEX).write_text(index)
    assert main(["info", str(lay)]) == 2
    err = capsys.readouterr().err
    assert f"{Path(dso.path).name}/Bids.csv" in err and "row 2" in err and "Xlb" in err


@pytest.mark.parametrize("scheme", ["hierarchical", "common"])
def test_clearing_the_layout_gives_the_instance_result(example_layout, scheme):
    inst = read(builtin_path())
    kw = dict(executor="inline") if scheme == "hierarchical" else {}
    ref = tdmarket.clear(inst, scheme=scheme, **kw)
    got = tdmarket.clear(str(example_layout), scheme=scheme, **kw)
    assert got.total_cost == pytest.approx(ref.total_cost, rel=1e-7, abs=1e-6)
    if scheme == "hierarchical":  # same operators' work, same messages
        assert got.total_cost == ref.total_cost
        assert got.summary["communication"] == ref.summary["communication"]
        pd_cols = ["area", "period", "export_mw", "interface_price_eur_mwh"]
        assert got.tables["interfaces"][pd_cols].equals(ref.tables["interfaces"][pd_cols])
    # the settlement covers every order (the operator folders are assembled for it)
    for key in ("uplift_eur", "merchandising_surplus_eur"):
        assert got.summary["settlement"][key] == pytest.approx(ref.summary["settlement"][key], rel=1e-6, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["three-node", "italy-693"])
def test_clearing_a_split_smartnet_instance_gives_the_same_result(name, tmp_path):
    inst = read(shared_path(name))
    out = tmp_path / name
    write_layout(inst, out)
    _same_sub_instances(inst, out)
    for scheme, kw in (("hierarchical", {"executor": "inline"}), ("common", {})):
        ref = tdmarket.clear(inst, scheme=scheme, incentives=False, **kw)
        got = tdmarket.clear(str(out), scheme=scheme, incentives=False, **kw)
        assert got.total_cost == pytest.approx(ref.total_cost, rel=1e-7, abs=1e-6), scheme


def test_italy_652_splits_into_folders_that_rebuild_every_operator(tmp_path):
    inst = read(shared_path("italy-652"))
    out = tmp_path / "italy-652"
    write_layout(inst, out)
    assert len(read_index(out).folders) == 51
    _same_sub_instances(inst, out)


def test_the_tso_process_never_opens_a_dso_file(example_layout, tmp_path):
    """Run in a fresh interpreter with an audit hook on every `open`: the hierarchical clearing of the layout
    (DSO agents on worker processes) opens the index and the TSO folder only; each worker reads its own DSO
    folder (the agents' models are built there)."""
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys
            from pathlib import Path
            import tdmarket

            LAYOUT = Path({str(example_layout)!r}).resolve()
            opened = []

            def hook(event, args):
                if event == "open" and isinstance(args[0], (str, bytes)) and not isinstance(args[0], int):
                    p = args[0].decode() if isinstance(args[0], bytes) else args[0]
                    if str(LAYOUT) in str(Path(p).resolve()):
                        opened.append(str(Path(p).resolve().relative_to(LAYOUT)))

            if __name__ == "__main__":
                sys.addaudithook(hook)
                r = tdmarket.clear(str(LAYOUT), scheme="hierarchical", executor="process", workers=2,
                                   incentives=False)
                print(json.dumps({{"opened": sorted(set(opened)), "cost": r.total_cost}}))
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=300)
    import json

    record = json.loads(out.stdout.strip().splitlines()[-1])
    folders = {Path(p).parts[0] for p in record["opened"]}
    assert folders == {INDEX, "TSO"}, record["opened"]
    assert record["cost"] == pytest.approx(
        tdmarket.clear(builtin_path(), scheme="hierarchical", executor="inline").total_cost
    )


def test_agents_get_a_folder_not_a_sub_instance(example_layout):
    lay = read_index(example_layout)
    data = lay.agent_data(1)
    assert isinstance(data, OperatorFolder)
    assert data.up is not None and data.up.area == lay.areas.name[1]
    import pickle

    assert len(pickle.dumps(data)) < 1000  # what crosses to the worker is a path and the interface rows


def test_generate_writes_an_operator_layout(tmp_path):
    pytest.importorskip("simbench")
    from tdmarket.generate.system import MARKER, GenerateOptions, generate_system

    opts = GenerateOptions(dsos=4, periods=2, seed=1, transmission="case118", sub_dso_depth=1)
    flat, lay = tmp_path / "flat", tmp_path / "lay"
    generate_system(flat, opts)
    generate_system(lay, opts, layout="operators")
    assert (lay / MARKER).is_file() and (lay / INDEX).is_file()
    inst = read(flat)
    assert read_index(lay).areas.name == inst.areas.name  # sub-DSOs included
    _same_sub_instances(inst, lay)
    ref = tdmarket.clear(inst, scheme="hierarchical", executor="inline", relax=True, incentives=False)
    got = tdmarket.clear(str(lay), scheme="hierarchical", executor="inline", relax=True, incentives=False)
    assert got.total_cost == ref.total_cost


def test_commands_read_the_layout(example_layout, capsys):
    import json

    assert main(["info", str(example_layout), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert main(["info", str(builtin_path()), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["network"] == info["network"]
    ref = tdmarket.clear(builtin_path(), scheme="hierarchical", executor="inline")
    argv = ["clear", str(example_layout), "--scheme", "hierarchical", "--executor", "inline", "--quiet", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["cost"]["total_cost_eur"] == ref.total_cost
