"""Tolerant CSV text reading for the SmartNet files, with row-exact validation errors and bounded memory.

The published files mix CRLF, CR-only and LF line endings, some start with a UTF-8 byte-order mark, and
header-only files have no line terminator.  `read_table` normalises all of that and keeps, for every data
row, the line number a user sees in an editor (header = row 1, empty lines counted), so that every
`InputError` can point at the offending cell.

Before anything is parsed the file must be a regular file (a named pipe would block the reader forever) of at
most `max_bytes`, and no line may be longer than `MAX_LINE_CHARS`: a bad file fails in milliseconds, whatever
its size.  A large file's cells are parsed by pandas' C reader straight into numbers (no Python string per
cell; the text of a column is read back only where a message has to quote it, or for a text column); a small
file (most of them) is split in Python, which avoids pandas' fixed cost per call.

Column names are matched without regard to letter case (`tap` is `Tap`); two header names that differ only in
case are an error.  Every number read is checked against the plausible range the reader declares for its column
(`ranges`; docs/format.md §1).
"""

from __future__ import annotations

import builtins
import csv
import io
import os
import stat
import warnings
from dataclasses import dataclass, field
from itertools import compress
from operator import methodcaller
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError

MAX_FILE_MB = 16.0  # default bound on one input file; the largest shared file has 1.2 MB, the benchmark system 2
MAX_LINE_CHARS = 10_000  # a row of the format has a few hundred characters at most
MAX_ID = 2**53  # integers (ids, periods) are read through float64: exact up to 2**53
SMALL_BODY_CHARS = 2**18  # up to this size a file is split in Python (measured: pandas costs ~5 ms per call)


@dataclass(frozen=True)
class Range:
    """Plausible values of a numeric column (inclusive bounds, in the column's unit)."""

    lo: float
    hi: float
    unit: str = ""

    def text(self) -> str:
        return f"[{_number_text(self.lo)}, {_number_text(self.hi)}]" + (f" {self.unit}" if self.unit else "")


