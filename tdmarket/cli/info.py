"""`tdmarket info`: instance statistics."""

from __future__ import annotations

import json

from .inputs import load_instance


def cmd_info(args) -> int:
    from ..model.stats import format_stats, instance_stats

    inst = load_instance(args)
    stats = instance_stats(inst)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(format_stats(stats))
    return 0
