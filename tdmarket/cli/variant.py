"""`tdmarket variant`: write a random but valid variant of an instance folder."""

from __future__ import annotations

from ..errors import InputError

VARIANT_OPTIONS = (
    "dso_copies",
    "dso_areas",
    "order_copies",
    "segments",
    "aon_share",
    "start_stop_share",
    "negative_price_share",
    "price_noise",
    "interface_rating_scale",
    "d_rating_scale",
    "imbalance_scale",
    "periods",
    "edges_file",
)

# options that say the same thing two ways: an explicit one replaces the preset's alternative
_ALTERNATIVE = {"dso_copies": "dso_areas", "order_copies": "segments"}
_ALTERNATIVE.update({b: a for a, b in list(_ALTERNATIVE.items())})


def _variant_paths(args):
    """(base, out): BASE and OUT, or the built-in example as base with --example OUT."""
    base, out = args.base, args.out
    if args.example:
        if base is not None and out is not None:
            raise InputError("give either BASE or --example, not both")
        out = out if out is not None else base
        from ..examples import builtin_path

        base = builtin_path()
    if base is None or out is None:
        raise InputError("give a BASE instance folder and an OUT folder (or --example OUT)")
    return base, out


def _variant_options(args) -> dict:
    """The preset's options overridden by the explicit ones."""
    from ..generate.variants import PRESETS

    options = dict(PRESETS[args.preset]) if args.preset else {}
    for key in VARIANT_OPTIONS:
        value = getattr(args, key)
        if value is not None:
            options[key] = value
            if key in _ALTERNATIVE and getattr(args, _ALTERNATIVE[key]) is None:
                options.pop(_ALTERNATIVE[key], None)  # an explicit option replaces the preset's alternative
    return options


def cmd_variant(args) -> int:
    from ..generate.variants import make_variant, read_manifest

    base, out = _variant_paths(args)
    options = _variant_options(args)
    path = make_variant(base, out, seed=args.seed, overwrite=args.overwrite, **options)
    fig = read_manifest(path)["figures"]
    print(
        f"tdmarket: variant written to {path}: {fig['dso_areas']} DSO areas, {fig['segments']} segments "
        f"({100 * fig['aon_share']:.1f} % all-or-nothing), start/stop {100 * fig['start_stop_share_of_bids']:.1f} % "
        f"of bids, negative-price down {100 * fig['negative_price_share_of_down']:.1f} %"
    )
    return 0


def add_variant_parser(sub) -> None:
    from ..generate.variants import PRESETS

    v = sub.add_parser(
        "variant",
        help="write a random variant of an instance (cloned DSO areas, perturbed orders and ratings)",
        description="Write a random but valid variant of a SmartNet instance folder, deterministic for --seed "
        "(the same seed gives byte-identical files). Shares are fractions in [0, 1]; unset options keep the "
        "base's values. The rules are in tdmarket/generate/variants.py; OUT/variant.json records them and the "
        "figures reached.",
        epilog="Documentation: docs/format.md (the input files) and docs/model.md (the model), in the tdmarket "
        "repository.",
    )
    v.add_argument("base", nargs="?", metavar="BASE", help="base instance folder (omit with --example)")
    v.add_argument("out", nargs="?", metavar="OUT", help="output folder (must be new or empty)")
    v.add_argument("--example", action="store_true", help="use the built-in example as BASE")
    v.add_argument("--seed", type=int, required=True, help="random seed (integer >= 0)")
    v.add_argument(
        "--preset", choices=sorted(PRESETS), default=None, help="named option set; explicit options override it"
    )
    v.add_argument(
        "--dso-copies", type=float, metavar="K", help="K >= 1: round(K*n) DSO areas (clones at random T nodes)"
    )
    v.add_argument("--dso-areas", type=int, metavar="N", help="total number of DSO areas (instead of --dso-copies)")
    v.add_argument(
        "--order-copies", type=float, metavar="F", help="F >= 1: duplicate D orders up to F times the D segments"
    )
    v.add_argument("--segments", type=int, metavar="N", help="duplicate D orders up to N segments in all")
    v.add_argument("--aon-share", type=float, metavar="F", help="share of segments that are all-or-nothing (Xlb=1)")
    v.add_argument("--start-stop-share", type=float, metavar="F", help="share of QBids in start/stop blocks")
    v.add_argument(
        "--negative-price-share", type=float, metavar="F", help="share of down segments with a negative price"
    )
    v.add_argument(
        "--price-noise",
        type=float,
        metavar="S",
        help="sigma of a random log-normal price mark-up (prices only rise; 0 = none)",
    )
    v.add_argument("--interface-rating-scale", type=float, metavar="F", help="factor on rated T-D interface ratings")
    v.add_argument("--d-rating-scale", type=float, metavar="F", help="factor on rated D-D line ratings")
    v.add_argument(
        "--imbalance-scale", type=float, metavar="F", help="factor on the system imbalance (spread over T nodes)"
    )
    v.add_argument("--periods", type=int, metavar="N", help="keep the first N periods")
    v.add_argument("--edges-file", default=None, help="edge file defining the topology (default Edges.csv)")
    v.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT folder")
    v.set_defaults(func=cmd_variant)
