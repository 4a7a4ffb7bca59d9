"""statsmodels' random-effects structure as sparselmm terms.

statsmodels writes the random effects per group: ``exog_re`` (one
correlated block per group) and variance components, for each component
and group a matrix whose columns are independent random coefficients with
one common variance. Here they are held for all rows at once: a component
is the nonzeros of its matrices (row, level, value), a level being one
(group, column) pair, in statsmodels' order (by group, then column).

A sparselmm term has one level per row. A component whose rows have at
most one nonzero (indicators ``0 + C(x)``, slopes by level) is one term; a
component with several nonzeros in a row (``0 + x1 + x2``) is split into
terms whose levels never share a row, one θ for all of them: ``expand``
maps the door's θ (one entry per component) to the engine's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..design import ReTerm
from ..errors import DataError


@dataclass(frozen=True)
class Component:
    """One variance component over all rows.

    Attributes
    ----------
    name : str
    rows, levels : ndarray of int
        Row and level of each nonzero.
    values : ndarray
        The nonzero values.
    level_group : ndarray of int
        Group code of each level.
    level_names : ndarray of object
        Column name of each level.
    """

    name: str
    rows: np.ndarray
    levels: np.ndarray
    values: np.ndarray
    level_group: np.ndarray
    level_names: np.ndarray

    @property
    def nlevels(self) -> int:
        return len(self.level_group)

    @classmethod
    def from_matrix(cls, name: str, M, names, group_codes: np.ndarray) -> Component:
        """A component from one matrix over all rows (sparse or dense); a group has the columns
        that are nonzero in it."""
        M = sp.coo_matrix(M)
        keep = M.data != 0
        rows, cols, vals = M.row[keep].astype(np.int64), M.col[keep].astype(np.int64), M.data[keep]
        key = group_codes[rows] * M.shape[1] + cols
        uniq, levels = np.unique(key, return_inverse=True)
        names = np.asarray(list(names), dtype=object)
        return cls(name, rows, levels.astype(np.int64), vals.astype(float), uniq // M.shape[1],
                   names[uniq % M.shape[1]])

    @classmethod
    def from_groups(cls, name: str, mats, colnames, group_rows: list[np.ndarray]) -> Component:
        """A component from statsmodels' per-group matrices (``VCSpec.mats[j]``)."""
        rows, levels, vals, lgroup, lnames = [], [], [], [], []
        base = 0
        for gi, (mat, cn, idx) in enumerate(zip(mats, colnames, group_rows)):
            M = sp.coo_matrix(mat)
            if M.shape != (len(idx), len(cn)):
                raise DataError(f"variance component {name!r}: the matrix of group number {gi} is "
                                f"{M.shape[0]} x {M.shape[1]}, its group has {len(idx)} rows and "
                                f"{len(cn)} column names", column=name)
            keep = M.data != 0
            rows.append(idx[M.row[keep]])
            levels.append(base + M.col[keep])
            vals.append(M.data[keep])
            lgroup.append(np.full(len(cn), gi))
            lnames.extend(cn)
            base += len(cn)
        cat = (lambda parts, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype))
        return cls(name, cat(rows, np.int64), cat(levels, np.int64), cat(vals, float), cat(lgroup, np.int64),
                   np.asarray(lnames, dtype=object))

    def colors(self, n: int) -> np.ndarray:
        """A term index per level such that no row has two nonzeros of one term (greedy coloring)."""
        per_row = np.bincount(self.rows, minlength=n)
        if per_row.max(initial=0) <= 1:
            return np.zeros(self.nlevels, dtype=np.int64)
        inc = sp.csr_matrix((np.ones(len(self.rows)), (self.rows, self.levels)), shape=(n, self.nlevels))
        conflict = (inc.T @ inc).tocsr()
        color = np.full(self.nlevels, -1, dtype=np.int64)
        for lev in range(self.nlevels):
            nbr = conflict.indices[conflict.indptr[lev]:conflict.indptr[lev + 1]]
            used = set(color[nbr].tolist())
            color[lev] = next(c for c in range(len(used) + 1) if c not in used)
        return color


@dataclass(frozen=True)
class EngineDesign:
    """The engine's terms for a statsmodels model.

    Attributes
    ----------
    terms : list of ReTerm
        ``exog_re``'s term first (if any), then each component's terms.
    expand : ndarray of int
        Door θ index of each engine θ entry (engine θ = door θ[expand]).
    component_columns : list of ndarray
        For each component, the column of Z (engine order) of each of its levels.
    re_offset : int
        The first column of Z of ``exog_re``'s term (its columns are level-major).
    """

    terms: list[ReTerm]
    expand: np.ndarray
    component_columns: list[np.ndarray]
    re_offset: int = 0

    @property
    def tied(self) -> bool:
        return len(self.expand) != len(np.unique(self.expand))


def engine_design(group_codes: np.ndarray, group_labels, exog_re: np.ndarray | None, re_names: list[str],
                  components: list[Component]) -> EngineDesign:
    """Terms, θ map and level columns for a model with these groups, ``exog_re`` and components."""
    n = len(group_codes)
    pieces = []  # (term, door θ indices, (component, its levels in the term) or None)
    door = 0
    if exog_re is not None and exog_re.shape[1]:
        k = exog_re.shape[1]
        pieces.append((ReTerm("Group", tuple(re_names), pd.Index(group_labels), group_codes,
                              np.ascontiguousarray(exog_re, dtype=float), diagonal=False),
                       list(range(k * (k + 1) // 2)), None))
        door = k * (k + 1) // 2
    for j, comp in enumerate(components):
        color = comp.colors(n)
        for c in range(int(color.max(initial=-1)) + 1):
            mine = np.flatnonzero(color == c)
            local = np.full(comp.nlevels, -1, dtype=np.int64)
            local[mine] = np.arange(len(mine))
            sel = np.flatnonzero(color[comp.levels] == c)
            codes = np.zeros(n, dtype=np.int64)
            X = np.zeros((n, 1))
            codes[comp.rows[sel]] = local[comp.levels[sel]]
            X[comp.rows[sel], 0] = comp.values[sel]
            pieces.append((ReTerm(comp.name, (comp.name,), pd.RangeIndex(len(mine)), codes, X, diagonal=True),
                           [door], (j, mine)))
        door += 1
    # lme4's order, most levels first: the blocked backend eliminates the first term in closed form
    pieces.sort(key=lambda piece: -piece[0].nlevels)
    columns = [np.empty(c.nlevels, dtype=np.int64) for c in components]
    col = re_offset = 0
    for term, _, owner in pieces:
        if owner is not None:
            columns[owner[0]][owner[1]] = col + np.arange(term.nlevels)
        else:
            re_offset = col
        col += term.size
    expand = np.array([d for _, ds, _ in pieces for d in ds], dtype=np.int64)
    return EngineDesign([t for t, _, _ in pieces], expand, columns, re_offset)
