"""Tolerant CSV text reading for the SmartNet files, with row-exact validation errors.

The published files mix CRLF, CR-only and LF line endings, some start with a UTF-8 byte-order mark, and
header-only files have no line terminator.  `read_table` normalises all of that and keeps, for every data
row, the line number a user sees in an editor (header = row 1, empty lines counted), so that every
`InputError` can point at the offending cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError


@dataclass
class Table:
    """One CSV file as string columns plus the editor line number of every data row."""

    path: Path
    label: str  # what errors call the file, e.g. "italy-693/Bids.csv"
    header: list[str]
    cells: dict[str, np.ndarray]  # column name -> array of str (stripped)
    line: np.ndarray  # editor line number (1-based) of each data row

    def __len__(self) -> int:
        return len(self.line)

    def has(self, column: str) -> bool:
        return column in self.cells

    def error(self, reason: str, *, index: int | None = None, column: str | None = None) -> InputError:
        row = int(self.line[index]) if index is not None else None
        return InputError(reason, file=self.label, row=row, column=column)

    def require(self, *columns: str) -> None:
        for col in columns:
            if col not in self.cells:
                raise InputError(
                    f"missing required column {col!r} (header is {','.join(self.header)})",
                    file=self.label,
                    row=1,
                    column=col,
                )

    def float(self, column: str, default: float | None = None, *, allow_nonfinite: bool = False) -> np.ndarray:
        """Column as float64; absent optional columns give `default`; NaN/inf/non-numeric cells are errors."""
        if column not in self.cells:
            if default is None:
                self.require(column)
            return np.full(len(self), float(default))
        raw = self.cells[column]
        values = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) if not allow_nonfinite else np.isnan(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            text = str(raw[i])
            what = "empty value" if text == "" else f"value {text!r} is not a finite number"
            raise self.error(what, index=i, column=column)
        return values

    def int(self, column: str, default: int | None = None) -> np.ndarray:
        """Column as int64; values must be integral (e.g. `12`, `12.0` or `1.2E1`)."""
        if column not in self.cells and default is not None:
            return np.full(len(self), int(default), dtype=np.int64)
        values = self.float(column)
        frac = values != np.round(values)
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise self.error(f"value {str(self.cells[column][i])!r} is not an integer", index=i, column=column)
        if len(values) and np.abs(values).max() > 2**53:
            i = int(np.argmax(np.abs(values)))
            raise self.error("integer out of range", index=i, column=column)
        return values.astype(np.int64)

    def flag(self, column: str, default: int = 0) -> np.ndarray:
        """0/1 column as bool."""
        values = self.int(column, default)
        bad = (values != 0) & (values != 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise self.error(f"flag must be 0 or 1, got {values[i]}", index=i, column=column)
        return values.astype(bool)

    def unique_key(self, *columns: str, values: list[np.ndarray] | None = None) -> None:
        """Raise on the first row whose key repeats an earlier row's key."""
        if values is None:
            values = [self.int(c) for c in columns]
        frame = pd.DataFrame({c: v for c, v in zip(columns, values)})
        dup = frame.duplicated(keep="first").to_numpy()
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            key = ", ".join(f"{c}={v[i]}" for c, v in zip(columns, values))
            first = int(np.flatnonzero((frame == frame.iloc[i]).all(axis=1).to_numpy())[0])
            raise self.error(f"duplicate key {key} (first at row {int(self.line[first])})", index=i, column=columns[0])


def normalise_text(data: bytes, label: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=label) from None
    # CRLF -> LF first, then lone CR -> LF, so CRLF does not become two line breaks.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_table(path: Path, label: str) -> Table:
    """Read one CSV file; raises InputError if it is missing, empty or has ragged rows."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("required file is missing", file=label) from None
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=label) from None
    lines = normalise_text(data, label).split("\n")
    numbered = [(k + 1, ln) for k, ln in enumerate(lines) if ln.strip()]
    if not numbered:
        raise InputError("file is empty (no header row)", file=label, row=1)
    header_line, header_text = numbered[0]
    header = [h.strip() for h in header_text.split(",")]
    if len(set(header)) != len(header):
        dup = next(h for h in header if header.count(h) > 1)
        raise InputError(f"column {dup!r} appears twice in the header", file=label, row=header_line, column=dup)
    body = numbered[1:]
    line_no = np.fromiter((k for k, _ in body), dtype=np.int64, count=len(body))
    rows = [ln.split(",") for _, ln in body]
    width = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    ragged = width != len(header)
    if ragged.any():
        i = int(np.flatnonzero(ragged)[0])
        raise InputError(f"has {width[i]} fields but the header has {len(header)}", file=label, row=int(line_no[i]))
    if rows:
        grid = np.char.strip(np.array(rows, dtype=str))
        cells = {h: grid[:, j] for j, h in enumerate(header)}
    else:
        cells = {h: np.zeros(0, dtype=str) for h in header}
    return Table(path=path, label=label, header=header, cells=cells, line=line_no)
