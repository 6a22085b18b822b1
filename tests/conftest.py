"""Fixtures shared by several test modules (instances are read-only, so one copy per session)."""

from __future__ import annotations

import shutil

import pytest

import tdmarket
from tdmarket.examples import builtin_path


@pytest.fixture(scope="session")
def builtin():
    """The built-in example instance."""
    return tdmarket.load(builtin_path())


@pytest.fixture(scope="session")
def three_level(tmp_path_factory):
    """The built-in example with area DSO-201 split at line 22 (202–203): DSO-203 = {203, 204} is its sub-DSO."""
    folder = tmp_path_factory.mktemp("three_level") / "case"
    shutil.copytree(builtin_path(), folder)
    (folder / "SubAreas.csv").write_text("Edge,Area\n22,DSO-203\n")
    return tdmarket.load(folder)
