"""Options of `tdmarket.clear` and the comparison are checked in one place (issue 14, items 9 and 10): a bad
value is an `InputError` naming the option and what it accepts, before anything is read or solved; the command
line prints it on one line and exits with 2."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tdmarket
from tdmarket.api import OPTION_RULES
from tdmarket.cli import main
from tdmarket.errors import InputError
from tdmarket.examples import builtin_path
from tdmarket.reporting.compare import run_comparison
from tdmarket.schemes import registry

WORKTREE = Path(__file__).resolve().parents[1]

BAD = [  # (keyword, value, what the message must say)
    ("mip_gap", -1, "mip_gap = -1 is invalid: must be a finite number in [0, 1]"),
    ("mip_gap", float("nan"), "mip_gap = nan is invalid"),
    ("threads", 0, "threads = 0 is invalid: must be an integer in [1, 1024]"),
    ("threads", 2.5, "threads = 2.5 is invalid: must be an integer"),
    ("time_limit", -5, "time_limit = -5 is invalid: must be a finite number in (0, 1000000000] s or None"),
    ("relax", "no", "relax = 'no' is invalid: must be True or False"),
    ("relax", 1, "relax = 1 is invalid: must be True or False"),
    ("workers", 0, "workers = 0 is invalid: must be an integer in [1, 1024] or None"),
    ("slack_penalty", "1e4", "slack_penalty = '1e4' is invalid: must be a finite number in (0, 1000000000] €/MWh"),
    ("slack_penalty", True, "slack_penalty = True is invalid"),
    ("dist_model", "ac", "dist_model = 'ac' is invalid: must be one of 'socp', 'lindistflow'"),
    ("executor", "threads", "executor = 'threads' is invalid: must be one of 'process', 'inline', 'ray'"),
    ("gap", 1.5, "gap = 1.5 is invalid: must be a finite number in (0, 1)"),
    ("max_evals", 1, "max_evals = 1 is invalid: must be an integer in [2, 1000000]"),
    ("progress", "yes", "progress = 'yes' is invalid: must be a function or None"),
]


def test_every_option_has_a_rule():
    assert set(OPTION_RULES) == set(registry.ALL_OPTIONS)


@pytest.mark.parametrize(("name", "value", "message"), BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_clear_rejects_bad_option_values_before_reading(name, value, message, monkeypatch):
    def no_reading(*args, **kwargs):
        raise AssertionError("read the instance before checking the options")

    monkeypatch.setattr("tdmarket.io.read", no_reading)
    with pytest.raises(InputError) as info:
        tdmarket.clear(str(builtin_path()), scheme="hierarchical", **{name: value})
    assert message in str(info.value)


@pytest.mark.parametrize("instance", [None, 123, 1.5, ["a"]])
def test_clear_rejects_what_is_neither_an_instance_nor_a_path(instance):
    with pytest.raises(InputError, match="instance must be an Instance .* or the path of an instance folder, got"):
        tdmarket.clear(instance)


def test_clear_rejects_unknown_options_and_names_the_known_ones():
    with pytest.raises(InputError, match=r"unknown option\(s\) mipgap \(known: .*mip_gap"):
        tdmarket.clear(str(builtin_path()), mipgap=0.1)


def test_comparison_rejects_a_bad_option_once_before_any_scheme(builtin):
    with pytest.raises(InputError, match="threads = 0"):
        run_comparison(builtin, ["common", "hierarchical"], threads=0)


def test_good_options_still_clear(builtin):
    res = tdmarket.clear(builtin, scheme="common", relax=True, mip_gap=0.0, threads=1, time_limit=None, workers=None)
    assert res.summary["slack"]["p_mw"] < 1e-6


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--mip-gap", "-1"], "--mip-gap = -1.0 is invalid"),
        (["--threads", "0"], "--threads = 0 is invalid"),
        (["--time-limit", "-5"], "--time-limit = -5.0 is invalid"),
        (["--workers", "0", "--scheme", "hierarchical"], "--workers = 0 is invalid"),
        (["--slack-penalty", "nan"], "--slack-penalty = nan is invalid"),
        (["--max-file-mb", "0"], "--max-file-mb = 0.0 is invalid"),
    ],
)
def test_cli_prints_one_line_and_exits_2(argv, fragment, capsys):
    assert main(["clear", "--example", "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tdmarket: error: ") and fragment in err and len(err.strip().splitlines()) == 1


def test_compare_without_pandapower_skips_the_ac_check_with_a_note(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["pandapower"] = None  # `import pandapower` now fails as if it were not installed
        from tdmarket.cli import main
        sys.exit(main(["compare", "--example", "--schemes", "common", "--relax", "--quiet",
                       "--report", {str(tmp_path / "report.html")!r}]))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=WORKTREE, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "AC check skipped: pandapower not installed" in out.stdout
    assert (tmp_path / "report.html").is_file()


def test_info_json_into_a_closed_pipe_ends_quietly():
    """`tdmarket info --json | head -0`: no BrokenPipeError traceback, exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tdmarket", "info", "--example", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=WORKTREE,
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err
