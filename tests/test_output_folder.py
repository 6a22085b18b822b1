"""`clear --out DIR` never deletes data it did not write, and a folder it cannot write fails before solving
(issue 14, items 1 and 9)."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from tdmarket.cli import main
from tdmarket.examples import builtin_path
from tdmarket.reporting.writer import RESULTS_MARKER

CLEAR = ["clear", "--scheme", "common", "--relax", "--quiet"]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A working folder with a copy of the built-in example (`inst`) and a folder of someone else's (`mine`)."""
    shutil.copytree(builtin_path(), tmp_path / "inst")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def no_solving(monkeypatch):
    """The refusals must come before any clearing."""

    def fail(*args, **kwargs):
        raise AssertionError("solved before checking --out")

    monkeypatch.setattr("tdmarket.api.clear", fail)


def _snapshot(folder):
    return sorted((p.relative_to(folder).as_posix(), p.read_bytes()) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("out", "force", "why"),
    [
        (".", False, "working folder"),
        (".", True, "working folder"),
        ("..", True, "working folder"),
        ("inst", False, "holds the input instance"),
        ("inst", True, "holds the input instance"),
        ("mine", False, "was not written by tdmarket"),
    ],
)
def test_out_refuses_folders_it_did_not_write(workspace, no_solving, capsys, out, force, why):
    before = _snapshot(workspace)
    rc = main(["clear", "inst", *CLEAR[1:], "--out", out] + (["--force"] if force else []))
    err = capsys.readouterr().err
    assert rc == 2
    assert why in err and len(err.strip().splitlines()) == 1 and err.startswith("tdmarket: error: ")
    assert _snapshot(workspace) == before


def test_out_refuses_the_example_folder_itself(workspace, no_solving, capsys):
    rc = main(["clear", "--example", *CLEAR[1:], "--out", str(builtin_path()), "--force"])
    assert rc == 2 and "holds the input instance" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["afile/results", "afile/deeper/results", "afile"])
def test_out_that_cannot_be_created_fails_before_solving(workspace, no_solving, capsys, out):
    (workspace / "afile").write_text("a file, not a folder\n")
    assert main(["clear", "inst", *CLEAR[1:], "--out", out]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and ("not a folder" in err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_a_read_only_folder_fails_before_solving(workspace, no_solving, capsys):
    locked = workspace / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert main(["clear", "inst", *CLEAR[1:], "--out", "locked/results"]) == 2
        assert "no permission" in capsys.readouterr().err
    finally:
        locked.chmod(stat.S_IRWXU)


def test_out_writes_a_marked_readable_folder_and_replaces_only_its_own(workspace, capsys):
    old_mask = os.umask(0o022)
    try:
        assert main(["clear", "inst", *CLEAR[1:], "--out", "results"]) == 0
    finally:
        os.umask(old_mask)
    results = workspace / "results"
    assert (results / RESULTS_MARKER).is_file() and (results / "summary.json").is_file()
    assert stat.S_IMODE(results.stat().st_mode) == 0o755  # like mkdir under umask 022, not 0700
    assert stat.S_IMODE((results / "summary.json").stat().st_mode) == 0o644
    (results / "stale.csv").write_text("from an earlier run\n")
    assert main(["clear", "inst", *CLEAR[1:], "--out", "results"]) == 0  # its own folder: replaced
    assert not (results / "stale.csv").exists()
    # someone else's folder: only with --force, and then it is replaced
    assert main(["clear", "inst", *CLEAR[1:], "--out", "mine", "--force"]) == 0
    assert not (workspace / "mine" / "notes.txt").exists() and (workspace / "mine" / RESULTS_MARKER).is_file()
    assert _snapshot(workspace / "inst") == _snapshot(builtin_path())  # the input is untouched
    capsys.readouterr()


def test_empty_existing_folder_is_used(workspace, capsys):
    (workspace / "empty").mkdir()
    assert main(["clear", "inst", *CLEAR[1:], "--out", "empty"]) == 0
    assert (workspace / "empty" / "summary.json").is_file()


def test_compare_report_that_cannot_be_written_fails_before_solving(workspace, no_solving, capsys):
    (workspace / "afile").write_text("x\n")
    assert main(["compare", "inst", "--schemes", "common", "--quiet", "--report", "afile/report.html"]) == 2
    assert main(["compare", "inst", "--schemes", "common", "--quiet", "--report", "mine"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not a folder" in err[0] and "is a folder" in err[1]
