"""The scheme registry: ids and aliases, option groups, and CONTRIBUTING.md's worked example run as written."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

import tdmarket
from tdmarket.errors import InputError
from tdmarket.schemes import registry

ROOT = Path(__file__).resolve().parents[1]
from casebuilder import SHARED  # noqa: E402


def test_builtin_schemes_ids_aliases_and_settlement():
    assert registry.names() == [
        "centralized",
        "common",
        "hierarchical",
        "centralized-as-market",
        "local-as-market",
        "shared-balancing",
        "no-coordination",
    ]
    assert registry.get("common") is registry.get("centralized")
    assert registry.comparison_ids()[0] == "common"
    assert not registry.get("shared-balancing").settles_at_interface
    assert registry.get("hierarchical").accepts("gap") and not registry.get("common").accepts("gap")
    with pytest.raises(InputError, match="unknown scheme 'nope'"):
        registry.get("nope")


def test_unknown_option_is_an_error_and_foreign_options_are_ignored(builtin):
    with pytest.raises(InputError, match="unknown option"):
        tdmarket.clear(builtin, scheme="common", relax=True, bogus=1)
    # a decomposition option is ignored by a scheme that does not take it (one option set drives `compare`)
    res = tdmarket.clear(builtin, scheme="common", relax=True, gap=1e-3, incentives=False)
    assert res.total_cost > 0


@pytest.mark.skipif(not (SHARED / "three-node").is_dir(), reason="shared SmartNet data not found")
def test_contributing_example_scheme_runs_as_documented(monkeypatch):
    text = (ROOT / "CONTRIBUTING.md").read_text()
    code = re.search(r"`tdmarket/schemes/t_only.py`:\n\n```python\n(.*?)```", text, re.S).group(1)
    module = types.ModuleType("tdmarket.schemes.t_only")
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    exec(compile(code, "CONTRIBUTING.md", "exec"), module.__dict__)
    res = tdmarket.clear(SHARED / "three-node", scheme="t-only")
    assert abs(res.total_cost - 22.001021) < 1e-5
    assert res.tables["interfaces"].export_mw.abs().max() < 1e-7
    assert "settlement" in res.summary or "incentives" in res.summary
