"""The checksum of an instance's input files, recorded in every result's provenance.

`input_sha256(folder)` is the SHA-256 over the instance's CSV files in sorted name order: for each file its
name, a NUL byte, its size and its bytes.  Equal checksums mean byte-identical inputs, which is what
`tdmarket compare --out DIR` checks before it reuses a saved result.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK_BYTES = 1 << 20


def instance_files(folder: str | os.PathLike) -> list[Path]:
    """The CSV files of an instance folder (any case of `.csv`), sorted by name."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".csv"), key=lambda p: p.name)


def input_sha256(folder: str | os.PathLike) -> str:
    """SHA-256 (hex) over the instance's CSV files in sorted name order (name, size and content of each)."""
    digest = hashlib.sha256()
    for path in instance_files(folder):
        digest.update(path.name.encode() + b"\0" + str(path.stat().st_size).encode() + b"\0")
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK_BYTES):
                digest.update(chunk)
    return digest.hexdigest()
