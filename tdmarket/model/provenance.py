"""Provenance: which file and editor row every model row came from.

A reader records one `Origin` per model table, so that the format-neutral checks (`tdmarket.model.validate`,
`tdmarket.model.topology`) can raise an `InputError` naming the file, the editor row and the column, whatever
the input format.  Tables without a record (hand-built instances) give errors without a file or row.

Table names and the roles their `columns` map (role -> the column name an error should print):

* ``buses``       id, is_ref, vsq_min
* ``branches``    id, f, t, r, x, rating, tap, pq_bound
* ``injections``  node (no rows: the injections are dense arrays)
* ``segments``    hi, xlb
* ``bids``        qtbid, no_new_act
* ``exclusive``   qtbid
* ``ramp``        (file only)
* ``mindur``      bid1, period2
* ``half_planes`` qtbid
* ``discs``       radius
* ``sub_areas``   edge, area
* ``flag:NoNewAct``, ``flag:AlphaOmegaSet``   flag (one row per bid, 0 where unflagged): the flag came from its file
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError


@dataclass
class Origin:
    """Where the rows of one model table came from."""

    files: list[str] = field(default_factory=list)  # source files, as errors name them (e.g. "italy-693/Edges.csv")
    row: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # editor row (header = 1); 0 = unknown
    part: np.ndarray | None = None  # index into `files` of every row (None: all rows come from files[0])
    columns: dict[str, str] = field(default_factory=dict)  # role -> source column name

    def __len__(self) -> int:
        return len(self.row)

    def column(self, role: str | None) -> str | None:
        return None if role is None else self.columns.get(role, role)

    def _part(self) -> np.ndarray:
        return self.part if self.part is not None else np.zeros(len(self.row), np.int64)

    def file(self, index: int | None = None) -> str | None:
        """The file of row `index` (the first file if `index` is None or unknown)."""
        if not self.files:
            return None
        if index is None or index >= len(self.row):
            return self.files[0]
        return self.files[int(self._part()[index])]

    def file_of(self, mask: np.ndarray) -> str | None:
        """The file of the first row in `mask` (in file order); the first file if `mask` selects nothing."""
        return self.file(self.first(mask))

    def first(self, mask: np.ndarray) -> int | None:
        """Position of the flagged row that comes first in the input (file, then editor row); None if none is."""
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            return None
        if len(self.row) < len(mask):  # no (complete) record: model order
            return int(idx[0])
        order = np.lexsort((self.row[idx], self._part()[idx]))
        return int(idx[order[0]])

    def first_of_groups(self, keys: np.ndarray) -> np.ndarray:
        """For every row, the position of the row with the same key that comes first in the input."""
        keys = np.asarray(keys)
        n = len(keys)
        if n == 0:
            return np.zeros(0, np.int64)
        if len(self.row) >= n:  # by key, then file, then editor row
            order = np.lexsort((self.row[:n], self._part()[:n], keys))
        else:  # no record: model order
            order = np.lexsort((np.arange(n), keys))
        ordered = keys[order]
        starts = np.r_[True, ordered[1:] != ordered[:-1]]
        out = np.empty(n, np.int64)
        out[order] = order[np.flatnonzero(starts)][np.cumsum(starts) - 1]
        return out

    def error(self, reason: str, *, index: int | None = None, role: str | None = None) -> InputError:
        row = None
        if index is not None and index < len(self.row) and self.row[index] > 0:
            row = int(self.row[index])
        return InputError(reason, file=self.file(index), row=row, column=self.column(role))

    def check(self, bad: np.ndarray, role: str, reason) -> None:
        """Raise for the first flagged row; `reason` is a string or a function of the row position."""
        i = self.first(bad)
        if i is not None:
            raise self.error(reason(i) if callable(reason) else reason, index=i, role=role)

    def take(self, index: np.ndarray) -> Origin:
        """The record of a row subset (rows dropped by a correction keep their provenance aligned)."""
        if len(self.row) == 0:
            return self
        part = self.part[index] if self.part is not None else None
        return Origin(files=self.files, row=self.row[index], part=part, columns=self.columns)


@dataclass
class Provenance:
    """One `Origin` per model table (see the module docstring for the table names)."""

    origins: dict[str, Origin] = field(default_factory=dict)

    def __getitem__(self, table: str) -> Origin:
        origin = self.origins.get(table)
        return Origin() if origin is None else origin

    def __setitem__(self, table: str, origin: Origin) -> None:
        self.origins[table] = origin
