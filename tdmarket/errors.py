"""Error types shared by every layer.

`InputError` is the one error type for bad user input: it carries the file, the 1-based row as a user sees it
in an editor (the header is row 1), the column and the reason, and renders as a single line.  The CLI turns it
into exit code 2 without a traceback.
"""

from __future__ import annotations


class TdmarketError(Exception):
    """Base class of all tdmarket errors."""


class InputError(TdmarketError):
    """Invalid input data or settings (user error, CLI exit code 2)."""

    def __init__(self, reason: str, *, file: str | None = None, row: int | None = None, column: str | None = None):
        self.reason = reason
        self.file = file
        self.row = row
        self.column = column
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = []
        if self.file is not None:
            where.append(str(self.file))
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason


class SolverError(TdmarketError):
    """A solver failed or returned a result that cannot be trusted."""
