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


@pytest.fixture(scope="session")
def example_federation():
    """The shipped example federation (built-in example `north` + its variant `south`, two interconnectors)."""
    from tdmarket.examples import federation_path
    from tdmarket.io.federation import read_federation

    return read_federation(federation_path())


@pytest.fixture(scope="session")
def example_federation_hierarchical(example_federation):
    """The example federation cleared by the hierarchical platform scheme (relaxed, inline): ~4 s, shared."""
    from tdmarket.federation import clear_federation

    return clear_federation(example_federation, "hierarchical", relax=True, executor="inline")


@pytest.fixture
def hierarchical_exchange(monkeypatch):
    """A context manager: inside `with hierarchical_exchange(milp_level=False):` the hierarchical scheme's cut
    exchanges run with those `ExchangeSettings` fields changed (e.g. a setting that has no user option)."""
    import contextlib
    import dataclasses

    from tdmarket.decomposition.exchange import ExchangeSettings
    from tdmarket.schemes import hierarchical

    @contextlib.contextmanager
    def changed(**fields):
        with monkeypatch.context() as m:
            m.setattr(
                hierarchical,
                "ExchangeSettings",
                lambda **kw: dataclasses.replace(ExchangeSettings(**kw), **fields),
            )
            yield

    return changed
