"""The package's layers import in one direction only (docs/README.md, "Import direction").

`model` defines the instance dataclasses that the readers in `io` build, so `io` sits just above `model`; the
built-in example is package data; `reporting` drives the API to compare schemes."""

from __future__ import annotations

import ast
from pathlib import Path

ORDER = [
    "errors",
    "examples",
    "model",
    "io",
    "formulations",
    "solvers",
    "market",
    "decomposition",
    "schemes",
    "operators",
    "generate",
    "api",
    "federation",
    "reporting",
    "cli",
]
ROOT = Path(__file__).resolve().parents[1] / "tdmarket"


def _layer(parts: tuple[str, ...]) -> str:
    return parts[0].removesuffix(".py")


def test_imports_go_one_way_even_inside_functions():
    rank = {n: i for i, n in enumerate(ORDER)}
    upward = []
    for f in sorted(ROOT.rglob("*.py")):
        rel = f.relative_to(ROOT)
        me = _layer(rel.parts)
        if me not in rank:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level >= 1 and node.module):
                continue
            pkg = rel.parent.parts
            base = pkg[: len(pkg) - (node.level - 1)]
            target = (base + tuple(node.module.split(".")))[0].removesuffix(".py")
            if target in rank and rank[target] > rank[me]:
                upward.append(f"{rel}:{node.lineno} {me} imports {target}")
    assert upward == []
