"""The cut rows of a parent's master (decomposition/offers.py `cut_matrix`): scaled, free of round-off slope
entries, and still valid lower bounds of the child's cost everywhere in the parent's box."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tdmarket.decomposition.offers import TINY_SLOPE, cut_matrix


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), T=st.integers(1, 4), K=st.integers(1, 8))
def test_cut_rows_drop_round_off_slopes_and_stay_valid_in_the_box(seed: int, T: int, K: int) -> None:
    rng = np.random.default_rng(seed)
    A_areas = 3
    # columns: θ of each area, then its exports (A, T); the box of the exports in MW
    theta = np.arange(A_areas)
    x_cols = A_areas + np.arange(A_areas * T).reshape(A_areas, T)
    n = A_areas + A_areas * T
    lb = np.full(n, -np.inf)
    ub = np.full(n, np.inf)
    lb[x_cols.ravel()] = -rng.uniform(1, 200, A_areas * T)
    ub[x_cols.ravel()] = rng.uniform(1, 200, A_areas * T)
    area = rng.integers(0, A_areas, K)
    points = rng.uniform(lb[x_cols[area]], ub[x_cols[area]])
    slopes = rng.normal(size=(K, T)) * rng.choice([1.0, 50.0, 1e4], size=(K, 1))
    # interior-point round-off: some entries tiny next to the row's largest
    tiny = rng.random((K, T)) < 0.4
    slopes = np.where(tiny, rng.normal(size=(K, T)) * 1e-9 * np.abs(slopes).max(axis=1, keepdims=True), slopes)
    values = rng.normal(size=K) * 100

    M, lo = cut_matrix(area, points, values, slopes, theta, x_cols, n, lb, ub)
    M = M.toarray()
    # no entry below the round-off threshold (rows are scaled by 1 / max(1, |ρ|∞): an entry is ρ's share of that)
    entries = np.abs(M[:, x_cols.ravel()])
    assert not np.any((entries > 0) & (entries < TINY_SLOPE * 0.999))
    # valid: at random exports in the box, the bound the row puts on θ is at most the original cut's value
    for _ in range(20):
        x = np.zeros(n)
        x[x_cols.ravel()] = rng.uniform(lb[x_cols.ravel()], ub[x_cols.ravel()])
        for k in range(K):
            a = area[k]
            original = values[k] + slopes[k] @ (x[x_cols[a]] - points[k])
            coef_theta = M[k, theta[a]]
            implied = (lo[k] - M[k] @ x) / coef_theta  # θ_a >= implied
            assert implied <= original + 1e-9 * max(1.0, abs(original))
    # without the box nothing changes but the scaling
    M0, lo0 = cut_matrix(area, points, values, slopes, theta, x_cols, n)
    scale = 1.0 / np.maximum(1.0, np.abs(slopes).max(axis=1))
    np.testing.assert_allclose(M0.toarray()[np.arange(K), theta[area]], scale)