def _number_text(value: float) -> str:
    """Integers in full (exact up to 2**53), other numbers as %g."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


ID_RANGE = Range(-MAX_ID, MAX_ID)


@dataclass
class Table:
    """One CSV file: its header, the numbers pandas read per column, and the editor line of every data row."""

    path: Path
    label: str  # what errors call the file, e.g. "italy-693/Bids.csv"
    header: list[str]
    line: np.ndarray  # editor line number (1-based) of each data row
    body: str = ""  # the data rows, blank lines removed (read again only for text)
    frame: pd.DataFrame | None = None  # large file: column position -> parsed values (numbers where pandas could)
    cells: list[np.ndarray] | None = None  # small file: column position -> cell text (object array of str)
    ranges: dict[str, Range | None] = field(default_factory=dict)  # column -> plausible range (None: a rule's)
    _texts: dict[int, np.ndarray] = field(default_factory=dict)
    _numbers_of: dict[int, np.ndarray] = field(default_factory=dict)
    _positions: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._positions = {h.casefold(): j for j, h in enumerate(self.header)}  # unique (read_table)

    def __len__(self) -> int:
        return len(self.line)

    def position(self, column: str) -> int | None:
        """Position of `column` in the header, matched without regard to letter case."""
        return self._positions.get(column.casefold())

    def has(self, column: str) -> bool:
        return self.position(column) is not None

    def name(self, column: str) -> str:
        """The column's name as the file spells it (for messages)."""
        j = self.position(column)
        return column if j is None else self.header[j]

    def error(self, reason: str, *, index: int | None = None, column: str | None = None) -> InputError:
        row = int(self.line[index]) if index is not None else None
        return InputError(reason, file=self.label, row=row, column=None if column is None else self.name(column))

    def require(self, *columns: str) -> None:
        for col in columns:
            if not self.has(col):
                raise InputError(
                    f"missing required column {col!r} (header is {','.join(self.header)})",
                    file=self.label,
                    row=1,
                    column=col,
                )

    def text(self, column: str) -> np.ndarray:
        """The column's cells as stripped text (object array of str)."""
        self.require(column)
        j = self.position(column)
        assert j is not None  # required above
        if j not in self._texts:
            if len(self) == 0:
                self._texts[j] = np.zeros(0, dtype=object)
            elif self.cells is not None:
                self._texts[j] = np.char.strip(self.cells[j].astype(str)).astype(object)
            else:
                raw = _parse(self.body, usecols=[j], dtype=str, na_filter=False)[j]
                self._texts[j] = raw.str.strip().to_numpy(dtype=object)
        return self._texts[j]

    def float(self, column: str, default: float | None = None, *, valid: Range | None = None) -> np.ndarray:
        """Column as float64; absent optional columns give `default`.  Empty, NaN, infinite, non-numeric cells
        and values outside the column's plausible range are errors."""
        if not self.has(column):
            if default is None:
                self.require(column)  # raises: the column is missing
            assert default is not None
            return np.full(len(self), float(default))
        if valid is None:
            if column not in self.ranges:  # a programming error: every numeric column read declares its range
                raise KeyError(f"no plausible range declared for {self.label} column {column}")
            valid = self.ranges[column]
        values = self._numbers(column)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            text = str(self.text(column)[i])
            what = "empty value" if text == "" else f"value {text!r} is not a finite number"
            raise self.error(what, index=i, column=column)
        out = (values < valid.lo) | (values > valid.hi) if valid is not None else np.zeros(len(values), bool)
        if valid is not None and out.any():
            i = int(np.flatnonzero(out)[0])
            raise self.error(
                f"value {str(self.text(column)[i])!r} is outside the plausible range {valid.text()}",
                index=i,
                column=column,
            )
        return values.copy()  # the cache stays as read

    def _numbers(self, column: str) -> np.ndarray:
        """The column as float64 (NaN where a cell is not a number)."""
        j = self.position(column)
        assert j is not None  # callers read only present columns
        if j not in self._numbers_of:
            if len(self) == 0:
                values = np.zeros(0)
            elif self.frame is not None and self.frame[j].dtype.kind in "iuf":
                values = self.frame[j].to_numpy(dtype=float)  # pandas read every cell as a number
            else:
                values = np.asarray(pd.to_numeric(self.text(column), errors="coerce"), dtype=float)
            self._numbers_of[j] = values
        return self._numbers_of[j]

    def int(self, column: str, default: int | None = None) -> np.ndarray:
        """Column as int64; values must be integral (e.g. `12`, `12.0` or `1.2E1`)."""
        if not self.has(column) and default is not None:
            return np.full(len(self), int(default), dtype=np.int64)
        values = self.float(column, valid=self.ranges.get(column) or ID_RANGE)
        frac = values != np.round(values)
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise self.error(f"value {str(self.text(column)[i])!r} is not an integer", index=i, column=column)
        return values.astype(np.int64)

    def flag(self, column: str, default: builtins.int = 0) -> np.ndarray:
        """0/1 column as bool."""
        values = self.int(column, default)
        bad = (values != 0) & (values != 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise self.error(f"flag must be 0 or 1, got {int(values[i])}", index=i, column=column)
        return values.astype(bool)

    def unique_key(self, *columns: str, values: list[np.ndarray] | None = None) -> None:
        """Raise on the first row whose key repeats an earlier row's key."""
        if values is None:
            values = [self.int(c) for c in columns]
        frame = pd.DataFrame({c: v for c, v in zip(columns, values)})
        dup = frame.duplicated(keep="first").to_numpy()
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            key = ", ".join(f"{self.name(c)}={_plain(v[i])}" for c, v in zip(columns, values))
            first = int(np.flatnonzero((frame == frame.iloc[i]).all(axis=1).to_numpy())[0])
            raise self.error(f"duplicate key {key} (first at row {int(self.line[first])})", index=i, column=columns[0])


def _plain(value) -> int | float | str:
    """A number as Python prints it (no `np.int64(...)` in messages)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _parse(body: str, **kw) -> pd.DataFrame:
    """pandas' C reader on unquoted comma-separated rows (no header); numbers read exactly (round trip)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mixed-type columns are read back as text where it matters
        return pd.read_csv(
            io.StringIO(body),
            header=None,
            sep=",",
            quoting=csv.QUOTE_NONE,
            engine="c",
            float_precision="round_trip",
            skip_blank_lines=False,
            **kw,
        )


def normalise_text(data: bytes, label: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=label) from None
    if "\r" in text:  # CRLF -> LF first, then lone CR -> LF, so CRLF does not become two line breaks
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    nul = text.find("\0")
    if nul >= 0:
        raise InputError("contains a NUL character: not a text file", file=label, row=text.count("\n", 0, nul) + 1)
    return text


def _size_text(n_bytes: int) -> str:
    return f"{n_bytes} bytes" if n_bytes < 2**20 else f"{n_bytes / 2**20:.1f} MiB"


def read_bytes(path: Path, label: str, max_bytes: int) -> bytes:
    """The file's bytes; a missing file, a folder, a named pipe or device, or a file over `max_bytes` is an
    `InputError` (checked on the open file before reading, so a pipe never blocks)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError("required file is missing", file=label) from None
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=label) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError("is a folder, not a file", file=label)
        kind = "a named pipe" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        raise InputError(f"is {kind}, not a regular file", file=label)
    with os.fdopen(fd, "rb") as fh:
        limit_text = f"{_size_text(max_bytes)} (read option max_file_mb, command line --max-file-mb)"
        if info.st_size > max_bytes:
            raise InputError(f"file has {_size_text(info.st_size)}, more than the limit of {limit_text}", file=label)
        os.set_blocking(fd, True)
        try:
            # read what the file holds (not a buffer of the limit's size: a limit of many GiB is allowed)
            want = min(max_bytes, info.st_size) + 1
            data = fh.read(want)
            if len(data) == want and want <= max_bytes:  # it grew since fstat: read on, up to the limit
                parts, total = [data], len(data)
                while total <= max_bytes and (chunk := fh.read(min(1 << 20, max_bytes + 1 - total))):
                    parts.append(chunk)
                    total += len(chunk)
                data = b"".join(parts)
        except OSError as exc:
            raise InputError(f"cannot read file ({exc.strerror})", file=label) from None
    if len(data) > max_bytes:  # it grew while we read it
        raise InputError(f"file is larger than the limit of {limit_text}", file=label)
    return data


def read_table(
    path: Path,
    label: str,
    *,
    ranges: dict[str, Range | None] | None = None,
    max_bytes: int = int(MAX_FILE_MB * 2**20),
) -> Table:
    """Read one CSV file; raises InputError if it is missing, not a regular file, too large, empty, has a
    repeated header name or ragged rows."""
    lines = normalise_text(read_bytes(path, label, max_bytes), label).split("\n")
    n = len(lines)
    length = np.fromiter(map(len, lines), dtype=np.int64, count=n)
    long = np.flatnonzero(length > MAX_LINE_CHARS)
    if len(long):
        k = int(long[0])
        raise InputError(
            f"line has {int(length[k])} characters, more than the {MAX_LINE_CHARS} a row of this format can have",
            file=label,
            row=k + 1,
        )
    filled = (length > 0) & ~np.fromiter(map(str.isspace, lines), dtype=bool, count=n)
    numbered = np.flatnonzero(filled)
    if len(numbered) == 0:
        raise InputError("file is empty (no header row)", file=label, row=1)
    header_row = int(numbered[0])
    header = [h.strip() for h in lines[header_row].split(",")]
    folded = [h.casefold() for h in header]
    for j, h in enumerate(folded):
        if h in folded[:j]:
            first = header[folded.index(h)]
            same = "appears twice" if first == header[j] else f"and {first!r} differ only in letter case"
            raise InputError(
                f"column {header[j]!r} {same} in the header", file=label, row=header_row + 1, column=header[j]
            )
    filled[header_row] = False
    line_no = np.flatnonzero(filled) + 1
    commas = np.fromiter(map(methodcaller("count", ","), compress(lines, filled)), dtype=np.int64, count=len(line_no))
    ragged = np.flatnonzero(commas != len(header) - 1)
    if len(ragged):
        i = int(ragged[0])
        raise InputError(
            f"has {int(commas[i]) + 1} fields but the header has {len(header)}", file=label, row=int(line_no[i])
        )
    table = Table(path=path, label=label, header=header, line=line_no, ranges=dict(ranges or {}))
    if len(line_no) == 0:
        return table
    if int(length[filled].sum()) <= SMALL_BODY_CHARS:
        rows = [ln.split(",") for ln in compress(lines, filled)]
        table.cells = [np.array(column, dtype=object) for column in zip(*rows)]
    else:
        table.body = "\n".join(compress(lines, filled))
        del lines
        table.frame = _parse(table.body, names=list(range(len(header))))
    return table
