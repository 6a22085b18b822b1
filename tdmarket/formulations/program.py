"""Solver-neutral optimisation program assembled from sparse matrix blocks.

A `Program` is what formulations produce and solver adapters consume:

    minimise    c @ x + c0
    subject to  row_lo <= A @ x <= row_hi             (linear rows; lo == hi for equalities)
                lb <= x <= ub                          (variable bounds, may be +-inf)
                cone_b - cone_A @ x  in  SOC(d_1) x SOC(d_2) x ...   (second-order cones)
                x[j] integer where integrality[j]

A second-order cone SOC(d) = {s in R^d : s_0 >= ||s_1..d-1||}.  Everything is stored as numpy arrays and
scipy.sparse matrices; blocks are added as whole vectors/matrices, never element by element.

Dual convention (enforced by the adapters): `row_dual[r]` = d(optimal objective) / d(bound of row r) for
the active bound, i.e. the marginal cost of increasing the right-hand side.  With balance rows written as
injections - outflows = -P (withdrawal) that is exactly the LMP of docs/model.md §1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass
class VarBlock:
    name: str
    start: int
    size: int

    @property
    def slice(self) -> slice:
        return slice(self.start, self.start + self.size)

    @property
    def index(self) -> np.ndarray:
        return np.arange(self.start, self.start + self.size)


@dataclass
class RowBlock:
    name: str
    start: int
    size: int

    @property
    def slice(self) -> slice:
        return slice(self.start, self.start + self.size)


@dataclass
class ConeBlock:
    name: str
    start: int  # first cone row
    size: int  # number of cones
    dim: int  # dimension of each cone


@dataclass
class Program:
    """Incrementally assembled sparse program (see module docstring)."""

    n: int = 0
    c0: float = 0.0
    variables: dict[str, VarBlock] = field(default_factory=dict)
    rows: dict[str, RowBlock] = field(default_factory=dict)
    cones: dict[str, ConeBlock] = field(default_factory=dict)
    _lb: list = field(default_factory=list)
    _ub: list = field(default_factory=list)
    _c: list = field(default_factory=list)
    _int: list = field(default_factory=list)
    _A: list = field(default_factory=list)  # list of (row_start, coo)
    _lo: list = field(default_factory=list)
    _hi: list = field(default_factory=list)
    m: int = 0
    _G: list = field(default_factory=list)
    _h: list = field(default_factory=list)
    cone_dims: list = field(default_factory=list)  # list of (dim, count) runs
    k: int = 0  # number of cone rows
    _frozen: tuple | None = None

    # ---------------------------------------------------------------- variables
    def add_variables(self, name: str, size: int, lb=0.0, ub=np.inf, cost=0.0, integer=False) -> VarBlock:
        if name in self.variables:
            raise ValueError(f"variable block {name!r} defined twice")
        self._consolidate()
        size = int(size)
        block = VarBlock(name, self.n, size)
        self.variables[name] = block
        self._lb.append(np.broadcast_to(np.asarray(lb, float), (size,)).copy())
        self._ub.append(np.broadcast_to(np.asarray(ub, float), (size,)).copy())
        self._c.append(np.broadcast_to(np.asarray(cost, float), (size,)).copy())
        self._int.append(np.broadcast_to(np.asarray(integer, bool), (size,)).copy())
        self.n += size
        self._frozen = None
        return block

    def var(self, name: str) -> VarBlock:
        return self.variables[name]

    # ---------------------------------------------------------------- linear rows
    def add_rows(self, name: str, A, lo, hi) -> RowBlock:
        """Add rows lo <= A x <= hi.  `A` has `self.n` columns or fewer (missing columns are zero)."""
        if name in self.rows:
            raise ValueError(f"row block {name!r} defined twice")
        self._consolidate()
        A = sp.coo_matrix(A)
        size = A.shape[0]
        block = RowBlock(name, self.m, size)
        self.rows[name] = block
        self._A.append((self.m, A))
        self._lo.append(np.broadcast_to(np.asarray(lo, float), (size,)).copy())
        self._hi.append(np.broadcast_to(np.asarray(hi, float), (size,)).copy())
        self.m += size
        self._frozen = None
        return block

    # ---------------------------------------------------------------- cones
    def add_soc(self, name: str, G, h, dim: int) -> ConeBlock:
        """Add `count` cones of dimension `dim`: h - G x in SOC(dim) for each consecutive group of `dim` rows."""
        if name in self.cones:
            raise ValueError(f"cone block {name!r} defined twice")
        self._consolidate()
        G = sp.coo_matrix(G)
        if G.shape[0] % dim:
            raise ValueError("cone rows must be a multiple of the cone dimension")
        count = G.shape[0] // dim
        block = ConeBlock(name, self.k, count, dim)
        self.cones[name] = block
        self._G.append((self.k, G))
        self._h.append(np.broadcast_to(np.asarray(h, float), (G.shape[0],)).copy())
        if count:
            if self.cone_dims and self.cone_dims[-1][0] == dim:
                self.cone_dims[-1] = (dim, self.cone_dims[-1][1] + count)
            else:
                self.cone_dims.append((dim, count))
        self.k += G.shape[0]
        self._frozen = None
        return block

    # ---------------------------------------------------------------- assembled arrays
    @staticmethod
    def _stack(parts, nrows, ncols) -> sp.csr_matrix:
        if not parts:
            return sp.csr_matrix((nrows, ncols))
        rows = np.concatenate([p.row + start for start, p in parts])
        cols = np.concatenate([p.col for _, p in parts])
        vals = np.concatenate([p.data for _, p in parts])
        return sp.csr_matrix((vals, (rows, cols)), shape=(nrows, ncols))

    def _consolidate(self) -> None:
        """Fold the assembled arrays (including in-place bound/cost changes) back into single parts, so that
        blocks added after `set_bounds` & co. keep those changes."""
        if self._frozen is None:
            return
        lb, ub, c, integ, A, lo, hi, G, h = self._frozen
        self._lb, self._ub, self._c, self._int = [lb], [ub], [c], [integ]
        self._A, self._lo, self._hi = [(0, A.tocoo())], [lo], [hi]
        self._G, self._h = [(0, G.tocoo())], [h]
        self._frozen = None

    def _freeze(self) -> tuple:
        if self._frozen is None:
            cat = lambda parts, dt=float: np.concatenate(parts) if parts else np.zeros(0, dt)
            self._frozen = (
                cat(self._lb),
                cat(self._ub),
                cat(self._c),
                cat(self._int, bool),
                self._stack(self._A, self.m, self.n),
                cat(self._lo),
                cat(self._hi),
                self._stack(self._G, self.k, self.n),
                cat(self._h),
            )
        return self._frozen

    @property
    def lb(self) -> np.ndarray:
        return self._freeze()[0]

    @property
    def ub(self) -> np.ndarray:
        return self._freeze()[1]

    @property
    def c(self) -> np.ndarray:
        return self._freeze()[2]

    @property
    def integrality(self) -> np.ndarray:
        return self._freeze()[3]

    @property
    def A(self) -> sp.csr_matrix:
        return self._freeze()[4]

    @property
    def row_lo(self) -> np.ndarray:
        return self._freeze()[5]

    @property
    def row_hi(self) -> np.ndarray:
        return self._freeze()[6]

    @property
    def cone_A(self) -> sp.csr_matrix:
        return self._freeze()[7]

    @property
    def cone_b(self) -> np.ndarray:
        return self._freeze()[8]

    @property
    def has_integers(self) -> bool:
        return bool(self.integrality.any())

    @property
    def has_cones(self) -> bool:
        return self.k > 0

    # ---------------------------------------------------------------- mutation used by schemes
    def set_bounds(self, index, lb=None, ub=None) -> None:
        """Change variable bounds in place (e.g. fix binaries, fix an interface flow)."""
        frozen = self._freeze()
        if lb is not None:
            frozen[0][index] = lb
        if ub is not None:
            frozen[1][index] = ub

    def set_row_bounds(self, index, lo=None, hi=None) -> None:
        frozen = self._freeze()
        if lo is not None:
            frozen[5][index] = lo
        if hi is not None:
            frozen[6][index] = hi

    def set_cost(self, c) -> None:
        """Replace the objective vector (e.g. to minimise or maximise one variable)."""
        frozen = self._freeze()
        frozen[2][:] = c

    def relax_integrality(self) -> None:
        frozen = self._freeze()
        frozen[3][:] = False

    def set_integrality(self, index) -> None:
        """Mark columns `index` integer (e.g. restore the binaries of a model built relaxed)."""
        frozen = self._freeze()
        frozen[3][index] = True

    def copy(self) -> Program:
        """Independent copy (arrays copied; later changes to either do not affect the other)."""
        import copy as _copy

        frozen = self._freeze()
        other = _copy.copy(self)
        other._frozen = tuple(a.copy() for a in frozen)
        other.variables, other.rows, other.cones = dict(self.variables), dict(self.rows), dict(self.cones)
        other.cone_dims = list(self.cone_dims)
        other._consolidate()
        return other
