"""Command-line interface: `tdmarket info|clear|compare ...`.

User errors (bad input data, bad options) print one line to stderr and exit with code 2; no traceback.
Ctrl-C (SIGINT) and SIGTERM stop the run, its worker processes included, and exit with 130 and 143.

One module per command (`info`, `clear`, `compare`, `variant`, `generate`, `split`); `parser` builds the argument parser,
`inputs` loads the instance and checks numeric options, `progress` and `summary` print what `clear` reports.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from ..errors import InputError, SolverError, TdmarketError
from .clear import cmd_clear
from .compare import cmd_compare
from .info import cmd_info
from .parser import build_parser
from .progress import configure_logging
from .variant import VARIANT_OPTIONS, add_variant_parser, cmd_variant

__all__ = [
    "VARIANT_OPTIONS",
    "add_variant_parser",
    "build_parser",
    "cmd_clear",
    "cmd_compare",
    "cmd_info",
    "cmd_variant",
    "main",
]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same clean-up runs (workers are stopped)."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(quiet=getattr(args, "quiet", False))
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        return _run(args)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _run(args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    try:
        rc = args.func(args)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here, not at interpreter exit
        return rc
    except InputError as exc:
        print(f"tdmarket: error: {exc.one_line()}", file=sys.stderr)
        return 2
    except SolverError as exc:
        print(f"tdmarket: solver error: {exc}", file=sys.stderr)
        return 3
    except TdmarketError as exc:  # e.g. operator work failed twice: no results folder is written
        print(f"tdmarket: error: {exc}", file=sys.stderr)
        return 3
    except Terminated:
        print("tdmarket: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("tdmarket: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`tdmarket info --json | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
