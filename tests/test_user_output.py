"""What a user sees: numbers without solver noise, logging and progress, provenance, DataFrame input, docs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import tdmarket
from tdmarket.cli import main
from tdmarket.cli.progress import ProgressDisplay
from tdmarket.examples import builtin_path
from tdmarket.io import from_frames
from tdmarket.io.checksum import input_sha256
from tdmarket.reporting.numbers import fmt, fmt_eur, fmt_percent, relative_gap

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1.73e-12, "MW", "0"),  # solver noise
        (-4e-7, "MW", "0"),
        (5.61, "MW", "5.61"),
        (0.0792, "MW", "0.0792"),
        (99.9999999, "", "100"),  # rounding that crosses a magnitude keeps 4 significant digits
        (1234567.891, "", "1,234,568"),
        (float("nan"), "MW", "-"),
        (3.0, "count", "3"),
    ],
)
def test_fmt(value, unit, text):
    assert fmt(value, unit) == text


def test_money_and_percentages():
    assert fmt_eur(57788.0412) == "57,788.04"
    assert fmt_eur(0.001) == "0" and fmt_eur(-27.3123, sign=True) == "-27.31"
    assert fmt_percent(0.0) == "0 %" and fmt_percent(3e-9) == "0 %"  # no "+0.0000 %"
    assert fmt_percent(1.04e-7 * 10) == "+<0.001 %"
    assert fmt_percent(0.08789) == "+8.79 %"
    assert fmt_percent(None) == "-"
    assert relative_gap(1729.49, 1589.75) == pytest.approx(0.0879, abs=1e-4)
    assert relative_gap(4_778_004, 1746.17) is None  # ×2736: the base is about zero on this scale
    assert relative_gap(5.0, 0.3) is None  # a base below 1 €


def test_compare_text_table_has_units_and_no_noise(capsys, tmp_path):
    report = str(tmp_path / "r.html")
    assert (
        main(["compare", "--example", "--schemes", "common,no-coordination", "--no-ac", "--quiet", "--report", report])
        == 0
    )
    out = capsys.readouterr().out
    head = out.splitlines()[0]
    for column in ("total cost €", "gap €", "gap %", "slack MW"):
        assert column in head
    assert "e-1" not in out and "+0.0000" not in out and "inf" not in out
    assert "+4,233 %" in out  # no-coordination: meaningful percentage, thousands separated


# ------------------------------------------------------------------------------------- logging, progress
def _records(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tdmarket.cli.progress"]


def test_progress_lines_in_a_log_are_few_and_plain(caplog):
    """Not a terminal: one line at the end of each stage, at most one per interval in between, no bars."""
    now = [0.0]
    display = ProgressDisplay(interactive=False, interval_s=10.0, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="tdmarket")
    for i in range(1, 201):  # 200 DSO curves, 0.1 s apart
        now[0] += 0.1
        display({"stage": "curves (level 1)", "label": f"DSO-{i}", "done": i, "total": 200})
    for k in range(1, 31):  # 30 cut rounds with their evaluation bars, 1 s apart
        for i in range(1, 201):
            display({"stage": f"lp {k}", "label": f"DSO-{i}", "done": i, "total": 200})
        now[0] += 1.0
        display(
            {"stage": "iterate", "iteration": k, "master": "lp", "lower_bound": 100.0 + k, "upper_bound": 200.0,
             "gap_eur": 100.0 - k}
        )  # fmt: skip
    display({"stage": "dispatch", "label": "DSO-1", "done": 1, "total": 1})
    display.close()
    lines = _records(caplog)
    assert len(lines) <= 12, lines
    assert lines[-2].startswith("cut exchange round 30")  # where the exchange ended, before the next stage
    assert "curves (level 1): 200/200 done" in lines and "dispatch: 1/1 done" in lines
    assert not any("\r" in line for line in lines)


def test_progress_bars_on_a_terminal_and_log_lines_around_them(capsys):
    from tdmarket.cli.progress import configure_logging, progress_display

    configure_logging(quiet=False)
    display = progress_display(quiet=False)
    display.interactive = True  # as if stderr were a terminal
    for i in range(1, 4):
        display({"stage": "curves (level 1)", "label": f"DSO-{i}", "done": i, "total": 3})
        if i == 2:
            logging.getLogger("tdmarket.test").warning("a warning while the bar is drawn")
    display(
        {"stage": "iterate", "iteration": 1, "master": "lp", "lower_bound": 1.0, "upper_bound": 2.0, "gap_eur": 1.0}
    )
    display.close()
    err = capsys.readouterr().err
    assert "\r" in err and "curves (level 1)" in err  # a tqdm bar
    assert "tdmarket: warning: a warning while the bar is drawn\n" in err
    assert "tdmarket: curves (level 1): 3/3 done" in err and "tdmarket: cut exchange round 1" in err
    configure_logging(quiet=False)
    progress_display(quiet=True)


def test_clear_cli_logs_plain_lines_to_a_non_terminal():
    proc = subprocess.run(
        [sys.executable, "-m", "tdmarket", "clear", "--example", "--scheme", "hierarchical", "--executor", "inline"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr  # no redrawn bars, no terminal codes
    assert lines and all(line.startswith("tdmarket: ") for line in lines), lines
    assert any("cut exchange round" in line for line in lines)
    assert len(lines) < 15
    quiet = subprocess.run(
        [sys.executable, "-m", "tdmarket", "clear", "--example", "--scheme", "common", "--relax", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_reader_warnings_go_through_logging(tmp_path, caplog, capsys):
    folder = tmp_path / "case"
    folder.mkdir()
    for f in builtin_path().glob("*.csv"):
        (folder / f.name).write_bytes(f.read_bytes())
    bids = pd.read_csv(folder / "Bids.csv")
    bids["Xlb"] = bids["Xlb"].astype(float)
    bids.loc[0, "Xlb"] = 0.5  # accepted with a warning (docs/format.md, Bids.csv)
    bids.to_csv(folder / "Bids.csv", index=False)
    with caplog.at_level(logging.WARNING, logger="tdmarket"):
        inst = tdmarket.load(folder)
    assert inst.warnings and any(r.levelno == logging.WARNING and r.name == "tdmarket.io" for r in caplog.records)
    assert main(["info", str(folder)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("tdmarket: warning: ") and "minimum acceptance ratio" in err


# ------------------------------------------------------------------------------------------- provenance
def test_every_summary_has_provenance(tmp_path):
    out = tmp_path / "res"
    assert main(["clear", "--example", "--scheme", "common", "--relax", "--quiet", "--out", str(out)]) == 0
    prov = json.loads((out / "summary.json").read_text())["provenance"]
    assert prov["tdmarket"] == tdmarket.__version__
    assert prov["python"].count(".") == 2
    assert set(prov["solvers"]) == {"highspy", "clarabel"} and all(prov["solvers"].values())
    assert prov["options"]["relax"] is True and prov["options"]["slack_penalty"] == 1e4
    assert "progress" not in prov["options"]
    assert prov["created_utc"].endswith("Z")
    # the documented recipe: SHA-256 over the CSV files in name order, each as name NUL size NUL bytes
    digest = hashlib.sha256()
    for f in sorted(builtin_path().glob("*.csv"), key=lambda p: p.name):
        digest.update(f.name.encode() + b"\0" + str(f.stat().st_size).encode() + b"\0" + f.read_bytes())
    assert prov["instance"]["input_sha256"] == digest.hexdigest() == input_sha256(builtin_path())


# ---------------------------------------------------------------------------------------- DataFrame input
def test_from_frames_reads_like_a_folder(builtin):
    tables = {f.stem: pd.read_csv(f) for f in builtin_path().glob("*.csv")}
    inst = from_frames(tables, name="builtin")
    assert inst.fingerprint() == builtin.fingerprint()
    bad = dict(tables)
    bad["Bids"] = tables["Bids"].drop(columns="Xlb")
    with pytest.raises(tdmarket.InputError, match="Bids.csv"):
        from_frames(bad)
    with pytest.raises(tdmarket.InputError, match="not a pandas DataFrame"):
        from_frames({"Bids": [1, 2]})


def test_quickstart_example_runs_and_plots(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "quickstart: 5 buses, 2 periods, 8 segments" in proc.stdout
    costs = [line.split("total cost ")[1] for line in proc.stdout.splitlines() if "total cost" in line]
    assert len(costs) == 2 and costs[0] == costs[1]  # hierarchical = common on this uncongested feeder
    png = tmp_path / "quickstart.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


# ------------------------------------------------------------------------------------------------- docs
@pytest.mark.parametrize("command", [[], ["info"], ["clear"], ["compare"], ["variant"], ["split"]])
def test_every_help_points_to_the_docs_in_the_repository(command):
    out = subprocess.run(
        [sys.executable, "-m", "tdmarket", *command, "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    assert "docs/format.md" in out and "docs/model.md" in out
    for name in ("docs/format.md", "docs/model.md"):
        assert (ROOT / name).is_file()


def test_readme_cites_only_documents_in_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "MODEL.md" not in readme and "docs/format.md" in readme and "docs/model.md" in readme


def test_gap_to_centralized_names_the_references_own_mip_gap(capsys, builtin):
    """A scheme can land below a reference that stopped at its MIP gap: the line says at which gap it stopped."""
    from tdmarket.cli.summary import print_summary

    base = tdmarket.clear(builtin, scheme="centralized", relax=True, incentives=False).summary
    base["timings_s"]["wall"] = 12.0
    for ref_gap, shown in ((6.1e-4, "at MIP gap 0.061 %"), (0.0, None)):
        summary = {
            **base,
            "gap_to_centralized": {
                "centralized_wall_s": 3.0,
                "centralized_cost_eur": -3732.28,
                "hierarchical_cost_eur": -3733.71,
                "gap": -3.8e-4,
                "centralized_mip_gap": ref_gap,
            },
        }
        print_summary(summary)
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("gap to central."))
        assert "-1.43 €" in line and "in 3.00 s" in line
        assert (shown in line) if shown else ("MIP gap" not in line)


def test_every_option_of_every_command_has_help():
    """`--help` explains every option of every command (a bare option in `compare --help` was found by hand)."""
    import argparse

    from tdmarket.cli.parser import build_parser

    missing = []
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += [
                    f"{name} {a.option_strings or a.dest}"
                    for a in sub._actions
                    if not isinstance(a, argparse._HelpAction) and not a.help
                ]
    assert missing == []
