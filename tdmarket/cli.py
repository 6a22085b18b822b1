"""Command-line interface: `tdmarket info|clear|compare ...`.

User errors (bad input data, bad options) print one line to stderr and exit with code 2; no traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import InputError, SolverError


def _instance_path(args) -> Path:
    if getattr(args, "example", False):
        from .examples import builtin_path
        return builtin_path()
    if args.path is None:
        raise InputError("give an instance folder or --example")
    return Path(args.path)


def _load(args):
    from .io.smartnet import read_instance
    inst = read_instance(_instance_path(args), edges_file=getattr(args, "edges_file", "Edges.csv"))
    for w in inst.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return inst


def cmd_info(args) -> int:
    from .model.stats import instance_stats, format_stats
    inst = _load(args)
    stats = instance_stats(inst)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tdmarket", description=__doc__.splitlines()[0])
    from . import __version__
    p.add_argument("--version", action="version", version=f"tdmarket {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add_instance_args(sp):
        sp.add_argument("path", nargs="?", help="instance folder in SmartNet CSV format")
        sp.add_argument("--example", action="store_true", help="use the built-in example instance")
        sp.add_argument("--edges-file", default="Edges.csv", help="edge file name (e.g. Edges_hard.csv)")

    info = sub.add_parser("info", help="print instance statistics (MODEL.md §10)")
    add_instance_args(info)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"tdmarket: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except SolverError as exc:
        print(f"tdmarket: solver error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("tdmarket: interrupted", file=sys.stderr)
        return 130
