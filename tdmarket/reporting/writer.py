"""Write a `ClearingResult` to a results folder atomically (temp folder, then rename), and read one back.

Layout: one CSV per table (plus Parquet when pyarrow is installed), `summary.json` (with the `provenance`
record of `tdmarket.api.provenance`), `messages.jsonl` when operators exchanged messages, and the marker file
`.tdmarket-results`.

An existing folder is replaced only if it is empty or holds the marker (tdmarket wrote it), or with `force`;
never the working folder, one of its parents, the home folder or a folder that holds the input instance, even
with `force`.  `check_results_folder` applies these rules (and checks that the folder can be created) before
anything is solved; `write_results` applies them again just before writing.
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


RESULTS_MARKER = ".tdmarket-results"  # in every results folder: tdmarket may replace this folder


def _is_same_or_parent(folder: Path, path: Path) -> bool:
    return folder == path or folder in path.parents


def check_creatable(path: Path) -> None:
    """Raise `InputError` unless `path` can be created or replaced: its nearest existing ancestor is a folder
    we may write to (a file in the way or a read-only folder fails here, before any solving)."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot create it: {parent} is not a folder", file=str(path))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot create it: no permission to write in {parent}", file=str(path))


def check_results_folder(
    out_dir: str | os.PathLike, *, force: bool = False, protect: tuple[str | os.PathLike, ...] = ()
) -> Path:
    """The absolute results folder, or an `InputError` if it may not be written (module docstring);
    `protect` lists inputs (instance folders) the folder must not contain."""
    out = Path(out_dir).expanduser().resolve()
    cwd = Path.cwd().resolve()
    if _is_same_or_parent(out, cwd) or out == Path.home().resolve() or out == out.parent:
        raise InputError(
            "refusing to replace the working folder, one of its parents, the home folder or the root; "
            "give results a folder of their own",
            file=str(out),
        )
    for given in protect:
        source = Path(given).expanduser().resolve()
        if _is_same_or_parent(out, source):
            raise InputError(f"refusing to replace a folder that holds the input instance {source}", file=str(out))
    check_creatable(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise InputError("output path exists and is not a folder", file=str(out))
        foreign = not (out / RESULTS_MARKER).is_file() and any(out.iterdir())
        if foreign and not force:
            raise InputError(
                f"folder exists, is not empty and was not written by tdmarket (no {RESULTS_MARKER}); "
                "choose a new folder, or replace it with --force (force=True)",
                file=str(out),
            )
    return out


def write_results(
    result,
    out_dir: str | os.PathLike,
    *,
    parquet: bool | None = None,
    force: bool = False,
    protect: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Write the results folder atomically; the rules on an existing folder are `check_results_folder`'s."""
    out = check_results_folder(out_dir, force=force, protect=protect)
    if parquet is None:
        parquet = parquet_available()
    with atomic_dir(out) as tmp:
        write_result_files(result, tmp, parquet=parquet)
    return out


def write_result_files(result, folder: Path, *, parquet: bool) -> None:
    """The files of a results folder, written into the existing `folder` (the caller makes it atomic)."""
    from .. import __version__

    (folder / RESULTS_MARKER).write_text(f"results folder written by tdmarket {__version__}; it may replace it\n")
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


def parquet_available() -> bool:
    """Whether results can also be written as Parquet (pyarrow installed)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True
