"""Readers and writers (data layer).

`read(path, format=None, **options)` is the one entry point for instances: the format's parser turns the
input into a columnar `Instance` with provenance, then the format-neutral passes build the topology
(`tdmarket.model.topology`) and check the data (`tdmarket.model.validate`).
"""

from __future__ import annotations

import logging
import os
from importlib import import_module
from pathlib import Path

from ..errors import InputError
from ..model.instance import Instance

FORMATS = ("smartnet", "layout")  # module tdmarket.io.<name> provides detect(path) -> bool and parse(path, **options)
DEFAULT_FORMAT = "smartnet"

log = logging.getLogger(__name__)


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
    inst = validate(inst)
    if Path(path).is_dir():
        from .checksum import input_sha256

        inst.input_sha256 = input_sha256(path)
    for warning in inst.warnings:
        log.warning("%s", warning)
    return inst


def from_frames(tables, name: str = "frames", **options) -> Instance:
    """An instance from pandas DataFrames, one per SmartNet file (docs/format.md §2).

    `tables` maps a file name without `.csv` (``"Bids"``, ``"Edges"``, ...) to a DataFrame with that file's
    columns.  The tables are written as CSV files into a temporary folder named `name` and read from there
    with `read`, so they pass exactly the checks of a folder on disk and errors name the file
    (``Bids.csv``), editor row and column.  See `examples/quickstart.py`."""
    from .frames import instance_from_frames

    return instance_from_frames(tables, name, **options)


__all__ = ["FORMATS", "detect", "from_frames", "read"]
