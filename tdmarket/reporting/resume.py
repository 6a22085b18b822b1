"""The results folder of `tdmarket compare --out DIR`: saved scheme by scheme, resumed on the next run.

Layout::

    DIR/comparison.json          rows so far, notes, provenance of the comparison (rewritten after each scheme)
    DIR/<scheme>/                the scheme's results folder (`writer.write_results` layout, summary.json
                                 with its provenance), plus
    DIR/<scheme>/ac_check.csv    the AC check per (area, period), when it ran
    DIR/<scheme>/ac_lines.csv    the AC loading of every distribution branch and period, when it ran
    DIR/<scheme>/compare.json    wall time (s) of the clearing and whether the AC check ran

Each scheme folder is written atomically (temporary folder, then rename), so an interrupted comparison leaves
complete scheme folders only.  A scheme folder is reused when its `summary.json` provenance matches the run:
same tdmarket version, scheme, input checksum (SHA-256 of the instance files), instance fingerprint (the data
after options such as `--d-rating-scale`) and result options (`tdmarket.api.result_options`); otherwise the
scheme is cleared again and the folder replaced.  DIR itself must be new, empty, or a comparison folder, and
must not hold the input instance.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..errors import InputError
from ..io.atomic import atomic_dir, atomic_file
from .writer import dumps, parquet_available, read_results, write_result_files

if TYPE_CHECKING:
    from ..model.instance import Instance
    from ..schemes.result import ClearingResult

log = logging.getLogger(__name__)

INDEX_FILE = "comparison.json"
AC_FILE = "ac_check.csv"
AC_LINES_FILE = "ac_lines.csv"
META_FILE = "compare.json"
IDENTITY_KEYS = ("tdmarket", "scheme")


def comparison_provenance(inst, schemes: list[str], options: dict, *, ac: bool) -> dict:
    """Versions, input checksum and options of a whole comparison (each scheme's summary has its own)."""
    from .. import __version__
    from ..api import EXECUTION_OPTIONS, SOLVER_PACKAGES, package_version

    return {
        "tdmarket": __version__,
        "python": platform.python_version(),
        "solvers": {name: package_version(name) for name in SOLVER_PACKAGES},
        "schemes": list(schemes),
        "options": {k: options[k] for k in sorted(options) if k not in EXECUTION_OPTIONS},
        "ac_check": ac,
        "instance": {
            "name": inst.name,
            "source": inst.source,
            "input_sha256": getattr(inst, "input_sha256", None),
            "fingerprint": inst.fingerprint(),
        },
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


@dataclass
class SavedScheme:
    """A scheme's results loaded from a comparison folder."""

    path: Path
    result: ClearingResult
    ac_table: pd.DataFrame | None
    ac_lines: pd.DataFrame | None
    wall_s: float
    created_utc: str | None


def _roundtrip(obj):
    return json.loads(dumps(obj))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


@dataclass
class ComparisonFolder:
    """`DIR` of `compare --out DIR` for one instance."""

    path: Path
    inst: Instance

    @classmethod
    def open(cls, out: str | os.PathLike, inst) -> ComparisonFolder:
        """Check `out` (new, empty or a comparison folder; not the input's folder) and create it."""
        path = Path(out).resolve()
        if path.exists() and not path.is_dir():
            raise InputError("the output path exists and is not a folder", file=str(path))
        source = Path(inst.source).resolve() if inst.source and not inst.source.startswith("<") else None
        if source is not None and (_inside(source, path) or _inside(path, source)):
            raise InputError(
                f"the output folder must not hold the input instance nor lie inside it ({source})", file=str(path)
            )
        if path.is_dir() and any(path.iterdir()) and not (path / INDEX_FILE).is_file():
            raise InputError(
                f"the output folder is not empty and holds no {INDEX_FILE}: not a comparison folder, "
                "give a new or empty folder",
                file=str(path),
            )
        path.mkdir(parents=True, exist_ok=True)
        return cls(path, inst)

    def scheme_path(self, scheme: str) -> Path:
        if not scheme or "/" in scheme or scheme.startswith("."):
            raise InputError(f"scheme name {scheme!r} cannot name a folder")
        return self.path / scheme

    def expected(self, scheme: str, options: dict) -> dict:
        """The provenance fields a saved result of `scheme` must have to be reused."""
        from .. import __version__
        from ..api import result_options
        from ..schemes import registry

        return _roundtrip(
            {
                "tdmarket": __version__,
                "scheme": registry.get(scheme).id,
                "options": result_options(scheme, options),
                "input_sha256": getattr(self.inst, "input_sha256", None),
                "fingerprint": self.inst.fingerprint(),
            }
        )

    def load(self, scheme: str, options: dict, *, need_ac: bool) -> SavedScheme | None:
        """The saved results of `scheme` if they match this run, else None (with a note why, if they exist)."""
        folder = self.scheme_path(scheme)
        if not (folder / "summary.json").is_file() or not (folder / META_FILE).is_file():
            return None
        try:
            summary = json.loads((folder / "summary.json").read_text())
            meta = json.loads((folder / META_FILE).read_text())
            prov = summary.get("provenance") or {}
            found = {k: prov.get(k) for k in IDENTITY_KEYS} | {
                "options": prov.get("options"),
                "input_sha256": (prov.get("instance") or {}).get("input_sha256"),
                "fingerprint": (prov.get("instance") or {}).get("fingerprint"),
            }
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("%s: cannot read the saved results in %s (%s); clearing again", scheme, folder, exc)
            return None
        expected = self.expected(scheme, options)
        if found != expected:
            differ = sorted(k for k in expected if found.get(k) != expected[k])
            log.info("%s: saved results in %s differ in %s; clearing again", scheme, folder, ", ".join(differ))
            return None
        result = read_results(folder, exclude=(Path(AC_FILE).stem, Path(AC_LINES_FILE).stem))
        ac_table = ac_lines = None
        if meta.get("ac_check") and (folder / AC_FILE).is_file() and (folder / AC_LINES_FILE).is_file():
            ac_table = pd.read_csv(folder / AC_FILE)
            ac_table["converged"] = ac_table["converged"].astype(bool)
            ac_lines = pd.read_csv(folder / AC_LINES_FILE)
        elif need_ac:
            log.info("%s: saved results have no AC check; running it", scheme)
        wall = float(meta.get("wall_s", float("nan")))
        return SavedScheme(folder, result, ac_table, ac_lines, wall, prov.get("created_utc"))

    def save(
        self, scheme: str, result, ac_table: pd.DataFrame | None, ac_lines: pd.DataFrame | None, wall_s: float
    ) -> Path:
        """Write the scheme's folder atomically (results, AC check, wall time)."""
        target = self.scheme_path(scheme)
        parquet = parquet_available()
        with atomic_dir(target) as tmp:
            write_result_files(result, tmp, parquet=parquet)
            if ac_table is not None:
                ac_table.to_csv(tmp / AC_FILE, index=False, float_format="%.10g")
            if ac_lines is not None:
                ac_lines.to_csv(tmp / AC_LINES_FILE, index=False, float_format="%.10g")
            meta = {"scheme": scheme, "wall_s": wall_s, "ac_check": ac_table is not None}
            (tmp / META_FILE).write_text(dumps(meta) + "\n")
        return target

    def write_index(self, cmp) -> Path:
        """`comparison.json`: the rows so far, notes and provenance (atomically)."""
        index = {
            "instance": cmp.instance,
            "rows": cmp.rows.to_dict(orient="records"),
            "notes": cmp.notes,
            "loaded": cmp.loaded,
            "provenance": cmp.provenance,
        }
        with atomic_file(self.path / INDEX_FILE) as tmp:
            tmp.write_text(dumps(index) + "\n")
        return self.path / INDEX_FILE
