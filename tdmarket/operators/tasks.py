"""Top-level task functions run by the executors (picklable; each builds the DSO agent from its own data)."""

from __future__ import annotations

import time

from ..formulations.options import ModelOptions
from ..model.instance import Instance
from .agents import DSO
from .messages import CurveOffer, Schedule


def dso_curve(
    sub: Instance,
    opts: ModelOptions,
    parent: str,
    children: list[CurveOffer],
    curve_tol: float,
    max_evals: int,
    locked: dict | None = None,
):
    t0 = time.perf_counter()
    msg = DSO(sub, opts, parent, children, locked).curve(curve_tol, max_evals)
    return msg, time.perf_counter() - t0


def dso_evaluate(
    sub: Instance,
    opts: ModelOptions,
    parent: str,
    children: list[CurveOffer],
    sched: Schedule,
    locked: dict | None = None,
):
    t0 = time.perf_counter()
    msg = DSO(sub, opts, parent, children, locked).evaluate(sched)
    return msg, time.perf_counter() - t0


def dso_dispatch(
    sub: Instance,
    opts: ModelOptions,
    parent: str,
    children: list[CurveOffer],
    sched: Schedule,
    mip_gap: float,
    time_limit: float | None,
    relax: bool,
    own_offer: CurveOffer | None,
    locked: dict | None = None,
):
    return DSO(sub, opts, parent, children, locked).dispatch(
        sched, mip_gap=mip_gap, time_limit=time_limit, threads=1, relax=relax, own_offer=own_offer
    )


def dso_base_exchange(sub: Instance, opts: ModelOptions, parent: str):
    t0 = time.perf_counter()
    msg = DSO(sub, opts, parent, []).base_exchange()
    return msg, time.perf_counter() - t0
