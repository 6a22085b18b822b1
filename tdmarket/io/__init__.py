"""Readers and writers (data layer).

`read(path, format=None, **options)` is the one entry point for instances: the format's parser turns the
input into a columnar `Instance` with provenance, then the format-neutral passes build the topology
(`tdmarket.model.topology`) and check the data (`tdmarket.model.validate`).
"""

from __future__ import annotations

import os
from importlib import import_module

from ..errors import InputError
from ..model.instance import Instance

FORMATS = ("smartnet",)  # module tdmarket.io.<name> provides detect(path) -> bool and parse(path, **options)
DEFAULT_FORMAT = "smartnet"


def detect(path: str | os.PathLike) -> str:
    """The first format whose `detect` recognises `path`, else the default format (whose parser then reports
    what is wrong with the path)."""
    for name in FORMATS:
        if import_module(f".{name}", __name__).detect(path):
            return name
    return DEFAULT_FORMAT


def read(path: str | os.PathLike, format: str | None = None, *, reference: str = "error", **options) -> Instance:
    """Read, build and check an instance.

    `format` is one of `FORMATS` (None: detected from `path`); `options` go to the format's parser (SmartNet:
    `edges_file`, `nonpositive_rating_unlimited`, `edge_pq_bounds`, see `smartnet.ReadOptions`).
    `reference="lowest"` keeps the lowest-id reference node of a transmission component that has several
    (with a warning) instead of rejecting the instance.  Any problem raises one `InputError`."""
    from ..model.topology import build_topology
    from ..model.validate import validate

    name = detect(path) if format is None else format
    if name not in FORMATS:
        raise InputError(f"unknown input format {format!r}; known formats: {', '.join(FORMATS)}", file=str(path))
    inst, splits = import_module(f".{name}", __name__).parse(path, **options)
    build_topology(inst, splits, reference=reference)
    return validate(inst)


__all__ = ["FORMATS", "detect", "read"]
