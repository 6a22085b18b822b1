"""`compare --out DIR` saves each scheme as it finishes and resumes (tdmarket/reporting/resume.py)."""

from __future__ import annotations

import json
import shutil

import pytest

import tdmarket.api
from tdmarket.errors import InputError
from tdmarket.examples import builtin_path
from tdmarket.reporting.compare import run_comparison

FAST = ("common", "shared-balancing")  # two quick schemes of the built-in example
OPTIONS = dict(executor="inline", ac=False)


@pytest.fixture
def counted_clear(monkeypatch):
    """`tdmarket.api.clear`, recording the schemes it clears (run_comparison looks it up at call time)."""
    calls = []
    real = tdmarket.api.clear

    def clear(inst, scheme="centralized", **kw):
        calls.append(scheme)
        return real(inst, scheme=scheme, **kw)

    monkeypatch.setattr(tdmarket.api, "clear", clear)
    return calls


def test_second_run_loads_saved_schemes_and_clears_only_the_new_one(builtin, tmp_path, counted_clear):
    out = tmp_path / "cmp"
    first = run_comparison(builtin, FAST, out=out, **OPTIONS)
    assert counted_clear == list(FAST) and first.loaded == []
    for scheme in FAST:
        summary = json.loads((out / scheme / "summary.json").read_text())
        assert summary["provenance"]["instance"]["input_sha256"] == builtin.input_sha256
    counted_clear.clear()
    second = run_comparison(builtin, (*FAST, "no-coordination"), out=out, **OPTIONS)
    assert counted_clear == ["no-coordination"]  # the first two were loaded, not recomputed
    assert second.loaded == list(FAST)
    assert any(n.startswith("common: loaded from") for n in second.notes)
    for scheme in FAST:
        old, new = first.rows.set_index("scheme").loc[scheme], second.rows.set_index("scheme").loc[scheme]
        assert new.total_cost_eur == pytest.approx(old.total_cost_eur, abs=1e-9)
        assert new.wall_s == pytest.approx(old.wall_s)  # the saved wall time, not the load time
        pd_old, pd_new = first.results[scheme].tables["buses"], second.results[scheme].tables["buses"]
        assert list(pd_new.columns) == list(pd_old.columns)
        assert (pd_new.price_p_eur_mwh - pd_old.price_p_eur_mwh).abs().max() < 1e-9
    index = json.loads((out / "comparison.json").read_text())
    assert [r["scheme"] for r in index["rows"]] == [*FAST, "no-coordination"]
    assert index["loaded"] == list(FAST)


def test_changed_options_or_inputs_are_cleared_again(builtin, tmp_path, counted_clear):
    out = tmp_path / "cmp"
    run_comparison(builtin, ["common"], out=out, **OPTIONS)
    counted_clear.clear()
    run_comparison(builtin, ["common"], out=out, mip_gap=1e-5, **OPTIONS)
    assert counted_clear == ["common"]  # another MIP gap: another result
    counted_clear.clear()
    run_comparison(builtin, ["common"], out=out, mip_gap=1e-5, **OPTIONS | {"executor": "process"})
    assert counted_clear == []  # where the work runs does not change the result
    # the same data from files that differ (a trailing blank line): another checksum, cleared again
    folder = tmp_path / "case"
    shutil.copytree(builtin_path(), folder)
    with open(folder / "Bids.csv", "a") as fh:
        fh.write("\n")
    changed = tdmarket.load(folder)
    assert changed.fingerprint() == builtin.fingerprint() and changed.input_sha256 != builtin.input_sha256
    counted_clear.clear()
    run_comparison(changed, ["common"], out=out, mip_gap=1e-5, **OPTIONS)
    assert counted_clear == ["common"]


def test_an_interrupted_comparison_keeps_the_finished_schemes(builtin, tmp_path, monkeypatch, counted_clear):
    out = tmp_path / "cmp"
    real = tdmarket.api.clear

    def interrupted(inst, scheme="centralized", **kw):
        if scheme == "shared-balancing":
            raise KeyboardInterrupt
        return real(inst, scheme=scheme, **kw)

    monkeypatch.setattr(tdmarket.api, "clear", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(builtin, FAST, out=out, **OPTIONS)
    assert sorted(p.name for p in out.iterdir()) == ["common", "comparison.json"]  # no half-written folder
    assert [r["scheme"] for r in json.loads((out / "comparison.json").read_text())["rows"]] == ["common"]
    monkeypatch.setattr(tdmarket.api, "clear", real)
    calls = []
    monkeypatch.setattr(
        tdmarket.api,
        "clear",
        lambda inst, scheme="centralized", **kw: calls.append(scheme) or real(inst, scheme=scheme, **kw),
    )
    resumed = run_comparison(builtin, FAST, out=out, **OPTIONS)
    assert calls == ["shared-balancing"] and resumed.loaded == ["common"]


def test_out_must_be_new_empty_or_a_comparison_and_never_the_input(builtin, tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(InputError, match="not a comparison folder"):
        run_comparison(builtin, ["common"], out=foreign, **OPTIONS)
    assert (foreign / "holiday.jpg").read_bytes() == b"\xff\xd8"
    with pytest.raises(InputError, match="must not hold the input"):
        run_comparison(builtin, ["common"], out=builtin_path(), **OPTIONS)
    with pytest.raises(InputError, match="must not hold the input"):
        run_comparison(builtin, ["common"], out=builtin_path().parent, **OPTIONS)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_comparison(builtin, ["common"], out=empty, **OPTIONS).rows.scheme.tolist() == ["common"]


def test_cli_compare_out_resumes_and_says_so(tmp_path, capsys):
    from tdmarket.cli import main

    out = tmp_path / "cmp"
    args = ["compare", "--example", "--schemes", "common", "--no-ac", "--executor", "inline", "--out", str(out)]
    assert main(args) == 0
    first = capsys.readouterr()
    assert (out / "report.html").is_file() and (out / "common" / "summary.json").is_file()
    assert "tdmarket: common: saved to" in first.err
    assert main(args) == 0
    second = capsys.readouterr()
    assert "tdmarket: common: loaded from" in second.err and "note: common: loaded from" in second.out
