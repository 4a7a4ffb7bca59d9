"""Random-effect terms and the layout of θ, Λθ and Z.

A random-effect term k has a grouping factor with ℓ_k levels (integer codes
per row), p_k model columns, and a p_k × p_k lower-triangular relative
covariance factor T_k. Z's columns are ordered term by term and, inside a
term, level-major: the p_k columns of level j are contiguous. Then

    Λθ = blockdiag_k(I_{ℓ_k} ⊗ T_k)

and θ holds, term by term, the lower triangle of T_k column by column (lme4's
order), or only its diagonal for a diagonal term.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd


@dataclass(frozen=True, eq=False)
class ReTerm:
    """One random-effect term: grouping factor codes and model columns.

    Parameters
    ----------
    group : str
        Name of the grouping factor as lme4 writes it (``"Subject"``,
        ``"batch:cask"``).
    columns : tuple of str
        Names of the term's model columns (``"(Intercept)"``, ``"Days"``).
    levels : pandas.Index
        Level labels, in the order of the codes.
    codes : ndarray of int, shape (n,)
        Level code of each row, in ``0 .. len(levels) - 1``.
    X : ndarray, shape (n, p)
        The term's model columns.
    diagonal : bool
        Whether T_k is restricted to its diagonal (independent columns).
    """

    group: str
    columns: tuple[str, ...]
    levels: pd.Index
    codes: np.ndarray
    X: np.ndarray
    diagonal: bool = False

    def __post_init__(self):
        if self.X.ndim != 2 or self.X.shape != (len(self.codes), len(self.columns)):
            raise ValueError(f"term ({' + '.join(self.columns)} | {self.group}): model columns of shape "
                             f"{self.X.shape} for {len(self.codes)} rows and {len(self.columns)} names")

    @property
    def p(self) -> int:
        return len(self.columns)

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def size(self) -> int:
        """Number of columns of Z that belong to this term."""
        return self.nlevels * self.p

    @cached_property
    def active(self) -> np.ndarray:
        """Rows where the term's columns are not all zero (a row where they are links nothing)."""
        out = self.X[:, 0] != 0
        for j in range(1, self.p):  # column by column: a reduction along rows of p ≤ 3 is slow in numpy
            out |= self.X[:, j] != 0
        return out

    @property
    def ntheta(self) -> int:
        return self.p if self.diagonal else self.p * (self.p + 1) // 2

    def theta_index(self) -> np.ndarray:
        """Local θ index of each entry of T_k, -1 where T_k is zero."""
        idx = np.full((self.p, self.p), -1, dtype=np.int64)
        t = 0
        for j in range(self.p):
            for i in range(j, self.p):
                if i == j or not self.diagonal:
                    idx[i, j] = t
                    t += 1
        return idx

    def theta_names(self) -> list[str]:
        """lme4's names of this term's θ entries (``Subject.Days.(Intercept)``)."""
        names = []
        for j in range(self.p):
            for i in range(j, self.p):
                if i == j:
                    names.append(f"{self.group}.{self.columns[i]}")
                elif not self.diagonal:
                    names.append(f"{self.group}.{self.columns[i]}.{self.columns[j]}")
        return names


