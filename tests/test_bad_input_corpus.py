"""A corpus of bad and odd inputs, generated from the built-in example (issue 14): every file and every column of
the format, with missing, empty, NaN, infinite, absurd (1e308), textual, fractional, negative and unknown values,
ragged and duplicated rows, missing columns and files, line-ending and byte-order-mark variants, and files that
are not text or not regular files.

Every case must end in a successful read (and `info` statistics) or in one `InputError` that names a file of the
instance, on one line and without numpy reprs; a bad cell must be reported at its own file, editor row and
column.  Nothing else may escape.  A hypothesis property test then applies random mutations of the same kinds.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tdmarket
from tdmarket.errors import InputError
from tdmarket.examples import builtin_path
from tdmarket.io.smartnet.reader import OPTIONAL_FILES
from tdmarket.model.stats import instance_stats

CELL_VALUES = {  # kind -> text written into one cell
    "empty": "",
    "nan": "nan",
    "inf": "inf",
    "-inf": "-inf",
    "1e308": "1e308",
    "-1e308": "-1e308",
    "text": "abc",
    "overflow": "1e999",
    "bool": "True",
}
OTHER_VALUES = {"unknown": "987654", "negative": "-1", "fraction": "0.5", "spaces": "  7  "}
CELL_KINDS = set(CELL_VALUES)  # a cell that is not a plausible number: reported at its own cell if read


def _builtin_with_flag_files(folder: Path) -> None:
    """The built-in example with its order flags as AlphaOmegaSet.csv / NoNewAct.csv files instead of Bids.csv
    columns, and a sub-DSO (SubAreas.csv): every optional file of the format has rows."""
    shutil.copytree(builtin_path(), folder)
    bids = pd.read_csv(folder / "Bids.csv", dtype=str)
    for flag in ("AlphaOmegaSet", "NoNewAct"):
        rows = bids.loc[bids[flag] == "1", ["QtBids", "QBid", "forT"]].drop_duplicates("QBid")
        rows.to_csv(folder / f"{flag}.csv", index=False, lineterminator="\n")
    bids.drop(columns=["AlphaOmegaSet", "NoNewAct"]).to_csv(folder / "Bids.csv", index=False, lineterminator="\n")
    (folder / "SubAreas.csv").write_text("Edge,Area\n22,DSO-203\n")


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bases")
    shutil.copytree(builtin_path(), root / "builtin")
    _builtin_with_flag_files(root / "files")
    for folder in root.iterdir():
        (folder / "README.md").unlink(missing_ok=True)
    return {p.name: p for p in root.iterdir()}


@dataclass(frozen=True)
class Case:
    """One alteration of one base instance: `kind` applied to `file` (and `column`, editor `row`)."""

    base: str
    file: str
    kind: str
    column: str | None = None
    row: int | None = None
    value: str | None = None

    @property
    def id(self) -> str:
        return "-".join(str(p) for p in (self.base, self.file.removesuffix(".csv"), self.column, self.kind) if p)


def _header(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8-sig").splitlines()[0].split(",")


OPTIONAL_COLUMNS = {"baseMVA", "RefNode", "G", "B", "Tap", "Shift", "Xub", "AlphaOmegaSet", "NoNewAct", "RampConstr"}
OPTIONAL_COLUMNS |= {"RCFrom", "RCTo", "QPHPFrom", "QPHPTo", "QPDFrom", "QPDTo", "QPDCID"}


def _cases() -> list[Case]:
    """Deterministic: every column of every file gets every cell kind of `CELL_VALUES` or `OTHER_VALUES` in turn
    (so every kind reaches every file), plus the row- and file-level alterations of every file."""
    cases = []
    files_of = {
        "builtin": sorted(p.name for p in builtin_path().glob("*.csv")),
        "files": ["AlphaOmegaSet.csv", "NoNewAct.csv", "SubAreas.csv", "Bids.csv"],
    }
    headers = {name: _header(builtin_path() / name) for name in files_of["builtin"]}
    headers["AlphaOmegaSet.csv"] = headers["NoNewAct.csv"] = ["QtBids", "QBid", "forT"]
    headers["SubAreas.csv"] = ["Edge", "Area"]
    headers_files_bids = [h for h in headers["Bids.csv"] if h not in ("AlphaOmegaSet", "NoNewAct")]
    kinds = list(CELL_VALUES) + list(OTHER_VALUES)
    values = CELL_VALUES | OTHER_VALUES
    k = 0
    for base, files in files_of.items():
        for name in files:
            header = headers_files_bids if (base, name) == ("files", "Bids.csv") else headers[name]
            if (base, name) != ("files", "Bids.csv"):
                for kind in ("missing-file", "empty-file", "header-only", "ragged", "duplicate-row", "crlf-bom"):
                    cases.append(Case(base, name, kind))
                for kind in ("cr-only", "blank-lines", "binary", "folder", "fifo", "nul"):
                    if k % 2 == 0 or base == "files":
                        cases.append(Case(base, name, kind))
                    k += 1
            for column in header:
                cases.append(Case(base, name, "drop-column", column))
                if column in OPTIONAL_COLUMNS:
                    cases.append(Case(base, name, "lower-case-column", column))
                for _ in range(2):  # two value kinds per column, rotating over all kinds
                    kind = kinds[k % len(kinds)]
                    k += 1
                    cases.append(Case(base, name, kind, column, 2, values[kind]))
    return cases


CASES = _cases()


def _apply(case: Case, folder: Path) -> None:
    path = folder / case.file
    kind = case.kind
    if kind == "missing-file":
        path.unlink()
        return
    if kind == "folder":
        path.unlink()
        path.mkdir()
        return
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no named pipes on this platform")
        path.unlink()
        os.mkfifo(path)
        return
    if kind == "empty-file":
        path.write_bytes(b"")
        return
    if kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
        return
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split(",")
    if kind == "header-only":
        lines = lines[:1]
    elif kind == "ragged" and len(lines) > 1:
        lines[1] = lines[1] + ",extra"
    elif kind == "duplicate-row" and len(lines) > 1:
        lines.append(lines[1])
    elif kind == "nul" and len(lines) > 1:
        lines[1] = lines[1] + "\0"
    elif kind == "drop-column":
        j = header.index(case.column)
        lines = [",".join(c for i, c in enumerate(ln.split(",")) if i != j) for ln in lines]
    elif kind == "lower-case-column":
        header[header.index(case.column)] = case.column.lower()
        lines[0] = ",".join(header)
    elif case.value is not None and len(lines) > case.row - 1:
        cells = lines[case.row - 1].split(",")
        cells[header.index(case.column)] = case.value
        lines[case.row - 1] = ",".join(cells)
    text = "\n".join(lines) + "\n"
    if kind == "crlf-bom":
        path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    elif kind == "cr-only":
        path.write_bytes(text.replace("\n", "\r").encode())
    elif kind == "blank-lines":
        path.write_text("\n" + text.replace("\n", "\n\n", 2) + "\n  \n")
    else:
        path.write_text(text)


def check_outcome(folder: Path, case: Case | None = None) -> str:
    """Read (and compute the `info` statistics of) `folder`; an error must be one clean `InputError`.  Returns
    "ok" or "error"."""
    try:
        inst = tdmarket.load(folder)
        instance_stats(inst)
    except InputError as err:
        message = err.one_line()
        assert err.file is not None, f"{message}: names no file"
        named = Path(err.file)
        assert named.parent.name == folder.name and named.suffix == ".csv", f"{message}: names no file of the case"
        assert "\n" not in message and "np." not in message and "Traceback" not in message, message
        assert err.row is None or (isinstance(err.row, int) and err.row >= 1), message
        if case is not None and case.kind in CELL_KINDS:  # a bad cell read is reported at its own cell
            assert (Path(err.file).name, err.row, err.column) == (case.file, case.row, case.column), message
        return "error"
    return "ok"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_ends_in_a_result_or_one_clean_error(bases, tmp_path, case):
    folder = tmp_path / "case"
    shutil.copytree(bases[case.base], folder)
    _apply(case, folder)
    outcome = check_outcome(folder, case)
    if case.kind in ("crlf-bom", "cr-only", "blank-lines", "lower-case-column", "spaces"):
        if case.kind != "spaces" and case.kind != "lower-case-column":
            assert outcome == "ok"  # text variants of a valid file read the same
            assert tdmarket.load(folder).fingerprint() == tdmarket.load(bases[case.base]).fingerprint()
    if case.kind in ("binary", "fifo", "folder", "nul", "empty-file", "ragged") or (
        case.kind == "missing-file" and case.file not in OPTIONAL
    ):
        assert outcome == "error"


OPTIONAL = set(OPTIONAL_FILES)  # the reader's own list: a missing optional file is no error


def test_the_corpus_covers_every_file_and_column_and_kind():
    assert len(CASES) >= 100
    files = {c.file for c in CASES}
    assert files >= {p.name for p in builtin_path().glob("*.csv")} | {
        "AlphaOmegaSet.csv",
        "NoNewAct.csv",
        "SubAreas.csv",
    }
    kinds = {c.kind for c in CASES}
    assert kinds >= set(CELL_VALUES) | set(OTHER_VALUES) | {"ragged", "duplicate-row", "crlf-bom", "fifo", "binary"}
    for name in files:
        header = _header(builtin_path() / name) if (builtin_path() / name).exists() else None
        if header:
            assert {c.column for c in CASES if c.file == name and c.base == "builtin"} >= set(header)


# ------------------------------------------------------------------------------------------ property test
MUTATIONS = st.sampled_from(sorted(CELL_VALUES | OTHER_VALUES | {"drop": None, "dup": None, "ragged": None}))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_mutations_give_a_result_or_a_clean_error(bases, tmp_path_factory, data):
    """Up to three random alterations (a cell, a dropped column, a duplicated or ragged row) anywhere in the
    built-in example: read and `info` end in a result or in one clean `InputError`, never a traceback."""
    folder = tmp_path_factory.mktemp("mutated") / "case"
    shutil.copytree(bases["builtin"], folder)
    files = sorted(p.name for p in folder.glob("*.csv"))
    for _ in range(data.draw(st.integers(1, 3), label="alterations")):
        name = data.draw(st.sampled_from(files), label="file")
        path = folder / name
        lines = path.read_text().splitlines()
        header = lines[0].split(",")
        kind = data.draw(MUTATIONS, label="kind")
        if len(lines) < 2:
            continue
        row = data.draw(st.integers(2, len(lines)), label="row")
        if kind == "drop":
            j = data.draw(st.integers(0, len(header) - 1), label="column")
            lines = [",".join(c for i, c in enumerate(ln.split(",")) if i != j) for ln in lines]
        elif kind == "dup":
            lines.insert(row, lines[row - 1])
        elif kind == "ragged":
            lines[row - 1] += ","
        else:
            cells = lines[row - 1].split(",")
            j = data.draw(st.integers(0, len(cells) - 1), label="column")
            cells[j] = (CELL_VALUES | OTHER_VALUES)[kind]
            lines[row - 1] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
    check_outcome(folder)
