"""Write a `ClearingResult` to a results folder atomically (temp folder, then rename), and read one back.

Layout: one CSV per table (plus Parquet when pyarrow is installed), `summary.json` (with the `provenance`
record of `tdmarket.api.provenance`), and `messages.jsonl` when operators exchanged messages.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_dir


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def dumps(obj) -> str:
    return json.dumps(_jsonable(obj), indent=2, sort_keys=False)


def write_results(result, out_dir: str | os.PathLike, *, parquet: bool | None = None) -> Path:
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise InputError("output path exists and is not a folder", file=str(out))
    if parquet is None:
        try:
            import pyarrow  # noqa: F401

            parquet = True
        except ImportError:
            parquet = False
    with atomic_dir(out) as tmp:
        write_result_files(result, tmp, parquet=parquet)
    return out


def write_result_files(result, folder: Path, *, parquet: bool) -> None:
    """The files of a results folder, written into the existing `folder` (the caller makes it atomic)."""
    for name, frame in sorted(result.tables.items()):
        frame.to_csv(folder / f"{name}.csv", index=False, float_format="%.10g")
        if parquet:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
    (folder / "summary.json").write_text(dumps(result.summary) + "\n")
    if result.messages:
        with open(folder / "messages.jsonl", "w") as fh:
            for msg in result.messages:
                fh.write(json.dumps(_jsonable(msg), sort_keys=True) + "\n")


def read_results(folder: str | os.PathLike, *, exclude: tuple[str, ...] = ()):
    """A `ClearingResult` from a results folder written by `write_results` (Parquet tables when present, so
    that column types survive; CSV otherwise).  Tables named in `exclude` are not read."""
    import pandas as pd

    from ..schemes.result import ClearingResult

    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text())
    tables = {}
    for path in sorted(folder.glob("*.csv")):
        if path.stem in exclude:
            continue
        pq = path.with_suffix(".parquet")
        if pq.exists():
            try:
                tables[path.stem] = pd.read_parquet(pq)
                continue
            except ImportError:
                pass
        tables[path.stem] = pd.read_csv(path)
    messages = []
    if (folder / "messages.jsonl").exists():
        with open(folder / "messages.jsonl") as fh:
            messages = [json.loads(line) for line in fh if line.strip()]
    return ClearingResult(
        scheme=summary.get("scheme", folder.name),
        instance=summary.get("instance", ""),
        tables=tables,
        summary=summary,
        messages=messages,
    )