class Layout:
    """Where each term's columns of Z and entries of θ are.

    The layout is all a backend needs to know about the terms: sizes,
    offsets, and the map from θ to the blocks T_k.
    """

    def __init__(self, terms: list[ReTerm]):
        self.terms = list(terms)
        self.p = np.array([t.p for t in terms], dtype=np.int64)
        self.nlevels = np.array([t.nlevels for t in terms], dtype=np.int64)
        sizes = self.p * self.nlevels
        self.col_offset = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        nth = np.array([t.ntheta for t in terms], dtype=np.int64)
        self.theta_offset = np.concatenate([[0], np.cumsum(nth)]).astype(np.int64)
        self.q = int(self.col_offset[-1])
        self.ntheta = int(self.theta_offset[-1])

    @cached_property
    def tindex(self) -> tuple[np.ndarray, np.ndarray]:
        """Global θ index of every T_k entry, packed: ``(flat, offsets)``.

        Entry (i, j) of T_k is ``flat[offsets[k] + i * p_k + j]``; -1 marks a
        structural zero.
        """
        parts, offs = [], [0]
        for k, t in enumerate(self.terms):
            idx = t.theta_index()
            parts.append(np.where(idx >= 0, idx + self.theta_offset[k], -1).ravel())
            offs.append(offs[-1] + t.p * t.p)
        return np.concatenate(parts), np.array(offs, dtype=np.int64)

    @cached_property
    def lower_bounds(self) -> np.ndarray:
        """Lower bounds of θ: 0 on diagonals of T_k, -inf elsewhere."""
        lb = np.full(self.ntheta, -np.inf)
        for k, t in enumerate(self.terms):
            idx = t.theta_index()
            lb[np.diag(idx) + self.theta_offset[k]] = 0.0
        return lb

    @cached_property
    def column_diagonal(self) -> np.ndarray:
        """For each θ_j, the index of the diagonal entry of its column of T_k."""
        out = np.empty(self.ntheta, dtype=np.int64)
        for k, t in enumerate(self.terms):
            idx = t.theta_index()
            for a, b in zip(*np.nonzero(idx >= 0)):
                out[self.theta_offset[k] + idx[a, b]] = self.theta_offset[k] + idx[b, b]
        return out

    @cached_property
    def even(self) -> np.ndarray:
        """Which θ_j the objective is even in: diagonals alone in their column of T_k
        (scalar and ``||`` terms, the last diagonal of a full T_k)."""
        col = self.column_diagonal
        return np.bincount(col, minlength=self.ntheta)[col] == 1

    def canonical(self, theta: np.ndarray) -> np.ndarray:
        """The θ with every diagonal of T_k ≥ 0 and the same ΛΛ': columns with a negative diagonal negated."""
        theta = np.asarray(theta, dtype=float)
        return np.where(theta[self.column_diagonal] < 0, -theta, theta)

    @cached_property
    def theta_names(self) -> list[str]:
        return [name for t in self.terms for name in t.theta_names()]

    def theta_start(self) -> np.ndarray:
        """lme4's start: T_k = I."""
        return np.where(self.lower_bounds == 0.0, 1.0, 0.0)

    def T(self, theta: np.ndarray) -> list[np.ndarray]:
        """The blocks T_k for a given θ."""
        out = []
        for k, t in enumerate(self.terms):
            idx = t.theta_index()
            T = np.zeros((t.p, t.p))
            mask = idx >= 0
            T[mask] = theta[self.theta_offset[k] + idx[mask]]
            out.append(T)
        return out

    def lambda_t_times(self, theta: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Λθ' V for V with q rows (one or two dimensional)."""
        return self._apply(theta, V, transpose=True)

    def lambda_times(self, theta: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Λθ V for V with q rows (one or two dimensional)."""
        return self._apply(theta, V, transpose=False)

    def _apply(self, theta, V, transpose):
        V = np.asarray(V, dtype=float)
        out = np.empty_like(V)
        tail = V.shape[1:]
        for k, T in enumerate(self.T(theta)):
            a, b = self.col_offset[k], self.col_offset[k + 1]
            p, nl = T.shape[0], self.nlevels[k]
            blk = V[a:b].reshape((nl, p) + tail)
            # level l's rows: T' v_l (transpose) or T v_l, one product per nonzero of T
            M = T if transpose else T.T  # res[:, r] = Σ_s M[s, r] blk[:, s]
            res = np.zeros_like(blk)
            for s, r in zip(*np.nonzero(M)):
                res[:, r] += M[s, r] * blk[:, s]
            out[a:b] = res.reshape((nl * p,) + tail)
        return out

    def lambda_matrix(self, theta: np.ndarray):
        """Λθ as a sparse CSC matrix (q × q, block diagonal)."""
        import scipy.sparse as sp

        blocks = [sp.kron(sp.identity(nl, format="csc"), sp.csc_matrix(T), format="csc")
                  for nl, T in zip(self.nlevels, self.T(theta))]
        return sp.block_diag(blocks, format="csc")

    def theta_columns(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Columns (c(a), c(b)) of every level block for θ_j = T_k[a, b].

        ∂Λ/∂θ_j = Σ_levels e_{c(a)} e_{c(b)}'.
        """
        k = int(np.searchsorted(self.theta_offset, j, side="right") - 1)
        idx = self.terms[k].theta_index()
        a, b = np.argwhere(idx == j - self.theta_offset[k])[0]
        base = self.col_offset[k] + np.arange(self.nlevels[k]) * self.p[k]
        return base + a, base + b
