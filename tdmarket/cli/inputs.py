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

    inst = read(instance_path(args), edges_file=getattr(args, "edges_file", "Edges.csv"))
    scale = getattr(args, "d_rating_scale", None)
    if scale is not None:
        if not scale > 0:
            raise InputError(f"--d-rating-scale {scale} must be positive")
        inst = inst.with_distribution_ratings_scaled(scale)
    return inst


def check_numbers(args) -> None:
    """Reject out-of-range numeric options with a one-line error (exit 2)."""
    checks = [
        ("--mip-gap", getattr(args, "mip_gap", None), lambda v: v >= 0),
        ("--time-limit", getattr(args, "time_limit", None), lambda v: v is None or v > 0),
        ("--threads", getattr(args, "threads", None), lambda v: v >= 1),
        ("--slack-penalty", getattr(args, "slack_penalty", None), lambda v: v > 0),
        ("--workers", getattr(args, "workers", None), lambda v: v is None or v >= 1),
        ("--curve-tol", getattr(args, "curve_tol", None), lambda v: v is None or v > 0),
        ("--max-curve-evals", getattr(args, "max_curve_evals", None), lambda v: v is None or v >= 2),
        ("--gap", getattr(args, "gap", None), lambda v: v is None or 0 < v < 1),
        ("--max-rounds", getattr(args, "max_rounds", None), lambda v: v is None or v >= 1),
    ]
    for flag, value, ok in checks:
        if value is not None and not ok(value):
            raise InputError(f"{flag} {value} is out of range")


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
