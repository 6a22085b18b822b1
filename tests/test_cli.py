"""Command-line behaviour that is not a clearing result."""

from __future__ import annotations

import subprocess
import sys


def test_closed_output_pipe_ends_quietly():
    """`tdmarket ... | head -1`: the reader closes the pipe; no BrokenPipeError traceback, exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tdmarket", "clear", "--example", "--scheme", "common", "--relax", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before anything is written (like `head -0`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err


def test_scheme_help_lists_the_registry():
    out = subprocess.run(
        [sys.executable, "-m", "tdmarket", "clear", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in ("centralized", "common", "hierarchical", "shared-balancing", "no-coordination", "--gap"):
        assert name in out
