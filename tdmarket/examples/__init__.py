"""Example instances shipped with tdmarket.

`builtin_path()` locates the small built-in SmartNet-format instance (`builtin/`, described in its README.md):
6 transmission nodes, three radial distribution areas, 3 periods and 40 order segments that use every order
feature of docs/model.md §4.  It is what `tdmarket info --example` and `tdmarket clear --example` read.

`federation_path()` locates the example federation (`federation/`: the built-in example as member `north`, a
seeded variant of it as member `south`, two interconnectors; docs/federation.md).
"""

from __future__ import annotations

import pathlib
from importlib.resources import files

__all__ = ["builtin_path", "federation_path"]


def builtin_path() -> pathlib.Path:
    """Folder of the built-in example instance, as a real directory on the file system.

    Located with `importlib.resources`, so it works from a source checkout and from an installed wheel.
    """
    res = files(__name__).joinpath("builtin")
    path = pathlib.Path(str(res))
    if not path.is_dir():  # e.g. imported from a zip archive: the CSV reader needs real files
        raise FileNotFoundError(f"built-in example folder not found on the file system: {res}")
    return path


def federation_path() -> pathlib.Path:
    """Folder of the example federation (`Members.csv`, `Interconnectors.csv`, member `south/`)."""
    path = builtin_path().parent / "federation"
    if not path.is_dir():
        raise FileNotFoundError(f"example federation folder not found on the file system: {path}")
    return path
