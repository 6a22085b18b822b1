"""The inner upper bound U_a(x) of the cut exchange (decomposition/inner.py): an upper bound of a convex cost
inside the hull of its evaluated points, exact at those points, +inf outside."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tdmarket.decomposition.inner import InnerBound


def _convex(x: np.ndarray, planes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """A convex piecewise-linear plus quadratic cost (rows of x)."""
    return np.max(x @ planes.T + offsets, axis=1) + 0.3 * (x**2).sum(axis=1)


def _grad(x: np.ndarray, planes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    k = np.argmax(x @ planes.T + offsets, axis=1)
    return planes[k] + 0.6 * x


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(1, 4), k=st.integers(2, 25))
def test_inner_bound_is_an_upper_bound_inside_the_hull(seed: int, T: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    planes, offsets = rng.normal(size=(5, T)) * 20, rng.normal(size=5) * 5
    pts = rng.normal(size=(k, T)) * 3
    vals = _convex(pts, planes, offsets)
    slopes = _grad(pts, planes, offsets)
    inner = InnerBound()
    # points inside the hull: random convex combinations
    lam = rng.dirichlet(np.ones(k), size=6)
    xs = lam @ pts
    for x, w in zip(xs, lam):
        u = inner.values(np.zeros(k, np.int64), pts, vals, slopes, x[None, :])[0]
        truth = _convex(x[None, :], planes, offsets)[0]
        assert np.isfinite(u)
        assert u >= truth - 1e-6
        assert u <= float(vals @ w) + 1e-6  # the LP finds the best combination, at least as good as this one
    # exact at an evaluated point
    u = inner.values(np.zeros(k, np.int64), pts, vals, slopes, pts[:1])[0]
    assert u == pytest.approx(vals[0], abs=1e-12)
    # outside the bounding box: +inf
    far = pts.max(axis=0) + 1.0
    assert inner.values(np.zeros(k, np.int64), pts, vals, slopes, far[None, :])[0] == np.inf


def test_inner_bound_outside_the_hull_but_inside_the_box_is_infinite() -> None:
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    vals, slopes = np.array([0.0, 1.0, 1.0]), np.ones((3, 2))
    inner = InnerBound()
    outside = inner.values(np.zeros(3, np.int64), pts, vals, slopes, np.array([[0.9, 0.9]]))[0]
    inside = inner.values(np.zeros(3, np.int64), pts, vals, slopes, np.array([[0.25, 0.25]]))[0]
    assert outside == np.inf  # in the box [0, 1]², outside the triangle
    assert inside == pytest.approx(0.5)  # 0.5·0 + 0.25·1 + 0.25·1


def test_inner_bound_per_area() -> None:
    """Areas are bounded from their own points only; an area without points is unbounded."""
    area = np.array([0, 0, 1, 1])
    pts = np.array([[0.0], [2.0], [10.0], [12.0]])
    vals = np.array([0.0, 4.0, 1.0, 1.0])
    u = InnerBound().values(area, pts, vals, np.ones((4, 1)), np.array([[1.0], [11.0], [5.0]]))
    assert u[0] == pytest.approx(2.0)
    assert u[1] == pytest.approx(1.0)
    assert u[2] == np.inf
