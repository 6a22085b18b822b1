"""What the CLI shows while it works: log messages and progress, on stderr.

Every module logs through its own `logging.getLogger(__name__)` (warnings, notes, steps); `configure_logging`
gives the `tdmarket` logger one handler that prints ``tdmarket: message`` (``tdmarket: warning: ...``) on
stderr, at INFO level, or WARNING with ``--quiet``.

Progress comes from the schemes as records (the `progress` callback of `tdmarket.clear`):

* ``{"stage", "label", "done", "total"}`` — operator work of one stage (DSO curves, dispatch, the DSO
  evaluations of one cut round, local clearing);
* ``{"stage": "iterate", "iteration", "lower_bound", "upper_bound", "gap_eur", ...}`` — one cut-exchange round;
* ``{"round", "lower_bound", "upper_bound", "gap", "elapsed_s"}`` — one round of the centralized MIP.

`ProgressDisplay` draws them as tqdm bars when stderr is a terminal.  Otherwise (a log file, CI) it writes
plain one-line INFO messages at a bounded rate: the end of each stage, and at most one line per
`interval_s` seconds in between, so a log never fills with redrawn bars.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger(__name__)

PACKAGE_LOGGER = "tdmarket"
ROUND_STAGE = re.compile(r"^(?P<phase>\S+) (?P<round>\d+)$")  # DSO evaluations of one cut round, e.g. "lp 3"
DEFAULT_INTERVAL_S = 10.0


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class CliLogHandler(logging.Handler):
    """``tdmarket: message`` on the current `sys.stderr` (through `tqdm.write` while a bar is drawn there)."""

    def __init__(self, bars_active: Callable[[], bool] = lambda: False):
        super().__init__()
        self.bars_active = bars_active

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"tdmarket: error: {message}"
        if record.levelno >= logging.WARNING:
            return f"tdmarket: warning: {message}"
        return f"tdmarket: {message}"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if self.bars_active():
                from tqdm import tqdm

                tqdm.write(text, file=sys.stderr)
            else:
                sys.stderr.write(text + "\n")
                sys.stderr.flush()
        except Exception:  # a logging failure must not end the run
            self.handleError(record)


_handler: CliLogHandler | None = None
_display: ProgressDisplay | None = None


def configure_logging(quiet: bool) -> None:
    """One handler on the `tdmarket` logger (replacing an earlier one): INFO, or WARNING with `quiet`."""
    global _handler
    logger = logging.getLogger(PACKAGE_LOGGER)
    if _handler is not None:
        logger.removeHandler(_handler)
    _handler = CliLogHandler(bars_active=lambda: _display is not None and _display.has_bars())
    logger.addHandler(_handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


class ProgressDisplay:
    """The progress callback of the CLI: tqdm bars on a terminal, rate-limited log lines otherwise."""

    def __init__(
        self,
        interactive: bool | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.interactive = _stderr_is_terminal() if interactive is None else interactive
        if self.interactive:
            try:
                import tqdm  # noqa: F401
            except ImportError:  # no bars without tqdm: plain lines
                self.interactive = False
        self.interval_s = interval_s
        self.clock = clock
        self._last_line = -float("inf")
        self._stage: str | None = None
        self._bar: tqdm | None = None  # the bar of the current stage (terminal only)
        self._rounds: tqdm | None = None  # the cut-exchange bar (terminal only)
        self._last_round: dict | None = None  # the latest cut round not yet summarised

    def has_bars(self) -> bool:
        return self._bar is not None or self._rounds is not None

    # ---------------------------------------------------------------- records
    def __call__(self, rec: dict) -> None:
        if rec.get("stage") == "iterate":
            self._cut_round(rec)
        elif "stage" in rec:
            self._stage_step(rec)
        else:
            self._mip_round(rec)

    def _due(self) -> bool:
        """Whether a plain line may be written now (at most one per `interval_s`)."""
        now = self.clock()
        if now - self._last_line >= self.interval_s:
            self._last_line = now
            return True
        return False

    def _stage_step(self, rec: dict) -> None:
        stage, done, total = rec["stage"], int(rec["done"]), int(rec["total"])
        round_match = ROUND_STAGE.match(stage)
        title = f"cut round {round_match['round']}: DSO evaluations" if round_match else stage
        if stage != self._stage:
            self._close_bar()
            if not round_match:
                self._end_cut_exchange()
            self._stage = stage
            if self.interactive:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=f"  {title}", unit="DSO", leave=False, file=sys.stderr)
        if self._bar is not None:
            self._bar.total = total
            self._bar.set_postfix_str(str(rec.get("label", "")), refresh=False)
            self._bar.update(done - self._bar.n)
            if done >= total:
                self._close_bar()
                if not round_match:
                    log.info("%s: %d/%d done", stage, done, total)
            return
        if done >= total:
            self._stage = None
            if not round_match:  # the cut rounds are reported by their own lines
                self._last_line = self.clock()
                log.info("%s: %d/%d done", stage, done, total)
        elif not round_match and self._due():
            log.info("%s: %d/%d (%s)", stage, done, total, rec.get("label", ""))

    @staticmethod
    def _round_text(rec: dict) -> str:
        lb, ub, gap = rec["lower_bound"], rec["upper_bound"], rec["gap_eur"]
        return f"LB {lb:,.2f} €  UB {ub:,.2f} €  gap {gap:.3g} € ({rec['master']})"

    def _cut_round(self, rec: dict) -> None:
        k, text = rec["iteration"], self._round_text(rec)
        self._last_round = rec
        if self.interactive:
            if self._rounds is None:
                from tqdm import tqdm

                self._rounds = tqdm(desc="  cut exchange", unit="round", leave=False, file=sys.stderr)
            self._rounds.set_postfix_str(text, refresh=False)
            self._rounds.update(1)
            return
        if k == 1 or self._due():
            log.info("cut exchange round %d: %s", k, text)
            self._last_round = None

    def _end_cut_exchange(self) -> None:
        """After the last cut round: remove its bar and say where the exchange ended."""
        if self._rounds is not None:
            self._rounds.close()
            self._rounds = None
        if self._last_round is not None:
            rec, self._last_round = self._last_round, None
            log.info("cut exchange round %d: %s", rec["iteration"], self._round_text(rec))

    def _mip_round(self, rec: dict) -> None:
        lb, ub, gap = rec.get("lower_bound"), rec.get("upper_bound"), rec.get("gap")
        if lb is None or not math.isfinite(lb):
            return
        if rec.get("round", 0) <= 1 or self._due():
            log.info(
                "MIP round %s: bound %s €, %s (%.1f s)",
                rec.get("round"),
                f"{lb:,.2f}",
                f"incumbent {ub:,.2f} €, gap {100 * gap:.3g} %"
                if ub is not None and math.isfinite(ub) and gap is not None and math.isfinite(gap)
                else "no incumbent yet",
                rec.get("elapsed_s", 0.0),
            )

    # ---------------------------------------------------------------- end
    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        """Remove every bar (at the end of a scheme, or on an error)."""
        self._close_bar()
        self._end_cut_exchange()
        self._stage = None


def progress_display(quiet: bool) -> ProgressDisplay | None:
    """The progress callback for `tdmarket.clear`, or None with --quiet; it becomes the current display, whose
    bars the log handler writes around."""
    global _display
    _display = None if quiet else ProgressDisplay()
    return _display


def progress_printer(quiet: bool):
    """Backward-compatible name of `progress_display`."""
    return progress_display(quiet)
