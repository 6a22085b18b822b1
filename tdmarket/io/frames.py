"""Instances from pandas DataFrames (`tdmarket.io.from_frames`).

The DataFrames are written as SmartNet CSV files (docs/format.md) into a temporary folder and read back with
`tdmarket.io.read`, so an instance built in a notebook passes exactly the checks of one read from disk and an
error names the file, editor row and column as it would there.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..errors import InputError
from ..model.instance import Instance

_FILE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def write_frames(tables: Mapping[str, object], folder: str | Path) -> list[Path]:
    """Write each DataFrame of `tables` as `folder/<name>.csv` (no index column); returns the paths."""
    import pandas as pd

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in tables.items():
        stem = str(name).removesuffix(".csv")
        if not _FILE_NAME.match(stem):
            raise InputError(f"table name {name!r} is not a SmartNet file name (e.g. 'Bids', 'Edges')")
        if not isinstance(frame, pd.DataFrame):
            raise InputError(f"table {stem!r} is a {type(frame).__name__}, not a pandas DataFrame")
        path = folder / f"{stem}.csv"
        frame.to_csv(path, index=False, lineterminator="\n")
        paths.append(path)
    return paths


def instance_from_frames(tables: Mapping[str, object], name: str = "frames", **options) -> Instance:
    """Write `tables` into a temporary folder called `name` and read it (`tdmarket.io.read` options apply)."""
    from . import read

    if not isinstance(tables, Mapping):
        raise InputError(f"tables must be a mapping of file name to DataFrame, not {type(tables).__name__}")
    if not _FILE_NAME.match(name):
        raise InputError(f"instance name {name!r} must be letters, digits, hyphens and underscores")
    with tempfile.TemporaryDirectory(prefix="tdmarket-frames-") as tmp:
        folder = Path(tmp) / name
        write_frames(tables, folder)
        inst = read(folder, **options)
    inst.source = f"<DataFrames: {', '.join(str(k).removesuffix('.csv') for k in tables)}>"
    return inst
