"""Inputs shared by the subcommands: locating and loading the instance, checking numeric options."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError


def instance_path(args) -> Path:
    """The instance folder named on the command line, or the built-in example with --example."""
    if getattr(args, "example", False):
        from ..examples import builtin_path

        return builtin_path()
    if args.path is None:
        raise InputError("give an instance folder or --example")
    return Path(args.path)


def load_instance(args):
    """Read the instance (optionally with scaled distribution ratings); the reader logs its warnings."""
    from ..io import read

    read_options = dict(edges_file=getattr(args, "edges_file", "Edges.csv"))
    max_mb = getattr(args, "max_file_mb", None)
    if max_mb is not None:
        if not 0 < max_mb <= 2**20:
            raise InputError(f"--max-file-mb = {max_mb!r} is invalid: must be a number in (0, 1048576] MiB")
        read_options["max_file_mb"] = max_mb
    inst = read(instance_path(args), **read_options)
    scale = getattr(args, "d_rating_scale", None)
    if scale is not None:
        if not scale > 0:
            raise InputError(f"--d-rating-scale {scale} must be positive")
        inst = inst.with_distribution_ratings_scaled(scale)
    return inst


def load_layout_index(args):
    """The index of an operator layout (docs/layout.md) when the scheme lets each operator read its own folder
    and nothing asks for the integrated instance up front (no --d-rating-scale); else None."""
    from ..io.layout import detect, read_index
    from ..schemes import registry

    if getattr(args, "example", False) or args.path is None or getattr(args, "d_rating_scale", None) is not None:
        return None
    if getattr(args, "edges_file", "Edges.csv") != "Edges.csv" or not registry.get(args.scheme).reads_operator_folders:
        return None
    return read_index(args.path) if detect(args.path) else None


# command-line flag -> option of `tdmarket.clear` (whose rules, `tdmarket.api.OPTION_RULES`, apply)
FLAG_OPTIONS = {
    "--mip-gap": "mip_gap",
    "--time-limit": "time_limit",
    "--threads": "threads",
    "--slack-penalty": "slack_penalty",
    "--workers": "workers",
    "--curve-tol": "curve_tol",
    "--max-curve-evals": "max_evals",
    "--gap": "gap",
    "--max-rounds": "max_iterations",
    "--skip-bracketed": "skip_bracketed",
    "--repair-rounds": "repair_rounds",
}


def check_numbers(args) -> None:
    """Reject out-of-range numeric options with a one-line error (exit 2), before anything is read."""
    from ..api import check_option

    for flag, name in FLAG_OPTIONS.items():
        attr = flag.removeprefix("--").replace("-", "_")
        if hasattr(args, attr):
            check_option(name, getattr(args, attr), shown=flag)


def model_solve_options(args) -> dict:
    """The model and solve options every clearing command takes (keyword arguments of `tdmarket.clear`)."""
    return dict(
        relax=args.relax,
        mip_gap=args.mip_gap,
        time_limit=args.time_limit,
        threads=args.threads,
        dist_model=args.dist_model,
        reactive_policy=args.reactive_policy,
        slack_penalty=args.slack_penalty,
    )
