"""Circle constraints ||(a, b)|| <= r on affine expressions: exact cones (SOCP) or inscribed K-gons (LP).

Used for thermal limits, interface ratings, PQ discs and capability discs.  Which of the two a problem uses is
the distribution formulation's choice (`DistributionFormulation.add_circles`), so no block needs to know whether
it runs on the conic or the linear formulation.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .program import Program
from .terms import Terms


class Affine:
    """k affine expressions: M @ x + const, with M accumulated as triplets."""

    def __init__(self, k: int):
        self.k = int(k)
        self.terms = Terms(self.k)
        self.const = np.zeros(self.k)

    def add(self, rows, cols, vals=1.0) -> Affine:
        self.terms.add(rows, cols, vals)
        return self

    def matrix(self, n: int) -> sp.csr_matrix:
        return self.terms.matrix(n).tocsr()


def add_circle_cones(prog: Program, name: str, a: Affine, b: Affine, radius: np.ndarray) -> None:
    """Add ||(a_k, b_k)|| <= radius_k for every k as exact second-order cones."""
    k = a.k
    if k == 0:
        return
    radius = np.broadcast_to(np.asarray(radius, float), (k,))
    r = Affine(k)
    r.const = radius.copy()
    add_cone(prog, name, [r, a, b])


def add_circle_polygons(prog: Program, name: str, a: Affine, b: Affine, radius: np.ndarray, sides: int = 8) -> None:
    """Add ||(a_k, b_k)|| <= radius_k for every k as the rows of the inscribed `sides`-gon (an LP inner
    approximation)."""
    k = a.k
    if k == 0:
        return
    radius = np.broadcast_to(np.asarray(radius, float), (k,))
    A, B = a.matrix(prog.n), b.matrix(prog.n)
    ang = 2 * np.pi * np.arange(sides) / sides
    rows = sp.vstack([np.cos(t) * A + np.sin(t) * B for t in ang])
    const = np.concatenate([np.cos(t) * a.const + np.sin(t) * b.const for t in ang])
    hi = np.tile(radius * np.cos(np.pi / sides), sides) - const
    prog.add_rows(name, rows, -np.inf, hi)


def add_cone(prog: Program, name: str, comps: list[Affine]) -> None:
    """Add (comps[0], comps[1:]) in SOC(d) for every row k: comps[0]_k >= ||(comps[1]_k, ..)||."""
    d = len(comps)
    k = comps[0].k
    if k == 0:
        return
    G_parts = []
    h = np.empty(d * k)
    for j, c in enumerate(comps):
        M = c.terms.matrix(prog.n)
        G_parts.append(sp.coo_matrix((-M.data, (M.row * d + j, M.col)), shape=(d * k, prog.n)))
        h[j::d] = c.const
    G = sp.coo_matrix(
        (
            np.concatenate([g.data for g in G_parts]),
            (np.concatenate([g.row for g in G_parts]), np.concatenate([g.col for g in G_parts])),
        ),
        shape=(d * k, prog.n),
    )
    prog.add_soc(name, G, h, d)
